"""report.html in a real headless browser (Debian's chromium): loads with no console message
but its own self-check, every section draws, a screenshot is taken, and the arena picture
matches plan/arena.py's model (box per tensor, heights proportional to bytes, head and peak)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from edgeconv.artifacts.folder import load_build
from edgeconv.plan.arena import lifetimes, predict_head_bytes, tflite_graph

SECTIONS = ("model", "memory", "parity", "latency")


FAULTY = "s2_conv2"  # the arm artifact's weights of this layer get four channels sign-flipped


def _edgeconv(*args: str, ok: tuple[int, ...] = (0,)) -> str:
    run = subprocess.run([sys.executable, "-m", "edgeconv", *args], capture_output=True, text=True, timeout=180)
    assert run.returncode in ok, run.stderr
    return run.stdout


def _break_arm(folder) -> None:
    """A weight fault in model.int8.tflite only (arm runs it, cpu runs the QDQ .onnx): arm's
    deployment check fails at FAULTY (and its quality with it), cpu passes both, so the page
    shows passing and failing verdicts of both kinds."""
    import numpy as np

    from edgeconv.artifacts.folder import reseal_build_folder
    from edgeconv.export import tamper
    from edgeconv.parity.bugs import negate_channels

    path = folder / "model.int8.tflite"
    data = path.read_bytes()
    w = tamper.tflite_array(data, f"{FAULTY}.weight")
    path.write_bytes(tamper.tflite_edit(data, f"{FAULTY}.weight", negate_channels(np.asarray(w))))
    reseal_build_folder(folder)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from edgeconv.artifacts.build import BuildRequest, run_build

    root = tmp_path_factory.mktemp("report")
    folder = root / "resnet8"
    run_build(BuildRequest(recipe="resnet8", calib_samples=8, out=str(folder)))
    _break_arm(folder)
    (root / "parity.json").write_text(
        _edgeconv("parity", str(folder), "--targets", "cpu,arm", "--json", ok=(5,))
    )  # arm: deployment and quality fail
    (root / "bench.json").write_text(
        _edgeconv("bench", str(folder), "--targets", "cpu,arm", "--repeat", "3", "--warmup", "1", "--json")
    )
    out = root / "report.html"
    _edgeconv(
        "report",
        str(folder),
        "--parity",
        str(root / "parity.json"),
        "--bench",
        str(root / "bench.json"),
        "-o",
        str(out),
    )
    return folder, out


class _Attrs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def _script_text(page: str, element_id: str) -> str:
    match = re.search(rf"<script type=\"?application/json\"? id=\"?{element_id}\"?>(.*?)</script>", page, re.S)
    assert match, element_id
    return match.group(1)


def _table_rows(page: str, table_id: str) -> list[list[str]]:
    """The text of each cell of a table's data rows (header row left out)."""
    match = re.search(rf"<table id=\"?{table_id}\"?>(.*?)</table>", page, re.S)
    assert match, table_id
    rows = re.findall(r"<tr>(.*?)</tr>", match.group(1), re.S)
    cells = [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)] for r in rows]
    return [c for c in cells if c]


def test_page_is_self_contained(page):
    _, out = page
    text = out.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), "the page must not load anything"
    for section in SECTIONS:
        assert f'<section id="{section}"' in text
    assert text.count("<svg") == 6  # budget bars, arena, flash, LSB and SQNR heat maps, latency


def test_arena_data_is_the_arena_model(page):
    from edgeconv.report.html import arena_boxes

    folder, _ = page
    analysis = load_build(folder).analysis
    arena = arena_boxes(analysis)
    assert arena["head_bytes"] == predict_head_bytes(analysis)
    g = tflite_graph(analysis)
    life = lifetimes(g, analysis.model.output)
    assert set(arena["tensors"]) == set(g.activations)
    for name, t in arena["tensors"].items():
        assert (t["first"], t["last"]) == life[name] and t["size"] >= g.activations[name]
    boxes = list(arena["tensors"].values())
    for i, a in enumerate(boxes):  # tensors alive at the same time never share bytes
        for b in boxes[i + 1 :]:
            if a["first"] <= b["last"] and b["first"] <= a["last"]:
                assert a["offset"] + a["size"] <= b["offset"] or b["offset"] + b["size"] <= a["offset"]


def test_in_chromium(page, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is not installed (apt-get install chromium; .ci/setup-system.sh does)"
    folder, out = page
    shot = tmp_path / "report.png"
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,3600"]
    dom = subprocess.run(
        [*common, "--enable-logging=stderr", "--v=0", "--dump-dom", out.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert any('"edgeconv-report-check ok"' in line for line in console), console or dom.stderr[-2000:]
    assert len(console) == 1, console  # no error, warning or log but the page's own check
    parser = _Attrs()
    parser.feed(dom.stdout)
    body = next(a for t, a in parser.tags if t == "body")
    assert body.get("data-check") == "ok"
    sections = {a["id"]: a for t, a in parser.tags if t == "section"}
    assert set(sections) == set(SECTIONS)
    assert all(int(sections[s]["data-rendered"]) >= 1 for s in SECTIONS)

    # the arena picture against the model: one drawn box per tensor, heights ∝ bytes
    analysis = load_build(folder).analysis
    from edgeconv.report.html import arena_boxes

    arena = arena_boxes(analysis)
    assert int(sections["memory"]["data-head-bytes"]) == arena["head_bytes"] == predict_head_bytes(analysis)
    assert int(sections["memory"]["data-peak-op"]) == arena["peak_op"]
    drawn = {a["id"][len("arena-") :]: a for t, a in parser.tags if t == "g" and a.get("id", "").startswith("arena-")}
    assert set(drawn) == set(arena["tensors"])
    px_per_byte = [
        float(drawn[n]["data-drawn-height"]) / t["size"] for n, t in arena["tensors"].items() if t["size"] >= 2048
    ]
    assert px_per_byte and max(px_per_byte) / min(px_per_byte) < 1.05, px_per_byte
    width_per_op = [
        float(drawn[n]["data-drawn-width"]) / (t["last"] - t["first"] + 0.8) for n, t in arena["tensors"].items()
    ]
    assert max(width_per_op) / min(width_per_op) < 1.05, width_per_op

    # parity: the drawn grids are the parity JSON's per-layer figures; arm's fault is boxed at
    # FAULTY in both heat maps; the two verdict kinds in their own tables
    assert body.get("data-first-boxes") == "1"
    grids = json.loads(_script_text(dom.stdout, "parity-data"))
    parity = json.loads((out.parent / "parity.json").read_text())
    for t, g in zip(parity["targets"], grids["targets"]):
        rows = t["deployment"]["per_layer"]
        assert grids["layers"] == [r["layer"] for r in rows]
        assert g["max_lsb"] == [r["max_lsb"] for r in rows] and g["sqnr_db"] == [r["sqnr_db"] for r in rows]
    assert [g["first_diverging_layer"] for g in grids["targets"]] == [None, FAULTY]
    ids = {a.get("id") for _, a in parser.tags}
    assert {"first-lsb-arm", "first-sqnr-arm", "parity-sqnr"} <= ids and "first-lsb-cpu" not in ids
    deployment = _table_rows(dom.stdout, "deployment")
    assert [(r[0], r[-1]) for r in deployment] == [("cpu", "pass"), ("arm", "FAIL")], deployment
    assert deployment[1][3].startswith(FAULTY)
    assert [(r[0], r[-1]) for r in _table_rows(dom.stdout, "quality")] == [("cpu", "pass"), ("arm", "FAIL")]

    snap = subprocess.run([*common, f"--screenshot={shot}", out.as_uri()], capture_output=True, text=True, timeout=60)
    assert snap.returncode == 0 and shot.stat().st_size > 20_000, snap.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_refuses_a_bad_parity_file(page, tmp_path):
    folder, _ = page
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps({"model": "x"}))
    run = subprocess.run(
        [sys.executable, "-m", "edgeconv", "report", str(folder), "--parity", str(bad), "-o", str(tmp_path / "r.html")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and run.stderr.strip().splitlines()[-1].startswith("edgeconv: error: --parity"), (
        run.stderr
    )
