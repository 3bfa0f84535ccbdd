"""`parity --model-explorer`: node-data files of the ai-edge-model-explorer package, loaded back
through its own classes, keyed by the real output tensor names of the build's model.int8.tflite
(as the package's own TFLite adapter reads them), with the parity JSON's per-layer figures."""

from __future__ import annotations

import json
import math
import sys

import pytest
from click.testing import CliRunner

from edgeconv.cli import cli

TARGETS = ("cpu", "mcu")


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tflite_micro")
    pytest.importorskip("model_explorer")
    from edgeconv.artifacts.build import BuildRequest, run_build

    root = tmp_path_factory.mktemp("explorer")
    folder, out = root / "ds_cnn", root / "me"
    run_build(BuildRequest(recipe="ds_cnn", calib_samples=8, out=str(folder)))
    r = _invoke("parity", folder, "--targets", ",".join(TARGETS), "--samples", "32", "--json", "--model-explorer", out)
    assert r.exit_code == 0, r.output
    return folder, out, json.loads(r.stdout)


def _load(path):
    """A written file read back into the package's dataclasses (dacite, strict: no unknown
    keys, every value of its declared type) and written again."""
    import dacite
    from model_explorer import node_data_builder as ndb

    text = path.read_text(encoding="utf-8")
    doc = ndb.ModelNodeData(
        graphsData={
            gid: dacite.from_dict(ndb.GraphNodeData, g, config=dacite.Config(strict=True))
            for gid, g in json.loads(text).items()
        }
    )
    assert doc.to_json_string(indent=2) + "\n" == text  # the package writes exactly this file
    return doc


def _graph_of_tflite(path):
    """The graph Model Explorer shows for the .tflite (the JSON its web app gets): the graph id and
    the output `tensor_name` of every node, which node-data keys are matched against."""
    from model_explorer.builtin_tflite_flatbuffer_adapter import BuiltinTfliteFlatbufferAdapter

    collection = BuiltinTfliteFlatbufferAdapter().convert(str(path), {})["graphCollections"][0]
    (graph,) = collection.graphs
    names = set()
    for node in graph["nodes"]:
        for meta in node.get("outputsMetadata") or []:
            names |= {a["value"] for a in meta["attrs"] if a["key"] == "tensor_name"}
    return graph["id"], names


def test_one_lsb_and_one_sqnr_file_per_target(run):
    _, out, _ = run
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{t}.{f}.json" for t in TARGETS for f in ("lsb", "sqnr"))


def test_keys_are_tensors_of_the_int8_tflite_and_values_are_the_parity_figures(run):
    folder, out, parity = run
    graph_id, tensor_names = _graph_of_tflite(folder / "model.int8.tflite")
    for t in parity["targets"]:
        rows = t["deployment"]["per_layer"]
        assert len(rows) == 12  # every ds_cnn layer
        lsb = _load(out / f"{t['target']}.lsb.json").graphsData
        sqnr = _load(out / f"{t['target']}.sqnr.json").graphsData
        assert set(lsb) == set(sqnr) == {graph_id}
        lsb_results, sqnr_results = lsb[graph_id].results, sqnr[graph_id].results
        assert set(lsb_results) == set(sqnr_results) == {row["layer"] for row in rows}
        assert set(lsb_results) <= tensor_names, set(lsb_results) - tensor_names
        for row in rows:
            assert lsb_results[row["layer"]].value == row["max_lsb"]
            assert sqnr_results[row["layer"]].value == row["sqnr_db"]
        assert [th.value for th in lsb[graph_id].thresholds] == sorted(th.value for th in lsb[graph_id].thresholds)
        assert lsb[graph_id].thresholds and sqnr[graph_id].thresholds


def test_per_layer_sqnr_is_the_quality_figure_at_the_logits_and_the_output(run):
    """The per-layer SQNR of the exposed fc / softmax tensors equals what the quality check
    measured at the logits / the deployed output (same tensors, same float reference)."""
    _, _, parity = run
    for t in parity["targets"]:
        by_layer = {row["layer"]: row["sqnr_db"] for row in t["deployment"]["per_layer"]}
        q = t["quality"]["vs_float"]
        assert by_layer["fc"] == pytest.approx(q["sqnr_logits_db"], rel=1e-9)
        assert by_layer["softmax"] == pytest.approx(q["sqnr_db"], rel=1e-9)
        assert all(math.isfinite(v) and 5 < v < 60 for v in by_layer.values()), by_layer


def test_overlays_colour_a_layer_over_its_allowance_and_skip_names_not_in_the_file():
    pytest.importorskip("model_explorer")
    from edgeconv.report.explorer import OVER_ALLOWANCE, overlays

    rows = [
        {"layer": "a", "max_lsb": 0, "allowed": 0, "sqnr_db": math.inf},
        {"layer": "b", "max_lsb": 2, "allowed": 1, "sqnr_db": 31.5},
        {"layer": "c", "max_lsb": 1, "allowed": 1, "sqnr_db": 12.0},
    ]
    parity = {"targets": [{"target": "arm", "golden": "tflite", "deployment": {"per_layer": rows}}]}
    files = overlays(parity, {"b": "b;tensor"}, "main", ["a", "b;tensor"])
    lsb = files["arm.lsb.json"].graphsData["main"].results
    assert set(lsb) == {"a", "b;tensor"}  # c has no tensor in the file
    assert (lsb["b;tensor"].bgColor, lsb["b;tensor"].textColor) == OVER_ALLOWANCE
    assert lsb["a"].bgColor is None  # coloured by the thresholds
    assert files["arm.sqnr.json"].graphsData["main"].results["a"].value == "inf"


def test_missing_package_and_a_file_as_outdir_are_one_line_errors(tmp_path, monkeypatch):
    (tmp_path / "f").write_text("x")
    r = _invoke("parity", tmp_path, "--model-explorer", tmp_path / "f")
    assert r.exit_code == 2 and "expected a folder" in r.output and "Traceback" not in r.output
    monkeypatch.setitem(sys.modules, "model_explorer", None)  # import fails as if not installed
    r = _invoke("parity", tmp_path, "--model-explorer", tmp_path / "me")
    assert r.exit_code == 2 and "pip install 'edgeconv[explorer]'" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1


def test_an_imported_tflite_is_keyed_by_its_own_tensor_names(tmp_path):
    """An imported int8 .tflite (a Keras model through the TFLite converter, copied byte for
    byte) keeps the converter's tensor names ("functional_1/re_lu_1/Relu;..."): the overlay uses
    those, not edgeconv's layer names, so every layer lands on its node in Model Explorer."""
    from pathlib import Path

    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("model_explorer")
    source = Path(__file__).parent / "data" / "import" / "keras_cnn_int8.tflite"
    folder, out = tmp_path / "imp", tmp_path / "me"
    assert _invoke("import", source, "--out", folder).exit_code == 0
    floors = ("--min-sqnr", "0", "--min-sqnr-output", "0", "--min-top1", "0")  # synthetic inputs: keys are the point
    r = _invoke("parity", folder, "--targets", "arm", "--samples", "32", *floors, "--json", "--model-explorer", out)
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["targets"][0]["deployment"]["per_layer"]
    graph_id, tensor_names = _graph_of_tflite(folder / "model.int8.tflite")
    results = _load(out / "arm.lsb.json").graphsData[graph_id].results
    assert len(results) == len(rows) >= 4 and set(results) <= tensor_names
    assert not {row["layer"] for row in rows} & set(results)  # the file's names, not edgeconv's
    assert sorted(r.value for r in results.values()) == sorted(row["max_lsb"] for row in rows)
