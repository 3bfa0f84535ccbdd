"""The closing-note table of issue 9: every import fixture and both MLPerf Tiny ResNet-8 files
through `edgeconv import` and `edgeconv parity`.

    python scripts/import_table.py [--targets cpu,arm,mcu,npu] [--samples 32] [--md table.md]

Per model: source (exporter), IR ops, import time (read + quantize + export + fidelity check),
import fidelity (worst relative error of a float file vs the numpy reference, or LSB of an int8
file on LiteRT reference kernels vs edgeconv's golden), parity deployment verdict and max LSB per
target, bytes of the build's model.int8.tflite vs the source's int8 file where one exists
(MLPerf: the published int8 file), and the TFLM arena of both files (measured with the TFLM
interpreter). MLPerf files are calibrated and checked on 32x32 crops of sklearn's sample photos
(0..255, scripts/photo_crops.py, seeds 0 and 1); the fixtures use edgeconv's seeded synthetic
sets. A model that cannot be imported gets its one-line refusal instead of figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "data" / "import"
MLPERF = ROOT.parent / "shared" / "models" / "mlperf_tiny"


def _cli(*args) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from edgeconv.cli import cli

    r = CliRunner().invoke(cli, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def _arena(data: bytes) -> int | None:
    from edgeconv.backends.mcu import measure_model_arena

    try:
        return measure_model_arena(data)[0]
    except Exception:  # a file TFLM cannot run: reported as '-'
        return None


def models() -> list[dict]:
    meta: dict = {}
    for listing in ("fixtures.json", "tflite_fixtures.json"):  # ONNX fixtures, TFLite fixtures
        if (FIXTURES / listing).is_file():
            for info in json.loads((FIXTURES / listing).read_text()).values():
                for file in info.get("files", []):
                    meta[Path(file).stem] = info
    rows = []
    for path in sorted([*FIXTURES.glob("*.onnx"), *FIXTURES.glob("*.tflite")]):
        info = meta.get(path.stem, {})
        # a float TFLite fixture is compared with the TF converter's int8 file of the same model
        twin = path.with_name(f"{path.stem}_int8.tflite")
        int8_source = twin if path.suffix == ".tflite" and twin.is_file() else None
        if path.stem.endswith("_int8") and path.suffix == ".tflite":
            int8_source = path
        rows.append({"name": path.stem, "path": path, "source": info.get("source", "?"), "int8_source": int8_source})
    published = MLPERF / "ic_resnet8_int8.tflite"
    for name in ("ic_resnet8_float32", "ic_resnet8_int8"):
        path = MLPERF / f"{name}.tflite"
        if path.is_file():
            rows.append(
                {
                    "name": name,
                    "path": path,
                    "source": "MLPerf Tiny (TF converter)",
                    "int8_source": published,
                    "mlperf": True,
                }
            )
    return rows


def measure(row: dict, work: Path, targets: str, samples: int) -> dict:
    out = work / row["name"]
    args = ["import", row["path"], "--out", out, "--json"]
    parity_args = ["parity", out, "--targets", targets, "--json"]
    if row.get("mlperf"):
        sys.path.insert(0, str(ROOT / "scripts"))
        from photo_crops import photo_crops

        np.savez(work / "calib.npz", x=photo_crops(64, 0))
        np.savez(work / "inputs.npz", x=photo_crops(samples, 1))
        args += ["--calib", work / "calib.npz"]
        parity_args += ["--inputs", work / "inputs.npz"]
    else:
        parity_args += ["--samples", str(samples)]
    start = time.perf_counter()
    code, stdout, stderr = _cli(*args)
    seconds = time.perf_counter() - start
    if code != 0 or not stdout.strip():
        return {**row, "error": (stderr.strip().splitlines() or ["?"])[-1].removeprefix("edgeconv: error: ")}
    s = json.loads(stdout)
    result = {**row, "summary": s, "seconds": seconds}
    code, stdout, stderr = _cli(*parity_args)
    try:
        doc = json.loads(stdout)
        result["parity"] = {
            t["target"]: (t["deployment"]["passed"], t["deployment"]["vs_golden"]["max_lsb"]) for t in doc["targets"]
        }
    except (json.JSONDecodeError, KeyError):
        result["parity_error"] = (stderr.strip().splitlines() or ["?"])[-1].removeprefix("edgeconv: error: ")
    int8 = (out / "model.int8.tflite").read_bytes()
    result["int8_bytes"] = len(int8)
    result["arena"] = _arena(int8)
    if row["int8_source"] is not None:
        src = Path(row["int8_source"]).read_bytes()
        result["source_int8_bytes"] = len(src)
        result["source_arena"] = _arena(src)
    return result


def _fidelity(s: dict) -> str:
    f = s.get("fidelity")
    if not f:
        return "parity (cpu)" if s["source_format"] == "onnx-qdq" else "-"
    if f["kind"] == "relative":
        return f"{f['worst']:.2g} rel"
    return f"{int(f['worst'])} LSB"


def table(results: list[dict], targets: list[str]) -> str:
    head = ["model", "source", "ops", "import s", "fidelity", *targets, "int8 B (source)", "TFLM arena B (source)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['source']} | refused: {r['error']} |" + " |" * (len(head) - 3))
            continue
        s = r["summary"]
        ops = ", ".join(f"{op}×{n}" for op, n in s["ops"].items())
        cells = [
            r["name"],
            r["source"] + (" · original kept" if s["original"] else ""),
            ops,
            f"{r['seconds']:.1f}",
            _fidelity(s),
        ]
        for t in targets:
            if "parity" in r and t in r["parity"]:
                ok, lsb = r["parity"][t]
                cells.append(f"{'pass' if ok else 'FAIL'} {lsb}")
            else:
                cells.append("error" if "parity_error" in r else "-")
        src_b = f" ({r['source_int8_bytes']:,})" if "source_int8_bytes" in r else ""
        cells.append(f"{r['int8_bytes']:,}{src_b}")
        arena = f"{r['arena']:,}" if r.get("arena") else "-"
        src_a = f" ({r['source_arena']:,})" if r.get("source_arena") else ""
        cells.append(arena + src_a)
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {r['name']}: parity: {r['parity_error']}" for r in results if "parity_error" in r]
    return "\n".join(lines + ([""] + notes if notes else []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="cpu,arm,mcu,npu")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--md", type=Path, help="Also write the table to this file.")
    parser.add_argument("--only", help="Comma-separated model names (default: all).")
    args = parser.parse_args(argv)
    rows = models()
    if args.only:
        wanted = set(args.only.split(","))
        rows = [r for r in rows if r["name"] in wanted]
    targets = [t for t in args.targets.split(",") if t]
    results = []
    with tempfile.TemporaryDirectory(prefix="edgeconv-import-table-") as tmp:
        for row in rows:
            print(f"{row['name']} ...", file=sys.stderr)
            results.append(measure(row, Path(tmp), args.targets, args.samples))
    text = table(results, targets)
    print(text)
    if args.md:
        args.md.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
