"""Which proxy predicts accuracy? Train a sample of planner candidates, rank-correlate.

For each group (input shape, flash budget; RAM 256 KB, 10 classes) the planner's search is run
per block type (plain conv, depthwise-separable, residual) keeping its 300 best candidates by
a fixed sampling order (the objective before this measurement, log2 params + 0.5 log2 depth, so
that the sample does not move when objective.py changes); candidates at ranks 1, 21, 61 and 151 of each block type are taken
(12 per group: the top of the search and well below it, so params, MACs and depth vary).
Each is trained with edgeconv's recipe (edgeconv.train.loop: AdamW, cosine, BatchNorm, crop
augmentation) on sklearn's digits resized bilinearly to the input (the split of
scripts/digits_demo.sh; 3 channels: the grey image repeated), for several seeds. Prints per
candidate the proxies and the mean validation accuracy (float, 360 images), then per group
Spearman's rank correlation of accuracy with each proxy:

  MACs, params, depth (kxk convs on the main path), the planner's objective score
  (edgeconv/plan/objective.py), the objective before this measurement (prev_score: log2 params
  + 0.5 log2 depth), and NASWOT (Mellor et al. 2021, a zero-cost proxy at init:
  log|K| of the Hamming kernel of the ReLU on/off codes of 64 training images; not usable by
  the branch and bound, which needs a closed form non-decreasing in params, MACs and depth).

    nice -n 10 python scripts/bench_objective.py [--groups 32x32x3@64KB,49x10x1@64KB:1000000 (a MAC limit)]
        [--ranks 0,20,60,150] [--seeds 0,1] [--epochs 12] [--json OUT.json]
        [--reuse PREVIOUS.json] [--macs-term A] [--macs-cap M] [--coverage C] [--inner-blocks N]
        (the picks ranked by an experimental objective: planner_vs_reference.with_objective_experiment)
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
from bench_planner_accuracy import digits_split, spearman
from planner_vs_reference import add_training_options, resized, with_objective_experiment

CLASSES = 10
RAM = 256_000
KEEP = 300


def sampling_score(s) -> float:
    """The order the sample is drawn in (the planner's objective until this measurement)."""
    return math.log2(max(s.params, 1)) + 0.5 * math.log2(max(s.depth, 1))


def naswot(analysis, x: np.ndarray, seed: int) -> float:
    """log|K|, K[i, j] = number of ReLU units on which images i and j agree (on or off)."""
    import torch

    from edgeconv.core.ir import Activation
    from edgeconv.core.weights import init_weights
    from edgeconv.train import to_module

    module = to_module(analysis, init_weights(analysis, seed))
    relu = [
        layer.name
        for layer in analysis.model.layers
        if getattr(layer, "activation", None) in (Activation.RELU, Activation.RELU6)
    ]
    module.train()  # batch statistics in the BatchNorms, as NASWOT scores an untrained net
    with torch.no_grad():
        values = module.run(torch.from_numpy(x), keep_all=True)
    codes = torch.cat([(values[name] > 0).reshape(len(x), -1).double() for name in relu], dim=1)
    k = codes @ codes.T + (1 - codes) @ (1 - codes).T
    return float(torch.linalg.slogdet(k).logabsdet)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", default="32x32x3@64KB,49x10x1@64KB")
    ap.add_argument("--ranks", default="0,20,60,150", help="0-based ranks kept per block type, or none (picks only)")
    add_training_options(ap, "0,1")
    args = ap.parse_args()

    import torch

    from edgeconv.core.graph import analyze
    from edgeconv.core.sizes import parse_size
    from edgeconv.core.weights import init_weights
    from edgeconv.plan import objective
    from edgeconv.plan.planner import BLOCKS, Budgets, candidate_model, plan, search
    from edgeconv.train import to_module
    from edgeconv.train.loop import TrainConfig, evaluate, train

    torch.set_num_threads(1)
    with_objective_experiment(args.macs_term, args.macs_cap, args.coverage, args.inner_blocks)
    start = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    ranks = [] if args.ranks == "none" else [int(r) for r in args.ranks.split(",")]  # none: the picks only
    digits = digits_split()
    rows: list[dict] = []
    picks: list[dict] = []
    reused: dict[tuple[str, int], float] = {}
    if args.reuse:
        previous = json.loads(Path(args.reuse).read_text("utf-8"))
        for row in previous["rows"] + previous.get("picks", []) if previous["epochs"] == args.epochs else []:
            reused.update({(row["plan"], seed): acc for seed, acc in zip(previous["seeds"], row["val_acc"])})

    def accuracy(analysis, name: str, data) -> list[float]:
        xt, yt, xv, yv = data
        accs = []
        for seed in seeds:
            if (name, seed) in reused:
                accs.append(reused[name, seed])
                continue
            module = to_module(analysis, init_weights(analysis, seed))
            train(module, xt, yt, TrainConfig(epochs=args.epochs, augment=("crop",), seed=seed))
            accs.append(evaluate(module, xv, yv))
        return accs

    for group in args.groups.split(","):
        shape, budget_text = group.split("@")
        w, h, c = (int(v) for v in shape.split("x"))
        from edgeconv.core.ir import InputSpec

        spec = InputSpec(w, h, c)
        data = tuple(resized(a, w, h, c) if i % 2 == 0 else a for i, a in enumerate(digits))
        xt = data[0]
        budget_text, _, macs_text = budget_text.partition(":")  # 32x32x3@64KB:5000000 adds a MAC limit
        budgets = Budgets(
            parse_size(budget_text), RAM, int(macs_text) if macs_text else None, macs_granted=bool(macs_text)
        )
        for block in BLOCKS:
            current, objective.score = objective.score, sampling_score  # the search ranks by objective.score
            try:
                kept, _ = search(spec, CLASSES, budgets, keep=KEEP, blocks=(block,))
            finally:
                objective.score = current
            for rank in ranks:
                if rank >= len(kept):
                    continue
                cand = kept[rank]
                analysis = analyze(candidate_model(cand, spec, CLASSES))
                accs = accuracy(analysis, cand.name, data)
                row = {
                    "group": group,
                    "block": block,
                    "block_rank": rank + 1,
                    "plan": cand.name,
                    "params": cand.params,
                    "macs": cand.macs,
                    "depth": cand.depth,
                    "score": objective.score(objective.Summary(cand.params, cand.macs, cand.depth)),
                    "prev_score": sampling_score(cand),
                    "naswot": float(np.mean([naswot(analysis, xt[:64], s) for s in seeds])),
                    "val_acc": accs,
                    "mean": float(np.mean(accs)),
                }
                rows.append(row)
                print(
                    f"{group} {cand.name}: {cand.params:,} params {cand.macs:,} MACs depth {cand.depth} "
                    f"score {row['score']:.3f} naswot {row['naswot']:.1f} "
                    f"acc {' '.join(f'{100 * a:.2f}' for a in accs)}",
                    flush=True,
                )
        pick = plan(spec, CLASSES, budgets).candidate
        accs = accuracy(analyze(candidate_model(pick, spec, CLASSES)), pick.name, data)
        picks.append(
            {"group": group, "plan": pick.name, "params": pick.params, "macs": pick.macs, "depth": pick.depth}
            | {"val_acc": accs, "mean": float(np.mean(accs))}
        )
        print(f"{group} pick of objective.py {pick.name}: acc {' '.join(f'{100 * a:.2f}' for a in accs)}", flush=True)
    proxies = ("macs", "params", "depth", "score", "prev_score", "naswot")
    summary = {}
    for group in args.groups.split(","):
        g = [r for r in rows if r["group"] == group]
        if not g:  # --ranks none
            continue
        acc = [r["mean"] for r in g]
        best = max(g, key=lambda r: r["mean"])
        summary[group] = {
            "n": len(g),
            "spearman": {p: spearman(acc, [r[p] for r in g]) for p in proxies},
            "best": best["plan"],
            "score_pick": max(g, key=lambda r: r["score"])["plan"],
        }
    wall = time.perf_counter() - start
    if args.json:
        doc = {"epochs": args.epochs, "seeds": seeds, "rows": rows, "picks": picks, "summary": summary, "wall_s": wall}
        Path(args.json).write_text(json.dumps(doc, indent=1))
    print()
    print(f"{args.epochs} epochs, seeds {seeds}; val accuracy on 360 digits resized to the input")
    print("| group | block (rank) | plan | params | MACs | depth | score | NASWOT | val acc mean (min–max) |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        lo, hi = min(r["val_acc"]), max(r["val_acc"])
        print(
            f"| {r['group']} | {r['block']} ({r['block_rank']}) | `{r['plan']}` | {r['params']:,} | {r['macs']:,} | "
            f"{r['depth']} | {r['score']:.3f} | {r['naswot']:.1f} | {100 * r['mean']:.2f}% "
            f"({100 * lo:.2f}–{100 * hi:.2f}) |"
        )
    print()
    print("| group | n | " + " | ".join(f"Spearman(acc, {p})" for p in proxies) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in proxies) + " |")
    for group, s in summary.items():
        cells = " | ".join(f"{s['spearman'][p]:+.2f}" for p in proxies)
        print(f"| {group} | {s['n']} | {cells} |")
    if summary:
        means = {p: float(np.mean([s["spearman"][p] for s in summary.values()])) for p in proxies}
        print("| mean | | " + " | ".join(f"{means[p]:+.2f}" for p in proxies) + " |")
    for group, s in summary.items():
        print(f"{group}: most accurate {s['best']}; highest score {s['score_pick']}")
    print()
    print(f"the planner's pick ({objective.OBJECTIVE}) against the sample's most accurate")
    print("| group | pick | params | MACs | depth | pick acc mean | best of the sample | its acc |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |")
    for p in picks:
        best = max((r for r in rows if r["group"] == p["group"]), key=lambda r: r["mean"], default=None)
        print(
            f"| {p['group']} | `{p['plan']}` | {p['params']:,} | {p['macs']:,} | {p['depth']} | "
            f"{100 * p['mean']:.2f}% | "
            + (f"`{best['plan']}` | {100 * best['mean']:.2f}% |" if best else "(no sample) | |")
        )
    print(f"wall time {wall:.0f} s ({math.ceil(wall / 60)} min)")


if __name__ == "__main__":
    main()
