"""The bug catalogue (parity/bugs.py): every injected bug is caught by the verdict the README's
table says, naming the edited layer; every harmless edit passes; the source bugs pass the
deployment verdict (the goldens share the wrong IR) and fail the source verdict."""

from pathlib import Path

import pytest

from edgeconv.core import reference
from edgeconv.parity import bugs
from edgeconv.parity.run import check_target, parity_inputs
from edgeconv.plan.targets import load_target

RUNTIMES = {"cpu": "onnxruntime", "arm": "ai_edge_litert", "npu": "onnxruntime_qnn", "mcu": "tflite_micro"}
FIXTURES = Path(__file__).parent / "data" / "import"
ROWS = {b.name: b for b in bugs.catalogue()}
ARTIFACT_BUGS = [name for name, b in ROWS.items() if isinstance(b, bugs.Bug)]
SOURCE_BUGS = [name for name, b in ROWS.items() if isinstance(b, bugs.SourceBug)]
# the rows the npu cannot see: a 1-LSB change where the qnn_htp golden allows 1 LSB (near-ties of
# the HTP requantization, quant/htp.py); and the one the HTP refuses to load
NPU_MISSES = {"bias scale in float16", "multiplier rounded to 16 bits"}
NPU_ROWS = ["weight sign flip", "depthwise kernel transposed", "zero point moved for producer and consumer"]


@pytest.fixture(scope="module")
def catalogue_build(tmp_path_factory):
    return bugs.build_catalogue_model(tmp_path_factory.mktemp("bugcat"), calib_samples=32)


@pytest.fixture(scope="module")
def inputs(catalogue_build):
    x = parity_inputs(catalogue_build.analysis, 16, 0)
    return x, reference.run(catalogue_build.analysis, catalogue_build.weights, x, keep_all=True)


@pytest.fixture(scope="module")
def broken(catalogue_build, tmp_path_factory):
    """Each artifact bug injected once (both artifacts), shared by every target."""
    work = tmp_path_factory.mktemp("broken")
    return {name: bugs.inject(catalogue_build, ROWS[name], work / str(i)) for i, name in enumerate(ARTIFACT_BUGS)}


def _check(build, target_name, inputs, bug):
    pytest.importorskip(RUNTIMES[target_name])
    x, float_all = inputs
    return check_target(build, load_target(target_name), x, float_all, feed=bug.feed)


@pytest.mark.parametrize("target_name", ["cpu", "arm", "mcu", "npu"])
def test_the_correct_build_passes(catalogue_build, inputs, target_name):
    result = _check(catalogue_build, target_name, inputs, bugs.Bug("none", "", "", ""))
    assert result.passed and result.divergence is None


@pytest.mark.parametrize("name", ARTIFACT_BUGS)
@pytest.mark.parametrize("target_name", ["cpu", "arm", "mcu"])
def test_each_artifact_bug_is_caught_and_named(broken, inputs, name, target_name):
    bug = ROWS[name]
    result = _check(broken[name], target_name, inputs, bug)
    if bug.harmless:
        assert result.passed, [c.message for c in result.checks if not c.passed]
        return
    assert result.verdict("deployment") is False
    assert result.divergence is not None and result.divergence.layer in bug.layer.split(",")
    assert all(row["max_lsb"] <= row["allowed"] for row in result.divergence.layers_before)


@pytest.mark.parametrize("name", NPU_ROWS + sorted(NPU_MISSES))
def test_npu_rows(broken, inputs, name):
    bug = ROWS[name]
    result = _check(broken[name], "npu", inputs, bug)
    if bug.harmless or name in NPU_MISSES:  # the table's "not caught on npu" rows, as they stand
        assert result.passed
        assert all(row["max_lsb"] <= 1 for row in result.per_layer)
    else:
        assert result.verdict("deployment") is False and result.divergence.layer == bug.layer


def test_fused_relu_added_is_refused_by_the_htp(broken, inputs):
    from edgeconv.core.errors import InputError

    with pytest.raises(InputError, match="QNN HTP rejects"):
        _check(broken["fused ReLU added"], "npu", inputs, ROWS["fused ReLU added"])


@pytest.mark.parametrize("name", SOURCE_BUGS)
def test_source_bugs_fail_only_the_source_verdict(tmp_path, name):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert")
    row = bugs.run_source_bug(ROWS[name], FIXTURES, [load_target("arm")], 8, tmp_path)
    (cell,) = row.cells
    assert cell.verdicts["deployment"] is True and cell.verdicts["source"] is False
    assert row.source_sqnr is not None and row.source_sqnr < 10
    # the other way: the same source, imported right, passes the source check
    ok = bugs.run_source_bug(
        bugs.SourceBug("right", "", ROWS[name].source, "", ""), FIXTURES, [load_target("arm")], 8, tmp_path
    )
    assert ok.cells[0].verdicts == {"deployment": True, "quality": True, "source": True}
    assert ok.source_sqnr > 60
