"""The lecture's shape formulas, one axis at a time. Pure integer arithmetic.

For an input of size W1 along one axis, a window (kernel) F, stride S and padding P:

    W2 = (W1 − F + 2P)/S + 1

An explicit symmetric P must tile the input exactly; `same` (TFLite SAME = ONNX SAME_UPPER)
gives ⌈W1/S⌉ with the odd padding pixel at the end; `valid` uses no padding and floors.

Imported layers keep the padding their file has, per side: (top, left, bottom, right), with the
frameworks' floor semantics W2 = ⌊(W1 + P_begin + P_end − F)/S⌋ + 1 (PyTorch's stride-2
`padding=1` conv on an even input leaves its last padded row unused; nothing is refused).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from edgeconv.core.errors import ShapeError

SAME = "same"
VALID = "valid"
Padding = "str | int | tuple[int, int, int, int]"  # 'same', 'valid', a symmetric P, or per side
SIDE_PADS = True  # the IR takes padding as (top, left, bottom, right) (importers test for it)


@dataclass(frozen=True)
class AxisGeometry:
    """Output size and the zero padding actually applied at each end of one axis."""

    out: int
    pad_begin: int
    pad_end: int


def _fitting_strides(span: int, stride: int) -> list[int]:
    return [s for s in range(1, max(stride, 4) + 1) if span % s == 0 and s != stride]


def _fitting_pads(size: int, kernel: int, stride: int) -> list[int]:
    return [p for p in range(0, kernel + 1) if (size - kernel + 2 * p) >= 0 and (size - kernel + 2 * p) % stride == 0]


def side_pads(padding: object, layer: str = "layer") -> tuple[int, int, int, int] | None:
    """Per-side padding (top, left, bottom, right) when `padding` is one, else None; ShapeError
    when it is a sequence that is not four integers >= 0."""
    if not isinstance(padding, (tuple, list)):
        return None
    if len(padding) != 4 or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in padding):
        raise ShapeError(
            f"{layer}: per-side padding must be 4 integers >= 0 (top, left, bottom, right), got {padding!r}"
        )
    top, left, bottom, right = padding
    return (top, left, bottom, right)


def axis_geometry(
    size: int, kernel: int, stride: int, padding: str | int | tuple[int, int], *, layer: str = "layer", axis: str = "W"
) -> AxisGeometry:
    """Output size and padding along one axis, or a ShapeError that explains the numbers.

    `padding` is 'same', 'valid', a symmetric P that must tile, or a (begin, end) pair of an
    imported layer, which floors like the frameworks do."""
    if kernel < 1:
        raise ShapeError(f"{layer}: kernel must be at least 1 along {axis}, got {kernel}")
    if stride < 1:
        raise ShapeError(f"{layer}: stride must be at least 1 along {axis}, got {stride}")
    if isinstance(padding, tuple):
        begin, end = padding
        span = size + begin + end - kernel
        if span < 0:
            raise ShapeError(
                f"{layer}: kernel {kernel} is larger than the padded input {size} + {begin} + {end} along {axis}"
            )
        if begin >= kernel or end >= kernel:
            raise ShapeError(
                f"{layer}: padding {begin} before / {end} after along {axis} reaches past the kernel {kernel} "
                f"(a window of padding only); pad at most {kernel - 1} per side"
            )
        return AxisGeometry(span // stride + 1, begin, end)
    if padding == SAME:
        out = ceil(size / stride)
        total = max((out - 1) * stride + kernel - size, 0)
        return AxisGeometry(out, total // 2, total - total // 2)
    if padding == VALID:
        if kernel > size:
            raise ShapeError(
                f"{layer}: kernel {kernel} is larger than the input {size} along {axis} "
                f"with padding 'valid'; use a kernel of at most {size} or padding 'same'"
            )
        return AxisGeometry((size - kernel) // stride + 1, 0, 0)
    if not isinstance(padding, int) or isinstance(padding, bool) or padding < 0:
        raise ShapeError(f"{layer}: padding must be 'same', 'valid' or an integer P >= 0, got {padding!r}")
    span = size - kernel + 2 * padding
    formula = f"{axis}2 = ({axis}1 − F + 2P)/S + 1 = ({size} − {kernel} + 2·{padding})/{stride} + 1"
    if span < 0:
        raise ShapeError(
            f"{layer}: {formula} is negative: the kernel {kernel} is larger than the padded "
            f"input {size + 2 * padding}; use a smaller kernel or more padding"
        )
    if span % stride:
        strides = _fitting_strides(span, stride)
        pads = _fitting_pads(size, kernel, stride)
        hints = []
        if strides:
            hints.append(f"strides that fit with P={padding}: {', '.join(map(str, strides))}")
        if pads:
            hints.append(
                f"paddings that fit with S={stride}: "
                + ", ".join(f"{p} ({axis}2={(size - kernel + 2 * p) // stride + 1})" for p in pads)
            )
        hints.append("or padding 'same'")
        raise ShapeError(f"{layer}: {formula} = {span / stride + 1:g} does not tile the input; " + "; ".join(hints))
    return AxisGeometry(span // stride + 1, padding, padding)


def same_pads(
    in_hw: tuple[int, int], kernel_hw: tuple[int, int], stride_hw: tuple[int, int]
) -> tuple[int, int, int, int]:
    """SAME padding as (top, left, bottom, right), from H, W ordered pairs."""
    gh = axis_geometry(in_hw[0], kernel_hw[0], stride_hw[0], SAME)
    gw = axis_geometry(in_hw[1], kernel_hw[1], stride_hw[1], SAME)
    return gh.pad_begin, gw.pad_begin, gh.pad_end, gw.pad_end


def conv_params(kw: int, kh: int, d1: int, k: int) -> int:
    """(F·F·D1)·K weights + K biases."""
    return kw * kh * d1 * k + k


def conv_macs(w2: int, h2: int, k: int, kw: int, kh: int, d1: int) -> int:
    """W2·H2·K·F·F·D1 multiply-accumulates."""
    return w2 * h2 * k * kw * kh * d1


def depthwise_params(kw: int, kh: int, channels: int) -> int:
    """One F×F filter per channel (depth multiplier 1) plus a bias per channel."""
    return kw * kh * channels + channels


def depthwise_macs(w2: int, h2: int, kw: int, kh: int, channels: int) -> int:
    return w2 * h2 * channels * kw * kh


def dense_params(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def dense_macs(n_in: int, n_out: int) -> int:
    return n_in * n_out
