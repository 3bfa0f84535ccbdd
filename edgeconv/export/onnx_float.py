"""Float ONNX export: NCHW, opset pinned, node and tensor names from the IR.

Tensor naming: the output of layer L is the tensor "L" (after its fused activation, if any);
the pre-activation tensor is "L.preact". The model input is "input" with shape [1, C, H, W].
A dense layer's tensor is [1, units]; a dense layer after a spatial tensor first transposes
to NHWC so that the flatten order matches the IR's (H, W, C) weight layout.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeconv import __version__
from edgeconv.core.graph import Analysis, LayerInfo
from edgeconv.core.ir import (
    INPUT,
    Activation,
    Add,
    AvgPool,
    Concat,
    Conv2d,
    Dense,
    DepthwiseConv2d,
    GlobalAvgPool,
    MaxPool,
    Pad,
    Softmax,
)
from edgeconv.core.optable import OpTable
from edgeconv.core.weights import Weights

OPSET = 17
IR_VERSION = 8  # the lowest IR version that carries opset 17; every ORT release of the last years reads it


def onnx_shape(shape_whc: tuple[int, int, int], op: str = "") -> list[int]:
    """The ONNX tensor shape of an IR tensor of shape (W, H, C)."""
    w, h, c = shape_whc
    if op == "dense" or (op == "softmax" and w == h == 1):
        return [1, c]
    return [1, c, h, w]


class OnnxBuilder:
    """Nodes and initializers of one ONNX graph. The op handlers below write through it; the
    float builder gives them float weights, the QDQ builder (onnx_qdq.py) integer weights with
    DequantizeLinear and a QuantizeLinear after every reshaping node."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, array: np.ndarray) -> str:
        # np.ascontiguousarray would turn a 0-d scalar into shape [1]; keep scalars scalar
        array = np.asarray(array)
        self.initializers.append(numpy_helper.from_array(array if array.flags.c_contiguous else array.copy(), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, name: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=name, **attrs))
        return output

    def activation(self, kind: Activation, pre: str, out: str, layer: str) -> str:
        if kind is Activation.RELU:
            return self.node("Relu", [pre], out, f"{layer}.relu")
        if kind is Activation.RELU6:
            lo = self.const(f"{layer}.clip_min", np.array(0.0, np.float32))
            hi = self.const(f"{layer}.clip_max", np.array(6.0, np.float32))
            return self.node("Clip", [pre, lo, hi], out, f"{layer}.relu6")
        return pre

    # what the float and QDQ graphs do differently
    def weight(self, layer: str, to_onnx: Callable[[np.ndarray], np.ndarray]) -> str:
        raise NotImplementedError

    def bias(self, layer: str) -> str:
        raise NotImplementedError

    def reshaped(self, op: str, src: str, out: str, node: str, params_of: str, **attrs) -> str:
        """A data-movement node (Transpose, Flatten) whose output keeps `params_of`'s quantization."""
        raise NotImplementedError


class _FloatBuilder(OnnxBuilder):
    def __init__(self, weights: Weights) -> None:
        super().__init__()
        self.weights = weights

    def weight(self, layer: str, to_onnx: Callable[[np.ndarray], np.ndarray]) -> str:
        return self.const(f"{layer}.weight", to_onnx(self.weights[f"{layer}.weight"]))

    def bias(self, layer: str) -> str:
        return self.const(f"{layer}.bias", self.weights[f"{layer}.bias"])

    def reshaped(self, op: str, src: str, out: str, node: str, params_of: str, **attrs) -> str:
        return self.node(op, [src], out, node, **attrs)


def _onnx_pads(pads: tuple[int, int, int, int]) -> list[int]:
    top, left, bottom, right = pads
    return [top, left, bottom, right]  # ONNX order: x1_begin, x2_begin, x1_end, x2_end (H then W)


ONNX_NODES: OpTable = OpTable("ONNX export (float and QDQ)")


def _ohwi_to_oihw(w: np.ndarray) -> np.ndarray:
    return w.transpose(0, 3, 1, 2)


def _1hwc_to_c1hw(w: np.ndarray) -> np.ndarray:
    return w.transpose(3, 0, 1, 2)


@ONNX_NODES.register(Conv2d, DepthwiseConv2d)
def _conv(g: OnnxBuilder, layer, info: LayerInfo, analysis: Analysis, src: list[str], pre: str) -> None:
    depthwise = isinstance(layer, DepthwiseConv2d)
    w = g.weight(layer.name, _1hwc_to_c1hw if depthwise else _ohwi_to_oihw)
    g.node(
        "Conv",
        [src[0], w, g.bias(layer.name)],
        pre,
        layer.name,
        kernel_shape=[layer.kernel[1], layer.kernel[0]],
        strides=[layer.stride[1], layer.stride[0]],
        pads=_onnx_pads(info.pads),
        group=info.in_shape[2] if depthwise else 1,
    )


@ONNX_NODES.register(MaxPool, AvgPool)
def _pool(g: OnnxBuilder, layer, info: LayerInfo, analysis: Analysis, src: list[str], pre: str) -> None:
    attrs: dict[str, object] = {
        "kernel_shape": [layer.pool[1], layer.pool[0]],
        "strides": [layer.stride[1], layer.stride[0]],
        "pads": _onnx_pads(info.pads),
    }
    if isinstance(layer, AvgPool):
        attrs["count_include_pad"] = 0
    g.node("MaxPool" if isinstance(layer, MaxPool) else "AveragePool", src, pre, layer.name, **attrs)


@ONNX_NODES.register(GlobalAvgPool)
def _global_pool(g: OnnxBuilder, layer, info: LayerInfo, analysis: Analysis, src: list[str], pre: str) -> None:
    g.node("GlobalAveragePool", src, pre, layer.name)


@ONNX_NODES.register(Dense)
def _dense(g: OnnxBuilder, layer, info: LayerInfo, analysis: Analysis, src: list[str], pre: str) -> None:
    name, feeder = layer.name, layer.inputs[0]
    flat_in = src[0]
    w1, h1, _ = info.in_shape
    if feeder == INPUT or analysis.info(feeder).op != "dense":
        if (w1, h1) != (1, 1):  # ONNX is NCHW; the IR's dense weights run over H, W, C
            flat_in = g.reshaped("Transpose", flat_in, f"{name}.nhwc", f"{name}.to_nhwc", feeder, perm=[0, 2, 3, 1])
        flat_in = g.reshaped("Flatten", flat_in, f"{name}.flat", f"{name}.flatten", feeder, axis=1)
    g.node("Gemm", [flat_in, g.weight(name, np.asarray), g.bias(name)], pre, name, transB=1)


@ONNX_NODES.register(Add)
def _add(g: OnnxBuilder, layer, info: LayerInfo, analysis: Analysis, src: list[str], pre: str) -> None:
    g.node("Add", src, pre, layer.name)


@ONNX_NODES.register(Pad)
def _pad(g: OnnxBuilder, layer, info: LayerInfo, analysis: Analysis, src: list[str], pre: str) -> None:
    top, left, bottom, right = info.pads  # ONNX: [N, C, H, W begins, N, C, H, W ends]
    pads = g.const(f"{layer.name}.pads", np.array([0, 0, top, left, 0, 0, bottom, right], np.int64))
    g.node("Pad", [src[0], pads], pre, layer.name, mode="constant")


@ONNX_NODES.register(Concat)
def _concat(g: OnnxBuilder, layer, info: LayerInfo, analysis: Analysis, src: list[str], pre: str) -> None:
    g.node("Concat", src, pre, layer.name, axis=1)  # NCHW channels


@ONNX_NODES.register(Softmax)
def _softmax(g: OnnxBuilder, layer, info: LayerInfo, analysis: Analysis, src: list[str], pre: str) -> None:
    g.node("Softmax", src, pre, layer.name, axis=1)


def build_float_onnx(analysis: Analysis, weights: Weights, outputs: list[str] | None = None) -> onnx.ModelProto:
    """The float model; `outputs` adds intermediate layer tensors as graph outputs."""
    model = analysis.model
    g = _FloatBuilder(weights)
    for layer, info in zip(model.layers, analysis.layers):
        name, src = layer.name, list(layer.inputs)
        kind = getattr(layer, "activation", Activation.NONE)
        pre = f"{name}.preact" if kind is not Activation.NONE else name
        ONNX_NODES.handler(layer)(g, layer, info, analysis, src, pre)
        g.activation(kind, pre, name, name)

    inp = model.input
    graph = helper.make_graph(
        g.nodes,
        model.name,
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [1, inp.channels, inp.height, inp.width])],
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, tensor_onnx_shape(analysis, name))
            for name in [model.output, *[o for o in (outputs or []) if o != model.output]]
        ],
        initializer=g.initializers,
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="edgeconv",
        producer_version=__version__,
        doc_string=model.description,
    )
    proto.ir_version = IR_VERSION
    return proto


def _tensor_kind(analysis: Analysis, name: str) -> str:
    """'dense' for tensors that are [1, units] in ONNX (a dense output or a softmax over one)."""
    info = analysis.info(name)
    if info.op == "dense":
        return "dense"
    if info.op == "softmax":
        return _tensor_kind(analysis, info.inputs[0]) if info.inputs[0] != INPUT else ""
    return ""


def tensor_onnx_shape(analysis: Analysis, name: str) -> list[int]:
    """The shape the float ONNX gives the IR tensor `name`."""
    if name == INPUT:
        return onnx_shape(analysis.model.input.shape)
    return onnx_shape(analysis.info(name).out_shape, _tensor_kind(analysis, name))


def serialize(proto: onnx.ModelProto) -> bytes:
    return proto.SerializeToString(deterministic=True)
