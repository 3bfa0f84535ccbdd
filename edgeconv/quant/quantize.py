"""One set of int8 quantization parameters for a model, from calibrated activation ranges.

Rules (every exporter reads the result; nothing here depends on a runtime):

- Weights: int8 symmetric per output channel, zero point 0, range [−127, 127].
  s_w[c] = float32(max|w_c| / 127) (1.0 for an all-zero channel);
  q = clamp(round_half_even(w / s_w[c]), −127, 127), the division in float64.
  Channel axis in the weights.py layouts: 0 for conv2d (K, KH, KW, C) and dense (units, n_in),
  3 for depthwise_conv2d (1, KH, KW, C).
- Activations: int8 asymmetric. The calibrated range [lo, hi] is widened to include 0, then
  s = float32((hi − lo) / 255) and zp = clamp(round_half_even(−128 − lo / s), −128, 127), so
  real 0 is exactly representable (zero padding = the zero point). A degenerate range (hi = lo = 0)
  gets s = 1.0, zp = −128.
  - ReLU / ReLU6 fused into a layer are folded into its output range: [0, hi] / [0, min(hi, 6)]
    (lo = 0 gives zp = −128 = qmin, so the fused activation is a clamp at qmin).
  - max_pool, avg_pool: the output takes the input's scale and zero point. TFLite's int8
    MAX_POOL_2D / AVERAGE_POOL_2D kernels require equal input and output scale and zero point,
    and ORT drops the Q/DQ pair around a MaxPool only when they are equal.
  - global_avg_pool: its own calibrated range. It is exported as TFLite's MEAN, which
    requantizes; an average spans about half its input's range, so keeping the input's
    scale would cost the following FC about one bit (measured: −2.2 dB SQNR on a 1MB plan).
  - softmax: scale 1/256, zero point −128 (TFLite's int8 SOFTMAX requirement; [0, 255/256]).
  - add: its own output range from calibration (with its fused activation folded in).
  - concat: every input and the output share one scale and zero point, from the union of
    their (activation-folded) calibrated ranges, so the int8 op is a copy (TFLite Micro's int8
    CONCATENATION requires equal parameters). Inputs must be layers with a calibrated range of
    their own (conv, depthwise, dense, add, global_avg_pool, or another concat).
- Biases: int32, zero point 0, per output channel, with
  s_b[c] = float32(s_in) × float32(s_w[c]) computed in float32 arithmetic (one rounding to
  float32 — the same product ORT's quantizer and a float32 requantizer form), and
  q_b = clamp(round_half_even(b / s_b[c]), −2³¹, 2³¹ − 1), the division in float64.
  s_in is the scale of the layer's input tensor (for a dense layer after a spatial tensor,
  the flatten keeps that scale).

Every scale is an exact float32 value stored as a Python float. The result is deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from edgeconv.core.errors import InputError
from edgeconv.core.graph import Analysis
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
from edgeconv.core.weights import Weights
from edgeconv.quant.params import QuantParams, TensorQuant

INT8_MIN, INT8_MAX = -128, 127
WEIGHT_QMAX = 127
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
SOFTMAX_QUANT = TensorQuant((1.0 / 256.0,), (-128,))
WEIGHT_AXIS = {"conv2d": 0, "depthwise_conv2d": 3, "dense": 0}


def f32(value: float) -> float:
    """The float32 value nearest `value`, as a Python float."""
    return float(np.float32(value))


def activation_quant(lo: float, hi: float) -> TensorQuant:
    """int8 asymmetric parameters of the range [lo, hi], widened to include 0."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InputError(f"activation range: expected finite bounds, got [{lo}, {hi}]")
    if hi - lo <= 0.0:
        return TensorQuant((1.0,), (INT8_MIN,))
    scale = f32((hi - lo) / 255.0)
    zp = int(np.clip(np.rint(INT8_MIN - lo / scale), INT8_MIN, INT8_MAX))
    return TensorQuant((scale,), (zp,))


def fold_activation(lo: float, hi: float, kind: Activation) -> tuple[float, float]:
    """The output range after a fused ReLU ([0, hi]) or ReLU6 ([0, min(hi, 6)])."""
    if kind is Activation.RELU:
        return 0.0, max(hi, 0.0)
    if kind is Activation.RELU6:
        return 0.0, min(max(hi, 0.0), 6.0)
    return lo, hi


def weight_quant(w: np.ndarray, axis: int) -> tuple[TensorQuant, np.ndarray]:
    """int8 symmetric per-channel quantization of w along `axis`; returns (params, q int8)."""
    w64 = np.asarray(w, dtype=np.float32).astype(np.float64)
    others = tuple(i for i in range(w64.ndim) if i != axis)
    amax = np.abs(w64).max(axis=others) if w64.size else np.zeros(w64.shape[axis])
    scales = np.where(amax > 0, (amax / WEIGHT_QMAX).astype(np.float32), np.float32(1.0)).astype(np.float32)
    shape = [1] * w64.ndim
    shape[axis] = -1
    q = np.clip(np.rint(w64 / scales.astype(np.float64).reshape(shape)), -WEIGHT_QMAX, WEIGHT_QMAX).astype(np.int8)
    tq = TensorQuant(tuple(float(s) for s in scales), (0,) * len(scales), "int8", axis)
    return tq, q


def bias_quant(b: np.ndarray, s_in: float, w_tq: TensorQuant) -> tuple[TensorQuant, np.ndarray]:
    """int32 per-channel bias quantization with scale float32(s_in)·float32(s_w[c]) (float32 product)."""
    scales = (np.float32(s_in) * w_tq.scale_array()).astype(np.float32)  # float32 × float32 -> float32
    q = np.clip(np.rint(np.asarray(b, np.float64) / scales.astype(np.float64)), INT32_MIN, INT32_MAX)
    tq = TensorQuant(tuple(float(s) for s in scales), (0,) * len(scales), "int32", 0)
    return tq, q.astype(np.int32)


def quantize(
    analysis: Analysis, weights: Weights, ranges: Mapping[str, tuple[float, float]], method_info: Mapping | None = None
) -> QuantParams:
    """QuantParams for the model from calibrated ranges ("input" and every layer name).

    `method_info` (e.g. calibrate.Calibration.info) is recorded as QuantParams.calibration.
    Weight and bias arrays in q_weights / q_biases are keyed by layer name, in weights.py layouts.
    """
    model = analysis.model

    def range_of(name: str) -> tuple[float, float]:
        if name not in ranges:
            raise InputError(
                f"quantize {model.name}: no calibrated range for tensor {name!r} "
                f"(ranges given for: {', '.join(ranges) or 'nothing'})"
            )
        lo, hi = ranges[name]
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
            raise InputError(f"quantize {model.name}: range of {name!r} must be finite with lo <= hi, got [{lo}, {hi}]")
        return float(lo), float(hi)

    acts: dict[str, TensorQuant] = {INPUT: activation_quant(*range_of(INPUT))}
    shared = _concat_shared(model, range_of)
    w_q: dict[str, TensorQuant] = {}
    b_q: dict[str, TensorQuant] = {}
    q_weights: dict[str, np.ndarray] = {}
    q_biases: dict[str, np.ndarray] = {}
    for layer in model.layers:
        name = layer.name
        acts[name] = shared[name] if name in shared else OUTPUT_QUANT.handler(layer)(layer, acts, range_of)
        if layer.op in WEIGHTED_OPS:
            w_q[name], q_weights[name] = weight_quant(weights[f"{name}.weight"], WEIGHT_AXIS[layer.op])
            s_in = acts[layer.inputs[0]].scale[0]
            b_q[name], q_biases[name] = bias_quant(weights[f"{name}.bias"], s_in, w_q[name])
    return QuantParams(
        activations=acts,
        weights=w_q,
        biases=b_q,
        q_weights=q_weights,
        q_biases=q_biases,
        calibration=dict(method_info or {}),
    )


_OWN_RANGE_OPS = ("conv2d", "depthwise_conv2d", "dense", "add", "global_avg_pool", "concat")


def _concat_shared(model, range_of) -> dict[str, TensorQuant]:
    """One TensorQuant per group of tensors joined by concats (union of their ranges)."""
    groups: list[set[str]] = []
    for layer in model.layers:
        if layer.op != "concat":
            continue
        members = {layer.name, *layer.inputs}
        for g in [g for g in groups if g & members]:
            members |= g
            groups.remove(g)
        groups.append(members)
    shared: dict[str, TensorQuant] = {}
    for g in groups:
        lo, hi = 0.0, 0.0
        for name in sorted(g):
            layer = None if name == INPUT else model.layer(name)
            if layer is None or layer.op not in _OWN_RANGE_OPS:
                what = "the model input" if layer is None else f"{layer.op} {name}"
                raise InputError(
                    f"quantize {model.name}: a concat reads {what}, whose quantization is fixed elsewhere; "
                    f"concat inputs must be conv, depthwise, dense, add or global_avg_pool layers"
                )
            r_lo, r_hi = range_of(name)
            a, b = fold_activation(r_lo, r_hi, getattr(layer, "activation", Activation.NONE))
            lo, hi = min(lo, a), max(hi, b)
        tq = activation_quant(lo, hi)
        shared.update(dict.fromkeys(g, tq))
    return shared


OUTPUT_QUANT: OpTable = OpTable("quantization ranges")


@OUTPUT_QUANT.register(Concat)
def _concat_quant(layer, acts: dict[str, TensorQuant], range_of) -> TensorQuant:
    # reached only outside quantize() (which shares one set over the group): the inputs' own
    return acts[layer.inputs[0]]


@OUTPUT_QUANT.register(MaxPool, AvgPool, Pad)
def _same_as_input(layer, acts: dict[str, TensorQuant], range_of) -> TensorQuant:
    # max and average pooling keep the input's scale and zero point (TFLite requires it); so does
    # a zero pad (real 0 = the zero point, and TFLite's int8 PAD requires equal parameters)
    return acts[layer.inputs[0]]


@OUTPUT_QUANT.register(Softmax)
def _softmax_quant(layer, acts: dict[str, TensorQuant], range_of) -> TensorQuant:
    return SOFTMAX_QUANT


@OUTPUT_QUANT.register(Conv2d, DepthwiseConv2d, Dense, GlobalAvgPool, Add)
def _calibrated_quant(layer, acts: dict[str, TensorQuant], range_of) -> TensorQuant:
    lo, hi = range_of(layer.name)
    lo, hi = fold_activation(lo, hi, getattr(layer, "activation", Activation.NONE))
    return activation_quant(lo, hi)


def storage(tq: TensorQuant, dtype: str) -> tuple[np.dtype, int, int, int]:
    """(numpy dtype, zero point, qmin, qmax) of an int8-convention activation on an int8 or uint8 grid."""
    if dtype == "int8":
        return np.dtype(np.int8), int(tq.zero_point[0]), INT8_MIN, INT8_MAX
    if dtype == "uint8":
        return np.dtype(np.uint8), int(tq.zero_point[0]) + 128, 0, 255
    raise ValueError(f"activation dtype: expected 'int8' or 'uint8', got {dtype!r}")


def quantize_input(x: np.ndarray, tq: TensorQuant, dtype: str = "int8") -> np.ndarray:
    """Quantize a float input for every target with one rule:

        q = clamp(round_half_even(float32(x) / float32(scale)) + zp, qmin, qmax)

    the division in float32 (as ONNX QuantizeLinear), ties to even (numpy.rint). dtype "int8"
    uses tq's zero point, "uint8" the same real grid with zero point + 128. The layout is kept
    (NHWC in, NHWC out); transpose to NCHW for ONNX models.
    """
    np_dtype, zp, qmin, qmax = storage(tq, dtype)
    scaled = np.asarray(x, dtype=np.float32) / np.float32(tq.scale[0])
    return np.clip(np.rint(scaled) + zp, qmin, qmax).astype(np_dtype)


def dequantize(q: np.ndarray, tq: TensorQuant, dtype: str | None = None) -> np.ndarray:
    """Real values (float32) of an int8 or uint8 activation tensor: scale · (q − zp)."""
    dtype = dtype or np.asarray(q).dtype.name
    _, zp, _, _ = storage(tq, dtype)
    return ((np.asarray(q, dtype=np.int32) - zp).astype(np.float32) * np.float32(tq.scale[0])).astype(np.float32)
