"""Activation ranges from calibration data: run the numpy float reference, record each tensor.

A range is recorded for the model input ("input") and for every layer output (after the
layer's fused activation, as reference.run returns it). Calibration samples are float32
arrays of shape (N, H, W, C): the NHWC layout of the reference, for an IR input W×H×C.

Methods (all deterministic; values of all samples of a tensor are pooled):

- ``minmax``:     (min, max) of the values.
- ``percentile``: (P_{100−p}, P_p) of the values, e.g. p = 99.99 drops 0.01 % of the values
  at each tail (symmetric tails; numpy's default linear interpolation between order statistics).
- ``mse``:        the clipping range, among a grid of candidates, whose int8 quantization error
  is least. Candidates shrink the min/max range towards 0 by a factor α on both ends:
  [α·min, α·max] for α = 1, 1 − 1/G, …, 1/G with G = ``MSE_GRID`` (α = 1 is the min/max range,
  so ``mse`` never does worse than ``minmax`` on the binned data). Each candidate is widened to
  include 0 and turned into int8 asymmetric parameters exactly as quantize.activation_quant
  does (scale = (hi − lo)/255, zero point rounded); the error is the mean of (x − x̂)² where
  x̂ = dequantize(quantize(x)) with clipping, over the values binned into a ``MSE_BINS``-bin
  histogram on [min, max] (each bin's values are represented by the bin centre, weighted by
  its count). The smallest error wins; ties go to the larger α.

Pure numpy; no runtime imports.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeconv.core import reference
from edgeconv.core.errors import InputError
from edgeconv.core.graph import Analysis
from edgeconv.core.ir import INPUT
from edgeconv.core.weights import Weights

METHODS = ("minmax", "percentile", "mse")
MIN_SAMPLES = 8  # fewer calibration samples than this are refused
DEFAULT_PERCENTILE = 99.99
MSE_GRID = 100  # candidate clipping factors α = k / MSE_GRID, k = 1 … MSE_GRID
MSE_BINS = 2048  # histogram bins per tensor for the mse search
BATCH = 16  # samples per reference run (bounds memory; results do not depend on it)

Range = tuple[float, float]


@dataclass(frozen=True)
class Calibration:
    """Ranges per tensor ("input" and every layer name, in model order) and how they were found.

    ``info`` is what QuantParams.calibration records: method, percentile (if any), sample
    count and data source.
    """

    ranges: dict[str, Range]
    info: dict = field(default_factory=dict)


def expected_sample_shape(analysis: Analysis) -> tuple[int, int, int]:
    """(H, W, C) of one calibration sample for the model's W×H×C input."""
    spec = analysis.model.input
    return (spec.height, spec.width, spec.channels)


def check_samples(
    x: np.ndarray, analysis: Analysis, source: str = "calibration data", min_samples: int = MIN_SAMPLES
) -> np.ndarray:
    """Raise InputError unless x is float32 (N ≥ min_samples, H, W, C) and finite; return x."""
    h, w, c = expected_sample_shape(analysis)
    spec = analysis.model.input
    layout = f"(N, {h}, {w}, {c}) = N×H×W×C float32 for the {spec.width}x{spec.height}x{spec.channels} (W×H×C) input"
    x = np.asarray(x)
    if x.ndim != 4 or tuple(x.shape[1:]) != (h, w, c):
        hint = ""
        if x.ndim == 3 and tuple(x.shape) == (h, w, c):
            hint = "; a single sample needs a leading batch axis (x[None])"
        elif x.ndim == 4 and tuple(x.shape[1:]) == (c, h, w):
            hint = "; this looks like NCHW, transpose with x.transpose(0, 2, 3, 1)"
        raise InputError(f"{source}: expected shape {layout}, got {tuple(x.shape)}{hint}")
    if x.dtype != np.float32:
        raise InputError(
            f"{source}: expected dtype float32, got {x.dtype} "
            f"(convert with x.astype(np.float32) if the values are real-valued inputs)"
        )
    if x.shape[0] < min_samples:
        raise InputError(f"{source}: expected at least {min_samples} samples, got {x.shape[0]}")
    finite = np.isfinite(x)
    if not finite.all():
        n, i, j, k = (int(v) for v in np.argwhere(~finite)[0])
        bad = int((~finite).sum())
        raise InputError(
            f"{source}: sample {n} has {_describe(x[n, i, j, k])} at (h={i}, w={j}, c={k}); "
            f"expected finite values ({bad} non-finite value{'s' if bad != 1 else ''} in all)"
        )
    return x


def _describe(value: np.floating) -> str:
    if np.isnan(value):
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"


def synthetic_calibration_set(analysis: Analysis, n: int = 32, seed: int = 0) -> np.ndarray:
    """n samples of i.i.d. standard normal values N(0, 1), float32, shape (n, H, W, C).

    Drawn with numpy's default_rng(seed).standard_normal, so the same seed gives the same set.
    A stand-in when no real data is given: it exercises every channel, but ranges found on
    it are not those of real inputs.
    """
    if n < 1:
        raise InputError(f"synthetic calibration set: expected n >= 1 samples, got {n}")
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n,) + expected_sample_shape(analysis)).astype(np.float32)


def load_calibration(
    path: str | Path, analysis: Analysis, min_samples: int = MIN_SAMPLES, what: str = "calibration"
) -> np.ndarray:
    """Read calibration samples from .npy (N×H×W×C float32) or .npz (one array, or one per
    model input keyed by the input's name, i.e. "input") and check them."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz"):
        raise InputError(f"{what} {path}: expected a .npy or .npz file, got {suffix or 'no extension'!r}")
    if not path.is_file():
        raise InputError(f"{what} {path}: file not found")
    try:
        if suffix == ".npy":
            x = np.load(path, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as data:
                keys = list(data.files)
                if len(keys) == 1:  # one array under any key; the model has one input, "input"
                    x = data[keys[0]]
                else:
                    raise InputError(
                        f"{what} {path}: expected one array, or one per model input "
                        f"(keyed {INPUT!r}), got {len(keys)} arrays" + (f": {', '.join(keys)}" if keys else "")
                    )
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise InputError(f"{what} {path}: could not read it as {suffix} ({err})") from None
    return check_samples(x, analysis, f"{what} {path}", min_samples)


def tensor_values(analysis: Analysis, weights: Weights, samples: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor's values over all samples, flattened to 1-D float32 (input first, then layers)."""
    chunks: dict[str, list[np.ndarray]] = {}
    for start in range(0, samples.shape[0], BATCH):
        outputs = reference.run(analysis, weights, samples[start : start + BATCH], keep_all=True)
        for name, value in outputs.items():
            chunks.setdefault(name, []).append(value.reshape(-1))
    order = [INPUT] + [layer.name for layer in analysis.model.layers]
    return {name: np.concatenate(chunks[name]) for name in order}


def minmax_range(values: np.ndarray) -> Range:
    return (float(values.min()), float(values.max()))


def percentile_range(values: np.ndarray, percentile: float) -> Range:
    lo, hi = np.percentile(values.astype(np.float64), [100.0 - percentile, percentile])
    return (float(lo), float(hi))


def _int8_params(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized int8 asymmetric scale and zero point of ranges [lo, hi] (0 included), as in
    quantize.activation_quant."""
    lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
    span = hi - lo
    scale = np.where(span > 0, (span / 255.0).astype(np.float32).astype(np.float64), 1.0)
    zp = np.clip(np.rint(-128.0 - lo / scale), -128, 127)
    return scale, zp


def mse_range(values: np.ndarray, grid: int = MSE_GRID, bins: int = MSE_BINS) -> Range:
    """The clipping range [α·min, α·max] with the least int8 quantization MSE (see module doc)."""
    lo, hi = minmax_range(values)
    if hi - lo <= 0:
        return (lo, hi)
    counts, edges = np.histogram(values.astype(np.float64), bins=bins, range=(lo, hi))
    keep = counts > 0
    centres = ((edges[:-1] + edges[1:]) / 2.0)[keep]
    weight = counts[keep].astype(np.float64)
    alphas = np.arange(grid, 0, -1, dtype=np.float64) / grid  # 1, …, 1/grid (larger first)
    scale, zp = _int8_params(alphas * lo, alphas * hi)
    q = np.clip(np.rint(centres[None, :] / scale[:, None]) + zp[:, None], -128, 127)
    err = ((centres[None, :] - (q - zp[:, None]) * scale[:, None]) ** 2 * weight).sum(axis=1) / weight.sum()
    best = int(np.argmin(err))  # first minimum: the larger α
    return (float(alphas[best] * lo), float(alphas[best] * hi))


def ranges_from_values(
    values: dict[str, np.ndarray], method: str = "minmax", percentile: float = DEFAULT_PERCENTILE
) -> dict[str, Range]:
    """Apply one method to each tensor's pooled values (as tensor_values returns them)."""
    _check_method(method, percentile)
    if method == "minmax":
        return {name: minmax_range(v) for name, v in values.items()}
    if method == "percentile":
        return {name: percentile_range(v, float(percentile)) for name, v in values.items()}
    return {name: mse_range(v) for name, v in values.items()}


def _check_method(method: str, percentile: float) -> None:
    if method not in METHODS:
        raise InputError(f"calibration method {method!r}: expected one of {', '.join(METHODS)}")
    if method == "percentile" and not (50.0 < float(percentile) <= 100.0):
        raise InputError(f"calibration percentile: expected a value in (50, 100], e.g. 99.99, got {percentile}")


def calibrate(
    analysis: Analysis,
    weights: Weights,
    samples: np.ndarray,
    method: str = "minmax",
    percentile: float = DEFAULT_PERCENTILE,
    source: str = "calibration data",
    min_samples: int = MIN_SAMPLES,
) -> Calibration:
    """Ranges of "input" and every layer output over the samples (N, H, W, C) float32."""
    _check_method(method, percentile)
    samples = check_samples(samples, analysis, source, min_samples)
    ranges = ranges_from_values(tensor_values(analysis, weights, samples), method, percentile)
    info: dict = {"method": method, "samples": int(samples.shape[0]), "source": source}
    if method == "percentile":
        info["percentile"] = float(percentile)
    if method == "mse":
        info.update(grid=MSE_GRID, bins=MSE_BINS)
    return Calibration(ranges, info)
