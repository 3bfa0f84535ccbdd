"""Shape propagation over a Model: the per-layer table the lecture computes by hand."""

from __future__ import annotations

from dataclasses import dataclass

from edgeconv.core import shapes
from edgeconv.core.errors import ShapeError
from edgeconv.core.ir import (
    INPUT,
    Add,
    AvgPool,
    Concat,
    Conv2d,
    Dense,
    DepthwiseConv2d,
    GlobalAvgPool,
    MaxPool,
    Model,
    Pad,
    Softmax,
)
from edgeconv.core.optable import OpTable

Shape = tuple[int, int, int]  # (W, H, C)


@dataclass(frozen=True)
class LayerInfo:
    name: str
    op: str
    inputs: tuple[str, ...]
    in_shape: Shape
    out_shape: Shape
    params: int
    macs: int
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # (top, left, bottom, right) zero padding

    @property
    def out_elements(self) -> int:
        w, h, c = self.out_shape
        return w * h * c


@dataclass(frozen=True)
class Analysis:
    model: Model
    layers: tuple[LayerInfo, ...]

    @property
    def params(self) -> int:
        return sum(info.params for info in self.layers)

    @property
    def macs(self) -> int:
        return sum(info.macs for info in self.layers)

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].out_shape

    def info(self, name: str) -> LayerInfo:
        for info in self.layers:
            if info.name == name:
                return info
        raise KeyError(name)

    def shape_of(self, tensor: str) -> Shape:
        return self.model.input.shape if tensor == INPUT else self.info(tensor).out_shape


def _window(layer_name: str, shape: Shape, kernel, stride, padding) -> tuple[int, int, tuple[int, int, int, int]]:
    w, h, _ = shape
    sides = shapes.side_pads(padding, layer_name)
    pad_w = (sides[1], sides[3]) if sides else padding
    pad_h = (sides[0], sides[2]) if sides else padding
    gw = shapes.axis_geometry(w, kernel[0], stride[0], pad_w, layer=layer_name, axis="W")
    gh = shapes.axis_geometry(h, kernel[1], stride[1], pad_h, layer=layer_name, axis="H")
    return gw.out, gh.out, (gh.pad_begin, gw.pad_begin, gh.pad_end, gw.pad_end)


SHAPES: OpTable = OpTable("shapes, params, MACs")


def _layer_info(layer, in_shapes: list[Shape]) -> LayerInfo:
    if not isinstance(layer, (Add, Concat)) and len(in_shapes) != 1:
        raise ShapeError(f"{layer.name}: {layer.op} reads exactly 1 layer, got {len(in_shapes)}")
    return SHAPES.handler(layer)(layer, in_shapes)


@SHAPES.register(Add)
def _add_info(layer: Add, in_shapes: list[Shape]) -> LayerInfo:
    name = layer.name
    if len(in_shapes) != 2:
        raise ShapeError(f"{name}: add joins exactly 2 layers, got {len(in_shapes)} ({', '.join(layer.inputs)})")
    if in_shapes[0] != in_shapes[1]:
        a, b = ("x".join(map(str, s)) for s in in_shapes)
        raise ShapeError(f"{name}: add needs equal shapes, got {layer.inputs[0]} {a} and {layer.inputs[1]} {b}")
    return LayerInfo(name, layer.op, layer.inputs, in_shapes[0], in_shapes[0], 0, 0)


@SHAPES.register(Concat)
def _concat_info(layer: Concat, in_shapes: list[Shape]) -> LayerInfo:
    name = layer.name
    if len(in_shapes) < 2:
        raise ShapeError(f"{name}: concat joins at least 2 layers, got {len(in_shapes)} ({', '.join(layer.inputs)})")
    spatial = {s[:2] for s in in_shapes}
    if len(spatial) != 1:
        shown = ", ".join(f"{src} {'x'.join(map(str, s))}" for src, s in zip(layer.inputs, in_shapes))
        raise ShapeError(f"{name}: concat on channels needs equal W and H, got {shown}")
    w, h = in_shapes[0][:2]
    return LayerInfo(name, layer.op, layer.inputs, in_shapes[0], (w, h, sum(s[2] for s in in_shapes)), 0, 0)


@SHAPES.register(Pad)
def _pad_info(layer: Pad, in_shapes: list[Shape]) -> LayerInfo:
    sides = shapes.side_pads(layer.pads, layer.name)
    if sides is None:
        raise ShapeError(f"{layer.name}: pad needs (top, left, bottom, right), got {layer.pads!r}")
    top, left, bottom, right = sides
    w, h, c = in_shapes[0]
    return LayerInfo(
        layer.name, layer.op, layer.inputs, in_shapes[0], (w + left + right, h + top + bottom, c), 0, 0, sides
    )


@SHAPES.register(Conv2d)
def _conv_info(layer: Conv2d, in_shapes: list[Shape]) -> LayerInfo:
    in_shape = in_shapes[0]
    if layer.filters < 1:
        raise ShapeError(f"{layer.name}: filters must be at least 1, got {layer.filters}")
    w2, h2, pads = _window(layer.name, in_shape, layer.kernel, layer.stride, layer.padding)
    kw, kh = layer.kernel
    d1 = in_shape[2]
    return LayerInfo(
        layer.name,
        layer.op,
        layer.inputs,
        in_shape,
        (w2, h2, layer.filters),
        shapes.conv_params(kw, kh, d1, layer.filters),
        shapes.conv_macs(w2, h2, layer.filters, kw, kh, d1),
        pads,
    )


@SHAPES.register(DepthwiseConv2d)
def _depthwise_info(layer: DepthwiseConv2d, in_shapes: list[Shape]) -> LayerInfo:
    in_shape = in_shapes[0]
    w2, h2, pads = _window(layer.name, in_shape, layer.kernel, layer.stride, layer.padding)
    kw, kh = layer.kernel
    d1 = in_shape[2]
    return LayerInfo(
        layer.name,
        layer.op,
        layer.inputs,
        in_shape,
        (w2, h2, d1),
        shapes.depthwise_params(kw, kh, d1),
        shapes.depthwise_macs(w2, h2, kw, kh, d1),
        pads,
    )


@SHAPES.register(MaxPool, AvgPool)
def _pool_info(layer: MaxPool | AvgPool, in_shapes: list[Shape]) -> LayerInfo:
    in_shape = in_shapes[0]
    w2, h2, pads = _window(layer.name, in_shape, layer.pool, layer.stride, layer.padding)
    return LayerInfo(layer.name, layer.op, layer.inputs, in_shape, (w2, h2, in_shape[2]), 0, 0, pads)


@SHAPES.register(GlobalAvgPool)
def _global_pool_info(layer: GlobalAvgPool, in_shapes: list[Shape]) -> LayerInfo:
    in_shape = in_shapes[0]
    return LayerInfo(layer.name, layer.op, layer.inputs, in_shape, (1, 1, in_shape[2]), 0, 0)


@SHAPES.register(Dense)
def _dense_info(layer: Dense, in_shapes: list[Shape]) -> LayerInfo:
    in_shape = in_shapes[0]
    if layer.units < 1:
        raise ShapeError(f"{layer.name}: units must be at least 1, got {layer.units}")
    w1, h1, d1 = in_shape
    n_in = w1 * h1 * d1
    return LayerInfo(
        layer.name,
        layer.op,
        layer.inputs,
        in_shape,
        (1, 1, layer.units),
        shapes.dense_params(n_in, layer.units),
        shapes.dense_macs(n_in, layer.units),
    )


@SHAPES.register(Softmax)
def _softmax_info(layer: Softmax, in_shapes: list[Shape]) -> LayerInfo:
    return LayerInfo(layer.name, layer.op, layer.inputs, in_shapes[0], in_shapes[0], 0, 0)


def analyze(model: Model) -> Analysis:
    """Propagate shapes through the model; raise ShapeError naming the first bad layer."""
    known: dict[str, Shape] = {INPUT: model.input.shape}
    if min(model.input.shape) < 1:
        raise ShapeError(f"input: expected positive W, H, C, got {model.input.shape}")
    if not model.layers:
        raise ShapeError(f"model {model.name}: expected at least one layer, got none")
    rows = []
    for layer in model.layers:
        if layer.name in known:
            raise ShapeError(f"{layer.name}: layer name used twice (names must be unique and not 'input')")
        missing = [src for src in layer.inputs if src not in known]
        if missing:
            raise ShapeError(
                f"{layer.name}: reads {missing[0]!r}, which is not an earlier layer (earlier: {', '.join(known)})"
            )
        info = _layer_info(layer, [known[src] for src in layer.inputs])
        known[layer.name] = info.out_shape
        rows.append(info)
    return Analysis(model, tuple(rows))
