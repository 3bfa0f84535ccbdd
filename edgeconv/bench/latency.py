"""`edgeconv bench`: latency per target (median and p90 after warm-up), int8 vs float,
model bytes, RAM and achieved MAC/s."""

from __future__ import annotations

import builtins
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgeconv.artifacts.folder import BuiltModel
from edgeconv.backends import get_backend, require
from edgeconv.parity.run import target_dtype
from edgeconv.plan.memory import estimate
from edgeconv.plan.targets import Target
from edgeconv.quant.quantize import quantize_input


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p90_ms: float
    runs: int


@dataclass(frozen=True)
class BenchRow:
    target: str
    int8: Timing
    float: Timing | None  # the float artifact's timing (None when the target has no float model)
    model_bytes: int
    ram_predicted: int
    ram_measured: int | None
    macs: int

    @property
    def macs_per_second(self) -> builtins.float:
        return self.macs / (self.int8.median_ms / 1e3)

    def to_json(self) -> dict:
        return {
            "target": self.target,
            "int8_ms": vars(self.int8),
            "float_ms": vars(self.float) if self.float else None,
            "speedup": None if not self.float else round(self.float.median_ms / self.int8.median_ms, 3),
            "model_bytes": self.model_bytes,
            "ram_predicted_bytes": self.ram_predicted,
            "ram_measured_bytes": self.ram_measured,
            "macs": self.macs,
            "macs_per_second": round(self.macs_per_second),
        }


def time_calls(call: Callable[[], object], warmup: int, repeat: int, tick: Callable[[], None] | None = None) -> Timing:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
        if tick:
            tick()
    return Timing(round(statistics.median(times), 4), round(float(np.percentile(times, 90)), 4), repeat)


def bench_target(
    build: BuiltModel, target: Target, warmup: int, repeat: int, tick: Callable[[], None] | None = None
) -> BenchRow:
    backend = require(get_backend(target))
    m = build.analysis.model.input
    x = np.random.default_rng(0).standard_normal((1, m.height, m.width, m.channels)).astype(np.float32)
    x_q = quantize_input(x, build.qparams.activations["input"], target_dtype(build, target))
    int8 = time_calls(lambda: backend.run(build, x_q), warmup, repeat, tick)
    float_timing = None
    if backend.run_float(build, x) is not None:
        float_timing = time_calls(lambda: backend.run_float(build, x), warmup, repeat, tick)
    measured = None
    if hasattr(backend, "measure_arena"):
        measured = backend.measure_arena(build).measured_bytes
    return BenchRow(
        target.name,
        int8,
        float_timing,
        build.artifact(target.artifact).stat().st_size,
        _predicted_ram(build, target),
        measured,
        build.analysis.macs,
    )


def _predicted_ram(build: BuiltModel, target: Target) -> int:
    if target.backend in ("mcu", "mcu_qemu"):
        from edgeconv.plan.arena import predict_arena_bytes

        return predict_arena_bytes(build.analysis)
    return estimate(build.analysis).peak_ram_bytes


def interleaved_timings(
    runners: dict[str, Callable[[], object]], repeat: int, warmup: int
) -> dict[str, tuple[float, float]]:
    """(median, p90) in ms per runner; the runners take turns so drift hits all of them alike."""
    for fn in runners.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeat):
        for name, fn in runners.items():
            start = time.perf_counter_ns()
            fn()
            times[name].append((time.perf_counter_ns() - start) / 1e6)
    return {name: (statistics.median(t), float(np.percentile(t, 90))) for name, t in times.items()}
