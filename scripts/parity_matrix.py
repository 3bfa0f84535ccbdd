"""The parity matrix: every target × every recipe and a 1MB planner output.

Prints per cell the SQNR vs the float reference, the max LSB vs the target's golden reference
(at the output, or across rounding families at the logits of a softmax model; "out LSB" is the
softmax output), pass/fail, then the pairwise max LSB between targets and the wall time of each parity run.

Usage: python scripts/parity_matrix.py [--targets cpu,arm,npu,mcu] [--samples 32] [--skip-plan]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from edgeconv.artifacts.build import BuildRequest, run_build
from edgeconv.artifacts.folder import load_build
from edgeconv.parity.run import parity_inputs, run_parity
from edgeconv.plan.recipes import recipe_names
from edgeconv.plan.targets import load_target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="cpu,arm,npu,mcu")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--skip-plan", action="store_true", help="leave out the 1MB planner output")
    args = parser.parse_args()
    targets = [load_target(t) for t in args.targets.split(",")]

    cases = [(name, BuildRequest(recipe=name)) for name in recipe_names()]
    if not args.skip_plan:
        cases.append(("plan 1MB", BuildRequest(budget=1_000_000, ram=256_000)))
    header = (
        f"{'model':<10} {'target':<6} {'golden':<15} {'SQNR dB':>8} {'top-1':>6} {'max LSB':>7} {'allowed':>7} "
        f"{'out LSB':>7} {'verdict':>7} {'run s':>7}"
    )
    print(f"parity matrix: {args.samples} synthetic samples per model (seed 0, not the calibration samples)")
    print(header)
    print("-" * len(header))
    pairwise_lines, walls = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for label, request in cases:
            folder = Path(tmp) / label.replace(" ", "_")
            run_build(BuildRequest(**{**vars(request), "out": str(folder)}))
            build = load_build(folder)
            start = time.perf_counter()
            report = run_parity(build, targets, parity_inputs(build.analysis, args.samples, 0), "synthetic")
            walls.append((label, time.perf_counter() - start))
            for r in report.results:
                top1 = r.float_stats["top1_agreement"]
                print(
                    f"{label:<10} {r.target:<6} {r.golden:<15} {r.float_stats['sqnr_db']:8.2f} "
                    f"{'-' if top1 is None else f'{top1:.0%}':>6} {r.checks[0].value:7d} "
                    f"{r.checks[0].limit:7d} {r.lsb_stats['max_lsb']:7d} {'pass' if r.passed else 'FAIL':>7} "
                    f"{r.seconds:7.2f}"
                )
                if r.divergence:
                    print(f"{'':<10} first diverging layer: {r.divergence.layer} ({r.divergence.max_lsb} LSB)")
            for p in report.pairwise:
                pairwise_lines.append(
                    f"{label:<10} {p['a']:>4} vs {p['b']:<4} max {p['max_lsb']} LSB, {p['share_differing']:.2%} differ"
                )
    print("\npairwise between targets (int8 grid)")
    print("\n".join(pairwise_lines))
    print("\nwall time of each parity run (all targets)")
    for label, seconds in walls:
        print(f"{label:<10} {seconds:7.1f} s")


if __name__ == "__main__":
    main()
