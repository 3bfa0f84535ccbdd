"""Figures of the README's "Firmware" section: per model and kernels on an emulated Cortex-M,
flash split (model / kernels / runtime), arena (x86-64 host TFLM, measured on the part,
plan/arena.py's 64-bit and 32-bit predictions, compiled in), LSB vs the golden, instructions
per invoke and per operator, predicted ms on two boards.

    python scripts/firmware_figures.py [--cpu cortex-m4] [--models resnet8,mlperf,...] [--samples 8] [--layers] [--json]

Needs the cached TFLM libraries (scripts/build_tflm.sh --cpu CPU --kernels cmsis_nn / reference;
the kernels whose library is missing are skipped) and qemu-system-arm. Models: the three
recipes (resnet8, ds_cnn, vgg_small), planner outputs at 16 and 64 KB (plan16, plan64), the
published MLPerf int8 ResNet-8 (mlperf). --layers adds the per-operator table.
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
from edgeconv.plan.targets import load_target
from edgeconv.quant.golden import run_int8
from edgeconv.quant.quantize import quantize_input

MLPERF = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "mlperf_tiny" / "ic_resnet8_int8.tflite"


MODELS = ("resnet8", "ds_cnn", "vgg_small", "plan16", "plan64", "mlperf")


def _models(tmp: Path, names: list[str]):
    for name in names:
        if name == "mlperf":
            yield "MLPerf ResNet-8 int8", MLPERF
        elif name.startswith("plan"):
            kb = int(name[4:])
            out = tmp / name
            result = run_build(
                BuildRequest(budget=kb * 1000, target=load_target("mcu"), out=str(out), calib_samples=16)
            )
            yield f"plan {kb}KB ({result.plan.candidate.name})", out
        else:
            run_build(BuildRequest(recipe=name, out=str(tmp / name), calib_samples=16))
            yield name, tmp / name


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
    parser.add_argument("--cpu", default="cortex-m4", choices=sorted(cortex_m.QEMU_MACHINES))
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--layers", action="store_true", help="also the per-operator instruction table")
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args()
    names = [m for m in ns.models.split(",") if m]
    if not set(names) <= set(MODELS):
        print(f"--models: expected some of {', '.join(MODELS)}, got {ns.models}", file=sys.stderr)
        return 2
    libs = {}
    for kernels in ("cmsis_nn", "reference"):
        try:
            libs[kernels] = library.find(ns.cpu, kernels)
        except InputError as err:
            print(f"skipping {kernels}: {err}", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in _models(Path(tmp), names):
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
                run = cortex_m.run_elf(folder / app.ELF, ns.cpu, x_q)
                got = run.outputs[0].astype(int)
                predicted = app.predicted_arena(source, kernels)
                rows.append(
                    {
                        "model": name,
                        "cpu": ns.cpu,
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
                        "arena_predicted_32bit": predicted[0] if predicted else None,
                        "arena_compiled": run.arena_bytes,
                        "max_lsb": int(np.abs(got - want.astype(int)).max()),
                        "against": against,
                        "instructions_per_invoke": run.median_instructions,
                        "layers": app.layer_rows(source, run.layer_instructions),
                        "compile_s": round(compile_s, 1),
                        "predicted": latency.predictions(macs, run.median_instructions) if macs else [],
                    }
                )
                print(f"{name} / {kernels}: done", file=sys.stderr)
    if ns.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(
        f"{ns.cpu} ({cortex_m.QEMU_MACHINES[ns.cpu]}), {ns.samples} inputs each\n\n"
        "| model | kernels | flash model / kernels / runtime (B) | arena host / device / predicted 64-bit / 32-bit / compiled (B) | LSB | instructions / invoke | predicted ms M4 120 MHz / M7 216 MHz: MACs model (instructions model) |"
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
            f"/ {r['arena_predicted_32bit'] or 0:,} / {r['arena_compiled']:,} "
            f"| {r['max_lsb']} vs {r['against']} | {r['instructions_per_invoke']:,} | {pred} |"
        )
    for board in latency.BOARDS:
        errors = ", ".join(f"{m} {e:+.0%}" for m, e in latency.fit_errors(board).items())
        ierrors = ", ".join(f"{m} {e:+.0%}" for m, e in latency.instruction_fit_errors(board).items())
        print(
            f"\n{board.name}: {latency.macs_per_cycle(board):.3f} MACs/cycle ({errors} on the published points); "
            f"{latency.cycles_per_instruction(board):.3f} cycles per emulated instruction ({ierrors})"
        )
    if ns.layers:
        for r in rows:
            print(f"\n{r['model']} / {r['kernels']}: instructions per operator (per invoke)\n")
            print("| # | op | layer | MACs | instructions | per MAC | share |")
            print("|---|---|---|---|---|---|---|")
            total = sum(int(x["instructions"]) for x in r["layers"]) or 1
            for i, x in enumerate(r["layers"]):
                per_mac = f"{x['per_mac']:.2f}" if x["per_mac"] is not None else "-"
                print(
                    f"| {i} | {x['op']} | {x['layer'] or '-'} | {x['macs']:,} | {x['instructions']:,} | {per_mac} "
                    f"| {int(x['instructions']) / total:.1%} |"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
