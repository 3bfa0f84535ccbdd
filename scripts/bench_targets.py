"""Latency of every target on ResNet-8 and a 1MB planner output, and the MCU arena predicted
by the planner's RAM model against the arena TFLM really needs, for every recipe.

Usage: python scripts/bench_targets.py [--repeat 50] [--warmup 5] [--targets cpu,arm,npu,mcu]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from edgeconv.artifacts.build import BuildRequest, run_build
from edgeconv.artifacts.folder import load_build
from edgeconv.backends import get_backend
from edgeconv.bench.latency import bench_target
from edgeconv.plan.recipes import recipe_names
from edgeconv.plan.targets import load_target


def _build(tmp: str, label: str, request: BuildRequest):
    folder = Path(tmp) / label
    run_build(BuildRequest(**{**vars(request), "out": str(folder), "calib_samples": 16}))
    return load_build(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--targets", default="cpu,arm,npu,mcu")
    args = parser.parse_args()
    targets = [load_target(t) for t in args.targets.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        cases = [("resnet8", BuildRequest(recipe="resnet8")), ("plan_1MB", BuildRequest(budget=1_000_000, ram=256_000))]
        for label, request in cases:
            build = _build(tmp, label, request)
            print(
                f"\n{label} ({build.name}): {build.analysis.macs:,} MACs; batch 1, median / p90 ms of "
                f"{args.repeat} runs after {args.warmup} warm-up, one thread"
            )
            print(
                f"{'target':<6} {'int8 ms':>16} {'float ms':>16} {'int8/float':>10} {'model B':>9} "
                f"{'RAM pred B':>10} {'RAM meas B':>10} {'GMAC/s':>7}"
            )
            for target in targets:
                r = bench_target(build, target, args.warmup, args.repeat)
                f = f"{r.float.median_ms:7.3f} / {r.float.p90_ms:6.3f}" if r.float else f"{'-':>16}"
                speed = f"{r.float.median_ms / r.int8.median_ms:9.2f}x" if r.float else f"{'-':>10}"
                meas = f"{r.ram_measured:10,}" if r.ram_measured else f"{'-':>10}"
                print(
                    f"{r.target:<6} {r.int8.median_ms:7.3f} / {r.int8.p90_ms:6.3f} {f} {speed} {r.model_bytes:9,} "
                    f"{r.ram_predicted:10,} {meas} {r.macs_per_second / 1e9:7.2f}"
                )

        mcu = get_backend(load_target("mcu"))
        print("\nMCU arena (TFLite Micro): planner prediction vs the smallest arena that runs")
        print(f"{'model':<10} {'predicted B':>11} {'measured B':>10} {'ratio':>7}  method")
        for name in recipe_names():
            report = mcu.measure_arena(_build(tmp, name, BuildRequest(recipe=name)))
            print(
                f"{name:<10} {report.predicted_bytes:11,} {report.measured_bytes:10,} "
                f"{report.predicted_bytes / report.measured_bytes:7.4f}  {report.method}"
            )


if __name__ == "__main__":
    main()
