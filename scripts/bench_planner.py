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

from edgeconv.ir import InputSpec
from edgeconv.planner import Budgets, plan

BUDGETS = {"64KB": 64_000, "256KB": 256_000, "1MB": 1_000_000, "4MB": 4_000_000}
RAM = 256_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    print(f"planner, input 32x32x3, 10 classes, RAM budget {RAM:,} B (median of {args.repeat} runs)")
    print(f"{'budget':>6}  {'plan time':>9}  {'plan':<40} {'model bytes':>11}  {'util':>6}  {'peak RAM':>9}  "
          f"{'RAM binds':>9}  {'MACs':>13}")
    for label, budget in BUDGETS.items():
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            p = plan(InputSpec(32, 32, 3), 10, Budgets(budget, RAM))
            times.append(time.perf_counter() - start)
        # RAM binds when lifting the RAM budget would give a different plan
        free = plan(InputSpec(32, 32, 3), 10, Budgets(budget, None))
        binds = "yes" if free.candidate.name != p.candidate.name else "no"
        print(f"{label:>6}  {statistics.median(times):8.3f}s  {p.candidate.name:<40} {p.memory.model_bytes:>11,}  "
              f"{p.memory.model_bytes / budget:6.1%}  {p.memory.peak_ram_bytes:>9,}  {binds:>9}  {p.analysis.macs:>13,}")

    help_times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "edgeconv", "--help"], check=True, capture_output=True)
        help_times.append(time.perf_counter() - start)
    print(f"edgeconv --help: {statistics.median(help_times):.3f} s (median of {args.repeat}, "
          f"includes the Python start-up)")


if __name__ == "__main__":
    main()
