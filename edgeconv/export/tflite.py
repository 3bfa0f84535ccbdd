"""TFLite export of the IR: a full-integer int8 model and the same graph in float32.

Both are written with edgeconv's own flatbuffer writer (tflite_writer), one builtin operator
per IR layer plus the data movement TFLite needs:

  conv2d            CONV_2D (SAME when the layer's padding equals TFLite's SAME padding,
                    VALID otherwise; an explicit padding that is neither is a PAD before a
                    VALID conv; int8 PAD fills with the input zero point = real 0)
  depthwise_conv2d  DEPTHWISE_CONV_2D, depth_multiplier 1 (padding as conv2d)
  max_pool          MAX_POOL_2D (SAME or VALID; other explicit padding is a PADV2 with the
                    lowest value, -128 in int8 with the input's parameters, before a VALID pool:
                    a padded pixel never wins, and every window holds a real one)
  avg_pool          AVERAGE_POOL_2D (SAME or VALID only: padded pixels are not counted by
                    TFLite, which is what the IR means; a PAD could not express that, so other
                    explicit padding is refused)
  global_avg_pool   MEAN over axes [1, 2] with keep_dims
  dense             FULLY_CONNECTED, after a RESHAPE to [1, n_in] when the input has more
                    than one pixel (NHWC flatten = the H, W, C order of the dense weights)
  add               ADD              softmax    SOFTMAX (beta 1)
  fused ReLU/ReLU6  fused_activation of CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD

Int8: the graph input "input" [1, H, W, C] and the output are int8 (full integer, no
QUANTIZE / DEQUANTIZE ops; quantize the input outside the graph with
quant.quantize.quantize_input); weights are int8 per channel (quantized_dimension 0 for
CONV_2D and FULLY_CONNECTED, 3 for DEPTHWISE_CONV_2D), biases int32 with the QuantParams
scales. Float: the same operators and tensors in float32.

Tensor names: "input", each layer's output tensor is the layer name, so per-layer outputs can
be found in the file; helpers are "<layer>.weight", "<layer>.bias", "<layer>.pad" (+
"<layer>.paddings"), "<layer>.flat" (+ "<layer>.shape"), "<layer>.axes". A dense layer's
output is [1, units] (the IR's 1×1×units); every other activation is NHWC [1, H, W, C].

Both exports are deterministic: the same arguments give byte-identical files.
"""

from __future__ import annotations

import numpy as np

from edgeconv.core.graph import Analysis, LayerInfo
from edgeconv.core.ir import (
    INPUT,
    WEIGHTED_OPS,
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
from edgeconv.core.shapes import same_pads
from edgeconv.core.weights import Weights
from edgeconv.export.tflite_writer import TfliteOp, TfliteTensor, build_tflite
from edgeconv.quant.params import QuantParams, TensorQuant

__all__ = ["build_float_tflite", "build_int8_tflite", "same_pads", "tensor_shape", "tflite_padding"]

_ACT = {Activation.NONE: "NONE", Activation.RELU: "RELU", Activation.RELU6: "RELU6"}


def tflite_padding(info: LayerInfo, kernel_wh: tuple[int, int], stride_wh: tuple[int, int]) -> str:
    """ "SAME", "VALID" (no padding) or "PAD" (explicit padding: PAD, then a VALID op)."""
    w, h, _ = info.in_shape
    if info.pads == same_pads((h, w), (kernel_wh[1], kernel_wh[0]), (stride_wh[1], stride_wh[0])):
        return "SAME"
    if info.pads == (0, 0, 0, 0):
        return "VALID"
    return "PAD"


def tensor_shape(analysis: Analysis, name: str) -> tuple[int, ...]:
    """Shape of a layer's (or the input's) tensor in the exported file."""
    if name != INPUT and analysis.info(name).op == "dense":
        return (1, analysis.info(name).out_shape[2])
    if name != INPUT and analysis.info(name).op == "softmax":
        return tensor_shape(analysis, analysis.info(name).inputs[0])
    w, h, c = analysis.shape_of(name)
    return (1, h, w, c)


class _Graph:
    """Collects tensors and ops; `quant` is None for the float export."""

    def __init__(self, analysis: Analysis, quant: QuantParams | None, weights: Weights | None):
        self.analysis, self.qp, self.weights = analysis, quant, weights
        self.tensors: list[TfliteTensor] = []
        self.ops: list[TfliteOp] = []
        self.shapes: dict[str, tuple[int, ...]] = {}

    @property
    def int8(self) -> bool:
        return self.qp is not None

    @property
    def quant(self) -> QuantParams:
        assert self.qp is not None, "int8 export without QuantParams"
        return self.qp

    @property
    def float_weights(self) -> Weights:
        assert self.weights is not None, "float export without weights"
        return self.weights

    def activation(self, name: str, shape: tuple[int, ...], like: str | None = None) -> str:
        """An activation tensor; int8 ones take the quantization of `like` (default: name)."""
        if self.int8:
            tq: TensorQuant = self.quant.activations[like or name]
            t = TfliteTensor(name, shape, "int8", scale=(float(tq.scale[0]),), zero_point=(int(tq.zero_point[0]),))
        else:
            t = TfliteTensor(name, shape, "float32")
        self.tensors.append(t)
        self.shapes[name] = shape
        return name

    def const_int32(self, name: str, values) -> str:
        data = np.asarray(values, dtype=np.int32)
        self.tensors.append(TfliteTensor(name, tuple(data.shape), "int32", data))
        return name

    def weight_and_bias(self, layer, axis: int) -> tuple[str, str]:
        w_name, b_name = f"{layer.name}.weight", f"{layer.name}.bias"
        if self.int8:
            wq, bq = self.quant.weights[layer.name], self.quant.biases[layer.name]
            qw, qb = self.quant.q_weights[layer.name], self.quant.q_biases[layer.name]
            self.tensors.append(
                TfliteTensor(
                    w_name,
                    tuple(qw.shape),
                    "int8",
                    np.asarray(qw, np.int8),
                    tuple(float(s) for s in wq.scale),
                    (0,) * len(wq.scale),
                    axis,
                )
            )
            self.tensors.append(
                TfliteTensor(
                    b_name,
                    tuple(qb.shape),
                    "int32",
                    np.asarray(qb, np.int32),
                    tuple(float(s) for s in bq.scale),
                    (0,) * len(bq.scale),
                    0,
                )
            )
        else:
            w = np.asarray(self.float_weights[w_name], np.float32)
            b = np.asarray(self.float_weights[b_name], np.float32)
            self.tensors.append(TfliteTensor(w_name, tuple(w.shape), "float32", w))
            self.tensors.append(TfliteTensor(b_name, tuple(b.shape), "float32", b))
        return w_name, b_name

    def op(self, opcode: str, inputs, outputs, **options) -> None:
        self.ops.append(TfliteOp(opcode, tuple(inputs), tuple(outputs), tuple(options.items())))

    def padded_input(self, layer, info: LayerInfo, kernel, stride) -> tuple[str, str]:
        """(input tensor, padding mode) for a windowed op, inserting PAD for explicit padding."""
        src = layer.inputs[0]
        mode = tflite_padding(info, kernel, stride)
        if mode != "PAD":
            return src, mode
        top, left, bottom, right = info.pads
        _, h, w, c = self.shapes[src]
        paddings = self.const_int32(f"{layer.name}.paddings", [[0, 0], [top, bottom], [left, right], [0, 0]])
        padded = self.activation(f"{layer.name}.pad", (1, h + top + bottom, w + left + right, c), like=src)
        self.op("PAD", (src, paddings), (padded,))
        return padded, "VALID"

    def layer(self, layer, info: LayerInfo) -> None:
        TFLITE_OPS.handler(layer)(self, layer, info, tensor_shape(self.analysis, layer.name))

    def build(self) -> bytes:
        model = self.analysis.model
        spec = model.input
        self.activation(INPUT, (1, spec.height, spec.width, spec.channels))
        for layer, info in zip(model.layers, self.analysis.layers):
            self.layer(layer, info)
        kind = "int8" if self.int8 else "float32"
        return build_tflite(
            self.tensors, self.ops, [INPUT], [model.output], description=f"edgeconv {model.name} {kind}"
        )


TFLITE_OPS: OpTable = OpTable("TFLite export")


@TFLITE_OPS.register(Conv2d, DepthwiseConv2d)
def _conv(g: _Graph, layer, info: LayerInfo, out_shape: tuple[int, ...]) -> None:
    src, mode = g.padded_input(layer, info, layer.kernel, layer.stride)
    depthwise = isinstance(layer, DepthwiseConv2d)
    w, b = g.weight_and_bias(layer, 3 if depthwise else 0)
    out = g.activation(layer.name, out_shape)
    opts = {
        "padding": mode,
        "stride_w": layer.stride[0],
        "stride_h": layer.stride[1],
        "fused_activation": _ACT[layer.activation],
    }
    if depthwise:
        opts["depth_multiplier"] = 1
    g.op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", (src, w, b), (out,), **opts)


def _lowest_padded(g: _Graph, layer, info: LayerInfo) -> str:
    """PADV2 of a max pool's input with the lowest value of its type (int8: -128 on the input's
    grid, which PADV2 requires of its constant; float: the lowest float32)."""
    src = layer.inputs[0]
    top, left, bottom, right = info.pads
    _, h, w, c = g.shapes[src]
    paddings = g.const_int32(f"{layer.name}.paddings", [[0, 0], [top, bottom], [left, right], [0, 0]])
    name = f"{layer.name}.pad_value"
    if g.int8:
        tq = g.quant.activations[src]
        value = np.array([-128], np.int8)
        g.tensors.append(TfliteTensor(name, (1,), "int8", value, (float(tq.scale[0]),), (int(tq.zero_point[0]),)))
    else:
        g.tensors.append(TfliteTensor(name, (1,), "float32", np.array([np.finfo(np.float32).min], np.float32)))
    padded = g.activation(f"{layer.name}.pad", (1, h + top + bottom, w + left + right, c), like=src)
    g.op("PADV2", (src, paddings, name), (padded,))
    return padded


@TFLITE_OPS.register(MaxPool, AvgPool)
def _pool(g: _Graph, layer, info: LayerInfo, out_shape: tuple[int, ...]) -> None:
    mode = tflite_padding(info, layer.pool, layer.stride)
    src = layer.inputs[0]
    if mode == "PAD" and isinstance(layer, MaxPool):
        src, mode = _lowest_padded(g, layer, info), "VALID"
    if mode == "PAD":
        raise ValueError(
            f"TFLite export: {layer.name}: pooling with explicit padding {info.pads} (top, left, "
            f"bottom, right) is neither SAME nor VALID; TFLite pools cannot express it "
            f"(use padding 'same' or 'valid')"
        )
    out = g.activation(layer.name, out_shape)
    g.op(
        "MAX_POOL_2D" if isinstance(layer, MaxPool) else "AVERAGE_POOL_2D",
        (src,),
        (out,),
        padding=mode,
        stride_w=layer.stride[0],
        stride_h=layer.stride[1],
        filter_w=layer.pool[0],
        filter_h=layer.pool[1],
    )


@TFLITE_OPS.register(GlobalAvgPool)
def _global_pool(g: _Graph, layer, info: LayerInfo, out_shape: tuple[int, ...]) -> None:
    axes = g.const_int32(f"{layer.name}.axes", [1, 2])
    out = g.activation(layer.name, out_shape)
    g.op("MEAN", (layer.inputs[0], axes), (out,), keep_dims=True)


@TFLITE_OPS.register(Dense)
def _dense(g: _Graph, layer, info: LayerInfo, out_shape: tuple[int, ...]) -> None:
    src = layer.inputs[0]
    w1, h1, d1 = info.in_shape
    if w1 * h1 > 1:
        n_in = w1 * h1 * d1
        shape = g.const_int32(f"{layer.name}.shape", [1, n_in])
        flat = g.activation(f"{layer.name}.flat", (1, n_in), like=src)
        g.op("RESHAPE", (src, shape), (flat,), new_shape=(1, n_in))
        src = flat
    w, b = g.weight_and_bias(layer, 0)
    out = g.activation(layer.name, out_shape)
    g.op("FULLY_CONNECTED", (src, w, b), (out,), fused_activation=_ACT[layer.activation])


@TFLITE_OPS.register(Add)
def _add(g: _Graph, layer, info: LayerInfo, out_shape: tuple[int, ...]) -> None:
    out = g.activation(layer.name, out_shape)
    g.op("ADD", layer.inputs, (out,), fused_activation=_ACT[layer.activation])


@TFLITE_OPS.register(Pad)
def _pad(g: _Graph, layer, info: LayerInfo, out_shape: tuple[int, ...]) -> None:
    top, left, bottom, right = info.pads
    paddings = g.const_int32(f"{layer.name}.paddings", [[0, 0], [top, bottom], [left, right], [0, 0]])
    out = g.activation(layer.name, out_shape)
    g.op("PAD", (layer.inputs[0], paddings), (out,))


@TFLITE_OPS.register(Concat)
def _concat(g: _Graph, layer, info: LayerInfo, out_shape: tuple[int, ...]) -> None:
    out = g.activation(layer.name, out_shape)
    g.op("CONCATENATION", layer.inputs, (out,), axis=3, fused_activation="NONE")


@TFLITE_OPS.register(Softmax)
def _softmax(g: _Graph, layer, info: LayerInfo, out_shape: tuple[int, ...]) -> None:
    out = g.activation(layer.name, out_shape)
    g.op("SOFTMAX", layer.inputs, (out,), beta=1.0)


def _check_qparams(analysis: Analysis, qparams: QuantParams) -> None:
    for name in [INPUT] + [layer.name for layer in analysis.model.layers]:
        if name not in qparams.activations:
            raise ValueError(f"TFLite export: QuantParams has no activation parameters for {name!r}")
    for layer in analysis.model.layers:
        if layer.op in WEIGHTED_OPS and layer.name not in qparams.q_weights:
            raise ValueError(f"TFLite export: QuantParams has no quantized weights for layer {layer.name!r}")


def build_int8_tflite(analysis: Analysis, qparams: QuantParams) -> bytes:
    """The full-integer int8 .tflite of the analysed model (int8 input "input" and output)."""
    _check_qparams(analysis, qparams)
    return _Graph(analysis, qparams, None).build()


def build_float_tflite(analysis: Analysis, weights: Weights) -> bytes:
    """The float32 .tflite of the analysed model (same operators and tensor names)."""
    for layer in analysis.model.layers:
        if layer.op in WEIGHTED_OPS and f"{layer.name}.weight" not in weights:
            raise ValueError(f"TFLite export: no weights for layer {layer.name!r}")
    return _Graph(analysis, None, weights).build()
