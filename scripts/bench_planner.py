"""Planner speed, `edgeconv --help` start-up time and budget utilization.

Usage: python scripts/bench_planner.py [--repeat N]
Goals on a 2-core machine: a 1MB plan in < 1 s and a 4MB plan in < 2 s, `edgeconv --help` in
< 0.5 s, and >= 90% utilization of the binding budget. Columns: search size (stage prefixes
visited, networks costed, prefixes cut by a budget or by the bound), the plan, the flash
utilization and which budget binds (the one closest to its limit) with its utilization.
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
INPUTS = {
    "32x32x3": (InputSpec(32, 32, 3), 10),
    "49x10x1": (InputSpec(49, 10, 1), 12),
    "96x96x1": (InputSpec(96, 96, 1), 2),
    "96x96x3": (InputSpec(96, 96, 3), 2),
}


def _binding(p, budgets: Budgets) -> tuple[str, float]:
    """The budget the plan is closest to (the binding one) and its utilization."""
    used = {
        "flash": p.memory.model_bytes / budgets.model_bytes,
        "RAM": p.memory.peak_ram_bytes / (budgets.ram_bytes or 1),
    }
    if budgets.mac_limit:
        used["MACs"] = p.analysis.macs / budgets.mac_limit
    name = max(used, key=lambda k: used[k])
    return name, used[name]


def planner_table(shape: str, repeat: int, target: str | None = None) -> list:
    from edgeconv.artifacts.build import ram_model, target_limits
    from edgeconv.plan.targets import load_target

    spec, classes = INPUTS[shape]
    t = load_target(target) if target else None
    limits, rm = target_limits(t), ram_model(t)
    macs = t.max_macs if t else None
    print(
        f"\nplanner, input {shape}, {classes} classes, RAM {RAM:,} B"
        + (f", target {target} (TFLM arena, MACs <= {macs:,})" if t else "")
        + f" (median of {repeat} runs)"
    )
    print(
        f"{'budget':>6}  {'time':>6}  {'visited':>7}  {'costed':>7}  {'cut':>5}  {'plan':<52} {'model bytes':>11}  "
        f"{'flash':>6}  {'peak RAM':>8}  {'MACs':>12}  binds"
    )
    plans = []
    for label, budget in BUDGETS.items():
        budgets = Budgets(budget, RAM, macs)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            p = plan(spec, classes, budgets, limits, ram_model=rm)
            times.append(time.perf_counter() - start)
        s = p.stats
        binds, util = _binding(p, budgets)
        print(
            f"{label:>6}  {statistics.median(times):5.2f}s  {s.visited:>7,}  {s.evaluated:>7,}  "
            f"{s.pruned_budget + s.pruned_bound:>5,}  {p.candidate.name:<52} {p.memory.model_bytes:>11,}  "
            f"{p.memory.model_bytes / budget:6.1%}  {p.memory.peak_ram_bytes:>8,}  {p.analysis.macs:>12,}  "
            f"{binds} {util:.1%}"
        )
        plans.append(p)
    return plans


# the worst-case sweep: square inputs to 224x224, elongated ones (101x40, 224x32, 224x1) and an
# odd one (124x129), 1 and 3 channels, at the two largest budgets
SWEEP = [(8, 8), (16, 16), (28, 28), (32, 32), (49, 10), (64, 64), (96, 96), (101, 40), (128, 128)]
SWEEP += [(160, 160), (224, 224), (224, 32), (224, 1), (124, 129), (40, 101), (10, 49)]


def slowest_table() -> None:
    print(f"\nslowest plan over {2 * len(SWEEP)} inputs (1 and 3 channels), 10 classes, RAM {RAM:,} B")
    for label in ("1MB", "4MB"):
        runs = []
        for (w, h), c in ((wh, c) for wh in SWEEP for c in (1, 3)):
            start = time.perf_counter()
            p = plan(InputSpec(w, h, c), 10, Budgets(BUDGETS[label], RAM))
            runs.append((time.perf_counter() - start, f"{w}x{h}x{c}", p.stats.visited))
        seconds, shape, visited = max(runs)
        print(
            f"{label:>6}  slowest {seconds:.2f} s ({shape}, {visited:,} prefixes); median {statistics.median(r[0] for r in runs):.3f} s"
        )


def granted_table() -> None:
    """The MLPerf Tiny DS-CNN's budgets with its MACs granted (--macs): the objective's other branch."""
    budgets = Budgets(42_720, 24_304, 2_656_640, macs_granted=True)
    start = time.perf_counter()
    p = plan(InputSpec(49, 10, 1), 10, budgets)
    seconds = time.perf_counter() - start
    print(
        f"\n49x10x1, 42,720 B, RAM 24,304 B, 2,656,640 MACs granted: {p.candidate.name} in {seconds:.2f} s "
        f"({p.stats.visited:,} prefixes), MACs {p.analysis.macs / budgets.macs:.1%} of the grant"
    )


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
    for shape in INPUTS:
        planner_table(shape, args.repeat, "mcu")
    slowest_table()
    granted_table()
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
