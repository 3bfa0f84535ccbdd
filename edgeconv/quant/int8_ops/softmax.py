"""Softmax: the gemmlowp fixed-point reference kernel and the optimized kernels' lookup table."""

from __future__ import annotations

import math

import numpy as np

from edgeconv.quant.int8_ops.common import _as_i64, _to_int8
from edgeconv.quant.rounding import (
    INT32_MAX,
    INT32_MIN,
    _c_div,
    quantize_multiplier,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)

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
    diff_min = -math.floor(max_input_rescaled)
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
