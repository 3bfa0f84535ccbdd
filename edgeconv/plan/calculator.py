"""`edgeconv layer`: the lecture's one-layer calculator, with the formulas filled in."""

from __future__ import annotations

from edgeconv.core import shapes
from edgeconv.core.graph import analyze
from edgeconv.core.ir import AvgPool, Conv2d, DepthwiseConv2d, InputSpec, Layer, MaxPool, chain

OPS = ("conv2d", "depthwise_conv2d", "max_pool", "avg_pool")


def _axis_lines(axis: str, size: int, k: int, s: int, padding, out: int) -> str:
    if padding == shapes.SAME:
        total = max((out - 1) * s + k - size, 0)
        return (
            f"{axis}2 = ⌈{axis}1/S⌉ = ⌈{size}/{s}⌉ = {out}  "
            f"(padding same: total pad max(({axis}2 − 1)·S + F − {axis}1, 0) = {total}, "
            f"{total // 2} before, {total - total // 2} after)"
        )
    if padding == shapes.VALID:
        return f"{axis}2 = ⌊({axis}1 − F)/S⌋ + 1 = ⌊({size} − {k})/{s}⌋ + 1 = {out}  (padding valid)"
    return f"{axis}2 = ({axis}1 − F + 2P)/S + 1 = ({size} − {k} + 2·{padding})/{s} + 1 = {out}"


def explain_layer(
    input_whc: tuple[int, int, int],
    op: str = "conv2d",
    filters: int | None = None,
    kernel: tuple[int, int] = (3, 3),
    stride: tuple[int, int] = (1, 1),
    padding: str | int = 0,
) -> dict:
    """Shapes, parameters and MACs of one layer, plus the formulas with the numbers filled in."""
    name = "layer"
    layer: Layer
    if op == "conv2d":
        layer = Conv2d(name=name, filters=filters or 0, kernel=kernel, stride=stride, padding=padding)
    elif op == "depthwise_conv2d":
        layer = DepthwiseConv2d(name=name, kernel=kernel, stride=stride, padding=padding)
    elif op == "max_pool":
        layer = MaxPool(name=name, pool=kernel, stride=stride, padding=padding)
    else:
        layer = AvgPool(name=name, pool=kernel, stride=stride, padding=padding)
    info = analyze(chain("layer", InputSpec(*input_whc), [layer])).layers[0]
    (w1, h1, d1), (w2, h2, d2) = input_whc, info.out_shape
    kw, kh = kernel
    lines = [_axis_lines("W", w1, kw, stride[0], padding, w2), _axis_lines("H", h1, kh, stride[1], padding, h2)]
    per_filter = None
    if op == "conv2d":
        per_filter = kw * kh * d1 + 1
        lines += [
            f"D2 = K = {d2}",
            f"params per filter = F·F·D1 + 1 = {kw}·{kh}·{d1} + 1 = {per_filter}",
            f"params = (F·F·D1)·K + K = ({kw}·{kh}·{d1})·{d2} + {d2} = {info.params:,}",
            f"MACs = W2·H2·K·F·F·D1 = {w2}·{h2}·{d2}·{kw}·{kh}·{d1} = {info.macs:,}",
        ]
    elif op == "depthwise_conv2d":
        per_filter = kw * kh + 1
        lines += [
            f"D2 = D1 = {d2} (one {kw}x{kh} filter per channel)",
            f"params = F·F·D1 + D1 = {kw}·{kh}·{d1} + {d1} = {info.params:,}",
            f"MACs = W2·H2·D1·F·F = {w2}·{h2}·{d1}·{kw}·{kh} = {info.macs:,}",
        ]
    else:
        lines += [f"D2 = D1 = {d2}; no parameters"]
    return {
        "op": op,
        "input": list(input_whc),
        "output": [w2, h2, d2],
        "kernel": [kw, kh],
        "stride": list(stride),
        "padding": padding,
        "pads": dict(zip(("top", "left", "bottom", "right"), info.pads)),
        "params": info.params,
        "params_per_filter": per_filter,
        "macs": info.macs,
        "output_bytes": {"int8": w2 * h2 * d2, "float32": 4 * w2 * h2 * d2},
        "formulas": lines,
    }
