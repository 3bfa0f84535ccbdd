"""Int8 QDQ ONNX export: the float graph of onnx_float wrapped in QuantizeLinear/DequantizeLinear
pairs carrying one set of QuantParams, laid out the way ONNX Runtime's QDQ fusions and the QNN
EP expect.

Layout
- The graph input "input" [1, C, H, W] is already quantized (uint8 or int8; quantize it with
  quantize_input, outside the graph) and is followed by a DequantizeLinear.
- Each layer's float result goes through QuantizeLinear -> DequantizeLinear with that tensor's
  parameters. A fused ReLU / ReLU6 stays as a Relu / Clip node between the op and its
  QuantizeLinear, whose range is the folded one (zero point = qmin), so ORT removes the
  activation and fuses Conv+Relu into one QLinearConv.
- Weights are int8 initializers in ONNX layout (conv OIHW, depthwise (C, 1, KH, KW), Gemm
  (units, n_in) with transB=1) with a per-channel DequantizeLinear on axis 0; biases are int32
  initializers with a per-channel DequantizeLinear (scale s_in·s_w[c] from QuantParams, zp 0).
- A dense layer after a spatial tensor transposes to NHWC and flattens (as onnx_float does);
  Transpose and Flatten each get a QuantizeLinear -> DequantizeLinear with the input's
  parameters, so ORT runs them on the integer tensor.
- The graph output is the quantized tensor of the last layer (uint8 or int8), so targets are
  compared in LSB. `outputs` can expose more layers' quantized tensors.

Tensor names (layer L; "input" for the model input)
  "L"              the quantized output of L (the QuantizeLinear output; for "input", the graph input)
  "L.dq"           its dequantized float tensor, which the next layers read (omitted when
                   nothing reads it, e.g. for the last layer)
  "L.float"        the float result of L's op (after the fused activation, if any)
  "L.preact"       the float result before a fused activation
  "L.scale", "L.zero_point"           the activation's quantization parameters
  "L.weight", "L.weight.scale", "L.weight.zero_point", "L.weight.dq"   int8 weights and their DQ
  "L.bias", "L.bias.scale", "L.bias.zero_point", "L.bias.dq"           int32 bias and its DQ
  "L.nhwc", "L.flat" (+ ".float", ".dq")   a dense layer's transposed / flattened input
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper

from edgeconv import __version__
from edgeconv.core.graph import Analysis
from edgeconv.core.ir import (
    INPUT,
    Activation,
)
from edgeconv.core.weights import Weights
from edgeconv.export.onnx_float import IR_VERSION, ONNX_NODES, OPSET, OnnxBuilder, tensor_onnx_shape
from edgeconv.quant.params import QuantParams, TensorQuant
from edgeconv.quant.quantize import quantize_input, storage

ACTIVATION_DTYPES = ("uint8", "int8")
_ONNX_TYPE = {"uint8": TensorProto.UINT8, "int8": TensorProto.INT8}

__all__ = ["ACTIVATION_DTYPES", "build_qdq_onnx", "quantize_input"]


class _QdqBuilder(OnnxBuilder):
    def __init__(self, qparams: QuantParams, dtype: str) -> None:
        super().__init__()
        self.qp, self.dtype = qparams, dtype
        self._params: set[str] = set()

    def act_params(self, tensor: str) -> tuple[str, str]:
        """Scale and zero-point initializers of activation `tensor`, created once."""
        scale, zp = f"{tensor}.scale", f"{tensor}.zero_point"
        if tensor not in self._params:
            tq = self.qp.activations[tensor]
            np_dtype, zero, _, _ = storage(tq, self.dtype)
            self.const(scale, np.array(tq.scale[0], np.float32))
            self.const(zp, np.array(zero, np_dtype))
            self._params.add(tensor)
        return scale, zp

    def quantize(self, value: str, params_of: str, out: str) -> str:
        """value (float) -> QuantizeLinear -> out (integer) -> DequantizeLinear -> out.dq; returns out.dq."""
        scale, zp = self.act_params(params_of)
        self.node("QuantizeLinear", [value, scale, zp], out, f"{out}.quantize")
        return self.dequantize(out, params_of)

    def dequantize(self, q: str, params_of: str) -> str:
        scale, zp = self.act_params(params_of)
        return self.node("DequantizeLinear", [q, scale, zp], f"{q}.dq", f"{q}.dequantize")

    def per_channel(self, name: str, q: np.ndarray, tq: TensorQuant, zp_dtype) -> str:
        """An integer initializer `name` with a per-channel (axis 0) DequantizeLinear; returns name.dq."""
        self.const(name, q)
        scale = self.const(f"{name}.scale", tq.scale_array())
        zp = self.const(f"{name}.zero_point", np.zeros(len(tq.scale), zp_dtype))
        return self.node("DequantizeLinear", [name, scale, zp], f"{name}.dq", f"{name}.dequantize", axis=0)

    def weight(self, layer: str, to_onnx: Callable[[np.ndarray], np.ndarray]) -> str:
        if layer not in self.qp.q_weights:
            raise ValueError(f"QDQ export: no weights for layer {layer!r}")
        return self.per_channel(f"{layer}.weight", to_onnx(self.qp.q_weights[layer]), self.qp.weights[layer], np.int8)

    def bias(self, layer: str) -> str:
        return self.per_channel(f"{layer}.bias", self.qp.q_biases[layer], self.qp.biases[layer], np.int32)

    def reshaped(self, op: str, src: str, out: str, node: str, params_of: str, **attrs) -> str:
        moved = self.node(op, [src], f"{out}.float", node, **attrs)
        return self.quantize(moved, params_of, out)


def _check(analysis: Analysis, qparams: QuantParams, dtype: str) -> None:
    if dtype not in ACTIVATION_DTYPES:
        raise ValueError(f"activation_dtype: expected one of {', '.join(ACTIVATION_DTYPES)}, got {dtype!r}")
    names = [INPUT] + [layer.name for layer in analysis.model.layers]
    missing = [n for n in names if n not in qparams.activations]
    if missing:
        raise ValueError(f"QDQ export: QuantParams has no activation parameters for {missing[0]!r}")


def build_qdq_onnx(
    analysis: Analysis,
    weights: Weights,
    qparams: QuantParams,
    activation_dtype: str = "uint8",
    outputs: Sequence[str] | None = None,
) -> onnx.ModelProto:
    """The QDQ ONNX model (opset 17) of the analysed model with qparams.

    activation_dtype: "uint8" (ORT CPU, QNN) or "int8"; the same real grid either way.
    outputs: layer names whose quantized tensors are graph outputs (default: the last layer).
    `weights` (the float weights) are not needed beyond qparams' integer arrays; they are taken
    for a uniform exporter signature and to check that qparams covers every weighted layer.
    """
    _check(analysis, qparams, activation_dtype)
    model = analysis.model
    g = _QdqBuilder(qparams, activation_dtype)
    g.dequantize(INPUT, INPUT)
    for layer, info in zip(model.layers, analysis.layers):
        name = layer.name
        src = [f"{s}.dq" for s in layer.inputs]
        kind = getattr(layer, "activation", Activation.NONE)
        out_float = f"{name}.float"
        pre = f"{name}.preact" if kind is not Activation.NONE else out_float
        ONNX_NODES.handler(layer)(g, layer, info, analysis, src, pre)
        g.activation(kind, pre, out_float, name)
        g.quantize(out_float, name, name)

    elem = _ONNX_TYPE[activation_dtype]
    inp = model.input
    out_names = list(outputs) if outputs is not None else [model.output]
    for out in out_names:
        if out not in qparams.activations or out == INPUT:
            raise ValueError(f"QDQ export: output {out!r} is not a layer of {model.name}")
    # drop the DequantizeLinear of tensors nothing reads (the last layer's), keeping the graph minimal
    read = {i for n in g.nodes for i in n.input}
    g.nodes = [n for n in g.nodes if n.op_type != "DequantizeLinear" or n.output[0] in read]
    graph = helper.make_graph(
        g.nodes,
        model.name,
        [helper.make_tensor_value_info(INPUT, elem, [1, inp.channels, inp.height, inp.width])],
        [helper.make_tensor_value_info(out, elem, tensor_onnx_shape(analysis, out)) for out in out_names],
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
    helper.set_model_props(proto, {"edgeconv.format": "qdq", "edgeconv.activation_dtype": activation_dtype})
    return proto
