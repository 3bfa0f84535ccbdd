"""Newcomer frictions of issue 12, each pinned: numbers where numbers belong, errors that name
what was given."""

from __future__ import annotations

import json

import pytest

from edgeconv.cli import cli


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from edgeconv.artifacts.build import BuildRequest, run_build

    out = tmp_path_factory.mktemp("frictions") / "b"
    run_build(BuildRequest(recipe="ds_cnn", calib_samples=8, out=str(out)))
    return out


def _cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.err.strip().splitlines()[-1]


def test_report_md_says_none_not_None(built):
    report = (built / "report.md").read_text()
    macs_row = next(line for line in report.splitlines() if line.startswith("| macs |"))
    assert "None" not in report
    assert macs_row.endswith("| none | no limit |"), macs_row


def test_plan_json_layer_counts_are_numbers(built):
    plan = json.loads((built / "plan.json").read_text())
    for row in plan["layers"]:
        for key in ("params", "macs", "out_bytes"):
            assert isinstance(row[key], int) and not isinstance(row[key], bool), (row["name"], key, row[key])
    assert sum(row["params"] for row in plan["layers"]) == plan["summary"]["totals"]["params"]
    assert isinstance(plan["layers"][0]["input"], str)  # shapes stay W×H×C text


def test_targets_error_names_targets(built, capsys):
    code, line = _cli(["parity", str(built), "--targets", "cpu,nope"], capsys)
    assert code == 2
    assert line.startswith("edgeconv: error: --targets: expected one of"), line
    assert "'nope'" in line


def test_build_folder_that_is_a_file(tmp_path, capsys):
    path = tmp_path / "plan.json"
    path.write_text("{}")
    code, line = _cli(["parity", str(path), "--targets", "cpu"], capsys)
    assert code == 2
    assert "is a file, expected a folder" in line and "not found" not in line, line


def test_pass_prints_no_first_diverging_layer(built, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["parity", str(built), "--targets", "cpu"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0, out
    assert "PASS" in out and "first diverging" not in out and "allowed 3" not in out
