"""The planner against the MLPerf Tiny hand designs, each at the hand design's own budgets.

For each reference recipe (DS-CNN at 49x10x1, ResNet-8 at 32x32x3, MobileNetV1-0.25 at
96x96x3) its head is set to 10 classes (the data below has 10) and its own figures are
measured: the int8 .tflite edgeconv writes (bytes), the TFLM arena (edgeconv/plan/arena.py,
what `--target mcu` budgets) and MACs. The planner gets exactly those as `--budget`, `--ram`
and `--macs` with `--target mcu` (TFLM arena RAM model, the mcu profile's ops and channel
multiple), so its pick is at most the hand design on every budget (the MACs granted, as
`--macs` grants them: objective.py).

Both are then trained the same way: sklearn's digits (1,437 training / 360 validation images,
the split of scripts/digits_demo.sh) resized bilinearly to the input's W x H (3 channels: the
grey image repeated), edgeconv's training recipe (edgeconv.train.loop: AdamW lr 2e-3, cosine,
BatchNorm folded, crop augmentation), the same epochs and seeds. Accuracy on the 360
validation images (1 image = 0.28 points): float (BatchNorm folded, edgeconv's numpy
reference) and int8 (post-training quantization calibrated on 256 training images, the TFLM
golden: bit-exact to what the mcu target runs).

    nice -n 10 python scripts/planner_vs_reference.py [--models ds_cnn,resnet8,mobilenet_v1_025]
        [--seeds 0,1,2] [--epochs 10] [--json OUT.json] [--reuse PREVIOUS.json]
        [--macs-term A] [--macs-cap M] [--coverage C] [--inner-blocks N]

--reuse takes the runs of a previous --json output for the same model (its name spells the
whole plan), epochs and seed instead of training again: training is deterministic for the same
data, seed and one thread (edgeconv.train.loop), so e.g. a changed objective retrains only the
new picks. --macs-term A ranks by objective.score + A*log2(MACs) instead, --macs-cap M counts
MACs above M as M, --coverage C also asks the depth floor's networks to have a global average
pool that sees >= C of each input axis and --inner-blocks N at least N blocks in every stage but
the last (experiments; the README's objective paragraphs have their results).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_planner_accuracy import digits_split

CLASSES = 10
CALIB = 256


def resized(x: np.ndarray, width: int, height: int, channels: int) -> np.ndarray:
    """(N, 8, 8, 1) digits to (N, height, width, channels), bilinear, grey repeated."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    t = F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)
    out = t.numpy().transpose(0, 2, 3, 1)
    return np.ascontiguousarray(np.repeat(out, channels, axis=3), dtype=np.float32)


def with_classes(model, classes: int):
    """The recipe with its last dense layer set to `classes` units."""
    from edgeconv.plan.recipes import model_from_dict, model_to_dict

    doc = model_to_dict(model)
    dense = [t for t in doc["layers"] if t["op"] == "dense"][-1]
    dense["units"] = classes
    doc["name"] = f"{model.name}_{classes}"
    return model_from_dict(doc, f"{model.name} with {classes} classes")


def int8_bytes(analysis) -> int:
    from edgeconv.core.weights import init_weights
    from edgeconv.export.tflite import build_int8_tflite
    from edgeconv.quant.calibrate import calibrate, synthetic_calibration_set
    from edgeconv.quant.quantize import quantize

    weights = init_weights(analysis, 0)
    cal = calibrate(analysis, weights, synthetic_calibration_set(analysis, 8, 0))
    return len(build_int8_tflite(analysis, quantize(analysis, weights, cal.ranges, cal.info)))


def figures(analysis) -> dict:
    from edgeconv.plan.arena import predict_arena_bytes
    from edgeconv.plan.memory import peak_activation_ram

    return {
        "params": analysis.params,
        "macs": analysis.macs,
        "int8_bytes": int8_bytes(analysis),
        "arena": predict_arena_bytes(analysis),
        "peak_ram": peak_activation_ram(analysis)[0],
        "depth": sum(1 for layer in analysis.model.layers if getattr(layer, "kernel", (1, 1)) != (1, 1)),
    }


def train_and_score(analysis, data, seed: int, epochs: int) -> dict:
    """Float and int8 (TFLM golden) validation accuracy after edgeconv's training recipe."""
    from edgeconv.core import reference
    from edgeconv.core.weights import init_weights
    from edgeconv.quant.calibrate import calibrate
    from edgeconv.quant.golden import run_int8
    from edgeconv.quant.quantize import quantize, quantize_input
    from edgeconv.train import to_module, weights_from_module
    from edgeconv.train.loop import TrainConfig, train
    from edgeconv.train.run import calibration_subset

    xt, yt, xv, yv = data
    module = to_module(analysis, init_weights(analysis, seed))
    t0 = time.perf_counter()
    train(module, xt, yt, TrainConfig(epochs=epochs, augment=("crop",), seed=seed))
    seconds = time.perf_counter() - t0
    weights = weights_from_module(module, analysis)
    out = analysis.model.output
    logits = np.concatenate([reference.run(analysis, weights, xv[i : i + 120])[out] for i in range(0, len(xv), 120)])
    float_acc = float(np.mean(logits.reshape(len(xv), -1).argmax(axis=1) == yv))
    cal = calibrate(analysis, weights, calibration_subset(xt, CALIB, seed))
    qp = quantize(analysis, weights, cal.ranges, cal.info)
    xq = quantize_input(xv, qp.activations["input"], "int8")
    got = np.concatenate([run_int8(analysis, qp, xq[i : i + 120], "tflm")[out] for i in range(0, len(xq), 120)])
    int8_acc = float(np.mean(got.reshape(len(xv), -1).argmax(axis=1) == yv))
    return {"seed": seed, "float": float_acc, "int8": int8_acc, "train_s": round(seconds, 1)}


def with_objective_experiment(a: float, cap: float | None = None, coverage: float = 0.0, inner_blocks: int = 0) -> None:
    """Rank by objective.score + a*log2(min(MACs, cap)) in this process, the depth floor also
    asking that a global-average-pool head see >= `coverage` of each input axis and that every
    stage but the last have >= `inner_blocks` blocks (still non-decreasing in MACs, coverage and
    inner blocks, so the branch and bound stays exact): how such an objective would move the
    picks, without editing objective.py."""
    from edgeconv.plan import objective

    if not (a or coverage or inner_blocks):
        return

    def score(s) -> float:
        floor = s.depth >= objective.MIN_DEPTH and s.coverage >= coverage and s.inner_blocks >= inner_blocks
        macs = min(s.macs, cap or s.macs)
        return math.log2(max(s.params, 1)) + a * math.log2(max(macs, 1)) + (objective.FLOOR_BONUS if floor else 0.0)

    objective.score = score
    objective.OBJECTIVE += (
        f"; experiment: + {a}*log2(min(MACs, {cap or 'inf'})), floor also coverage >= {coverage}, "
        f"inner blocks >= {inner_blocks}"
    )


def add_training_options(ap: argparse.ArgumentParser, seeds: str) -> None:
    """The options this script and bench_objective.py share: seeds, epochs, output, reuse, MACs term."""
    ap.add_argument("--seeds", default=seeds)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--reuse", help="a previous --json output whose results are taken, not retrained")
    ap.add_argument("--macs-term", type=float, default=0.0, help="try score + A*log2(MACs) (objective.py unchanged)")
    ap.add_argument("--macs-cap", type=float, help="with --macs-term: MACs above this count as this many")
    ap.add_argument(
        "--coverage", type=float, default=0.0, help="the depth floor also needs a GAP head to see >= this of the input"
    )
    ap.add_argument(
        "--inner-blocks", type=int, default=0, help="the depth floor also needs >= N blocks in every stage but the last"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="ds_cnn,resnet8,mobilenet_v1_025")
    add_training_options(ap, "0,1,2")
    args = ap.parse_args()

    import torch

    from edgeconv.artifacts.build import ram_model, target_limits
    from edgeconv.core.graph import analyze
    from edgeconv.plan.planner import Budgets, plan
    from edgeconv.plan.recipes import load_recipe
    from edgeconv.plan.targets import load_target

    torch.set_num_threads(1)
    with_objective_experiment(args.macs_term, args.macs_cap, args.coverage, args.inner_blocks)
    start = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    digits = digits_split()
    mcu = load_target("mcu")
    rows = []
    reused: dict[tuple[str, int], dict] = {}
    if args.reuse:
        previous = json.loads(Path(args.reuse).read_text("utf-8"))
        for row in previous["rows"] if previous["epochs"] == args.epochs else []:
            reused.update({(row["model"], run["seed"]): run for run in row["runs"]})
    for name in args.models.split(","):
        ref = analyze(with_classes(load_recipe(name), CLASSES))
        spec = ref.model.input
        ref_fig = figures(ref)
        t0 = time.perf_counter()
        p = plan(
            spec,
            CLASSES,
            Budgets(ref_fig["int8_bytes"], ref_fig["arena"], ref_fig["macs"], macs_granted=True),
            target_limits(mcu),
            ram_model=ram_model(mcu),
        )
        plan_s = time.perf_counter() - t0
        data = tuple(
            resized(a, spec.width, spec.height, spec.channels) if i % 2 == 0 else a for i, a in enumerate(digits)
        )
        print(
            f"{name} ({spec.width}x{spec.height}x{spec.channels}): budgets {ref_fig['int8_bytes']:,} B, "
            f"arena {ref_fig['arena']:,} B, {ref_fig['macs']:,} MACs; planner pick {p.candidate.name} "
            f"({plan_s:.2f} s)",
            flush=True,
        )
        for role, analysis in (("reference", ref), ("planner", p.analysis)):
            fig = ref_fig if role == "reference" else figures(analysis)
            runs = []
            for seed in seeds:
                key = (analysis.model.name, seed)
                runs.append(reused[key] if key in reused else train_and_score(analysis, data, seed, args.epochs))
                r = runs[-1]
                print(
                    f"  {role} seed {seed}: float {100 * r['float']:.2f}% int8 {100 * r['int8']:.2f}% "
                    f"({r['train_s']} s)",
                    flush=True,
                )
            rows.append({"input": name, "role": role, "model": analysis.model.name, **fig, "runs": runs})
    wall = time.perf_counter() - start
    if args.json:
        Path(args.json).write_text(json.dumps({"epochs": args.epochs, "seeds": seeds, "rows": rows, "wall_s": wall}))
    print()
    print(f"{args.epochs} epochs, seeds {seeds}; digits resized to each input, 10 classes; 360 validation images")
    print("| reference | model | params | MACs | arena | int8 bytes | float acc mean (min–max) | int8 acc mean |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        f = [x["float"] for x in r["runs"]]
        q = [x["int8"] for x in r["runs"]]
        label = "hand design" if r["role"] == "reference" else f"planner `{r['model'].removeprefix('plan_')}`"
        print(
            f"| {r['input']} | {label} | {r['params']:,} | {r['macs']:,} | {r['arena']:,} | {r['int8_bytes']:,} | "
            f"{100 * np.mean(f):.2f}% ({100 * min(f):.2f}–{100 * max(f):.2f}) | {100 * np.mean(q):.2f}% |"
        )
    for name in args.models.split(","):
        ref_row, pick = (
            next(r for r in rows if r["input"] == name and r["role"] == k) for k in ("reference", "planner")
        )
        d = np.mean([x["float"] for x in pick["runs"]]) - np.mean([x["float"] for x in ref_row["runs"]])
        verdict = "at least as accurate" if d >= 0 else "LESS accurate"
        print(f"{name}: the planner's pick is {verdict} ({100 * d:+.2f} points float)")
    print(f"wall time {wall:.0f} s")


if __name__ == "__main__":
    main()
