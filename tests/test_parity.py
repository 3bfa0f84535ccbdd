"""`edgeconv parity`: verdicts, reports, exit codes, and the first diverging layer found in a
deliberately broken artifact."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeconv.artifacts.build import BuildRequest, run_build
from edgeconv.artifacts.folder import load_build, reseal_build_folder
from edgeconv.cli import cli
from edgeconv.core import reference
from edgeconv.parity.run import check_target, parity_inputs
from edgeconv.plan.targets import load_target

RUNTIMES = {"cpu": "onnxruntime", "arm": "ai_edge_litert", "npu": "onnxruntime_qnn", "mcu": "tflite_micro"}
FAULTY_LAYER = "s2_conv2"


@pytest.fixture(scope="module")
def resnet8(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resnet8")
    run_build(BuildRequest(recipe="resnet8", out=str(folder), calib_samples=16))
    return folder


def _negate_channels(q: np.ndarray) -> np.ndarray:
    """Flip the sign of the first four output channels: a weight fault in one layer."""
    q = q.copy()
    q[:4] = -q[:4]
    return q


def _break_tflite(path, tensor: str) -> None:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    model = fb.ModelT.InitFromObj(fb.Model.GetRootAs(path.read_bytes(), 0))
    t = next(t for t in model.subgraphs[0].tensors if t.name.decode() == tensor)
    buf = model.buffers[t.buffer]
    q = np.frombuffer(bytes(bytearray(buf.data)), np.int8).reshape(t.shape)
    buf.data = np.frombuffer(_negate_channels(q).tobytes(), np.uint8)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))


def _break_onnx(path, initializer: str) -> None:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    for i, init in enumerate(model.graph.initializer):
        if init.name == initializer:
            model.graph.initializer[i].CopyFrom(
                numpy_helper.from_array(_negate_channels(numpy_helper.to_array(init)), initializer)
            )
    path.write_bytes(model.SerializeToString())


@pytest.mark.parametrize("target_name", ["cpu", "arm", "npu", "mcu"])
def test_fault_in_one_layer_of_the_artifact_is_named(resnet8, tmp_path, target_name):
    pytest.importorskip(RUNTIMES[target_name])
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in resnet8.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    target = load_target(target_name)
    if target.artifact == "qdq_onnx":
        _break_onnx(broken / "model.int8.onnx", f"{FAULTY_LAYER}.weight")
    else:
        _break_tflite(broken / "model.int8.tflite", f"{FAULTY_LAYER}.weight")
    reseal_build_folder(broken)  # a deliberate edit: keep the folder loadable (manifest.json)
    build = load_build(broken)
    x = parity_inputs(build.analysis, 4, 0)
    float_out = reference.run(build.analysis, build.weights, x)[build.analysis.model.output]

    healthy = check_target(load_build(resnet8), target, x, float_out)
    assert healthy.checks[0].passed and healthy.divergence is None

    result = check_target(build, target, x, float_out)
    assert not result.passed
    assert result.divergence is not None and result.divergence.layer == FAULTY_LAYER
    before = [row["layer"] for row in result.divergence.layers_before]
    assert before == ["conv1", "s1_conv1", "s1_conv2", "s1_add", "s2_conv1"]
    assert all(row["max_lsb"] <= row["allowed"] for row in result.divergence.layers_before)


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_pass_writes_json_markdown_and_junit(resnet8, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert")
    junit, md = tmp_path / "parity.xml", tmp_path / "parity.md"
    r = _invoke("parity", resnet8, "--targets", "cpu,arm", "--json", "--junit", junit, "--md", md)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["passed"] and doc["samples"] == 32 and [t["target"] for t in doc["targets"]] == ["cpu", "arm"]
    assert doc["verdicts"] == {"deployment": True, "quality": True, "source": None} and doc["exit_code"] == 0
    for t in doc["targets"]:
        assert t["deployment"]["vs_golden"]["max_lsb"] == 0 and t["quality"]["vs_float"]["sqnr_db"] > 15
        assert len(t["deployment"]["per_layer"]) == 15  # every layer, by default
        assert all(row["max_lsb"] == 0 for row in t["deployment"]["per_layer"])
        assert {c["kind"] for c in t["deployment"]["checks"]} == {"deployment"}
        assert {c["kind"] for c in t["quality"]["checks"]} == {"quality"}
    assert doc["pairwise"][0]["a"] == "cpu" and doc["pairwise"][0]["b"] == "arm"
    suites = {s.get("name").split()[2]: s for s in ET.parse(junit).getroot().findall("testsuite")}
    assert set(suites) == {"deployment", "quality"}
    deploy = {c.get("name") for c in suites["deployment"].findall("testcase")}
    quality = {c.get("name") for c in suites["quality"].findall("testcase")}
    assert deploy == {"lsb_vs_golden", "lsb_every_layer"}
    assert quality == {"sqnr_logits", "sqnr_vs_float", "top1_vs_float"}
    assert all(s.get("failures") == "0" for s in suites.values())
    assert len(suites["deployment"].findall("testcase")) == 4 and len(suites["quality"].findall("testcase")) == 6
    assert "PASS" in md.read_text()


def test_quality_failure_exits_4_with_junit_failures_in_the_quality_suite(resnet8, tmp_path):
    pytest.importorskip("ai_edge_litert")
    profile = tmp_path / "strict.toml"
    text = Path(load_target("arm").source).read_text()
    assert "min_sqnr_db = 15.0" in text
    profile.write_text(
        text.replace('name = "arm"', 'name = "strict"').replace("min_sqnr_db = 15.0", "min_sqnr_db = 60.0")
    )
    junit = tmp_path / "fail.xml"
    r = _invoke("parity", resnet8, "--targets", profile, "--junit", junit)
    assert r.exit_code == 4, r.output  # quality only: deployment passed
    errors = [line for line in r.stderr.splitlines() if line.startswith("edgeconv: error:")]
    assert len(errors) == 1 and "strict quality sqnr_logits" in errors[0]
    suites = {s.get("name").split()[2]: s for s in ET.parse(junit).getroot().findall("testsuite")}
    assert suites["deployment"].get("failures") == "0"
    failures = suites["quality"].findall("testcase/failure")
    assert len(failures) == 1 and "floor 60 dB" in failures[0].get("message")
    # the run's floor wins over the profile's
    r = _invoke("parity", resnet8, "--targets", profile, "--min-sqnr", "10", "--min-top1", "0.5")
    assert r.exit_code == 0, r.output


def test_floor_options_are_checked(resnet8):
    r = _invoke("parity", resnet8, "--targets", "cpu", "--min-top1", "1.5")
    assert r.exit_code == 2 and "--min-top1" in r.stderr
    r = _invoke("parity", resnet8, "--targets", "cpu", "--min-sqnr", "nan")
    assert r.exit_code == 2 and "--min-sqnr" in r.stderr


def test_missing_runtime_exits_2_naming_the_package(resnet8, tmp_path):
    profile = tmp_path / "ghost.toml"
    text = Path(load_target("cpu").source).read_text()
    profile.write_text(
        text.replace('name = "cpu"', 'name = "ghost"')
        .replace('packages = ["onnxruntime"]', 'packages = ["ghost-runtime"]')
        .replace('modules = ["onnxruntime"]', 'modules = ["ghost_runtime_module"]')
    )
    r = _invoke("parity", resnet8, "--targets", profile)
    assert r.exit_code == 2
    assert "ghost-runtime" in r.stderr and "pip install" in r.stderr


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--targets", "cpu,tpu"], "expected one of"),
        (["--targets", ","], "comma-separated"),
        (["--samples", "4"], "at least 32"),
    ],
)
def test_bad_usage_exits_2(resnet8, args, needle):
    r = _invoke("parity", resnet8, *args)
    assert r.exit_code == 2 and needle in r.stderr


def test_not_a_build_folder_exits_2(tmp_path):
    r = _invoke("parity", tmp_path, "--targets", "cpu")
    assert r.exit_code == 2 and "plan.json" in r.stderr


def test_given_inputs_file(resnet8, tmp_path):
    pytest.importorskip("tflite_micro")
    x = np.random.default_rng(5).uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    r = _invoke("parity", resnet8, "--targets", "mcu", "--inputs", tmp_path / "x.npz", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["samples"] == 8 and "x.npz" in doc["inputs"]
    assert len(doc["targets"][0]["per_layer"]) == 15
    assert all(row["max_lsb"] == 0 for row in doc["targets"][0]["per_layer"])
