"""The CLI contract: outputs, JSON, exit codes and one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from edgeconv.cli import cli
from edgeconv.plan.objective import OBJECTIVE

ALL_FILES = (
    "model.onnx",
    "model.int8.onnx",
    "model.int8.tflite",
    "model.float.tflite",
    "quant.json",
    "weights.npz",
    "plan.json",
    "report.md",
)


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


def assert_one_line_error(result, code=2):
    """Exit code, and the error as one line, last on stderr (after any progress lines)."""
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("edgeconv: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_layer_worked_example_text():
    r = invoke("layer", "--input", "32x32x3", "--filters", "10", "--kernel", "5", "--stride", "1", "--pad", "2")
    assert r.exit_code == 0
    assert "output 32x32x10" in r.stdout
    assert "= 76" in r.stdout and "= 760" in r.stdout
    assert "(32 − 5 + 2·2)/1 + 1 = 32" in r.stdout


def test_layer_json_is_one_document():
    r = invoke("layer", "--input", "56x56x64", "--filters", "32", "--kernel", "1", "--json")
    doc = json.loads(r.stdout)
    assert doc["input"] == [56, 56, 64] and doc["output"] == [56, 56, 32]
    assert doc["params"] == 64 * 32 + 32 and doc["params_per_filter"] == 65
    assert doc["macs"] == 56 * 56 * 32 * 64


def test_layer_same_padding():
    doc = json.loads(
        invoke("layer", "--input", "32x32x3", "--filters", "16", "--stride", "2", "--pad", "same", "--json").stdout
    )
    assert doc["output"] == [16, 16, 16] and doc["pads"] == {"top": 0, "left": 0, "bottom": 1, "right": 1}


@pytest.mark.parametrize(
    "args,needle",
    [
        (["layer", "--input", "32x32", "--filters", "4"], "expected WxHxC"),
        (["layer", "--input", "32x32x3", "--filters", "4", "--kernel", "0"], "--kernel"),
        (
            ["layer", "--input", "32x32x3", "--filters", "4", "--kernel", "40", "--pad", "valid"],
            "larger than the input",
        ),
        (["layer", "--input", "32x32x3", "--filters", "4", "--stride", "0"], "--stride"),
        (["layer", "--input", "32x32x3", "--filters", "4", "--stride", "2"], "does not tile"),
        (["layer", "--input", "32x32x3"], "--filters"),
        (["layer", "--input", "32x32x3", "--filters", "4", "--pad", "-1"], "--pad"),
        (["build", "--budget", "1XB"], "expected a size"),
        (["build", "--budget", "-5KB"], "expected a size"),
        (["build", "--budget", "0KB"], "above zero"),
        (["build", "--ram", "lots"], "--ram"),
        (["build", "--classes", "0"], "at least 1 class"),
        (["build", "--input", "32x32x0"], "expected WxHxC"),
        (["build", "--input", "axbxc"], "expected WxHxC"),
        (["build", "--target", "tpu"], "expected one of arm, cpu, mcu, mcu-m4, npu"),
        (["build", "--recipe", "models/missing.toml"], "not found"),
        (["build", "--recipe", "nothing_like_it"], "expected a .toml path"),
        (["build", "--budget", "1KB"], "smallest plan needs"),
        (["build", "--top", "-1"], "--top"),
        (["build", "--frobnicate"], "No such option"),
        (["frobnicate"], "No such command"),
    ],
)
def test_bad_input_is_a_one_line_error_with_exit_2(args, needle, tmp_path):
    r = invoke(*args, *(["--out", str(tmp_path / "o")] if args[0] == "build" else []))
    assert_one_line_error(r)
    assert needle in r.stderr


def test_malformed_recipe_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "m"\ninput = [8, 8, 1]\n[[layers]]\nname = "c"\nop = "conv2d"\nfilters = 4\nkernel = -3\n')
    r = invoke("build", "--recipe", str(bad), "--out", str(tmp_path / "o"))
    assert_one_line_error(r)
    assert "bad.toml" in r.stderr and "'c'" in r.stderr and "'kernel'" in r.stderr
    assert not (tmp_path / "o").exists()


def test_weights_file_with_a_wrong_layer_or_shape(tmp_path):
    out = tmp_path / "o"
    assert invoke("build", "--recipe", "vgg_small", "--out", str(out)).exit_code == 0
    with np.load(out / "weights.npz") as data:
        weights = dict(data)
    wrong_name = dict(weights, **{"conv9.weight": weights["conv1.weight"]})
    np.savez(tmp_path / "wrong_name.npz", **wrong_name)
    r = invoke("build", "--recipe", "vgg_small", "--weights", str(tmp_path / "wrong_name.npz"), "--out", str(out))
    assert_one_line_error(r)
    assert "conv9.weight" in r.stderr
    wrong_shape = dict(weights, **{"conv1.weight": np.zeros((16, 3, 3, 4), np.float32)})
    np.savez(tmp_path / "wrong_shape.npz", **wrong_shape)
    r = invoke("build", "--recipe", "vgg_small", "--weights", str(tmp_path / "wrong_shape.npz"), "--out", str(out))
    assert_one_line_error(r)
    assert "conv1.weight has shape (16, 3, 3, 4), expected (16, 3, 3, 3)" in r.stderr


def test_weights_file_round_trip_gives_the_same_model(tmp_path):
    assert invoke("build", "--recipe", "ds_cnn", "--seed", "3", "--out", str(tmp_path / "a")).exit_code == 0
    r = invoke(
        "build", "--recipe", "ds_cnn", "--weights", str(tmp_path / "a" / "weights.npz"), "--out", str(tmp_path / "b")
    )
    assert r.exit_code == 0
    assert (tmp_path / "a" / "model.onnx").read_bytes() == (tmp_path / "b" / "model.onnx").read_bytes()


def test_build_default_plan_writes_outputs_and_json(tmp_path):
    r = invoke("build", "--budget", "256KB", "--out", str(tmp_path / "o"), "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["budgets"]["model_bytes"] == 256_000 and doc["budgets"]["ram_bytes"] == 256_000
    assert doc["totals"]["predicted_model_bytes"] <= 256_000
    assert doc["totals"]["params"] > 0 and doc["totals"]["macs"] > 0
    assert doc["int8_tflite_bytes"] == (tmp_path / "o" / "model.int8.tflite").stat().st_size <= 256_000
    assert "SYNTHETIC" in doc["calibration"]["source"]
    for name in ALL_FILES:
        assert str(tmp_path / "o" / name) in doc["files"]
        assert (tmp_path / "o" / name).stat().st_size > 0
    plan = json.loads((tmp_path / "o" / "plan.json").read_text())
    assert plan["plan"]["objective"] == OBJECTIVE
    assert len(plan["layers"]) == len(plan["model"]["layers"])


def test_build_text_prints_the_resolved_budget_and_table(tmp_path):
    r = invoke("build", "--budget", "64KiB", "--out", str(tmp_path / "o"), "--top", "2")
    assert r.exit_code == 0
    assert "budget 64KiB = 65,536 B" in r.stdout
    assert "of 65,536 (" in r.stdout and "#3 " in r.stdout
    assert "total" in r.stdout


def test_same_arguments_give_byte_identical_outputs(tmp_path):
    for name in ("a", "b"):
        assert invoke("build", "--recipe", "resnet8", "--out", str(tmp_path / name)).exit_code == 0
    for f in ALL_FILES:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_recipe_over_budget_fails_the_check_with_exit_1(tmp_path):
    r = invoke("build", "--recipe", "resnet8", "--budget", "50KB", "--out", str(tmp_path / "o"))
    assert_one_line_error(r, code=1)
    assert "exceed the budget 50,000" in r.stderr


def test_failed_write_leaves_no_partial_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    r = invoke("build", "--recipe", "vgg_small", "--out", str(blocker / "o"))
    assert_one_line_error(r)
    assert blocker.read_text() == "not a folder"
    assert list(tmp_path.iterdir()) == [blocker]


def test_targets_lists_profiles_with_install_state():
    doc = json.loads(invoke("targets", "--json").stdout)
    assert [t["name"] for t in doc] == ["arm", "cpu", "mcu", "mcu-m4", "npu"]
    for t in doc:
        assert t["installed"] or t["install_hint"].startswith("pip install 'edgeconv[")


def test_import_and_help_load_no_runtime():
    code = (
        "import sys, edgeconv, edgeconv.cli, edgeconv.plan.planner, edgeconv.core.reference, edgeconv.quant.int8_ops;"
        "bad = [m for m in ('onnxruntime', 'ai_edge_litert', 'tflite_micro', 'onnx', 'onnxruntime_qnn')"
        " if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "edgeconv", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "edgeconv" in out.stdout


def _calib_file(tmp_path, array, name="calib.npy"):
    path = tmp_path / name
    np.save(path, array)
    return str(path)


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda: np.zeros((16, 32, 32, 3), np.float64), "float32"),
        (lambda: np.zeros((16, 3, 32, 32), np.float32), "(N, 32, 32, 3)"),
        (lambda: np.zeros((2, 32, 32, 3), np.float32), "at least 8"),
        (lambda: np.full((16, 32, 32, 3), np.nan, np.float32), "NaN"),
        (
            lambda: np.where(np.arange(16 * 32 * 32 * 3).reshape(16, 32, 32, 3) == 5000, np.inf, 0).astype(np.float32),
            "sample 1",
        ),
    ],
)
def test_bad_calibration_file_is_a_one_line_error(tmp_path, make, needle):
    r = invoke("build", "--recipe", "vgg_small", "--calib", _calib_file(tmp_path, make()), "--out", str(tmp_path / "o"))
    assert_one_line_error(r)
    assert needle in r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("method", ["minmax", "percentile", "mse"])
def test_calibration_from_a_file_is_recorded_in_quant_json(tmp_path, method):
    x = np.random.default_rng(0).uniform(-1, 1, (16, 32, 32, 3)).astype(np.float32)
    r = invoke(
        "build",
        "--recipe",
        "vgg_small",
        "--calib",
        _calib_file(tmp_path, x),
        "--calib-method",
        method,
        "--out",
        str(tmp_path / "o"),
    )
    assert r.exit_code == 0, r.output
    quant = json.loads((tmp_path / "o" / "quant.json").read_text())
    assert quant["calibration"]["method"] == method and quant["calibration"]["samples"] == 16
    assert "calib.npy" in quant["calibration"]["source"]
    assert set(quant["activations"]) == {
        "input",
        *[layer["name"] for layer in json.loads((tmp_path / "o" / "plan.json").read_text())["model"]["layers"]],
    }
    for _name, tq in quant["weights"].items():
        assert tq["zero_point"] == [0] * len(tq["scale"]) and tq["dtype"] == "int8"


def test_int8_file_over_the_budget_fails_with_exit_1(tmp_path):
    r = invoke("build", "--recipe", "ds_cnn", "--budget", "42KB", "--out", str(tmp_path / "o"))
    assert_one_line_error(r, code=1)
    real = (tmp_path / "o" / "model.int8.tflite").stat().st_size
    assert real > 42_000
    assert f"the int8 .tflite has {real:,} B, over the budget 42,000 B" in r.stderr
