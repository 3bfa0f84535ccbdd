"""Bit-exact, integer-only golden reference for the int8 ops edgeconv emits.

Slow and clear on purpose: one function per op, named after the op, pure NumPy. Arrays are
NHWC int8 (batch first); results are int8 arrays. `family` picks the requantization rule of
DESIGN.md §5 ("tflite" = LiteRT builtin/reference kernels and TFLM, "fp32" = XNNPACK).

Runtimes of the same family do not all run the same kernel: LiteRT's optimized int8 conv,
depthwise and fully connected kernels round ties of the final shift toward +inf, and MEAN and
SOFTMAX have different algorithms per runtime. Those ops take `kernel="reference"|"optimized"`;
golden_variant(op, runtime) says which (family, kernel) matches a runtime bit-exactly, and
KNOWN_DEVIATIONS records the measured differences (tests/test_int8_ops.py checks them).
"""

from __future__ import annotations

import math

import numpy as np

from edgeconv.quant.rounding import (
    INT32_MAX,
    INT32_MIN,
    _c_div,
    multiplier_double,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    requantize,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)

# Same-family kernel differences and XNNPACK's choices, measured on LiteRT 2.3.0 (x86-64),
# tflite-micro 2026-10 and seeded random data (tests/test_int8_ops.py reproduces them).
# max_lsb is the largest difference measured between the runtimes listed; each runtime on its
# own is matched with 0 LSB by the kernel variant golden_variant() names for it.
KNOWN_DEVIATIONS: dict[str, dict] = {
    "CONV_2D": {
        "runtimes": ("litert_builtin", "litert_ref", "tflm"),
        "max_lsb": 1,
        "reason": "LiteRT's optimized int8 conv (x86) ends with a plain rounding shift, ties "
        "toward +inf; the reference kernel and TFLM round ties away from zero. "
        "kernel='optimized' reproduces the builtin kernel exactly.",
    },
    "DEPTHWISE_CONV_2D": {
        "runtimes": ("litert_builtin", "litert_ref", "tflm"),
        "max_lsb": 1,
        "reason": "as CONV_2D: builtin kernel rounds the final shift's ties toward +inf.",
    },
    "FULLY_CONNECTED": {
        "runtimes": ("litert_builtin", "litert_ref", "tflm"),
        "max_lsb": 1,
        "reason": "both LiteRT resolvers (BUILTIN_REF too) round the final shift's ties toward "
        "+inf; TFLM rounds them away from zero.",
    },
    "MEAN": {
        "runtimes": ("litert_builtin", "litert_ref", "tflm", "litert_xnnpack"),
        "max_lsb": 1,
        "reason": "three algorithms: reference/TFLM fold 1/n into the Q31 multiplier; the "
        "builtin kernel uses a float32 multiplier s_in/(n·s_out) on the raw sum plus a "
        "rounded zero-point bias, ties toward +inf; XNNPACK does the same in float32 "
        "with half-to-even rounding. Each is matched exactly by its variant.",
    },
    "AVERAGE_POOL_2D": {
        "runtimes": ("litert_xnnpack",),
        "max_lsb": 0,
        "reason": "XNNPACK declines int8 average pooling; the builtin kernel runs and matches "
        "the tflite family (which all LiteRT kernels and TFLM match exactly).",
    },
    "SOFTMAX": {
        "runtimes": ("litert_xnnpack", "litert_builtin"),
        "max_lsb": 0,
        "reason": "XNNPACK declines int8 softmax. The builtin kernel is the float32 exp "
        "table (kernel='optimized'), the reference kernel and TFLM the gemmlowp "
        "fixed-point one (kernel='reference'); both are matched exactly and they "
        "agreed on every case measured (up to 100 classes).",
    },
}

# Int8 ops that LiteRT's default XNNPACK delegate leaves to the builtin kernels.
XNNPACK_DECLINES: frozenset[str] = frozenset({"AVERAGE_POOL_2D", "SOFTMAX"})

_OPTIMIZED_ON_LITERT_REF = frozenset({"FULLY_CONNECTED"})

# Ops whose ONNX Runtime CPU kernel (QLinearConv, QGemm) is the fp32-family requantization.
# MAX_POOL_2D and PAD/RESHAPE have no arithmetic and match every runtime.
_ORT_FP32_REQUANT = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "PAD", "RESHAPE"})


def golden_variant(op: str, runtime: str) -> tuple[str, str]:
    """(family, kernel) of the golden reference that a runtime matches bit-exactly.

    runtime: "litert_ref" (BUILTIN_REF), "litert_builtin" (BUILTIN_WITHOUT_DEFAULT_DELEGATES),
    "litert_xnnpack" (default resolver), "tflm", "ort_cpu" (ONNX Runtime CPU, uint8 QDQ ONNX;
    kernel "ort" = the ORT-specific kernels in quant/golden.py).
    """
    if runtime == "tflm":
        return "tflite", "reference"
    if runtime == "litert_ref":
        return "tflite", "optimized" if op in _OPTIMIZED_ON_LITERT_REF else "reference"
    if runtime == "litert_builtin":
        return "tflite", "optimized"
    if runtime == "litert_xnnpack":
        return ("tflite", "optimized") if op in XNNPACK_DECLINES else ("fp32", "optimized")
    if runtime == "ort_cpu":
        # ONNX Runtime CPU on the uint8 QDQ model: QLinearConv and QGemm requantize in float32
        # (fp32 family); the other fused ops have their own arithmetic (quant/golden.py, "ort").
        return ("fp32", "optimized") if op in _ORT_FP32_REQUANT else ("fp32", "ort")
    raise ValueError(f"unknown runtime {runtime!r}")


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _as_i64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.int64)


def _to_int8(a) -> np.ndarray:
    return np.asarray(a).astype(np.int8)


def _pad_nhwc(x, pads, value: int) -> np.ndarray:
    top, left, bottom, right = pads
    return np.pad(_as_i64(x), ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def _out_size(size: int, k: int, stride: int, before: int, after: int) -> int:
    return (size + before + after - k) // stride + 1


def _windows(xp, kh: int, kw: int, stride, out_h: int, out_w: int):
    """Yields (i, j, view) for every filter tap; view is (N, out_h, out_w, C)."""
    sh, sw = stride
    for i in range(kh):
        for j in range(kw):
            yield i, j, xp[:, i : i + sh * (out_h - 1) + 1 : sh, j : j + sw * (out_w - 1) + 1 : sw, :]


def _ties(kernel: str) -> str:
    """Tie rule of the final rounding shift: reference kernels and TFLM round ties away from
    zero; LiteRT's optimized int8 kernels use a plain rounding shift (ties toward +inf)."""
    if kernel == "reference":
        return "away"
    if kernel == "optimized":
        return "up"
    raise ValueError(f"unknown kernel {kernel!r}")


# ---------------------------------------------------------------------------------------------
# Convolutions and fully connected
# ---------------------------------------------------------------------------------------------


def conv2d(
    x,
    x_zp,
    w,
    bias,
    stride,
    pads,
    s_in,
    s_w,
    s_out,
    zp_out,
    act_min=-128,
    act_max=127,
    family="tflite",
    kernel="reference",
):
    """CONV_2D int8, per-channel symmetric weights w (Cout, KH, KW, Cin)."""
    w = _as_i64(w)
    cout, kh, kw, _ = w.shape
    n, h, wd, _ = np.shape(x)
    out_h = _out_size(h, kh, stride[0], pads[0], pads[2])
    out_w = _out_size(wd, kw, stride[1], pads[1], pads[3])
    # Padding holds the input zero point, so padded taps contribute w·0 after the offset.
    xp = _pad_nhwc(x, pads, x_zp) - x_zp
    acc = np.zeros((n, out_h, out_w, cout), dtype=np.int64)
    for i, j, view in _windows(xp, kh, kw, stride, out_h, out_w):
        acc += np.einsum("nhwc,oc->nhwo", view, w[:, i, j, :])
    if bias is not None:
        acc += _as_i64(bias)
    return _to_int8(requantize(acc, s_in, s_w, s_out, zp_out, act_min, act_max, family, _ties(kernel)))


def depthwise_conv2d(
    x,
    x_zp,
    w,
    bias,
    stride,
    pads,
    s_in,
    s_w,
    s_out,
    zp_out,
    act_min=-128,
    act_max=127,
    family="tflite",
    kernel="reference",
):
    """DEPTHWISE_CONV_2D int8 with depth multiplier 1; w is (1, KH, KW, C)."""
    w = _as_i64(w)
    _, kh, kw, c = w.shape
    n, h, wd, _ = np.shape(x)
    out_h = _out_size(h, kh, stride[0], pads[0], pads[2])
    out_w = _out_size(wd, kw, stride[1], pads[1], pads[3])
    xp = _pad_nhwc(x, pads, x_zp) - x_zp
    acc = np.zeros((n, out_h, out_w, c), dtype=np.int64)
    for i, j, view in _windows(xp, kh, kw, stride, out_h, out_w):
        acc += view * w[0, i, j, :]
    if bias is not None:
        acc += _as_i64(bias)
    return _to_int8(requantize(acc, s_in, s_w, s_out, zp_out, act_min, act_max, family, _ties(kernel)))


def fully_connected(
    x, x_zp, w, bias, s_in, s_w, s_out, zp_out, act_min=-128, act_max=127, family="tflite", kernel="reference"
):
    """FULLY_CONNECTED int8: x (N, Cin), w (Cout, Cin) symmetric (per-tensor or per-channel)."""
    acc = (_as_i64(x) - x_zp) @ _as_i64(w).T
    if bias is not None:
        acc += _as_i64(bias)
    return _to_int8(requantize(acc, s_in, s_w, s_out, zp_out, act_min, act_max, family, _ties(kernel)))


# ---------------------------------------------------------------------------------------------
# Pooling and reductions
# ---------------------------------------------------------------------------------------------


def _pool_windows(x, filter_hw, stride, pads):
    """(values, valid) per tap; padded positions are marked invalid, not given a value."""
    n, h, w, c = np.shape(x)
    kh, kw = filter_hw
    out_h = _out_size(h, kh, stride[0], pads[0], pads[2])
    out_w = _out_size(w, kw, stride[1], pads[1], pads[3])
    xp = _pad_nhwc(x, pads, 0)
    valid = _pad_nhwc(np.ones((1, h, w, 1), dtype=np.int64), pads, 0)
    taps = []
    for (_, _, v), (_, _, m) in zip(
        _windows(xp, kh, kw, stride, out_h, out_w), _windows(valid, kh, kw, stride, out_h, out_w)
    ):
        taps.append((v, m.astype(bool)))
    return taps


def max_pool(x, filter_hw, stride, pads, act_min=-128, act_max=127):
    """MAX_POOL_2D int8: maximum over the taps inside the image (input and output share
    scale and zero point), then the fused activation clamp."""
    taps = _pool_windows(x, filter_hw, stride, pads)
    out = None
    for v, m in taps:
        v = np.where(m, v, -(1 << 40))
        out = v if out is None else np.maximum(out, v)
    return _to_int8(np.clip(out, act_min, act_max))


def avg_pool(x, filter_hw, stride, pads, act_min=-128, act_max=127, family="tflite"):
    """AVERAGE_POOL_2D int8 (same input and output scale and zero point).

    tflite: sum of the raw int8 values inside the image divided by their count (padding is
    not counted), rounding half away from zero: (sum ± count/2) / count in C integer division.
    The zero point needs no correction because the average of (q − zp) is avg(q) − zp.
    fp32: XNNPACK declines int8 average pooling in LiteRT (KNOWN_DEVIATIONS), so the
    builtin kernel runs; the family argument is accepted and ignored.
    """
    taps = _pool_windows(x, filter_hw, stride, pads)
    total = sum(np.where(m, v, 0) for v, m in taps)
    count = sum(np.broadcast_to(m, v.shape).astype(np.int64) for v, m in taps)
    half = count // 2
    avg = np.where(total > 0, _c_div(total + half, count), _c_div(total - half, count))
    return _to_int8(np.clip(avg, act_min, act_max))


def mean(x, x_zp, s_in, s_out, zp_out, kernel="reference", family="tflite"):
    """MEAN over H and W with keep_dims (global average pool), int8 → (N, 1, 1, C).

    Three different algorithms are in use (KNOWN_DEVIATIONS["MEAN"]):
    kernel="reference" (LiteRT BUILTIN_REF and TFLM): the Q31 multiplier of s_in/s_out is
      divided by the element count n after shifting it left by min(floor(log2 n), 32,
      31 + shift) bits, and applied to the sum of (q − zp_in); ties away from zero.
    kernel="optimized" (LiteRT builtin kernel): the multiplier of s_in/(n·s_out) (float32)
      is applied to the raw sum, ties toward +inf, plus the bias
      zp_out − round(zp_in·s_in/s_out) (float32, ties away from zero).
    family="fp32" (XNNPACK): see _mean_fp32.
    """
    x = _as_i64(x)
    n, h, w, c = x.shape
    count = h * w
    if family == "fp32":
        return _mean_fp32(x, x_zp, s_in, s_out, zp_out)
    if kernel == "reference":
        q31, shift = quantize_multiplier(float(multiplier_double(s_in, 1.0, s_out)))
        # Fold 1/count into the multiplier, keeping as many bits as int32 allows.
        extra = min(count.bit_length() - 1, 32, 31 + shift)
        q31 = (q31 << extra) // count
        acc = (x - x_zp).sum(axis=(1, 2), keepdims=True)
        acc = multiply_by_quantized_multiplier(acc, q31, shift - extra)
        return _to_int8(np.clip(acc + zp_out, -128, 127))
    if kernel == "optimized":
        s_in32, s_out32 = np.float32(s_in), np.float32(s_out)
        zp_scaled = np.float32(x_zp) * s_in32 / s_out32
        bias = zp_out - int(math.copysign(math.floor(abs(float(zp_scaled)) + 0.5), zp_scaled))
        real = np.float32(s_in32 / (np.float32(count) * s_out32))
        q31, shift = quantize_multiplier(float(real))
        acc = multiply_by_quantized_multiplier(x.sum(axis=(1, 2), keepdims=True), q31, shift, "up")
        return _to_int8(np.clip(acc + bias, -128, 127))
    raise ValueError(f"unknown mean kernel {kernel!r}")


def _mean_fp32(x, x_zp, s_in, s_out, zp_out):
    """XNNPACK qs8 mean: the raw int32 sum (zero point not removed) times
    float32(s_in/(s_out·n)), plus the float32 bias zp_out − zp_in·s_in/s_out, rounded half to
    even. The zero point entering after the scaling shows at ties with equal in/out scales."""
    n, h, w, c = x.shape
    s_in32, s_out32 = np.float32(s_in), np.float32(s_out)
    scale = np.float32(s_in32 / (s_out32 * np.float32(h * w)))
    bias = np.float32(np.float32(zp_out) - np.float32(np.float32(x_zp) * (s_in32 / s_out32)))
    raw = x.sum(axis=(1, 2), keepdims=True).astype(np.float32)
    out = np.rint(raw * scale + bias)
    return _to_int8(np.clip(out, -128, 127))


# ---------------------------------------------------------------------------------------------
# Elementwise
# ---------------------------------------------------------------------------------------------


def add(a, a_zp, s_a, b, b_zp, s_b, s_out, zp_out, act_min=-128, act_max=127, family="tflite"):
    """ADD int8 with broadcasting.

    tflite: both inputs are shifted left by 20 bits, rescaled to a common scale
    2·max(s_a, s_b) with Q31 multipliers (< 1), summed, then rescaled to s_out.
    fp32: XNNPACK's qs8 add; see _add_fp32.
    """
    if family == "fp32":
        return _add_fp32(a, a_zp, s_a, b, b_zp, s_b, s_out, zp_out, act_min, act_max)
    left_shift = 20
    s_a, s_b, s_out = (float(np.float32(s)) for s in (s_a, s_b, s_out))
    twice_max = 2.0 * max(s_a, s_b)
    qa = quantize_multiplier(s_a / twice_max)
    qb = quantize_multiplier(s_b / twice_max)
    qo = quantize_multiplier(twice_max / ((1 << left_shift) * s_out))
    sa = multiply_by_quantized_multiplier((_as_i64(a) - a_zp) << left_shift, *qa)
    sb = multiply_by_quantized_multiplier((_as_i64(b) - b_zp) << left_shift, *qb)
    out = multiply_by_quantized_multiplier(sa + sb, *qo) + zp_out
    return _to_int8(np.clip(out, act_min, act_max))


# XNNPACK takes an int8 ADD only when both ratios s_x/s_out (float32) lie in this range;
# otherwise LiteRT runs its builtin kernel (measured, LiteRT 2.3.0).
XNNPACK_ADD_RATIO_RANGE = (2.0**-10, 2.0**8)


def xnnpack_add_params(s_a, s_b, s_out) -> tuple[int, int, int] | None:
    """(a_multiplier, b_multiplier, shift) of XNNPACK's qs8 add, or None when XNNPACK declines.

    The ratios r = s_x/s_out are float32; the larger one, with binary exponent e, sets
    shift = 20 − e, and each multiplier is round-half-even(r · 2^shift) (exact float32 scaling
    by a power of two), so the larger multiplier has 21 bits, in [2^20, 2^21).
    """
    ra = np.float32(np.float32(s_a) / np.float32(s_out))
    rb = np.float32(np.float32(s_b) / np.float32(s_out))
    lo, hi = XNNPACK_ADD_RATIO_RANGE
    if not all(lo <= float(r) < hi for r in (ra, rb)):
        return None
    exponent = math.frexp(float(max(ra, rb)))[1] - 1  # max(ra, rb) = f · 2^exponent, 1 <= f < 2
    shift = 20 - exponent
    ma = int(np.rint(np.float64(ra) * 2.0**shift))
    mb = int(np.rint(np.float64(rb) * 2.0**shift))
    return ma, mb, shift


def _add_fp32(a, a_zp, s_a, b, b_zp, s_b, s_out, zp_out, act_min, act_max):
    """XNNPACK qs8 add (integer, despite the family's name), measured bit-exact on LiteRT 2.3.0:

        acc = bias + q_a · m_a + q_b · m_b            (int32)
        bias = 2^(shift−1) − m_a · zp_a − m_b · zp_b
        out = clamp(acc >> shift, act_min − zp_out, act_max − zp_out) + zp_out

    with (m_a, m_b, shift) from xnnpack_add_params; the arithmetic shift after adding
    2^(shift−1) rounds ties toward +inf. Ratios outside XNNPACK_ADD_RATIO_RANGE: XNNPACK
    declines and the builtin kernel runs (tflite family).
    """
    params = xnnpack_add_params(s_a, s_b, s_out)
    if params is None:
        return add(a, a_zp, s_a, b, b_zp, s_b, s_out, zp_out, act_min, act_max, family="tflite")
    ma, mb, shift = params
    bias = (1 << (shift - 1)) - ma * int(a_zp) - mb * int(b_zp)
    acc = bias + _as_i64(a) * ma + _as_i64(b) * mb
    out = np.clip(acc >> shift, act_min - zp_out, act_max - zp_out) + zp_out
    return _to_int8(out)


# ---------------------------------------------------------------------------------------------
# Softmax
# ---------------------------------------------------------------------------------------------
# The reference kernel is gemmlowp fixed-point arithmetic on int32 raw values. A FixedPoint
# with I integer bits represents raw / 2^(31 − I). Products of FixedPoint values are
# saturating rounding doubling high multiplies of the raw values.

_SCALED_DIFF_INTEGER_BITS = 5
_ACCUMULATION_INTEGER_BITS = 12


def _srdhm(a, b):
    return saturating_rounding_doubling_high_mul(a, b)


def _saturating_rounding_mul_by_pot(x, exponent: int):
    """gemmlowp SaturatingRoundingMultiplyByPOT: saturating left shift or rounding right shift."""
    x = _as_i64(x)
    if exponent > 0:
        return np.clip(x << exponent, INT32_MIN, INT32_MAX)
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    return x


def _rescale(x, src_int_bits: int, dst_int_bits: int):
    return _saturating_rounding_mul_by_pot(x, src_int_bits - dst_int_bits)


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a):
    """exp(a) for a in [−1/4, 0), Q0.31 in and out: Taylor series around −1/8."""
    constant_term = 1895147668  # exp(−1/8) in Q0.31
    constant_1_over_3 = 715827883  # 1/3 in Q0.31
    x = _as_i64(a) + (1 << 28)  # a + 1/8
    x2 = _srdhm(x, x)
    x3 = _srdhm(x2, x)
    x4 = _srdhm(x2, x2)
    x4_over_4 = _saturating_rounding_mul_by_pot(x4, -2)
    poly = _saturating_rounding_mul_by_pot(_srdhm(x4_over_4 + x3, constant_1_over_3) + x2, -1)
    return constant_term + _srdhm(constant_term, x + poly)


# exp(−2^k) in Q0.31 for the barrel shifter over the integer part of −a, k = −2 .. 4.
_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401), (4, 242))


def _exp_on_negative_values(a, integer_bits: int = _SCALED_DIFF_INTEGER_BITS):
    """gemmlowp exp_on_negative_values: a ≤ 0 with `integer_bits`, result Q0.31."""
    a = _as_i64(a)
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    a_mod_quarter_minus_one_quarter = (a & (one_quarter - 1)) - one_quarter
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(
        _rescale(a_mod_quarter_minus_one_quarter, integer_bits, 0)
    )
    remainder = a_mod_quarter_minus_one_quarter - a
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            bit = (remainder >> (fractional_bits + exponent)) & 1
            result = np.where(bit == 1, _srdhm(result, multiplier), result)
    return np.where(a == 0, INT32_MAX, result)


def _one_over_one_plus_x_for_x_in_0_1(a):
    """1/(1 + a) for a in [0, 1) Q0.31, by three Newton-Raphson steps; result Q0.31."""
    a = _as_i64(a)
    s = a + INT32_MAX  # RoundingHalfSum(a, One): (a + one ± 1) / 2
    half_denominator = _c_div(s + np.where(s >= 0, 1, -1), 2)
    x = 1515870810 + _srdhm(half_denominator, -1010580540)  # 48/17 − 32/17·d, Q2.29
    one_q2 = 1 << 29
    for _ in range(3):
        half_denominator_times_x = _srdhm(half_denominator, x)  # Q2.29
        one_minus = one_q2 - half_denominator_times_x  # Q2.29
        x = x + _rescale(_srdhm(x, one_minus), 4, 2)  # Q4 → Q2
    return _rescale(x, 1, 0)  # ExactMulByPot<−1> (Q2 → Q1 reinterpretation), → Q0


def _get_reciprocal(x, x_integer_bits: int):
    """TFLite GetReciprocal: (1/x as Q0.31 of x normalized to [1, 2), num_bits_over_unit)."""
    x = _as_i64(x)
    headroom_plus_one = np.array([32 - int(v).bit_length() for v in np.ravel(x & 0xFFFFFFFF)], dtype=np.int64).reshape(
        x.shape
    )
    num_bits_over_unit = x_integer_bits - headroom_plus_one
    shifted = ((x << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31)
    return _one_over_one_plus_x_for_x_in_0_1(shifted), num_bits_over_unit


def _softmax_reference_params(s_in: float, beta: float):
    """PreprocessSoftmaxScaling and CalculateInputRadius for 5 integer bits of the diff."""
    bits = _SCALED_DIFF_INTEGER_BITS
    real = min(beta * float(np.float32(s_in)) * (1 << (31 - bits)), float((1 << 31) - 1))
    multiplier, left_shift = quantize_multiplier(real)
    max_input_rescaled = 1.0 * ((1 << bits) - 1) * (1 << (31 - bits)) / (1 << left_shift)
    diff_min = -int(math.floor(max_input_rescaled))
    return multiplier, left_shift, diff_min


def softmax(x, s_in, beta=1.0, kernel="reference"):
    """SOFTMAX int8 over the last axis; output scale 1/256, zero point −128.

    kernel="reference": LiteRT BUILTIN_REF and TFLM (gemmlowp fixed-point exp, reciprocal).
    kernel="optimized": LiteRT builtin kernel: a float32 table of exp(−s_in·beta·d) for the
      256 possible differences d to the row maximum, a float32 running sum, and rounding of
      p·256 half away from zero.
    """
    if kernel == "optimized":
        return _softmax_lut(x, s_in, beta)
    if kernel != "reference":
        raise ValueError(f"unknown softmax kernel {kernel!r}")
    x = _as_i64(x)
    multiplier, left_shift, diff_min = _softmax_reference_params(s_in, beta)
    diff = x - x.max(axis=-1, keepdims=True)
    in_range = diff >= diff_min
    scaled = _srdhm(diff * (1 << left_shift), multiplier)  # Q5.26
    exps = _exp_on_negative_values(scaled)  # Q0.31
    exps_acc = np.where(in_range, _rescale(exps, 0, _ACCUMULATION_INTEGER_BITS), 0)
    sum_of_exps = exps_acc.sum(axis=-1, keepdims=True)  # Q12.19, fits in int32
    shifted_scale, num_bits_over_unit = _get_reciprocal(sum_of_exps, _ACCUMULATION_INTEGER_BITS)
    unsat = rounding_divide_by_pot(_srdhm(shifted_scale, exps), num_bits_over_unit + 31 - 8)
    out = np.where(in_range, np.clip(unsat - 128, -128, 127), -128)
    return _to_int8(out)


def _softmax_lut(x, s_in, beta):
    x = _as_i64(x)
    scale = np.float32(-np.float32(s_in) * np.float32(beta))
    # table[255 − d] = expf(scale·d); expf is taken as exp in double rounded to float32.
    d = np.arange(256, dtype=np.float32)
    table = np.exp((scale * d).astype(np.float64)).astype(np.float32)  # indexed by d
    out = np.empty(x.shape, dtype=np.int64)
    rows = x.reshape(-1, x.shape[-1])
    flat = out.reshape(-1, x.shape[-1])
    for r, row in enumerate(rows):
        e = table[row.max() - row]
        total = np.float32(0.0)
        for v in e:  # sequential float32 sum, as the C loop
            total = np.float32(total + v)
        inv = np.float32(np.float32(1.0) / (total * np.float32(1.0 / 256.0)))
        p = (e * inv).astype(np.float32)
        flat[r] = np.clip(np.floor(p.astype(np.float64) + 0.5).astype(np.int64) - 128, -128, 127)
    return _to_int8(out)


# ---------------------------------------------------------------------------------------------
# Data movement
# ---------------------------------------------------------------------------------------------


def pad(x, paddings, x_zp):
    """PAD int8: paddings ((before, after), ...) per axis; fills with the zero point."""
    return _to_int8(np.pad(_as_i64(x), tuple(tuple(p) for p in paddings), constant_values=x_zp))


def reshape(x, shape):
    """RESHAPE: no arithmetic; same scale and zero point."""
    return np.reshape(np.asarray(x, dtype=np.int8), shape)
