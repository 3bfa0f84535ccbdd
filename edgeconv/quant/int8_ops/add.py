"""Elementwise ADD with two input scales: TFLite's integer rescaling, XNNPACK's, float32."""

from __future__ import annotations

import math

import numpy as np

from edgeconv.quant.int8_ops.common import _as_i64, _to_int8
from edgeconv.quant.rounding import (
    multiply_by_quantized_multiplier,
    quantize_multiplier,
)


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
