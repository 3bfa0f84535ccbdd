"""Float ONNX export: NCHW, opset pinned, node and tensor names from the IR.

Tensor naming: the output of layer L is the tensor "L" (after its fused activation, if any);
the pre-activation tensor is "L.preact". The model input is "input" with shape [1, C, H, W].
A dense layer's tensor is [1, units]; a dense layer after a spatial tensor first transposes
to NHWC so that the flatten order matches the IR's (H, W, C) weight layout.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeconv import __version__
from edgeconv.core.graph import Analysis
from edgeconv.core.ir import (
    INPUT,
    Activation,
    Add,
    AvgPool,
    Conv2d,
    Dense,
    DepthwiseConv2d,
    GlobalAvgPool,
    MaxPool,
    Softmax,
)
from edgeconv.core.weights import Weights

OPSET = 17
IR_VERSION = 8  # the lowest IR version that carries opset 17; every ORT release of the last years reads it


def onnx_shape(shape_whc: tuple[int, int, int], op: str = "") -> list[int]:
    """The ONNX tensor shape of an IR tensor of shape (W, H, C)."""
    w, h, c = shape_whc
    if op == "dense" or (op == "softmax" and w == h == 1):
        return [1, c]
    return [1, c, h, w]


class _GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, array: np.ndarray) -> str:
        # np.ascontiguousarray would turn a 0-d scalar into shape [1]; keep scalars scalar
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))
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


def _onnx_pads(pads: tuple[int, int, int, int]) -> list[int]:
    top, left, bottom, right = pads
    return [top, left, bottom, right]  # ONNX order: x1_begin, x2_begin, x1_end, x2_end (H then W)


def build_float_onnx(analysis: Analysis, weights: Weights, outputs: list[str] | None = None) -> onnx.ModelProto:
    """The float model; `outputs` adds intermediate layer tensors as graph outputs."""
    model = analysis.model
    g = _GraphBuilder()
    for layer, info in zip(model.layers, analysis.layers):
        name, src = layer.name, list(layer.inputs)
        has_act = getattr(layer, "activation", Activation.NONE) is not Activation.NONE
        pre = f"{name}.preact" if has_act else name
        if isinstance(layer, (Conv2d, DepthwiseConv2d)):
            w = weights[f"{name}.weight"]
            if isinstance(layer, Conv2d):
                w_onnx, group = w.transpose(0, 3, 1, 2), 1  # OHWI -> OIHW
            else:
                w_onnx, group = w.transpose(3, 0, 1, 2), w.shape[3]  # 1HWC -> C1HW
            g.node(
                "Conv",
                [src[0], g.const(f"{name}.weight", w_onnx), g.const(f"{name}.bias", weights[f"{name}.bias"])],
                pre,
                name,
                kernel_shape=[layer.kernel[1], layer.kernel[0]],
                strides=[layer.stride[1], layer.stride[0]],
                pads=_onnx_pads(info.pads),
                group=group,
            )
        elif isinstance(layer, (MaxPool, AvgPool)):
            attrs = dict(
                kernel_shape=[layer.pool[1], layer.pool[0]],
                strides=[layer.stride[1], layer.stride[0]],
                pads=_onnx_pads(info.pads),
            )
            if isinstance(layer, AvgPool):
                attrs["count_include_pad"] = 0
            g.node("MaxPool" if isinstance(layer, MaxPool) else "AveragePool", src, pre, name, **attrs)
        elif isinstance(layer, GlobalAvgPool):
            g.node("GlobalAveragePool", src, pre, name)
        elif isinstance(layer, Dense):
            flat_in = src[0]
            w1, h1, _ = info.in_shape
            if layer.inputs[0] == INPUT or analysis.info(layer.inputs[0]).op != "dense":
                if (w1, h1) != (1, 1):
                    flat_in = g.node("Transpose", [flat_in], f"{name}.nhwc", f"{name}.to_nhwc", perm=[0, 2, 3, 1])
                flat_in = g.node("Flatten", [flat_in], f"{name}.flat", f"{name}.flatten", axis=1)
            g.node(
                "Gemm",
                [
                    flat_in,
                    g.const(f"{name}.weight", weights[f"{name}.weight"]),
                    g.const(f"{name}.bias", weights[f"{name}.bias"]),
                ],
                pre,
                name,
                transB=1,
            )
        elif isinstance(layer, Add):
            g.node("Add", src, pre, name)
        elif isinstance(layer, Softmax):
            g.node("Softmax", src, pre, name, axis=1)
        else:
            raise TypeError(f"no ONNX export for {type(layer).__name__}")
        if has_act:
            g.activation(layer.activation, pre, name, name)

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
