"""Planner speed, `edgeconv --help` start-up time and budget utilization.

Usage: python scripts/bench_planner.py [--repeat N]
Goals on a 2-core machine: a 1MB plan in < 1 s, `edgeconv --help` in < 0.5 s, and
utilization (predicted model bytes / budget) >= 80% where RAM does not bind.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from edgeconv.core.graph import analyze
from edgeconv.core.ir import InputSpec
from edgeconv.plan.memory import predict_model_bytes
from edgeconv.plan.planner import Budgets, plan
from edgeconv.plan.recipes import load_recipe, recipe_names

BUDGETS = {"64KB": 64_000, "256KB": 256_000, "1MB": 1_000_000, "4MB": 4_000_000}
RAM = 256_000


INPUTS = {"32x32x3": (InputSpec(32, 32, 3), 10), "49x10x1": (InputSpec(49, 10, 1), 12)}


def planner_table(shape: str, repeat: int) -> list:
    spec, classes = INPUTS[shape]
    print(f"\nplanner, input {shape}, {classes} classes, RAM budget {RAM:,} B (median of {repeat} runs)")
    print(
        f"{'budget':>6}  {'plan time':>9}  {'plan':<40} {'model bytes':>11}  {'util':>6}  {'peak RAM':>9}  "
        f"{'RAM binds':>9}  {'MACs':>13}"
    )
    plans = []
    for label, budget in BUDGETS.items():
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            p = plan(spec, classes, Budgets(budget, RAM))
            times.append(time.perf_counter() - start)
        # RAM binds when lifting the RAM budget would give a different plan
        free = plan(spec, classes, Budgets(budget, None))
        binds = "yes" if free.candidate.name != p.candidate.name else "no"
        print(
            f"{label:>6}  {statistics.median(times):8.3f}s  {p.candidate.name:<40} {p.memory.model_bytes:>11,}  "
            f"{p.memory.model_bytes / budget:6.1%}  {p.memory.peak_ram_bytes:>9,}  {binds:>9}  {p.analysis.macs:>13,}"
        )
        plans.append(p)
    return plans


def size_model_table(plans: list) -> None:
    """The planner's model-bytes prediction against the int8 .tflite really written."""
    from edgeconv.core.weights import init_weights
    from edgeconv.export.tflite import build_int8_tflite
    from edgeconv.quant.calibrate import calibrate, synthetic_calibration_set
    from edgeconv.quant.quantize import quantize

    print("\npredicted model bytes vs the real int8 .tflite")
    print(f"{'model':<42} {'predicted':>10} {'real':>10} {'error':>7}")
    for item in plans:
        analysis = getattr(item, "analysis", item)  # a Plan or an Analysis
        predicted = predict_model_bytes(analysis)
        weights = init_weights(analysis, 0)
        cal = calibrate(analysis, weights, synthetic_calibration_set(analysis, 8, 0))
        real = len(build_int8_tflite(analysis, quantize(analysis, weights, cal.ranges, cal.info)))
        print(f"{analysis.model.name:<42} {predicted:>10,} {real:>10,} {predicted / real - 1:+7.2%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    plans = [p for shape in INPUTS for p in planner_table(shape, args.repeat)]
    small = [plan(spec, classes, Budgets(8_000, RAM)) for spec, classes in INPUTS.values()]
    size_model_table([*(analyze(load_recipe(name)) for name in recipe_names()), *small, *plans])

    help_times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "edgeconv", "--help"], check=True, capture_output=True)
        help_times.append(time.perf_counter() - start)
    print(
        f"\nedgeconv --help: {statistics.median(help_times):.3f} s (median of {args.repeat}, "
        f"includes the Python start-up)"
    )


if __name__ == "__main__":
    main()
