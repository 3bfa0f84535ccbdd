"""The TFLM arena on the 32-bit part: measured on the emulated Cortex-M4, section by section,
against plan/arena.py's 32-bit prediction (and its x86-64 one).

    python scripts/firmware_arena.py [--kernels cmsis_nn|reference] [--json] [--host]

Per model it compiles the firmware twice: as edgeconv writes it (the arena TFLM reports with
`arena_used_bytes()` after AllocateTensors, i.e. the smallest arena that runs it) and with
TFLM's RecordingMicroInterpreter, which prints the head, the tail and the tail's sections
(TfLiteEvalTensor data, persistent TfLiteTensor and quantization data, kernel persistent
buffers, NodeAndRegistration structs; its own recording objects make its total larger, so the
sections are read from it and the total from the first). `--host` adds the x86-64 host's
figures (TFLM's Python interpreter, print_allocations). Models: the three recipes, planner
outputs at 8, 16, 32, 64 and 128 KB (named), the GAP plan k3s2-conv-32x1-gap (pinned), the
published MLPerf int8 ResNet-8.
Needs the cached TFLM library (scripts/build_tflm.sh --cpu cortex-m4 --kernels KERNELS).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgeconv.artifacts.build import BuildRequest, run_build
from edgeconv.device import cortex_m
from edgeconv.firmware import app, library
from edgeconv.plan import arena
from edgeconv.plan.targets import load_target

MLPERF = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "mlperf_tiny" / "ic_resnet8_int8.tflite"
_LINE = re.compile(r"\[RecordingMicroAllocator\] (?:Arena allocation (\w+) (\d+) bytes|'([^']+)' used (\d+) bytes)")


def models(tmp: Path):
    for recipe in ("resnet8", "ds_cnn", "vgg_small"):
        run_build(BuildRequest(recipe=recipe, out=str(tmp / recipe), calib_samples=8))
        yield recipe, tmp / recipe
    for kb in (8, 16, 32, 64, 128):
        out = tmp / f"plan{kb}"
        result = run_build(BuildRequest(budget=kb * 1000, target=load_target("mcu"), out=str(out), calib_samples=8))
        yield f"plan {kb}KB ({result.plan.candidate.name})", out
    # a GAP plan (TFLM MEAN), pinned: the 16 KB pick before the planner's depth floor
    from edgeconv.core.ir import InputSpec
    from edgeconv.plan.planner import Candidate, candidate_model

    gap = Candidate((3, 3), (2, 2), "conv", "stride", (32,), (1,), "gap", 0, 0, 0, 0, 0, 0.0)
    out = tmp / "gap"
    model = candidate_model(gap, InputSpec(32, 32, 3), 10)
    run_build(BuildRequest(budget=16_000, target=load_target("mcu"), model=model, out=str(out), calib_samples=8))
    yield f"{gap.name} (pinned)", out
    yield "MLPerf ResNet-8", MLPERF


def recording(main_cc: str) -> str:
    """main.cc with TFLM's RecordingMicroInterpreter, printing its allocations after AllocateTensors."""
    main_cc = main_cc.replace(
        '#include "tensorflow/lite/micro/micro_interpreter.h"',
        '#include "tensorflow/lite/micro/recording_micro_interpreter.h"',
    )
    main_cc = main_cc.replace(
        "static tflite::MicroInterpreter interpreter(", "static tflite::RecordingMicroInterpreter interpreter("
    )
    anchor = "  TfLiteTensor* input = interpreter.input(0);\n"
    assert anchor in main_cc
    return main_cc.replace(anchor, "  interpreter.GetMicroAllocator().PrintAllocations();\n" + anchor, 1)


def sections(log: str) -> dict[str, int]:
    out = {}
    for m in _LINE.finditer(log):
        if m.group(1):
            out[m.group(1)] = int(m.group(2))
        else:
            out[m.group(3)] = int(m.group(4))
    return out


def device(source: app.ModelSource, lib: library.Library, tmp: Path, x: np.ndarray) -> dict:
    project = app.make_project(source, lib)
    plain = tmp / "plain"
    app.write_project(plain, project)
    app.compile_project(plain, lib)
    run = cortex_m.run_elf(plain / app.ELF, lib.cpu, x)
    rec = tmp / "recording"
    app.write_project(rec, project)
    (rec / "main.cc").write_text(recording((rec / "main.cc").read_text()))
    app.compile_project(rec, lib)
    rec_run = cortex_m.run_elf(rec / app.ELF, lib.cpu, x)
    return {"arena_used": run.arena_used_bytes, "compiled": run.arena_bytes, "sections": sections(rec_run.log)}


def host(data: bytes) -> dict:
    from edgeconv.backends import mcu

    it, _ = mcu._try_interpreter(data, 1 << 21)
    return {"arena": mcu.measure_model_arena(data)[0], "sections": sections(mcu._print_allocations(it))}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kernels", default="cmsis_nn", choices=("cmsis_nn", "reference"))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--host", action="store_true", help="also the x86-64 host's sections")
    ns = parser.parse_args()
    lib = library.find("cortex-m4", ns.kernels)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for i, (name, path) in enumerate(models(tmp)):
            source = app.load_source(path)
            spec = source.analysis.model.input
            x = np.zeros((1, spec.height, spec.width, spec.channels), np.int8)
            row = {"model": name, "device": device(source, lib, tmp / f"fw{i}", x)}
            a = source.analysis
            row["predicted_32bit"] = arena.predict_arena_bytes(a, word_bytes=4, kernels=ns.kernels)
            row["predicted_64bit"] = arena.predict_arena_bytes(a)
            row["head_32bit"] = arena.predict_head_bytes(a, kernels=ns.kernels)
            row["tail_32bit"] = arena.predict_tail_bytes(a, word_bytes=4, kernels=ns.kernels)
            row["tensors"], row["ops"] = arena.tensor_and_op_counts(a)
            if ns.host:
                row["host"] = host(source.data)
            rows.append(row)
            print(f"{name}: done", file=sys.stderr)
    if ns.json:
        print(json.dumps(rows, indent=1))
        return 0
    # the tail without the recording objects: the plain firmware's arena minus the (same) head
    print("| model | tensors / ops | M4 arena | predicted 32-bit | over | M4 head / tail | predicted head / tail |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        d, s = r["device"], r["device"]["sections"]
        print(
            f"| {r['model']} | {r['tensors']} / {r['ops']} | {d['arena_used']:,} | {r['predicted_32bit']:,} "
            f"| {r['predicted_32bit'] - d['arena_used']:+,} | {s.get('head', 0):,} / {d['arena_used'] - s.get('head', 0):,} "
            f"| {r['head_32bit']:,} / {r['tail_32bit']:,} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
