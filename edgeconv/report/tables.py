"""Per-layer tables and budget summaries, as terminal text and as Markdown.

A small formatter of our own: the same rows must render as aligned plain text (terminals,
CI logs, any width) and as a Markdown table (report.md), without a styling library.
"""

from __future__ import annotations

from edgeconv.core.graph import Analysis, LayerInfo
from edgeconv.core.ir import Add, AvgPool, Concat, Conv2d, Dense, DepthwiseConv2d, GlobalAvgPool, MaxPool, Pad, Softmax
from edgeconv.core.optable import OpTable

HEADERS = ("layer", "op", "input", "output", "window", "params", "MACs", "out bytes")


def shape_text(shape: tuple[int, int, int]) -> str:
    return "x".join(map(str, shape))


WINDOW_TEXT: OpTable = OpTable("report rows")


def _window(analysis: Analysis, info: LayerInfo) -> str:
    layer = analysis.model.layer(info.name)
    return WINDOW_TEXT.handler(layer)(layer)


def _window_text(kernel: tuple[int, int], stride: tuple[int, int], pad: str | int | tuple[int, ...]) -> str:
    if isinstance(pad, tuple):  # an imported layer's per-side pads, as its file has them
        pad_text = "P=" + ",".join(map(str, pad)) + " (t,l,b,r)"
    else:
        pad_text = f"P={pad}" if isinstance(pad, int) else pad
    stride_text = f"{stride[0]}" if stride[0] == stride[1] else f"{stride[0]}x{stride[1]}"
    return f"{kernel[0]}x{kernel[1]}/{stride_text} {pad_text}"


@WINDOW_TEXT.register(Conv2d, DepthwiseConv2d)
def _conv_window(layer: Conv2d | DepthwiseConv2d) -> str:
    return _window_text(layer.kernel, layer.stride, layer.padding)


@WINDOW_TEXT.register(MaxPool, AvgPool)
def _pool_window(layer: MaxPool | AvgPool) -> str:
    return _window_text(layer.pool, layer.stride, layer.padding)


@WINDOW_TEXT.register(Pad)
def _pad_window(layer: Pad) -> str:
    return "P=" + ",".join(map(str, layer.pads)) + " (t,l,b,r)"


@WINDOW_TEXT.register(GlobalAvgPool, Dense, Add, Softmax, Concat)
def _no_window(layer) -> str:
    return ""


def layer_rows(analysis: Analysis) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for info in analysis.layers:
        rows.append(
            (
                info.name,
                info.op,
                shape_text(info.in_shape),
                shape_text(info.out_shape),
                _window(analysis, info),
                f"{info.params:,}",
                f"{info.macs:,}",
                f"{info.out_elements:,}",
            )
        )
    total_out = sum(info.out_elements for info in analysis.layers)
    rows.append(
        (
            "total",
            "",
            shape_text(analysis.model.input.shape),
            shape_text(analysis.output_shape),
            "",
            f"{analysis.params:,}",
            f"{analysis.macs:,}",
            f"{total_out:,}",
        )
    )
    return rows


def _numeric(column: int) -> bool:
    return HEADERS[column] in ("params", "MACs", "out bytes")


def text_table(rows: list[tuple[str, ...]], headers: tuple[str, ...] = HEADERS) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells) -> str:
        return "  ".join(
            str(c).rjust(w) if headers is HEADERS and _numeric(i) else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    body = [line(r) for r in rows]
    if rows and rows[-1][0] == "total":
        body.insert(len(body) - 1, rule)
    return "\n".join([line(headers), rule, *body])


def markdown_table(rows: list[tuple[str, ...]], headers: tuple[str, ...] = HEADERS) -> str:
    align = ["---:" if headers is HEADERS and _numeric(i) else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def utilization(used: int, limit: int | None) -> str:
    if not limit:
        return f"{used:,} (no limit)"
    return f"{used:,} of {limit:,} ({100.0 * used / limit:.1f}%)"
