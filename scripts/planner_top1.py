"""Planner outputs at the default budget: does top-1 mean something? Per plan, how many distinct
classes the float reference predicts over the parity samples, the logit spread across classes
and across samples, and per target the logits / output SQNR, top-1 agreement and verdicts.

    python scripts/planner_top1.py [--targets cpu,arm,npu,mcu] [--samples 16]

Prints the Markdown table of README "Planner outputs and top-1".
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from edgeconv.artifacts.build import BuildRequest, run_build
from edgeconv.artifacts.folder import load_build
from edgeconv.core import reference
from edgeconv.core.ir import InputSpec
from edgeconv.parity.run import comparison_inputs, logits_layer, run_parity
from edgeconv.plan.targets import load_target

PLANS = [("32x32x3", 10), ("96x96x1", 10), ("96x96x1", 2), ("49x10x1", 12), ("64x64x3", 5)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="cpu,arm,npu,mcu")
    parser.add_argument("--samples", type=int, default=16)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    targets = [load_target(t) for t in args.targets.split(",")]
    names = [t.name for t in targets]
    print(
        f"| plan | distinct classes (of {args.samples} samples) | logit std classes / samples | "
        + " | ".join(names)
        + " |"
    )
    print("|---|---:|---|" + "---|" * len(names))
    with tempfile.TemporaryDirectory(prefix="edgeconv-top1-") as tmp:
        for shape, classes in PLANS:
            w, h, c = (int(v) for v in shape.split("x"))
            out = Path(tmp) / f"{shape}_{classes}"
            run_build(BuildRequest(input_spec=InputSpec(w, h, c), classes=classes, out=str(out)))
            build = load_build(out)
            x, _ = comparison_inputs(build, None, args.samples, 0, min_synthetic=1)
            name = logits_layer(build) or build.analysis.model.output
            logits = reference.run(build.analysis, build.weights, x, keep_all=True)[name].reshape(len(x), -1)
            report = run_parity(build, targets, x, "")
            cells = []
            for r in report.results:
                f = r.float_stats
                verdict = "pass" if r.passed else "FAIL"
                cells.append(
                    f"{f.get('sqnr_logits_db') or 0:.1f} / {f['sqnr_db']:.1f} · {f['top1_agreement']:.0%} · {verdict}"
                )
            print(
                f"| {shape}/{classes} | {len(set(logits.argmax(axis=1).tolist()))} | "
                f"{logits.std(axis=1).mean():.2f} / {logits.std(axis=0).mean():.2f} | " + " | ".join(cells) + " |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
