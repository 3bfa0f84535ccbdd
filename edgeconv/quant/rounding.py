"""Integer requantization in the two rounding families (README: Parity, the numpy int8 golden reference).

- "tflite": the real multiplier m (computed in double from the float32 scales) becomes a Q31
  fixed-point multiplier and a power-of-two shift; the accumulator is multiplied with a
  saturating rounding doubling high multiply, then divided by a power of two rounding ties
  away from zero. LiteRT builtin and reference kernels and TFLM do this.
- "fp32": float32(acc) · float32(m), rounded half to even. XNNPACK and ONNX Runtime do this.

Everything is vectorized over int64 NumPy arrays; int64 holds every intermediate of the
int32 arithmetic exactly, and int32 saturation is emulated where the C code saturates.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def _c_div(num: np.ndarray, den) -> np.ndarray:
    """C integer division (truncates toward zero), unlike NumPy's floor division."""
    num = np.asarray(num, dtype=np.int64)
    q = np.abs(num) // np.abs(np.asarray(den, dtype=np.int64))
    return np.where((num < 0) != (np.asarray(den) < 0), -q, q)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: real ≈ q31 · 2^(shift − 31), q31 in [2^30, 2^31)."""
    if real == 0.0:
        return 0, 0
    fraction, shift = math.frexp(real)  # real = fraction · 2^shift, fraction in [0.5, 1)
    q = fraction * (1 << 31)  # exact: scaling by a power of two
    q31 = int(math.copysign(math.floor(abs(q) + 0.5), q))  # std::round: ties away from zero
    if q31 == (1 << 31):  # rounding reached 1.0: renormalize
        q31 //= 2
        shift += 1
    if shift < -31:  # too small to represent: flush to zero
        return 0, 0
    return q31, shift


def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """gemmlowp's SaturatingRoundingDoublingHighMul on int32 values held in int64."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    ab = a * b  # |ab| <= 2^62: fits in int64
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    high = _c_div(ab + nudge, 1 << 31)
    return np.where(overflow, INT32_MAX, high)


def rounding_divide_by_pot(x, exponent, ties: str = "away") -> np.ndarray:
    """x / 2^exponent rounded to nearest.

    ties="away": gemmlowp's RoundingDivideByPOT (reference kernels, TFLM).
    ties="up": a plain rounding shift (x + 2^(e−1)) >> e, ties toward +inf, as the SIMD
    rounding shifts of LiteRT's optimized int8 kernels do.
    """
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    if ties == "away":
        threshold = (mask >> 1) + (x < 0)
    elif ties == "up":
        threshold = mask >> 1
    else:
        raise ValueError(f"unknown tie rule {ties!r}")
    return (x >> exponent) + (remainder > threshold)


def saturate_int32(x) -> np.ndarray:
    return np.clip(np.asarray(x, dtype=np.int64), INT32_MIN, INT32_MAX)


def multiply_by_quantized_multiplier(acc, q31, shift, ties: str = "away") -> np.ndarray:
    """TFLite's MultiplyByQuantizedMultiplier (double-rounding build, the default).

    q31 and shift may be scalars or arrays broadcasting against acc (per-channel: last axis).
    A positive shift is applied as a left shift before the high multiply, a negative one as
    a rounding right shift after it.
    """
    acc = np.asarray(acc, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    # The C code shifts an int32 left; it wraps on overflow, which valid models never hit.
    high = saturating_rounding_doubling_high_mul(acc * (np.int64(1) << left), q31)
    return rounding_divide_by_pot(high, right, ties)


def requantize_fp32(acc, multiplier_float32) -> np.ndarray:
    """float32(acc) · float32(m), rounded half to even (lrintf in the default FP mode)."""
    product = np.asarray(acc).astype(np.float32) * np.asarray(multiplier_float32, dtype=np.float32)
    return np.rint(product).astype(np.int64)


def multiplier_double(s_in, s_w, s_out) -> np.ndarray:
    """m = s_in · s_w / s_out in double from float32 scales, as TFLite's Prepare does."""
    s_in = np.float64(np.float32(s_in))
    s_w = np.asarray(s_w, dtype=np.float32).astype(np.float64)
    s_out = np.float64(np.float32(s_out))
    return s_in * s_w / s_out


def multiplier_float32(s_in, s_w, s_out) -> np.ndarray:
    """m = s_in · s_w / s_out evaluated in float32, as XNNPACK's operator setup does."""
    s_in = np.float32(s_in)
    s_w = np.asarray(s_w, dtype=np.float32)
    s_out = np.float32(s_out)
    return (s_in * s_w) / s_out


def quantize_multipliers(real) -> tuple[np.ndarray, np.ndarray]:
    """quantize_multiplier over an array of real multipliers."""
    pairs = [quantize_multiplier(float(r)) for r in np.ravel(real)]
    shape = np.shape(real)
    q31 = np.array([p[0] for p in pairs], dtype=np.int64).reshape(shape)
    shift = np.array([p[1] for p in pairs], dtype=np.int64).reshape(shape)
    return q31, shift


def requantize(
    acc, s_in, s_w, s_out, zp_out: int, qmin: int, qmax: int, family: str = "tflite", ties: str = "away"
) -> np.ndarray:
    """int32 accumulator (scale s_in·s_w[c]) → clamped output integers (scale s_out).

    s_w is a scalar or one scale per output channel (the last axis of acc). `ties` picks
    the tie rule of the final shift in the tflite family (see rounding_divide_by_pot).
    """
    acc = np.asarray(acc, dtype=np.int64)
    if family == "tflite":
        q31, shift = quantize_multipliers(multiplier_double(s_in, s_w, s_out))
        scaled = multiply_by_quantized_multiplier(acc, q31, shift, ties)
    elif family == "fp32":
        scaled = requantize_fp32(acc, multiplier_float32(s_in, s_w, s_out))
    elif family == "htp":
        from edgeconv.quant.htp import requantize_htp

        scaled = requantize_htp(acc, s_in, s_w, s_out)
    else:
        raise ValueError(f"unknown rounding family {family!r}")
    return np.clip(scaled + zp_out, qmin, qmax)


def fma_f32(x, y, z) -> np.ndarray:
    """float32 fused multiply-add x·y + z with one rounding (half to even), as the FMA3
    instruction computes it, for float32 x, y, z where x·y is exact in double (true when one
    factor is an integer below 2^29, e.g. an 8-bit activation).

    The double sum s = x·y + z may itself be rounded; its exact error e comes from Knuth's
    two-sum, and the float32 result is corrected with the exact residual (s − r) + e, ties
    going to the even neighbour.
    """
    p = np.asarray(x, np.float32).astype(np.float64) * np.asarray(y, np.float32).astype(np.float64)
    z = np.asarray(z, np.float32).astype(np.float64)
    s = p + z
    bp = s - z
    err = (p - bp) + (z - (s - bp))  # s + err == p + z exactly
    r = s.astype(np.float32)
    residual = (s - r.astype(np.float64)) + err  # exact: |s − r| is a few double ulps of s
    up = np.nextafter(r, np.float32(np.inf))
    down = np.nextafter(r, np.float32(-np.inf))
    half_up = (up.astype(np.float64) - r.astype(np.float64)) / 2
    half_down = (r.astype(np.float64) - down.astype(np.float64)) / 2
    r_even = (r.view(np.uint32) & 1) == 0
    go_up = (residual > half_up) | ((residual == half_up) & ~r_even)
    go_down = (residual < -half_down) | ((residual == -half_down) & ~r_even)
    return np.where(go_up, up, np.where(go_down, down, r)).astype(np.float32)
