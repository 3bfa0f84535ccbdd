"""Calibration: ranges per tensor, the three methods, the synthetic set and file loading errors."""

from __future__ import annotations

import numpy as np
import pytest

from edgeconv.core.errors import InputError
from edgeconv.core.graph import analyze
from edgeconv.core.ir import INPUT, Activation
from edgeconv.core.weights import init_weights
from edgeconv.plan.recipes import load_recipe, recipe_names
from edgeconv.quant import calibrate as cal

N_CALIB = 8


@pytest.fixture(scope="module")
def resnet8():
    analysis = analyze(load_recipe("resnet8"))
    return analysis, init_weights(analysis, seed=0)


@pytest.fixture(scope="module", params=recipe_names())
def calibrated(request):
    analysis = analyze(load_recipe(request.param))
    weights = init_weights(analysis, seed=0)
    samples = cal.synthetic_calibration_set(analysis, N_CALIB, seed=0)
    values = cal.tensor_values(analysis, weights, samples)
    return analysis, samples, values, cal.calibrate(analysis, weights, samples, "minmax")


def _quant_mse(values: np.ndarray, lo: float, hi: float) -> float:
    """Exact int8 asymmetric quantization MSE of values for the range [lo, hi] (0 included)."""
    scale, zp = cal._int8_params(np.array([lo]), np.array([hi]))
    q = np.clip(np.rint(values / scale[0]) + zp[0], -128, 127)
    return float(np.mean((values - (q - zp[0]) * scale[0]) ** 2))


# ---- synthetic set -------------------------------------------------------------------------


def test_synthetic_set_is_seeded_standard_normal(resnet8):
    analysis, _ = resnet8
    a = cal.synthetic_calibration_set(analysis, 16, seed=3)
    assert a.shape == (16, 32, 32, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, cal.synthetic_calibration_set(analysis, 16, seed=3))
    assert not np.array_equal(a, cal.synthetic_calibration_set(analysis, 16, seed=4))
    assert abs(float(a.mean())) < 0.05 and abs(float(a.std()) - 1.0) < 0.05


def test_synthetic_set_uses_hwc_of_the_wxhxc_input():
    analysis = analyze(load_recipe("ds_cnn"))  # input 49x10x1 (W×H×C)
    assert cal.synthetic_calibration_set(analysis, 8, seed=0).shape == (8, 10, 49, 1)


# ---- ranges --------------------------------------------------------------------------------


def test_ranges_cover_input_and_every_layer_in_order(calibrated):
    analysis, samples, values, result = calibrated
    assert result.ranges == cal.ranges_from_values(values, "minmax")
    assert list(result.ranges) == [INPUT] + [layer.name for layer in analysis.model.layers]
    assert result.ranges[INPUT] == (float(samples.min()), float(samples.max()))
    for name, (lo, hi) in result.ranges.items():
        assert lo <= hi, name
    for layer in analysis.model.layers:
        if getattr(layer, "activation", Activation.NONE) is not Activation.NONE:
            assert result.ranges[layer.name][0] >= 0.0, layer.name
        if layer.op == "softmax":
            lo, hi = result.ranges[layer.name]
            assert lo >= 0.0 and hi <= 1.0
    assert result.info == {"method": "minmax", "samples": N_CALIB, "source": "calibration data"}


def test_percentile_ranges_lie_inside_minmax(calibrated):
    _, _, values, minmax = calibrated
    pct = cal.ranges_from_values(values, "percentile", percentile=99.9)
    for name, (lo, hi) in pct.items():
        mlo, mhi = minmax.ranges[name]
        assert mlo <= lo <= hi <= mhi, name
    assert cal.ranges_from_values(values, "percentile", percentile=100.0) == minmax.ranges


def test_mse_ranges_lie_inside_minmax_and_do_not_lose(calibrated):
    _, _, values, minmax = calibrated
    mse = cal.ranges_from_values(values, "mse")
    for name, (lo, hi) in mse.items():
        mlo, mhi = minmax.ranges[name]
        assert mlo <= lo <= hi <= mhi, name
        # the histogram search may misjudge by a hair; it must not be clearly worse than min/max
        assert _quant_mse(values[name], lo, hi) <= _quant_mse(values[name], mlo, mhi) * 1.05 + 1e-12, name


def test_mse_clips_outliers():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.standard_normal(100_000), [60.0, -55.0]]).astype(np.float32)
    lo, hi = cal.mse_range(values)
    assert -55.0 < lo < -3.0 and 3.0 < hi < 60.0
    assert _quant_mse(values, lo, hi) < _quant_mse(values, -55.0, 60.0)


def test_percentile_is_symmetric_in_the_tails():
    values = np.arange(10_001, dtype=np.float32) - 5000.0  # -5000 … 5000
    assert cal.percentile_range(values, 99.0) == (-4900.0, 4900.0)


def test_calibration_is_deterministic():
    analysis = analyze(load_recipe("ds_cnn"))
    weights = init_weights(analysis, seed=0)
    samples = cal.synthetic_calibration_set(analysis, N_CALIB, seed=1)
    first = cal.calibrate(analysis, weights, samples, "percentile", percentile=99.9)
    assert first == cal.calibrate(analysis, weights, samples.copy(), "percentile", percentile=99.9)
    assert first.info == {"method": "percentile", "samples": N_CALIB, "source": "calibration data", "percentile": 99.9}
    values = cal.tensor_values(analysis, weights, samples)
    assert cal.ranges_from_values(values, "mse") == cal.ranges_from_values(values, "mse")


def test_unknown_method_and_bad_percentile(resnet8):
    analysis, weights = resnet8
    samples = cal.synthetic_calibration_set(analysis, N_CALIB, seed=0)
    with pytest.raises(InputError, match="expected one of minmax, percentile, mse"):
        cal.calibrate(analysis, weights, samples, "kl")
    with pytest.raises(InputError, match=r"expected a value in \(50, 100\]"):
        cal.calibrate(analysis, weights, samples, "percentile", percentile=120)


# ---- loading and checking calibration files ------------------------------------------------


def test_load_npy_and_npz(resnet8, tmp_path):
    analysis, _ = resnet8
    x = cal.synthetic_calibration_set(analysis, N_CALIB, seed=0)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "any_key.npz", images=x)
    np.savez(tmp_path / "keyed.npz", input=x)
    for name in ("x.npy", "any_key.npz", "keyed.npz"):
        np.testing.assert_array_equal(cal.load_calibration(tmp_path / name, analysis), x)


def _bad(analysis, tmp_path, array, match, name="x.npy"):
    path = tmp_path / name
    np.save(path, array)
    with pytest.raises(InputError, match=match) as err:
        cal.load_calibration(path, analysis)
    assert str(path) in str(err.value)
    return str(err.value)


def test_wrong_shape_says_expected_layout(resnet8, tmp_path):
    analysis, _ = resnet8
    msg = _bad(analysis, tmp_path, np.zeros((8, 32, 32), np.float32), r"expected shape \(N, 32, 32, 3\)")
    assert "got (8, 32, 32)" in msg and "N×H×W×C float32" in msg
    _bad(analysis, tmp_path, np.zeros((8, 3, 32, 32), np.float32), "looks like NCHW")
    _bad(analysis, tmp_path, np.zeros((32, 32, 3), np.float32), "leading batch axis")


def test_wrong_dtype(resnet8, tmp_path):
    analysis, _ = resnet8
    _bad(analysis, tmp_path, np.zeros((8, 32, 32, 3), np.float64), "expected dtype float32, got float64")
    _bad(analysis, tmp_path, np.zeros((8, 32, 32, 3), np.uint8), "expected dtype float32, got uint8")


def test_too_few_samples_says_the_minimum(resnet8, tmp_path):
    analysis, _ = resnet8
    _bad(
        analysis, tmp_path, np.zeros((3, 32, 32, 3), np.float32), f"expected at least {cal.MIN_SAMPLES} samples, got 3"
    )


def test_nan_and_inf_say_sample_and_position(resnet8, tmp_path):
    analysis, _ = resnet8
    x = np.zeros((8, 32, 32, 3), np.float32)
    x[5, 2, 7, 1] = np.nan
    x[6, 0, 0, 0] = np.nan
    _bad(analysis, tmp_path, x, r"sample 5 has NaN at \(h=2, w=7, c=1\).*2 non-finite values")
    y = np.zeros((8, 32, 32, 3), np.float32)
    y[0, 31, 0, 2] = -np.inf
    _bad(analysis, tmp_path, y, r"sample 0 has -Inf at \(h=31, w=0, c=2\)")


def test_npz_with_several_arrays(resnet8, tmp_path):
    analysis, _ = resnet8
    x = cal.synthetic_calibration_set(analysis, N_CALIB, seed=0)
    np.savez(tmp_path / "two.npz", input=x, labels=np.zeros(8))
    with pytest.raises(InputError, match=r"expected one array, or one per model input .*got 2 arrays: input, labels"):
        cal.load_calibration(tmp_path / "two.npz", analysis)


def test_unreadable_files(resnet8, tmp_path):
    analysis, _ = resnet8
    with pytest.raises(InputError, match="file not found"):
        cal.load_calibration(tmp_path / "missing.npy", analysis)
    (tmp_path / "x.csv").write_text("1,2,3")
    with pytest.raises(InputError, match=r"expected a \.npy or \.npz file, got '\.csv'"):
        cal.load_calibration(tmp_path / "x.csv", analysis)
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match=r"could not read it as \.npz"):
        cal.load_calibration(tmp_path / "broken.npz", analysis)


def test_calibrate_checks_samples_given_in_memory(resnet8):
    analysis, weights = resnet8
    with pytest.raises(InputError, match=r"calibration data: expected shape \(N, 32, 32, 3\)"):
        cal.calibrate(analysis, weights, np.zeros((8, 10, 10, 3), np.float32))
