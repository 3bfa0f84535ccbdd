"""Activation ranges from calibration data: run the float model, record each tensor.

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

Engines and streaming. The tensors come from a *layer runner*: a callable that maps a batch
(B, H, W, C) float32 to every tensor's values for that batch ("input" and every layer; any
layout, since ranges pool the values). ``reference_runner`` is the float64 numpy reference;
``edgeconv.backends.float_layers.float_layer_runner`` runs the float ONNX model in ONNX Runtime
with every layer exposed (what `edgeconv build` uses when onnxruntime is installed: ~25x faster
on the 1MB plan; tests/test_calibrate_stream.py checks the two agree). Samples go through in
batches of ``BATCH`` and only per-tensor statistics are kept, so memory does not grow with the
sample count: ``minmax`` needs one pass (running min/max); ``mse`` a second pass that adds up
the histogram on [min, max] (counts are additive, so it equals the pooled computation);
``percentile`` a histogram pass that finds the bins holding the two order statistics numpy's
linear interpolation uses, then a pass that keeps only the values in those bins (refined
again while a bin holds more than ``GATHER_CAP`` values). Batch outputs are kept between
passes while they total under ``CACHE_BYTES``, so small sets run the model once.

Pure numpy; no runtime imports.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeconv.core import reference
from edgeconv.core.errors import InputError
from edgeconv.core.graph import Analysis
from edgeconv.core.ir import INPUT
from edgeconv.core.tensors import check_array_file
from edgeconv.core.weights import Weights

METHODS = ("minmax", "percentile", "mse")
MIN_SAMPLES = 8  # fewer calibration samples than this are refused
DEFAULT_PERCENTILE = 99.99
MSE_GRID = 100  # candidate clipping factors α = k / MSE_GRID, k = 1 … MSE_GRID
MSE_BINS = 2048  # histogram bins per tensor for the mse search
BATCH = 16  # samples per model run (bounds memory; results do not depend on it)
PERCENTILE_BINS = 4096  # histogram bins of the percentile search (see module doc)
GATHER_CAP = 1 << 22  # most values of one tensor kept to select an order statistic exactly
CACHE_BYTES = 256 << 20  # batch outputs kept between passes while they total under this

Range = tuple[float, float]
LayerRunner = Callable[[np.ndarray], dict[str, np.ndarray]]
Progress = Callable[[int], None]  # told how many samples a pass has just finished


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
    check_array_file(path, f"{what} {path}")  # header, dtype, sizes and zip bombs before numpy reads
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
    counts = np.histogram(values.astype(np.float64), bins=bins, range=(lo, hi))[0]
    return _mse_from_histogram(lo, hi, counts, grid)


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


def reference_runner(analysis: Analysis, weights: Weights) -> LayerRunner:
    """Every tensor of a batch through the float64 numpy reference (returned as float32)."""

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        return reference.run(analysis, weights, batch, keep_all=True)

    return run


class _Passes:
    """Batches of a sample set through a runner, pass after pass, each tensor flattened; batch
    outputs are cached while they fit in CACHE_BYTES (see module doc)."""

    def __init__(self, runner: LayerRunner, samples: np.ndarray, names: list[str], progress: Progress | None):
        self.runner, self.samples, self.names, self.progress = runner, samples, names, progress
        self.cache: list[dict[str, np.ndarray]] | None = []
        self.cached_bytes = 0

    def batches(self) -> Iterator[dict[str, np.ndarray]]:
        if self.cache is not None and self.cache and len(self.cache) * BATCH >= self.samples.shape[0]:
            yield from self.cache
            return
        for start in range(0, self.samples.shape[0], BATCH):
            batch = self.samples[start : start + BATCH]
            outputs = self.runner(batch)
            missing = [n for n in self.names if n not in outputs]
            if missing:
                raise ValueError(f"calibration runner returned no tensor {missing[0]!r}")
            flat = {n: np.asarray(outputs[n], dtype=np.float32).reshape(-1) for n in self.names}
            if self.cache is not None:
                self.cached_bytes += sum(v.nbytes for v in flat.values())
                if self.cached_bytes <= CACHE_BYTES:
                    self.cache.append(flat)
                else:
                    self.cache = None
            if self.progress:
                self.progress(batch.shape[0])
            yield flat


def _stream_minmax(passes: _Passes) -> tuple[dict[str, Range], dict[str, int]]:
    """(min, max) and value count of every tensor."""
    lo = dict.fromkeys(passes.names, np.inf)
    hi = dict.fromkeys(passes.names, -np.inf)
    size = dict.fromkeys(passes.names, 0)
    for flat in passes.batches():
        for n, v in flat.items():
            lo[n] = min(lo[n], float(v.min()))
            hi[n] = max(hi[n], float(v.max()))
            size[n] += v.size
    return {n: (lo[n], hi[n]) for n in passes.names}, size


def _stream_histograms(passes: _Passes, bounds: dict[str, Range], bins: int) -> dict[str, np.ndarray]:
    counts = {n: np.zeros(bins, dtype=np.int64) for n in passes.names}
    for flat in passes.batches():
        for n, v in flat.items():
            lo, hi = bounds[n]
            if hi > lo:
                counts[n] += np.histogram(v.astype(np.float64), bins=bins, range=(lo, hi))[0]
    return counts


def _mse_from_histogram(lo: float, hi: float, counts: np.ndarray, grid: int = MSE_GRID) -> Range:
    """mse_range's search from its histogram (the same arithmetic, counts given)."""
    if hi - lo <= 0:
        return (lo, hi)
    edges = np.histogram_bin_edges(np.empty(0), bins=counts.size, range=(lo, hi))
    keep = counts > 0
    centres = ((edges[:-1] + edges[1:]) / 2.0)[keep]
    weight = counts[keep].astype(np.float64)
    alphas = np.arange(grid, 0, -1, dtype=np.float64) / grid  # 1, …, 1/grid (larger first)
    scale, zp = _int8_params(alphas * lo, alphas * hi)
    q = np.clip(np.rint(centres[None, :] / scale[:, None]) + zp[:, None], -128, 127)
    err = ((centres[None, :] - (q - zp[:, None]) * scale[:, None]) ** 2 * weight).sum(axis=1) / weight.sum()
    best = int(np.argmin(err))  # first minimum: the larger α
    return (float(alphas[best] * lo), float(alphas[best] * hi))


def _lerp(a: float, b: float, t: float) -> float:
    """numpy's linear interpolation between neighbouring order statistics (numpy's _lerp)."""
    diff = b - a
    return float(b - diff * (1.0 - t)) if t >= 0.5 else float(a + diff * t)


def _splittable(lo: float, hi: float) -> bool:
    """Whether [lo, hi] holds enough distinct float32 values for PERCENTILE_BINS finite bins."""
    ulp = float(max(np.spacing(np.float32(abs(lo))), np.spacing(np.float32(abs(hi)))))
    return hi - lo > 4 * PERCENTILE_BINS * ulp


def _stream_order_stats(passes: _Passes, bounds: dict[str, Range], wanted: dict[str, list[int]]) -> dict[str, dict]:
    """The k-th smallest values (0-based) of each tensor, exactly, in bounded memory: a
    histogram pass narrows each k to one bin, a gather pass keeps the distinct values in that
    bin with their counts (a bin over GATHER_CAP values is narrowed by another histogram pass
    on it while it is wide enough to split; a narrower one holds few distinct float32 values)."""
    found: dict[str, dict[int, float]] = {n: {} for n in passes.names}
    # per (tensor, k): the window [lo, hi] holding the k-th value and the count of values below lo
    todo = {(n, k): (bounds[n][0], bounds[n][1], 0) for n in passes.names for k in wanted[n]}
    for (n, k), (lo, hi, _) in list(todo.items()):
        if hi <= lo:  # every value is lo
            found[n][k] = lo
            del todo[(n, k)]
    while todo:
        hists: dict[tuple[str, int], np.ndarray] = {key: np.zeros(PERCENTILE_BINS, np.int64) for key in todo}
        for flat in passes.batches():
            for (n, k), (lo, hi, _) in todo.items():
                v = flat[n].astype(np.float64)  # compare in float64, as np.histogram bins
                hists[(n, k)] += np.histogram(v[(v >= lo) & (v <= hi)], bins=PERCENTILE_BINS, range=(lo, hi))[0]
        gather: dict[tuple[str, int], tuple[float, float, bool, int]] = {}
        for key, (lo, hi, below) in list(todo.items()):
            counts = hists[key]
            edges = np.histogram_bin_edges(np.empty(0), bins=PERCENTILE_BINS, range=(lo, hi))
            cum = np.cumsum(counts)
            b = int(np.searchsorted(cum, key[1] - below, side="right"))
            b_lo, b_hi = float(edges[b]), float(edges[b + 1])
            last = b == PERCENTILE_BINS - 1
            below_bin = below + (int(cum[b - 1]) if b else 0)
            narrowed = (b_lo, b_hi if last else float(np.nextafter(b_hi, -np.inf)))
            del todo[key]
            if counts[b] > GATHER_CAP and _splittable(*narrowed):
                todo[key] = (*narrowed, below_bin)
            else:
                gather[key] = (b_lo, b_hi, last, below_bin)
        if not gather:
            continue
        kept: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {
            key: (np.empty(0), np.empty(0, np.int64)) for key in gather
        }
        for flat in passes.batches():
            for (n, k), (b_lo, b_hi, last, _) in gather.items():
                v = flat[n].astype(np.float64)
                inside = v[(v >= b_lo) & ((v <= b_hi) if last else (v < b_hi))]
                values, counts = kept[(n, k)]
                merged, inverse = np.unique(np.concatenate([values, inside]), return_inverse=True)
                weights = np.concatenate([counts, np.ones(inside.size, np.int64)])
                kept[(n, k)] = (merged, np.bincount(inverse, weights=weights, minlength=merged.size).astype(np.int64))
        for (n, k), (_, _, _, below_bin) in gather.items():
            values, counts = kept[(n, k)]
            found[n][k] = float(values[int(np.searchsorted(np.cumsum(counts), k - below_bin, side="right"))])
    return found


def _stream_percentiles(passes: _Passes, bounds: dict[str, Range], total: dict[str, int], p: float) -> dict[str, Range]:
    q = np.true_divide(np.array([100.0 - p, p], dtype=np.float64), 100.0)
    plan: dict[str, list[tuple[int, int, float]]] = {}
    for n in passes.names:
        virtual = (total[n] - 1) * q
        prev = np.floor(virtual)
        gamma = virtual - prev
        plan[n] = [(int(pi), min(int(pi) + 1, total[n] - 1), float(g)) for pi, g in zip(prev, gamma)]
    wanted = {n: sorted({i for a, b, _ in plan[n] for i in (a, b)}) for n in passes.names}
    stats = _stream_order_stats(passes, bounds, wanted)
    out: dict[str, Range] = {}
    for n in passes.names:
        (a0, b0, g0), (a1, b1, g1) = plan[n]
        s = stats[n]
        out[n] = (_lerp(s[a0], s[b0], g0), _lerp(s[a1], s[b1], g1))
    return out


def stream_ranges(
    runner: LayerRunner,
    samples: np.ndarray,
    names: list[str],
    method: str = "minmax",
    percentile: float = DEFAULT_PERCENTILE,
    progress: Progress | None = None,
) -> dict[str, Range]:
    """ranges_from_values' result for the tensors a runner produces on the samples, computed
    batch by batch (see module doc): memory is bounded by BATCH, not by the sample count."""
    _check_method(method, percentile)
    passes = _Passes(runner, samples, names, progress)
    bounds, total = _stream_minmax(passes)
    if method == "minmax":
        return bounds
    if method == "mse":
        counts = _stream_histograms(passes, bounds, MSE_BINS)
        return {n: _mse_from_histogram(*bounds[n], counts[n]) for n in names}
    return _stream_percentiles(passes, bounds, total, float(percentile))


def calibrate(
    analysis: Analysis,
    weights: Weights,
    samples: np.ndarray,
    method: str = "minmax",
    percentile: float = DEFAULT_PERCENTILE,
    source: str = "calibration data",
    min_samples: int = MIN_SAMPLES,
    runner: LayerRunner | None = None,
    progress: Progress | None = None,
    engine: str | None = None,
) -> Calibration:
    """Ranges of "input" and every layer output over the samples (N, H, W, C) float32.

    ``runner`` computes the tensors (default: the numpy reference, reference_runner); the
    samples stream through it in batches (stream_ranges); ``progress(n)`` hears of each batch;
    ``engine`` (what computed the tensors) is recorded in the info when given.
    """
    _check_method(method, percentile)
    samples = check_samples(samples, analysis, source, min_samples)
    names = [INPUT] + [layer.name for layer in analysis.model.layers]
    ranges = stream_ranges(runner or reference_runner(analysis, weights), samples, names, method, percentile, progress)
    info: dict = {"method": method, "samples": int(samples.shape[0]), "source": source}
    if method == "percentile":
        info["percentile"] = float(percentile)
    if method == "mse":
        info.update(grid=MSE_GRID, bins=MSE_BINS)
    if engine:
        info["engine"] = engine
    return Calibration(ranges, info)
