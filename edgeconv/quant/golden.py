"""Bit-exact int8 golden reference of a whole model, per runtime.

run_int8(analysis, qparams, x_q, runtime) runs every layer with the integer kernels of
int8_ops, picking for each op the (rounding family, kernel) variant that the named runtime
executes (int8_ops.golden_variant). The graph is the one export/tflite.py writes: explicit
padding is a PAD filled with the input zero point (= padding the conv window with real 0),
the dense input is flattened in H, W, C order, and every activation uses its QuantParams scale
and zero point (int8 convention).

runtime:
  "litert_ref"      LiteRT, OpResolverType.BUILTIN_REF
  "litert_builtin"  LiteRT, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
  "litert_xnnpack"  LiteRT default resolver (XNNPACK takes what it supports)
  "tflm"            TFLite Micro
  "ort_cpu"         ONNX Runtime CPU on the uint8 QDQ ONNX (onnx_qdq.build_qdq_onnx), with
                    session.x64quantprecision=1. The golden stays in the int8 convention:
                    compare ort_output.astype(int) − 128.
  "qnn_htp"         ONNX Runtime's QNN EP, HTP backend (the x86_64 emulator, htp_arch 73,
                    QNN SDK 2.51.0 in onnxruntime-qnn 2.7.0) on the same uint8 QDQ ONNX:
                    quant/htp.py's integer steps; ops not bit-exact are bounded per op
                    (BOUNDED_OPS, from htp.KNOWN_HTP_DEVIATIONS).

FAMILIES maps a rounding family (quant/rounding.py) to the runtime whose kernels are its golden.

BOUNDED_OPS records, per runtime, the IR ops its golden does not reproduce bit-exactly and the
LSB bound measured for each (the op fed with the runtime's own inputs); every other op of that
runtime is exact. Only qnn_htp has entries; parity.policy allows each bound at that op only.

KNOWN_MODEL_DEVIATIONS records where a runtime is not matched exactly on whole models (op,
largest difference measured in LSB, reason); tests/test_golden.py reads it and allows that
difference only at or after the named op.

Pure numpy; no runtime is imported.
"""

from __future__ import annotations

import numpy as np

from edgeconv.core.graph import Analysis
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
from edgeconv.quant import htp, int8_ops
from edgeconv.quant.params import QuantParams, TensorQuant
from edgeconv.quant.rounding import fma_f32, multiplier_double, quantize_multipliers

RUNTIMES = ("litert_ref", "litert_builtin", "litert_xnnpack", "tflm", "ort_cpu", "qnn_htp")
FAMILIES = {"tflite": "litert_ref", "fp32": "litert_xnnpack", "htp": "qnn_htp"}

# runtime -> {IR op: max LSB measured at that op on the runtime's own inputs}; ops not listed are exact
BOUNDED_OPS: dict[str, dict[str, int]] = {"qnn_htp": {op: lsb for op, (lsb, _) in htp.KNOWN_HTP_DEVIATIONS.items()}}


def op_bound(runtime: str, op: str) -> int:
    """LSB the golden of `runtime` may differ from it at `op` (0: bit-exact)."""
    return BOUNDED_OPS.get(runtime, {}).get(op, 0)


# TFLite opcode each IR op is exported as (the key of golden_variant and KNOWN_DEVIATIONS).
TFLITE_OP = {
    "conv2d": "CONV_2D",
    "depthwise_conv2d": "DEPTHWISE_CONV_2D",
    "max_pool": "MAX_POOL_2D",
    "avg_pool": "AVERAGE_POOL_2D",
    "global_avg_pool": "MEAN",
    "dense": "FULLY_CONNECTED",
    "add": "ADD",
    "softmax": "SOFTMAX",
    "concat": "CONCATENATION",
    "pad": "PAD",
}

# Whole-model deviations that remain after choosing the matching kernel variant per op:
# (runtime, TFLite opcode) -> {"max_lsb": bound measured at that op's output, "reason": ...}.
# Empty: every runtime matched with 0 LSB on every recipe and planner model tested
# (tests/test_golden.py; 48 inputs per model measured by hand; 64 inputs of N(0,1) x1 and x3 on
# every recipe and both planner models, every layer the runtime exposes, after the exact
# XNNPACK and MLAS ADD arithmetic was added). ORT's QLinearAveragePool with a window smaller
# than the input runs its own float32 kernel, reproduced by ort_avg_pool_sliding.
KNOWN_MODEL_DEVIATIONS: dict[tuple[str, str], dict] = {}


# FULLY_CONNECTED with per-channel weights (what quantize() and export/tflite.py write for
# more than one unit): LiteRT's BUILTIN_REF resolver runs a per-channel kernel that
# requantizes with *single* rounding, (acc · q31 + 2^(t−1)) >> t with t = 31 − shift in 64-bit
# (ties toward +inf), unlike both int8_ops variants (double rounding). Measured on LiteRT 2.3.0
# over 48 inputs × 5 models: "reference" 8 and "optimized" 7 mismatching outputs (1 LSB),
# single rounding 0. Per-tensor weights (one scale: the TF converter's FULLY_CONNECTED, e.g. the
# MLPerf Tiny ResNet-8 int8 file) take the same single-rounding path on BUILTIN_REF: measured
# over 60 random per-tensor FCs x 64 inputs, single rounding 0 of 38,400 outputs off,
# "optimized" and "reference" 60; the builtin resolver stays "optimized" and TFLM "reference"
# (0 off each), so the mapping below applies to every FULLY_CONNECTED on litert_ref.
PER_CHANNEL_FC: dict[str, tuple[str, str]] = {"litert_ref": ("tflite", "single_rounding")}


def fully_connected_single_rounding(x, x_zp, w, bias, s_in, s_w, s_out, zp_out, act_min=-128, act_max=127):
    """FULLY_CONNECTED int8 per channel with TFLite's single-rounding requantization."""
    acc = (np.asarray(x, np.int64) - x_zp) @ np.asarray(w, np.int64).T + np.asarray(bias, np.int64)
    q31, shift = quantize_multipliers(multiplier_double(s_in, s_w, s_out))
    total = 31 - shift
    out = (acc * q31 + (np.int64(1) << (total - 1))) >> total
    return np.clip(out + zp_out, act_min, act_max).astype(np.int8)


def variant(op: str, runtime: str) -> tuple[str, str]:
    """(family, kernel) of the golden for IR op `op` (or a TFLite opcode) on `runtime`."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    return int8_ops.golden_variant(TFLITE_OP.get(op, op), runtime)


def activation_range(kind: Activation, tq: TensorQuant) -> tuple[int, int]:
    """TFLite's CalculateActivationRangeQuantized for an int8 output: ReLU clamps at the zero
    point, ReLU6 also at zp + round(6 / scale) (float32 division, ties away from zero)."""
    zp = int(tq.zero_point[0])
    if kind is Activation.RELU:
        return max(-128, zp), 127
    if kind is Activation.RELU6:
        six = float(np.float32(6.0) / np.float32(tq.scale[0]))
        return max(-128, zp), min(127, zp + int(np.sign(six) * np.floor(abs(six) + 0.5)))
    return -128, 127


# ---------------------------------------------------------------------------------------------
# ONNX Runtime CPU kernels that are not the fp32 conv/gemm requantization (kernel="ort").
# All in the int8 convention: a uint8 value u is u − 128 here, zero points likewise; every
# formula below is invariant under that shift (differences of values and zero points only).
# ---------------------------------------------------------------------------------------------


def ort_add(a, a_zp, s_a, b, b_zp, s_b, s_out, zp_out, act_min=-128, act_max=127):
    """QLinearAdd (MLAS, AVX2 with FMA3; measured bit-exact on ORT 1.32 x86-64, no VNNI), on the
    uint8 values u = q + 128 that ORT sees:

        r_a = float32(s_a / s_out), r_b = float32(s_b / s_out)
        fixed = float32(zp_out) − fma(r_a, zp_a, r_b · zp_b)
        y = round_half_even(fma(u_a, r_a, fma(u_b, r_b, fixed)))     (float32, saturated to uint8)

    Every fma rounds once; the plain float32 chain u_a·r_a + u_b·r_b + fixed differs by 1 LSB
    near ties (e.g. resnet8 s2_add, inputs ×3). A tensor of a single element takes another
    path that computes exactly that plain chain (measured; no edgeconv model has one).
    """
    u = 128
    f32 = np.float32
    ra = f32(f32(s_a) / f32(s_out))
    rb = f32(f32(s_b) / f32(s_out))
    ua = (np.asarray(a, np.int64) + u).astype(np.float32)
    ub = (np.asarray(b, np.int64) + u).astype(np.float32)
    za, zb, zo = f32(a_zp + u), f32(b_zp + u), f32(zp_out + u)
    if ua.size == 1 and ub.size == 1:
        fixed = f32(zo - f32(f32(ra * za) + f32(rb * zb)))
        y = (ua * ra + ub * rb + fixed).astype(np.float32)
    else:
        fixed = f32(zo - fma_f32(ra, za, f32(rb * zb)))
        y = fma_f32(ua, ra, fma_f32(ub, rb, fixed))
    out = np.clip(np.rint(y), 0, 255).astype(np.int64) - u
    return np.clip(out, act_min, act_max).astype(np.int8)


def ort_global_avg_pool(x, x_zp, s_in, s_out, zp_out):
    """QLinearGlobalAveragePool (MLAS): int32 sum of (q − zp_in) times the float32
    s_in / (s_out · n), round half to even, plus zp_out."""
    x = np.asarray(x, np.int64)
    n = x.shape[1] * x.shape[2]
    scale = np.float32(np.float32(s_in) / (np.float32(s_out) * np.float32(n)))
    acc = (x - x_zp).sum(axis=(1, 2), keepdims=True)
    out = np.rint(acc.astype(np.float32) * scale).astype(np.int64) + zp_out
    return np.clip(out, -128, 127).astype(np.int8)


def ort_avg_pool(x, x_zp, s_in, s_out, zp_out, pool_hw, stride_hw, pads):
    """QLinearAveragePool (count_include_pad=0), measured for a window that covers the whole
    input (the only avg_pool the recipes and the planner emit): like QLinearGlobalAveragePool,
    int32 sum of (q − zp_in) times float32(s_in / (s_out · count)), round half to even, + zp_out.

    For smaller, sliding windows (or padding) ORT runs another kernel, which this formula does
    not match (about half of random cases, ORT 1.32 x86-64): see ort_avg_pool_sliding.
    """
    h, w = np.shape(x)[1:3]
    if tuple(pool_hw) != (h, w) or any(pads):
        return ort_avg_pool_sliding(x, x_zp, s_in, s_out, zp_out, pool_hw, stride_hw, pads)
    taps = int8_ops._pool_windows(np.asarray(x, np.int64) - x_zp, pool_hw, stride_hw, pads)
    acc = np.sum([np.where(m, v, 0) for v, m in taps], axis=0)
    count = np.sum([np.broadcast_to(m, v.shape).astype(np.int64) for v, m in taps], axis=0)
    scale = (np.float32(s_in) / (np.float32(s_out) * count.astype(np.float32))).astype(np.float32)
    out = np.rint((acc.astype(np.float32) * scale).astype(np.float32)).astype(np.int64) + zp_out
    return np.clip(out, -128, 127).astype(np.int8)


def ort_avg_pool_sliding(x, x_zp, s_in, s_out, zp_out, pool_hw, stride_hw, pads):
    """QLinearAveragePool with a window smaller than the input (or padding), as ORT's CPU kernel
    computes it on the uint8 QDQ model: the input dequantized to float32, x_scale · (q − zp);
    a float32 sum over the window's pixels inside the image in row-major order (h, then w);
    divided by their count; then nearbyint(y / y_scale + y_zero_point) on the uint8 grid.
    Measured bit-exact on ORT 1.32 x86-64 (tests/test_frontend_onnx.py: the avgpool fixture)."""
    q = np.asarray(x, np.int64)
    xf = (np.float32(s_in) * (q - x_zp).astype(np.float32)).astype(np.float32)
    top, left, bottom, right = pads
    n, h, w, c = xf.shape
    kh, kw = pool_hw
    sh, sw = stride_hw
    out_h = (h + top + bottom - kh) // sh + 1
    out_w = (w + left + right - kw) // sw + 1
    padded = np.pad(xf, ((0, 0), (top, bottom), (left, right), (0, 0)))
    inside = np.pad(np.ones((h, w), bool), ((top, bottom), (left, right)))
    acc = np.zeros((n, out_h, out_w, c), np.float32)
    count = np.zeros((out_h, out_w), np.int64)
    for i in range(kh):  # row-major over the window, like the kernel's loops
        for j in range(kw):
            rows = slice(i, i + (out_h - 1) * sh + 1, sh)
            cols = slice(j, j + (out_w - 1) * sw + 1, sw)
            m = inside[rows, cols]
            acc = np.where(m[None, :, :, None], (acc + padded[:, rows, cols, :]).astype(np.float32), acc)
            count += m
    mean = (acc / count[None, :, :, None].astype(np.float32)).astype(np.float32)
    zp_u = np.float32(zp_out + 128)
    y = np.rint((mean / np.float32(s_out) + zp_u).astype(np.float32)).astype(np.int64)
    return (np.clip(y, 0, 255) - 128).astype(np.int8)


def ort_softmax(x, s_in, zp_out=-128, s_out=1.0 / 256.0):
    """QLinearSoftmax (uint8, opset 13) as ORT 1.32's CPU kernel computes it, with a float32
    table: t[i] = float32(exp((i − 255 + b)·s_in)), b = max(0, ln(FLT_MAX / D) − 5) / s_in; the row
    maximum aligns the table; vsum = the float32 sum of the row's entries in order;
    y = nearbyint(t · floor(1 / s_out) / vsum) + zp_out on the uint8 grid, capped at 255. Note
    floor(1 / s_out): 256 for edgeconv's 1/256, but 254 for ORT quantize_static's 1/255."""
    x = np.asarray(x, np.int64)
    d = x.shape[-1]
    s_in32 = np.float64(np.float32(s_in))
    shift = max(0.0, np.log(np.float64(np.finfo(np.float32).max) / d) - 5.0) / s_in32
    i = np.arange(256, dtype=np.float64)
    table = np.exp((i - 255.0 + shift) * s_in32).astype(np.float32)
    y_scale = np.float32(np.floor(np.float32(1.0) / np.float32(s_out)))
    zp_u = zp_out + 128
    rows = x.reshape(-1, d)
    out = np.empty_like(rows)
    for r, row in enumerate(rows):
        e = table[255 - (row.max() - row)]
        total = np.float32(0.0)
        for v in e:  # sequential float32 sum, like the kernel's loop
            total = np.float32(total + v)
        if total == 0:
            out[r] = zp_out
            continue
        q = np.rint(((e * y_scale).astype(np.float32) / total).astype(np.float32)).astype(np.int64) + zp_u
        out[r] = np.minimum(q, 255) - 128
    return np.clip(out, -128, 127).reshape(x.shape).astype(np.int8)


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


def _scale(tq: TensorQuant) -> float:
    return float(tq.scale[0])


def _zp(tq: TensorQuant) -> int:
    return int(tq.zero_point[0])


GOLDEN: OpTable = OpTable("int8 golden")


def _quants(layer, qparams: QuantParams) -> tuple[list[TensorQuant], TensorQuant]:
    """The quantization of the layer's inputs and of its output."""
    acts = qparams.activations
    return [acts[src] for src in layer.inputs], acts[layer.name]


def run_layer(layer, info, args: list[np.ndarray], qparams: QuantParams, runtime: str) -> np.ndarray:
    """One IR layer on int8 NHWC inputs, as `runtime` computes it; returns int8 NHWC."""
    family, kernel = variant(layer.op, runtime)
    return GOLDEN.handler(layer)(layer, info, args, qparams, runtime, family, kernel)


@GOLDEN.register(Conv2d, DepthwiseConv2d)
def _conv(layer, info, args, qparams: QuantParams, runtime: str, family: str, kernel: str) -> np.ndarray:
    in_q, out_q = _quants(layer, qparams)
    name = layer.name
    x = args[0]
    lo, hi = activation_range(layer.activation, out_q)
    fn = int8_ops.conv2d if isinstance(layer, Conv2d) else int8_ops.depthwise_conv2d
    if runtime == "qnn_htp" and isinstance(layer, DepthwiseConv2d) and tuple(layer.stride) != (1, 1):
        family = htp.DEPTHWISE_STRIDED_FAMILY  # the HTP's strided depthwise kernel: float32 requantization
    return fn(
        x,
        _zp(in_q[0]),
        qparams.q_weights[name],
        qparams.q_biases[name],
        (layer.stride[1], layer.stride[0]),
        info.pads,
        _scale(in_q[0]),
        qparams.weights[name].scale_array(),
        _scale(out_q),
        _zp(out_q),
        lo,
        hi,
        family,
        kernel,
    )


@GOLDEN.register(MaxPool)
def _max_pool(layer, info, args, qparams: QuantParams, runtime: str, family: str, kernel: str) -> np.ndarray:
    x = args[0]
    return int8_ops.max_pool(x, layer.pool[::-1], layer.stride[::-1], info.pads)


@GOLDEN.register(AvgPool)
def _avg_pool(layer, info, args, qparams: QuantParams, runtime: str, family: str, kernel: str) -> np.ndarray:
    in_q, out_q = _quants(layer, qparams)
    x = args[0]
    if kernel == "ort":
        return ort_avg_pool(
            x,
            _zp(in_q[0]),
            _scale(in_q[0]),
            _scale(out_q),
            _zp(out_q),
            layer.pool[::-1],
            layer.stride[::-1],
            info.pads,
        )
    return int8_ops.avg_pool(x, layer.pool[::-1], layer.stride[::-1], info.pads, family=family)


@GOLDEN.register(GlobalAvgPool)
def _global_avg_pool(layer, info, args, qparams: QuantParams, runtime: str, family: str, kernel: str) -> np.ndarray:
    in_q, out_q = _quants(layer, qparams)
    x = args[0]
    if kernel == "ort":
        return ort_global_avg_pool(x, _zp(in_q[0]), _scale(in_q[0]), _scale(out_q), _zp(out_q))
    return int8_ops.mean(x, _zp(in_q[0]), _scale(in_q[0]), _scale(out_q), _zp(out_q), kernel=kernel, family=family)


@GOLDEN.register(Dense)
def _dense(layer, info, args, qparams: QuantParams, runtime: str, family: str, kernel: str) -> np.ndarray:
    in_q, out_q = _quants(layer, qparams)
    name = layer.name
    x = args[0]
    lo, hi = activation_range(layer.activation, out_q)
    family, kernel = PER_CHANNEL_FC.get(runtime, (family, kernel))  # per channel and per tensor alike
    flat = np.asarray(x).reshape(x.shape[0], -1)  # NHWC flatten = H, W, C order
    if kernel == "single_rounding":
        y = fully_connected_single_rounding(
            flat,
            _zp(in_q[0]),
            qparams.q_weights[name],
            qparams.q_biases[name],
            _scale(in_q[0]),
            qparams.weights[name].scale_array(),
            _scale(out_q),
            _zp(out_q),
            lo,
            hi,
        )
        return y.reshape(x.shape[0], 1, 1, -1)
    y = int8_ops.fully_connected(
        flat,
        _zp(in_q[0]),
        qparams.q_weights[name],
        qparams.q_biases[name],
        _scale(in_q[0]),
        qparams.weights[name].scale_array(),
        _scale(out_q),
        _zp(out_q),
        lo,
        hi,
        family,
        kernel,
    )
    return y.reshape(x.shape[0], 1, 1, -1)


@GOLDEN.register(Add)
def _add(layer, info, args, qparams: QuantParams, runtime: str, family: str, kernel: str) -> np.ndarray:
    in_q, out_q = _quants(layer, qparams)
    lo, hi = activation_range(layer.activation, out_q)
    a, b = args
    if kernel == "ort":
        return ort_add(
            a, _zp(in_q[0]), _scale(in_q[0]), b, _zp(in_q[1]), _scale(in_q[1]), _scale(out_q), _zp(out_q), lo, hi
        )
    return int8_ops.add(
        a,
        _zp(in_q[0]),
        _scale(in_q[0]),
        b,
        _zp(in_q[1]),
        _scale(in_q[1]),
        _scale(out_q),
        _zp(out_q),
        lo,
        hi,
        family=family,
    )


@GOLDEN.register(Pad)
def _pad(layer, info, args, qparams: QuantParams, runtime: str, family: str, kernel: str) -> np.ndarray:
    in_q, _ = _quants(layer, qparams)
    top, left, bottom, right = info.pads
    return int8_ops.pad(args[0], ((0, 0), (top, bottom), (left, right), (0, 0)), _zp(in_q[0]))


@GOLDEN.register(Concat)
def _concat(layer, info, args, qparams: QuantParams, runtime: str, family: str, kernel: str) -> np.ndarray:
    """A copy when every input has the output's parameters (what quantize() writes); an imported
    file with other parameters is rescaled as TFLite's ConcatenationWithScaling does:
    round(q · s_in/s_out − zp_in · s_in/s_out) + zp_out in float32, ties away from zero
    (not checked against a runtime: no tested file has it)."""
    in_q, out_q = _quants(layer, qparams)
    parts = []
    for x, q in zip(args, in_q):
        if q.scale[:1] == out_q.scale[:1] and q.zero_point[:1] == out_q.zero_point[:1]:
            parts.append(np.asarray(x, np.int8))
            continue
        ratio = np.float32(_scale(q)) * (np.float32(1.0) / np.float32(_scale(out_q)))
        bias = np.float32(-_zp(q)) * ratio
        v = np.asarray(x, np.float32) * ratio + bias
        r = np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))
        parts.append(np.clip(r.astype(np.int64) + _zp(out_q), -128, 127).astype(np.int8))
    return np.concatenate(parts, axis=-1)


@GOLDEN.register(Softmax)
def _softmax(layer, info, args, qparams: QuantParams, runtime: str, family: str, kernel: str) -> np.ndarray:
    in_q, out_q = _quants(layer, qparams)
    x = args[0]
    if kernel == "ort":
        return ort_softmax(x, _scale(in_q[0]), _zp(out_q), _scale(out_q))
    return int8_ops.softmax(x, _scale(in_q[0]), 1.0, kernel=kernel)


def run_int8(
    analysis: Analysis, qparams: QuantParams, x_q: np.ndarray, runtime: str, keep_all: bool = False
) -> dict[str, np.ndarray]:
    """The int8 outputs `runtime` computes for x_q (N, H, W, C) int8 (quantized outside the
    graph with quantize_input). Returns {output name: int8 NHWC array} (dense layers as
    (N, 1, 1, units)), or every layer's output and "input" with keep_all."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    model = analysis.model
    spec = model.input
    expected = (spec.height, spec.width, spec.channels)
    x_q = np.asarray(x_q)
    if x_q.ndim != 4 or tuple(x_q.shape[1:]) != expected or x_q.dtype != np.int8:
        raise ValueError(
            f"golden: expected int8 input (N, {', '.join(map(str, expected))}), got {x_q.dtype} {tuple(x_q.shape)}"
        )
    values = {INPUT: x_q}
    for layer, info in zip(model.layers, analysis.layers):
        values[layer.name] = run_layer(layer, info, [values[src] for src in layer.inputs], qparams, runtime)
    if keep_all:
        return values
    return {model.output: values[model.output]}


def run_family(
    analysis: Analysis, qparams: QuantParams, x_q: np.ndarray, family: str, keep_all: bool = False
) -> dict[str, np.ndarray]:
    """The golden of a rounding family ("tflite" or "fp32"): run_int8 with FAMILIES[family]."""
    if family not in FAMILIES:
        raise ValueError(f"unknown rounding family {family!r}: expected one of {', '.join(FAMILIES)}")
    return run_int8(analysis, qparams, x_q, FAMILIES[family], keep_all)
