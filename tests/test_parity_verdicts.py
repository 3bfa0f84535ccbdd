"""Deployment vs quality vs source verdicts: every layer is gated (issue 16's ds_cnn with a
corrupted dw1 passed on its softmax output), the exit code names the kind, the source check
catches an IR that differs from the source model."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeconv.artifacts.build import BuildRequest, run_build
from edgeconv.artifacts.folder import reseal_build_folder
from edgeconv.cli import cli

ROOT = Path(__file__).resolve().parents[1]
MLPERF_FLOAT = ROOT.parent / "shared" / "models" / "mlperf_tiny" / "ic_resnet8_float32.tflite"


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def ds_cnn(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ds_cnn")
    run_build(BuildRequest(recipe="ds_cnn", out=str(folder), calib_samples=16))
    return folder


def _corrupt_tflite_weight(path: Path, tensor: str, nbytes: int = 64) -> None:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    model = fb.ModelT.InitFromObj(fb.Model.GetRootAs(path.read_bytes(), 0))
    t = next(t for t in model.subgraphs[0].tensors if t.name.decode() == tensor)
    buf = model.buffers[t.buffer]
    data = np.frombuffer(bytes(bytearray(buf.data)), np.uint8).copy()
    data[:nbytes] ^= 0xFF
    buf.data = data
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))


def test_corrupted_inner_layer_fails_deployment_with_exit_1(ds_cnn, tmp_path):
    pytest.importorskip("tflite_micro")
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in ds_cnn.iterdir():
        if f.is_file():
            (broken / f.name).write_bytes(f.read_bytes())
    _corrupt_tflite_weight(broken / "model.int8.tflite", "dw1.weight")
    reseal_build_folder(broken)  # a deliberate edit: keep the folder loadable (manifest.json)
    ok = _invoke("parity", ds_cnn, "--targets", "mcu", "--json")
    assert ok.exit_code == 0, ok.output
    r = _invoke("parity", broken, "--targets", "mcu", "--json")
    assert r.exit_code == 1, r.output  # deployment only
    doc = json.loads(r.stdout)
    t = doc["targets"][0]
    assert doc["verdicts"]["deployment"] is False and t["deployment"]["first_diverging_layer"]["layer"] == "dw1"
    layers = {c["name"]: c for c in t["deployment"]["checks"]}
    assert not layers["lsb_every_layer"]["passed"] and "dw1" in layers["lsb_every_layer"]["message"]


def _mlperf_build(tmp_path, weights: dict) -> tuple[Path, Path]:
    sys.path.insert(0, str(ROOT / "scripts"))
    from photo_crops import photo_crops

    np.savez(tmp_path / "w.npz", **weights)
    np.savez(tmp_path / "calib.npz", input=photo_crops(16, 0))
    np.savez(tmp_path / "x.npz", input=photo_crops(8, 1))
    out = tmp_path / "r8"
    run_build(
        BuildRequest(
            recipe="resnet8", out=str(out), weights_path=str(tmp_path / "w.npz"), calib_path=str(tmp_path / "calib.npz")
        )
    )
    return out, tmp_path / "x.npz"


def test_source_check_passes_the_mapped_weights_and_catches_a_layout_error(tmp_path):
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(ROOT / "scripts"))
    from resnet8_weights import tflite_weights

    weights = tflite_weights(MLPERF_FLOAT)
    (tmp_path / "good").mkdir()
    folder, x = _mlperf_build(tmp_path / "good", weights)
    r = _invoke("parity", folder, "--targets", "mcu", "--inputs", x, "--source", MLPERF_FLOAT, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["verdicts"]["source"] is True and doc["source"]["sqnr_db"] > 100
    # a transposed kernel (H and W swapped) in a stride-2 conv: the IR is wrong, the golden agrees with it
    bad = dict(weights)
    bad["s2_conv1.weight"] = np.ascontiguousarray(bad["s2_conv1.weight"].transpose(0, 2, 1, 3))
    (tmp_path / "bad").mkdir()
    folder, x = _mlperf_build(tmp_path / "bad", bad)
    r = _invoke("parity", folder, "--targets", "mcu", "--inputs", x, "--source", MLPERF_FLOAT, "--json")
    doc = json.loads(r.stdout)
    assert r.exit_code & 8, r.output
    assert doc["verdicts"]["source"] is False and doc["verdicts"]["deployment"] is True
