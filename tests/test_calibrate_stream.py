"""Streamed calibration: equal to the pooled computation, memory bounded by the batch, and the
ONNX Runtime engine of `edgeconv build` agreeing with the numpy reference."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from edgeconv.core.graph import analyze
from edgeconv.core.ir import INPUT
from edgeconv.core.weights import init_weights
from edgeconv.plan.recipes import load_recipe, recipe_names
from edgeconv.quant import calibrate as cal

NAMES = [INPUT, "relu", "steps", "flat"]


def fake_runner(batch: np.ndarray) -> dict[str, np.ndarray]:
    """Tensors with the awkward shapes of real ones: half zeros (ReLU), many ties, a constant."""
    return {
        INPUT: batch,
        "relu": np.maximum(batch * 3.0, 0.0),
        "steps": np.round(batch * 4.0) / 4.0,
        "flat": np.full(batch.shape, 0.5, np.float32),
    }


def pooled(samples: np.ndarray) -> dict[str, np.ndarray]:
    out = fake_runner(samples)
    return {n: out[n].reshape(-1) for n in NAMES}


@pytest.fixture(scope="module")
def samples():
    return np.random.default_rng(3).standard_normal((40, 6, 5, 3)).astype(np.float32)


@pytest.mark.parametrize("method", ["minmax", "mse", "percentile"])
def test_streamed_equals_pooled(samples, method):
    expected = cal.ranges_from_values(pooled(samples), method, percentile=99.0)
    assert cal.stream_ranges(fake_runner, samples, NAMES, method, percentile=99.0) == expected


@pytest.mark.parametrize("percentile", [99.0, 99.99, 100.0, 75.0])
def test_percentile_refines_crowded_bins_exactly(samples, monkeypatch, percentile):
    # a few bins and a tiny gather cap force the narrowing passes on every tensor
    monkeypatch.setattr(cal, "PERCENTILE_BINS", 4)
    monkeypatch.setattr(cal, "GATHER_CAP", 7)
    monkeypatch.setattr(cal, "CACHE_BYTES", 0)  # and every pass re-runs the model
    expected = cal.ranges_from_values(pooled(samples), "percentile", percentile=percentile)
    assert cal.stream_ranges(fake_runner, samples, NAMES, "percentile", percentile=percentile) == expected


def _peak_bytes(n: int, method: str) -> int:
    x = np.random.default_rng(0).standard_normal((n, 32, 32, 8)).astype(np.float32)  # 32 KiB a sample
    tracemalloc.start()
    tracemalloc.reset_peak()
    cal.stream_ranges(fake_runner, x, NAMES, method, percentile=99.9)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_memory_does_not_grow_with_the_sample_count(monkeypatch, method):
    monkeypatch.setattr(cal, "CACHE_BYTES", 0)
    small, large = _peak_bytes(32, method), _peak_bytes(256, method)  # 8x the samples
    assert large < 1.3 * small, (small, large)
    # and bounded by a few batches of tensors (4 tensors x 16 samples x 32 KiB = 2 MiB a batch)
    assert large < 6 * 4 * cal.BATCH * 32 * 32 * 8 * 4


@pytest.mark.parametrize("recipe", recipe_names())
def test_onnxruntime_engine_agrees_with_the_numpy_reference(recipe):
    from edgeconv.backends.float_layers import float_layer_runner

    analysis = analyze(load_recipe(recipe))
    weights = init_weights(analysis, seed=0)
    x = cal.synthetic_calibration_set(analysis, 16, seed=0)
    runner = float_layer_runner(analysis, weights)
    assert runner is not None, "onnxruntime is not installed (pip install 'edgeconv[cpu]')"
    for method in ("minmax", "mse"):
        ort = cal.calibrate(analysis, weights, x, method, runner=runner).ranges
        ref = cal.calibrate(analysis, weights, x, method).ranges
        assert list(ort) == list(ref)
        for name in ref:
            span = ref[name][1] - ref[name][0]
            assert np.allclose(ort[name], ref[name], rtol=0, atol=1e-5 * span + 1e-7), (
                method,
                name,
                ort[name],
                ref[name],
            )


def test_build_records_the_engine(tmp_path):
    import json

    from edgeconv.artifacts.build import BuildRequest, run_build

    run_build(BuildRequest(recipe="ds_cnn", calib_samples=8, out=str(tmp_path / "b")))
    info = json.loads((tmp_path / "b" / "quant.json").read_text())["calibration"]
    assert info["engine"].startswith("onnxruntime float32")
