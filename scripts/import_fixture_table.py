"""The ONNX import figures over the committed fixtures (tests/data/import/): per fixture the
source exporter, the ops in the file, the IR ops, the import time (read + canonicalize + map),
the worst relative error of the imported model's float reference against the source
framework's committed outputs and against ONNX Runtime on the source file, and the parity
verdict per target (`edgeconv import` then `edgeconv parity --json`: max LSB vs each target's
golden at the output, SQNR vs float).

    python scripts/import_fixture_table.py [--targets cpu,arm,mcu,npu] [--md]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "import"


def _to_nhwc(x: np.ndarray, layout: str) -> np.ndarray:
    if layout == "NCHW":
        return x.transpose(0, 2, 3, 1)
    if layout == "vector":
        return x.reshape(x.shape[0], 1, 1, -1)
    return x


def _rel(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - want).max() / max(float(np.abs(want).max()), 1e-30))


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


def measure(name: str, entry: dict, targets: str, work: Path) -> dict:
    from edgeconv.core import reference
    from edgeconv.core.graph import analyze
    from edgeconv.frontends.onnx import import_onnx

    path = DATA / f"{name}.onnx"
    start = time.perf_counter()
    imp = import_onnx(path)
    seconds = time.perf_counter() - start
    row = {
        "fixture": name,
        "source": entry["source"],
        "file ops": ", ".join(o for o in entry["ops"] if o not in ("Constant",)),
        "IR ops": ", ".join(
            layer.op
            + (
                f"+{layer.activation.value}"
                if getattr(layer, "activation", None) and layer.activation.value != "none"
                else ""
            )
            for layer in imp.model.layers
        ),
        "import s": seconds,
    }
    with np.load(DATA / f"{name}.npz") as data:
        x, want = data["inputs"], data["outputs"]
    if imp.quant is None:
        got = reference.run(analyze(imp.model), imp.weights, _to_nhwc(x, entry["layout"]))[imp.model.output]
        if want.ndim == 4 and entry["layout"] == "NCHW":
            got = got.transpose(0, 3, 1, 2)
        got = got.reshape(want.shape)
        row["rel err vs source"] = _rel(got, want)
        row["rel err vs ORT"] = _rel(got, _ort(path, x))
    out = work / name
    imported = subprocess.run(
        [sys.executable, "-m", "edgeconv", "import", str(path), "--out", str(out), "--json"],
        capture_output=True,
        text=True,
    )
    if imported.returncode != 0:
        row["parity"] = f"import exit {imported.returncode}: {imported.stderr.strip().splitlines()[-1]}"
        return row
    parity = subprocess.run(
        [sys.executable, "-m", "edgeconv", "parity", str(out), "--targets", targets, "--json"],
        capture_output=True,
        text=True,
    )
    try:
        doc = json.loads(parity.stdout)
    except json.JSONDecodeError:
        row["parity"] = f"parity exit {parity.returncode}: {(parity.stderr.strip().splitlines() or ['?'])[-1]}"
        return row
    cells = []
    for t in doc["targets"]:
        lsb = t["deployment"]["vs_golden"]["max_lsb"]
        sqnr = t.get("quality", {}).get("vs_float", {}).get("sqnr_db")
        verdict = "pass" if t["deployment"]["passed"] else "FAIL"
        cells.append(f"{t['target']} {verdict} {lsb} LSB" + (f" {sqnr:.0f} dB" if sqnr is not None else ""))
    row["parity"] = "; ".join(cells)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="cpu,arm,mcu,npu")
    parser.add_argument("--only", help="comma-separated fixture names")
    parser.add_argument("--md", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    manifest = json.loads((DATA / "fixtures.json").read_text())
    names = args.only.split(",") if args.only else sorted(manifest)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            rows.append(measure(name, manifest[name], args.targets, Path(tmp)))
            print(json.dumps(rows[-1]), file=sys.stderr)
    cols = ["fixture", "source", "IR ops", "import s", "rel err vs source", "rel err vs ORT", "parity"]

    def cell(row, col):
        v = row.get(col, "-")
        if isinstance(v, float):
            return f"{v:.2f}" if col == "import s" else f"{v:.1e}"
        return str(v)

    if args.md:
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for row in rows:
            print("| " + " | ".join(cell(row, c) for c in cols) + " |")
    else:
        for row in rows:
            print("  ".join(cell(row, c) for c in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
