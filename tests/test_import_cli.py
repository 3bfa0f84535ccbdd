"""`edgeconv import` on the MLPerf Tiny ResNet-8 files: build folders that parity, run and the
folder loader take unchanged; the int8 file is the artifact under test, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip(
    "ai_edge_litert", reason="edgeconv import of .tflite needs ai-edge-litert (pip install 'edgeconv[arm]')"
)

from edgeconv.artifacts.folder import load_build
from edgeconv.cli import cli
from edgeconv.cli.importer import sniff_format
from edgeconv.frontends.tflite import import_tflite

MLPERF = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "mlperf_tiny"
FLOAT_FILE = MLPERF / "ic_resnet8_float32.tflite"
INT8_FILE = MLPERF / "ic_resnet8_int8.tflite"
PUBLISHED_INT8_BYTES = 98_496


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_line_error(result, code=2):
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("edgeconv: error: "), result.stderr
    assert "Traceback" not in result.output + result.stderr


def photo_crops(n: int, seed: int) -> np.ndarray:
    """32x32 crops of sklearn's two sample photos at seeded positions, kept in 0..255."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng([seed, 32])
    out = np.empty((n, 32, 32, 3), np.float32)
    for i in range(n):
        photo = photos[i % len(photos)]
        y, x = rng.integers(photo.shape[0] - 32), rng.integers(photo.shape[1] - 32)
        out[i] = photo[y : y + 32, x : x + 32]
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    if not FLOAT_FILE.is_file() or not INT8_FILE.is_file():
        pytest.skip(f"MLPerf Tiny files not found under {MLPERF} (../shared/models/mlperf_tiny)")
    root = tmp_path_factory.mktemp("import")
    np.savez(root / "calib.npz", x=photo_crops(64, seed=0))
    np.savez(root / "inputs.npz", x=photo_crops(24, seed=1))
    np.savez(root / "few.npz", x=photo_crops(8, seed=2))
    docs = {}
    for key, source in (("float", FLOAT_FILE), ("int8", INT8_FILE)):
        r = invoke("import", source, "--calib", root / "calib.npz", "--out", root / key, "--json")
        assert r.exit_code == 0, r.output
        docs[key] = json.loads(r.stdout)
    return root, docs


def test_float_file_imports_and_requantizes_small_enough(work):
    root, docs = work
    s = docs["float"]
    assert s["source_format"] == "tflite" and s["original"] is None
    assert s["ops"] == {"conv2d": 9, "add": 3, "avg_pool": 1, "dense": 1, "softmax": 1}
    fid = s["fidelity"]
    assert fid["kind"] == "relative" and fid["passed"] and fid["worst"] <= 1e-5
    assert max(fid["layers"].values()) <= 1e-5
    # edgeconv's own int8 file of the re-quantized model is no larger than the published one
    size = (root / "float" / "model.int8.tflite").stat().st_size
    assert size == s["int8_tflite_bytes"] <= PUBLISHED_INT8_BYTES
    assert s["calibration"]["method"] == "minmax" and "calib.npz" in s["calibration"]["source"]


def test_int8_file_is_the_artifact_under_test(work):
    root, docs = work
    s = docs["int8"]
    folder = root / "int8"
    assert s["source_format"] == "tflite-int8" and s["original"] == "model.int8.tflite"
    assert (folder / "model.int8.tflite").read_bytes() == INT8_FILE.read_bytes()
    assert s["fidelity"]["kind"] == "lsb" and s["fidelity"]["worst"] == 0 and max(s["fidelity"]["layers"].values()) == 0
    quant = json.loads((folder / "quant.json").read_text())
    assert quant["integers"] == "quant.npz" and quant["origin"]["file"] == INT8_FILE.name
    assert quant["activations"]["input"]["scale"] == [1.0] and quant["activations"]["input"]["zero_point"] == [-128]
    plan = json.loads((folder / "plan.json").read_text())
    assert plan["import"]["original"] == "model.int8.tflite"
    assert set(plan["import"]["derived"]) == {"model.onnx", "model.int8.onnx", "model.float.tflite"}
    report = (folder / "report.md").read_text()
    assert "**original**" in report and "derived" in report
    # the loader takes the file's own integers and scales, not a re-quantization of weights.npz
    build = load_build(folder)
    imported = import_tflite(INT8_FILE)
    assert build.qparams.activations == imported.quant.activations
    for name, q in imported.quant.q_weights.items():
        np.testing.assert_array_equal(build.qparams.q_weights[name], q)
        np.testing.assert_array_equal(build.qparams.q_biases[name], imported.quant.q_biases[name])
        assert build.qparams.weights[name] == imported.quant.weights[name]
    assert build.tensor_name("int8_tflite", build.analysis.model.output) == "Identity_int8"
    assert build.tensor_name("qdq_onnx", build.analysis.model.output) == build.analysis.model.output


@pytest.mark.parametrize("key", ["float", "int8"])
def test_parity_passes_on_cpu_arm_mcu(work, key):
    root, _ = work
    r = invoke("parity", root / key, "--targets", "cpu,arm,mcu", "--inputs", root / "inputs.npz", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["passed"] and [t["target"] for t in doc["targets"]] == ["cpu", "arm", "mcu"]
    for t in doc["targets"]:  # the exact policy: 0 LSB vs the golden of each runtime's family, every layer
        assert t["deployment"]["passed"] and t["deployment"]["vs_golden"]["max_lsb"] == 0, t["target"]
        assert all(row["max_lsb"] == 0 for row in t["deployment"]["per_layer"]), t["target"]


@pytest.mark.parametrize("key", ["float", "int8"])
def test_npu_numbers_are_recorded(work, key):
    """The npu (HTP emulator) verdict on trained models is issue 10's: run it, record the numbers."""
    root, _ = work
    r = invoke("parity", root / key, "--targets", "npu", "--inputs", root / "few.npz", "--json")
    if r.exit_code == 2 and "npu" in r.stderr and "install" in r.stderr:
        pytest.skip(f"npu runtime missing: {r.stderr.strip().splitlines()[-1]}")
    assert r.exit_code in (0, 1), r.output
    (npu,) = json.loads(r.stdout)["targets"]
    assert npu["target"] == "npu" and npu["deployment"]["vs_golden"]["max_lsb"] >= 0


def test_import_is_deterministic(work, tmp_path):
    root, _ = work
    r = invoke("import", INT8_FILE, "--calib", root / "calib.npz", "--out", tmp_path / "again", "--json")
    assert r.exit_code == 0, r.output
    for f in (root / "int8").iterdir():
        assert (tmp_path / "again" / f.name).read_bytes() == f.read_bytes(), f.name


def test_bad_model_files_are_one_line_errors(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"PK\x03\x04 not a model")
    assert_one_line_error(invoke("import", junk, "--out", tmp_path / "o"))
    assert "not a TFLite or ONNX file" in invoke("import", junk).stderr
    assert_one_line_error(invoke("import", tmp_path / "missing.tflite"))
    truncated = tmp_path / "truncated.tflite"
    if INT8_FILE.is_file():
        truncated.write_bytes(INT8_FILE.read_bytes()[:5000])
        r = invoke("import", truncated, "--out", tmp_path / "t")
        assert_one_line_error(r)
        assert "corrupt or truncated" in r.stderr and not (tmp_path / "t").exists()


def test_format_is_sniffed_from_magic_bytes():
    assert sniff_format(Path("m.bin"), b"\x1c\x00\x00\x00TFL3\x00\x00") == "tflite"
    assert sniff_format(Path("m.bin"), b"\x08\x08\x12\x07pytorch") == "onnx"


def test_ort_quantized_qdq_file_is_the_artifact_under_test(tmp_path):
    """ONNX Runtime's quantize_static output (float I/O, Q/DQ inside) copied byte for byte and
    run as it is: 0 LSB at every layer vs the ort_cpu golden of the file's own parameters."""
    pytest.importorskip("onnxruntime", reason="the cpu target needs onnxruntime (pip install 'edgeconv[cpu]')")
    source = Path(__file__).resolve().parent / "data" / "import" / "qdq_residual.onnx"
    r = invoke("import", source, "--out", tmp_path / "q", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["source_format"] == "onnx-qdq" and s["original"] == "model.int8.onnx"
    assert (tmp_path / "q" / "model.int8.onnx").read_bytes() == source.read_bytes()
    r = invoke("parity", tmp_path / "q", "--targets", "cpu,mcu", "--samples", "32", "--json")
    assert r.exit_code == 0, r.output
    for t in json.loads(r.stdout)["targets"]:
        assert t["deployment"]["vs_golden"]["max_lsb"] == 0, t["target"]
        assert all(row["max_lsb"] == 0 for row in t["deployment"]["per_layer"]), t["target"]


def test_vector_input_int8_file_runs_as_it_is(tmp_path):
    """An int8 .tflite with a [1, 640] input (the MLPerf Tiny autoencoder's shape) is copied and
    run with its own input shape on arm and mcu: 0 LSB vs their goldens at every layer."""
    source = Path(__file__).resolve().parent / "data" / "import" / "keras_autoencoder_int8.tflite"
    r = invoke("import", source, "--out", tmp_path / "ae", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["fidelity"]["worst"] == 0
    r = invoke("parity", tmp_path / "ae", "--targets", "arm,mcu", "--samples", "32", "--json")
    assert r.exit_code == 0, r.output
    for t in json.loads(r.stdout)["targets"]:
        assert all(row["max_lsb"] == 0 for row in t["deployment"]["per_layer"]), t["target"]
