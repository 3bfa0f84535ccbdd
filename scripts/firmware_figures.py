"""Figures of the README's "Firmware" section: per model and kernels on the emulated Cortex-M4,
flash split (model / kernels / runtime), arena (x86-64 host TFLM, the part, edgeconv's
prediction), LSB vs the golden, instructions per invoke, predicted ms on two boards.

    python scripts/firmware_figures.py [--samples 8] [--json]

Needs the cached TFLM libraries (scripts/build_tflm.sh --kernels cmsis_nn / reference) and
qemu-system-arm. Models: the three recipes, a planner output, the published MLPerf int8 ResNet-8.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeconv.artifacts.build import BuildRequest, run_build
from edgeconv.artifacts.folder import load_build
from edgeconv.backends.mcu import measure_model_arena
from edgeconv.core.errors import InputError
from edgeconv.device import cortex_m
from edgeconv.firmware import app, latency, library
from edgeconv.plan.arena import predict_arena_bytes
from edgeconv.quant.golden import run_int8
from edgeconv.quant.quantize import quantize_input

MLPERF = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "mlperf_tiny" / "ic_resnet8_int8.tflite"


def _models(tmp: Path):
    for recipe in ("resnet8", "ds_cnn", "vgg_small"):
        run_build(BuildRequest(recipe=recipe, out=str(tmp / recipe), calib_samples=16))
        yield recipe, tmp / recipe
    run_build(BuildRequest(budget=64_000, out=str(tmp / "plan64KB"), calib_samples=16))
    yield "plan 64KB", tmp / "plan64KB"
    yield "MLPerf ResNet-8 int8", MLPERF


def _inputs(source: app.ModelSource, path: Path, n: int):
    """(int8 inputs, expected int8 outputs, the expectation's name)."""
    rng = np.random.default_rng(0)
    if path.is_dir():
        build = load_build(path)
        spec = build.analysis.model.input
        x = rng.standard_normal((n, spec.height, spec.width, spec.channels)).astype(np.float32)
        x_q = quantize_input(x, build.qparams.activations["input"])
        want = run_int8(build.analysis, build.qparams, x_q, "tflm")[build.analysis.model.output]
        return x_q, want.reshape(n, -1), "tflm golden"
    from tflite_micro.python.tflite_micro import runtime

    x_q = rng.integers(-128, 128, (n, 32, 32, 3), dtype=np.int8)
    it = runtime.Interpreter.from_bytes(source.data)
    want = []
    for i in range(n):
        it.set_input(x_q[i : i + 1], 0)
        it.invoke()
        want.append(np.array(it.get_output(0)).reshape(-1))
    return x_q, np.stack(want), "host TFLM"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args()
    libs = {}
    for kernels in ("cmsis_nn", "reference"):
        try:
            libs[kernels] = library.find("cortex-m4", kernels)
        except InputError as err:
            print(f"skipping {kernels}: {err}", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in _models(Path(tmp)):
            source = app.load_source(path)
            host_arena = measure_model_arena(source.data)[0]
            x_q, want, against = _inputs(source, path, ns.samples)
            macs = source.analysis.macs if source.analysis is not None else None
            for kernels, lib in libs.items():
                project = app.make_project(source, lib)
                folder = Path(tmp) / f"fw-{len(rows)}"
                app.write_project(folder, project)
                start = time.perf_counter()
                app.compile_project(folder, lib)
                compile_s = time.perf_counter() - start
                mem = app.memory_figures(folder)
                run = cortex_m.run_elf(folder / app.ELF, "cortex-m4", x_q)
                got = run.outputs[0].astype(int)
                rows.append(
                    {
                        "model": name,
                        "kernels": kernels,
                        "ops": list(project.ops),
                        "macs": macs,
                        "flash_bytes": mem["flash_bytes"],
                        "flash_split": mem["flash_split"],
                        "data_bytes": mem["size"]["data"],
                        "bss_bytes": mem["size"]["bss"],
                        "arena_host_x86_64": host_arena,
                        "arena_device": run.arena_used_bytes,
                        "stack_device": run.stack_bytes,
                        "ram_bytes": mem["size"]["data"] + mem["size"]["bss"] + run.stack_bytes,
                        "arena_predicted_64bit": predict_arena_bytes(source.analysis) if source.analysis else None,
                        "arena_compiled": run.arena_bytes,
                        "max_lsb": int(np.abs(got - want.astype(int)).max()),
                        "against": against,
                        "instructions_per_invoke": run.median_instructions,
                        "compile_s": round(compile_s, 1),
                        "predicted": latency.predictions(macs, run.median_instructions) if macs else [],
                    }
                )
                print(f"{name} / {kernels}: done", file=sys.stderr)
    if ns.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(
        "| model | kernels | flash model / kernels / runtime (B) | arena host / device / predicted (B) | LSB | instructions / invoke | predicted ms M4 120 MHz / M7 216 MHz: MACs model (instructions model) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        s = r["flash_split"]
        pred = (
            " / ".join(f"{p['predicted_ms']:.0f} ({p['predicted_ms_from_instructions']:.0f})" for p in r["predicted"])
            or "-"
        )
        print(
            f"| {r['model']} | {r['kernels']} | {s['model']:,} / {s['kernels']:,} / {s['runtime']:,} "
            f"| {r['arena_host_x86_64']:,} / {r['arena_device']:,} / {r['arena_predicted_64bit'] or 0:,} "
            f"| {r['max_lsb']} vs {r['against']} | {r['instructions_per_invoke']:,} | {pred} |"
        )
    for board in latency.BOARDS:
        errors = ", ".join(f"{m} {e:+.0%}" for m, e in latency.fit_errors(board).items())
        ierrors = ", ".join(f"{m} {e:+.0%}" for m, e in latency.instruction_fit_errors(board).items())
        print(
            f"\n{board.name}: {latency.macs_per_cycle(board):.3f} MACs/cycle ({errors} on the published points); "
            f"{latency.cycles_per_instruction(board):.3f} cycles per emulated instruction ({ierrors})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
