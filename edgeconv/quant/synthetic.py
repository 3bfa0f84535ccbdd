"""Synthetic input sets for measuring quantization: smooth random images.

`edgeconv build` calibrates on i.i.d. N(0, 1) without --calib (calibrate.synthetic_calibration_set);
smooth images are closer to real photos (correlated pixels and channels, varying contrast) and
show how a quantization behaves on realistic inputs without a data set. Pure numpy.
"""

from __future__ import annotations

import numpy as np


def smooth_images(n: int, shape_hwc: tuple[int, int, int], seed: int) -> np.ndarray:
    """n smooth random images (N, H, W, C) float32, normalized as (x − 0.5) / 0.25 from [0, 1].

    Each image: a luminance field shared by the channels (weight 0.75) plus per-channel fields
    (0.25), all white noise low-pass filtered with a Gaussian of σ ∈ [1, 3] pixels (applied in
    the frequency domain, periodic boundary), then mapped linearly onto [lo, hi] with
    lo ∈ [0, 0.3], hi ∈ [0.7, 1] (contrast varies between images).
    """
    h, w, c = shape_hwc
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal((n, h, w, 1))
    own = rng.standard_normal((n, h, w, c))
    field_ = 0.75 * shared + 0.25 * own
    sigma = rng.uniform(1.0, 3.0, size=(n, 1, 1, 1))
    fy = np.fft.fftfreq(h)[None, :, None, None]
    fx = np.fft.rfftfreq(w)[None, None, :, None]
    transfer = np.exp(-2.0 * np.pi**2 * sigma**2 * (fx**2 + fy**2))
    low = np.fft.irfft2(np.fft.rfft2(field_, axes=(1, 2)) * transfer, s=(h, w), axes=(1, 2))
    mn = low.min(axis=(1, 2, 3), keepdims=True)
    mx = low.max(axis=(1, 2, 3), keepdims=True)
    unit = (low - mn) / np.maximum(mx - mn, 1e-12)
    lo = rng.uniform(0.0, 0.3, size=(n, 1, 1, 1))
    hi = rng.uniform(0.7, 1.0, size=(n, 1, 1, 1))
    img = lo + (hi - lo) * unit
    return ((img - 0.5) / 0.25).astype(np.float32)
