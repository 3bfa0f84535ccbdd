"""Data movement: PAD (with the input zero point) and RESHAPE; no arithmetic."""

from __future__ import annotations

import numpy as np

from edgeconv.quant.int8_ops.common import _as_i64, _to_int8


def pad(x, paddings, x_zp):
    """PAD int8: paddings ((before, after), ...) per axis; fills with the zero point."""
    return _to_int8(np.pad(_as_i64(x), tuple(tuple(p) for p in paddings), constant_values=x_zp))


def reshape(x, shape):
    """RESHAPE: no arithmetic; same scale and zero point."""
    return np.reshape(np.asarray(x, dtype=np.int8), shape)
