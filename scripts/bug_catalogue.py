"""The bug catalogue: real deployment bugs injected into the artifacts, the verdict that catches
each on each target, and (--correct) the verdicts over correct deployments: 0 false alarms.

    python scripts/bug_catalogue.py [--targets cpu,arm,npu,mcu] [--samples 16]
    python scripts/bug_catalogue.py --correct [--targets ...] [--skip-plans] [--skip-trained]

The catalogue logic is edgeconv/parity/bugs.py; the file edits edgeconv/export/tamper.py.
Prints Markdown tables (README "Bug catalogue").
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeconv.parity import bugs
from edgeconv.plan.targets import load_target

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "data" / "import"
MLPERF = ROOT.parent / "shared" / "models" / "mlperf_tiny"
PLANS = [("32x32x3", 10), ("96x96x1", 10), ("96x96x1", 2), ("49x10x1", 12), ("64x64x3", 5)]
FLOAT_FIXTURES = ["stride2_pad1.onnx", "depthwise_separable.onnx", "residual.onnx", "flatten_nonsquare.onnx"]
INT8_FIXTURES = ["keras_cnn_int8.tflite", "qdq_residual.onnx"]


def catalogue_table(targets, samples: int) -> int:
    start = time.perf_counter()
    control, rows = bugs.run_catalogue(targets, samples=samples, source_dir=FIXTURES)
    names = [t.name for t in targets]
    print(
        f"bug catalogue: {samples} synthetic samples, model {bugs.CATALOGUE_MODEL['name']} (and two imported fixtures)"
    )
    print()
    print("| bug (injected) | layer | " + " | ".join(names) + " | as expected |")
    print("|---|---|" + "---|" * len(names) + "---|")
    print(
        "| none (the correct build) | – | "
        + " | ".join(c.text() for c in control)
        + " | "
        + ("yes" if not any(c.flagged for c in control) else "NO")
        + " |"
    )
    caught = harmless_ok = 0
    n_bugs = sum(not r.harmless for r in rows)
    for r in rows:
        tag = "harmless: " if r.harmless else ""
        extra = f"; source SQNR {r.source_sqnr:.1f} dB" if r.source_sqnr is not None else ""
        cells = " | ".join(c.text() for c in r.cells)
        if r.harmless:
            harmless_ok += r.as_expected
            verdict = "yes (passes: " + r.bug.reason + ")" if r.as_expected else "NO (flagged)"
        else:
            caught += r.as_expected
            missed = [c.target for c in r.cells if not c.flagged]
            verdict = "yes" if r.as_expected else f"NOT caught on {', '.join(missed)}"
        layer = r.bug.layer if "," not in r.bug.layer else "any"
        print(f"| {tag}{r.bug.name}: {r.bug.injected}{extra} | {layer} | {cells} | {verdict} |")
    print()
    print(
        f"{caught} of {n_bugs} bugs caught on every target; {harmless_ok} of {len(rows) - n_bugs} harmless edits "
        f"pass everywhere ({time.perf_counter() - start:.1f} s)"
    )
    return 0


def _correct_builds(work: Path, args):
    """(label, build folder, source file or None, inputs or None) of every correct deployment."""
    from edgeconv.artifacts.build import BuildRequest, run_build
    from edgeconv.artifacts.imported import build_imported
    from edgeconv.cli.importer import read_model
    from edgeconv.core.ir import InputSpec
    from edgeconv.plan.recipes import recipe_names

    for name in recipe_names():
        out = work / name
        run_build(BuildRequest(recipe=name, out=str(out)))
        yield f"recipe {name}", out, None, None
    if not args.skip_plans:
        for shape, classes in PLANS:
            out = work / f"plan_{shape}_{classes}"
            w, h, c = (int(v) for v in shape.split("x"))
            run_build(BuildRequest(input_spec=InputSpec(w, h, c), classes=classes, out=str(out)))
            yield f"plan {shape}/{classes}", out, None, None
    if not args.skip_trained and (MLPERF / "ic_resnet8_float32.tflite").is_file():
        weights, calib, crops = work / "r8.npz", work / "calib.npz", work / "crops.npz"
        py = sys.executable
        subprocess.run([py, str(ROOT / "scripts" / "resnet8_weights.py"), "--out", str(weights)], check=True)
        subprocess.run(
            [py, str(ROOT / "scripts" / "photo_crops.py"), "--n", "100", "--seed", "0", "--out", str(calib)], check=True
        )
        subprocess.run(
            [py, str(ROOT / "scripts" / "photo_crops.py"), "--n", "64", "--seed", "1", "--out", str(crops)], check=True
        )
        out = work / "resnet8_trained"
        run_build(BuildRequest(recipe="resnet8", weights_path=str(weights), calib_path=str(calib), out=str(out)))
        yield "trained ResNet-8, photo crops", out, str(MLPERF / "ic_resnet8_float32.tflite"), str(crops)
        out = work / "mlperf_int8"
        build_imported(read_model(MLPERF / "ic_resnet8_int8.tflite"), out=out)
        yield "MLPerf int8 file (import)", out, None, str(crops)
    for fixture in FLOAT_FIXTURES + INT8_FIXTURES:
        out = work / fixture.replace(".", "_")
        build_imported(read_model(FIXTURES / fixture), out=out)
        source = str(FIXTURES / fixture) if fixture in FLOAT_FIXTURES else None
        yield f"import {fixture}", out, source, None


def correct_table(targets, samples: int, args) -> int:
    from edgeconv.artifacts.folder import load_build
    from edgeconv.parity.run import comparison_inputs, run_parity

    names = [t.name for t in targets]
    print(f"correct deployments: every verdict on {', '.join(names)} ({samples} synthetic samples unless named)")
    print()
    print(
        "| deployment | target | max LSB per layer (allowed) | SQNR logits / out dB | top-1 | deploy | quality | source |"
    )
    print("|---|---|---:|---:|---:|---|---|---|")
    deployments = alarms = 0
    with tempfile.TemporaryDirectory(prefix="edgeconv-correct-") as tmp:
        for label, folder, source, inputs in _correct_builds(Path(tmp), args):
            build = load_build(folder)
            x, _ = comparison_inputs(build, inputs, samples, 0, min_synthetic=1)
            report = run_parity(build, targets, x, "", source=source)
            for r in report.results:
                deployments += 1
                worst = max(r.per_layer, key=lambda row: row["max_lsb"] - row["allowed"], default=None)
                lsb = f"{worst['max_lsb']} ({worst['allowed']}) at {worst['layer']}" if worst else "–"
                f = r.float_stats
                logits = f.get("sqnr_logits_db")
                sq = (f"{logits:.1f} / " if logits is not None else "") + f"{f['sqnr_db']:.1f}"
                top1 = f"{f['top1_agreement']:.0%}" if f.get("top1_agreement") is not None else "–"

                def v(kind, result=r, report=report):
                    got = result.verdict(kind) if kind != "source" else report.verdict("source")
                    return "–" if got is None else ("pass" if got else "FAIL")

                flagged = any(v(k) == "FAIL" for k in ("deployment", "quality", "source"))
                alarms += flagged
                print(
                    f"| {label} | {r.target} | {lsb} | {sq} | {top1} | {v('deployment')} | {v('quality')} | {v('source')} |"
                )
            sys.stdout.flush()
    print()
    print(f"{deployments} correct deployments, {alarms} false alarms")
    return 1 if alarms else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="cpu,arm,npu,mcu")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--correct", action="store_true", help="the verdicts over correct deployments instead")
    parser.add_argument("--skip-plans", action="store_true")
    parser.add_argument("--skip-trained", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    np.seterr(all="ignore")
    targets = [load_target(t) for t in args.targets.split(",")]
    if args.correct:
        return correct_table(targets, args.samples, args)
    return catalogue_table(targets, args.samples)


if __name__ == "__main__":
    raise SystemExit(main())
