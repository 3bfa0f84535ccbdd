"""Integer helpers shared by the int8 golden kernels."""

from __future__ import annotations

import numpy as np


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
