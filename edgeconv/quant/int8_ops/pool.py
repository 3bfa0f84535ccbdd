"""Pooling and reductions: max pool, average pool, MEAN over H, W."""

from __future__ import annotations

import math

import numpy as np

from edgeconv.quant.int8_ops.common import _as_i64, _out_size, _pad_nhwc, _to_int8, _windows
from edgeconv.quant.rounding import (
    _c_div,
    multiplier_double,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
)


def _pool_windows(x, filter_hw, stride, pads):
    """(values, valid) per tap; padded positions are marked invalid, not given a value."""
    _n, h, w, _c = np.shape(x)
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
    # a tap outside the image never wins: it gets a value below every int8
    out = np.max([np.where(m, v, -(1 << 40)) for v, m in taps], axis=0)
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
    total = np.sum([np.where(m, v, 0) for v, m in taps], axis=0)
    count = np.sum([np.broadcast_to(m, v.shape).astype(np.int64) for v, m in taps], axis=0)
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
      is applied to the raw sum, plus the bias zp_out − round(zp_in·s_in/s_out) (float32, ties
      away from zero). The channels run 16 at a time through the NEON path (NEON_2_SSE on
      x86), whose rounding shift takes ties toward +inf; the last C mod 16 channels run the
      scalar MultiplyByQuantizedMultiplier, ties away from zero (one thread: LiteRT splits the
      channels across threads otherwise). Measured: a 56-channel mean on LiteRT 2.3.0, 4 of 224
      outputs off by 1 with ties toward +inf everywhere, 0 with this split.
    family="fp32" (XNNPACK): see _mean_fp32.
    """
    x = _as_i64(x)
    _n, h, w, _c = x.shape
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
        total = x.sum(axis=(1, 2), keepdims=True)
        simd = _c // 16 * 16
        acc = np.concatenate(
            [
                multiply_by_quantized_multiplier(total[..., :simd], q31, shift, "up"),
                multiply_by_quantized_multiplier(total[..., simd:], q31, shift, "away"),
            ],
            axis=-1,
        )
        return _to_int8(np.clip(acc + bias, -128, 127))
    raise ValueError(f"unknown mean kernel {kernel!r}")


def _mean_fp32(x, x_zp, s_in, s_out, zp_out):
    """XNNPACK qs8 mean: the raw int32 sum (zero point not removed) times
    float32(s_in/(s_out·n)), plus the float32 bias zp_out − zp_in·s_in/s_out, rounded half to
    even. The zero point entering after the scaling shows at ties with equal in/out scales."""
    _n, h, w, _c = x.shape
    s_in32, s_out32 = np.float32(s_in), np.float32(s_out)
    scale = np.float32(s_in32 / (s_out32 * np.float32(h * w)))
    bias = np.float32(np.float32(zp_out) - np.float32(np.float32(x_zp) * (s_in32 / s_out32)))
    raw = x.sum(axis=(1, 2), keepdims=True).astype(np.float32)
    out = np.rint(raw * scale + bias)
    return _to_int8(np.clip(out, -128, 127))
