"""`edgeconv run` and `edgeconv bench` on real runtimes."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgeconv.artifacts.build import BuildRequest, run_build
from edgeconv.artifacts.folder import load_build
from edgeconv.cli import cli
from edgeconv.core import reference

RUNTIMES = {"cpu": "onnxruntime", "arm": "ai_edge_litert", "npu": "onnxruntime_qnn", "mcu": "tflite_micro"}


@pytest.fixture(scope="module")
def ds_cnn(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ds_cnn")
    run_build(BuildRequest(recipe="ds_cnn", out=str(folder), calib_samples=16))
    return folder


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("target", ["cpu", "arm", "npu", "mcu"])
def test_run_saves_dequantized_outputs_close_to_the_float_reference(ds_cnn, tmp_path, target):
    pytest.importorskip(RUNTIMES[target])
    x = np.random.default_rng(3).standard_normal((4, 10, 49, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r = _invoke(
        "run", ds_cnn, "--target", target, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy", "--json"
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (4, 12) and doc["output_shape"] == [4, 12]
    build = load_build(ds_cnn)
    want = reference.run(build.analysis, build.weights, x)["softmax"].reshape(4, 12)
    assert np.abs(y - want).max() <= 4 / 256  # a few steps of the softmax output's 1/256 grid
    assert doc["top1"] == want.argmax(axis=1).tolist()


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda: np.zeros((2, 49, 10, 1), np.float32), "(N, 10, 49, 1)"),
        (lambda: np.zeros((2, 10, 49, 1), np.float64), "float32"),
    ],
)
def test_run_refuses_wrong_inputs(ds_cnn, tmp_path, make, needle):
    np.save(tmp_path / "x.npy", make())
    r = _invoke("run", ds_cnn, "--target", "cpu", "--input", tmp_path / "x.npy")
    assert r.exit_code == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_run_on_a_corrupt_model_is_a_one_line_error(ds_cnn, tmp_path):
    pytest.importorskip("ai_edge_litert")
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in ds_cnn.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.int8.tflite").write_bytes(b"\x00garbage" * 10)
    np.save(tmp_path / "x.npy", np.zeros((1, 10, 49, 1), np.float32))
    r = _invoke("run", broken, "--target", "arm", "--input", tmp_path / "x.npy")
    assert r.exit_code == 2 and "model.int8.tflite" in r.stderr and "Traceback" not in r.output


def test_bench_json_reports_every_field(ds_cnn):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tflite_micro")
    r = _invoke("bench", ds_cnn, "--targets", "cpu,mcu", "--repeat", "3", "--warmup", "1", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    cpu, mcu = doc["targets"]
    assert cpu["float_ms"] is not None and cpu["speedup"] > 0 and cpu["int8_ms"]["runs"] == 3
    assert mcu["float_ms"] is None and mcu["ram_measured_bytes"] <= mcu["ram_predicted_bytes"]
    assert mcu["ram_predicted_bytes"] <= 1.10 * mcu["ram_measured_bytes"]
    assert cpu["macs"] == 2_656_768 and cpu["macs_per_second"] > 0


def test_bench_bad_repeat(ds_cnn):
    r = _invoke("bench", ds_cnn, "--targets", "cpu", "--repeat", "0")
    assert r.exit_code == 2 and "--repeat" in r.stderr
