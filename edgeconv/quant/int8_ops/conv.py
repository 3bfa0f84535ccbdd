"""Convolutions and fully connected: int32 accumulation, per-channel requantization."""

from __future__ import annotations

import numpy as np

from edgeconv.quant.int8_ops.common import _as_i64, _out_size, _pad_nhwc, _ties, _to_int8, _windows
from edgeconv.quant.rounding import (
    requantize,
)


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
