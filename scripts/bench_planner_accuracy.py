"""Is "most MACs" a good objective? Train the planner's pick and its runners-up on the digits.

For each budget (8x8x1 input, 10 classes, 256 KB RAM), the planner's chosen plan and its top
runners-up (`plan(..., top=N)`, the list `edgeconv build --top` prints) are trained with
`edgeconv train`'s recipe (edgeconv.train.loop: AdamW, cosine, BatchNorm folded, crop
augmentation) on sklearn's digits (1,437 training / 360 validation images, the split of
scripts/digits_demo.sh), for several seeds (weight init and shuffle). Prints MACs, params and
validation accuracy (float, BatchNorm folded: the numpy reference computes the same to 1e-5)
per candidate, mean ± spread over the seeds, its rank, and the Spearman rank correlation of
accuracy with MACs and with params over the candidates of each budget.

    python scripts/bench_planner_accuracy.py [--budgets 16KB,64KB] [--top 4] [--seeds 0,1,2] [--epochs 15] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def digits_split():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int64)
    idx = np.random.default_rng(0).permutation(len(x))
    cut = int(0.8 * len(x))
    return x[idx[:cut]], y[idx[:cut]], x[idx[cut:]], y[idx[cut:]]


def spearman(a, b) -> float:
    """Spearman's rho with average ranks for ties (scipy.stats.spearmanr gives the same)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", default="16KB,64KB")
    ap.add_argument("--top", type=int, default=4, help="runners-up per budget besides the pick")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch

    from edgeconv.core.graph import analyze
    from edgeconv.core.ir import InputSpec
    from edgeconv.core.sizes import parse_size
    from edgeconv.core.weights import init_weights
    from edgeconv.plan.planner import Budgets, candidate_model, plan
    from edgeconv.train import to_module
    from edgeconv.train.loop import TrainConfig, evaluate, train

    torch.set_num_threads(1)
    xt, yt, xv, yv = digits_split()
    spec = InputSpec(8, 8, 1)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for budget_text in args.budgets.split(","):
        budget = parse_size(budget_text)
        p = plan(spec, 10, Budgets(budget, 256_000), top=args.top)
        cands = [p.candidate, *p.runners_up]
        for rank, c in enumerate(cands, 1):
            model = candidate_model(c, spec, 10)
            analysis = analyze(model)
            accs, seconds = [], []
            for seed in seeds:
                module = to_module(analysis, init_weights(analysis, seed))
                t0 = time.perf_counter()
                train(module, xt, yt, TrainConfig(epochs=args.epochs, augment=("crop",), seed=seed))
                seconds.append(time.perf_counter() - t0)
                accs.append(evaluate(module, xv, yv))
            rows.append(
                {
                    "budget": budget_text,
                    "planner_rank": rank,
                    "plan": c.name,
                    "macs": c.macs,
                    "params": c.params,
                    "model_bytes": c.model_bytes,
                    "val_acc": accs,
                    "mean": float(np.mean(accs)),
                    "train_s": float(np.mean(seconds)),
                }
            )
            if not args.json:
                print(
                    f"{budget_text} #{rank} {c.name}: {c.macs:,} MACs {c.params:,} params "
                    f"acc {' '.join(f'{100 * a:.2f}' for a in accs)} ({np.mean(seconds):.1f} s/run)",
                    flush=True,
                )
    summary = {}
    for budget_text in args.budgets.split(","):
        group = [r for r in rows if r["budget"] == budget_text]
        by_acc = sorted(group, key=lambda r: -r["mean"])
        for i, r in enumerate(by_acc, 1):
            r["acc_rank"] = i
        summary[budget_text] = {
            "pick_acc_rank": next(r["acc_rank"] for r in group if r["planner_rank"] == 1),
            "spearman_acc_macs": spearman([r["mean"] for r in group], [r["macs"] for r in group]),
            "spearman_acc_params": spearman([r["mean"] for r in group], [r["params"] for r in group]),
        }
    if args.json:
        print(json.dumps({"epochs": args.epochs, "seeds": seeds, "rows": rows, "summary": summary}, indent=2))
        return
    print()
    print(f"{args.epochs} epochs, seeds {seeds}; val accuracy on 360 digits (1 sample = 0.28 points)")
    print("| budget | planner rank | plan | MACs | params | val acc mean (min–max) | acc rank |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        lo, hi = min(r["val_acc"]), max(r["val_acc"])
        print(
            f"| {r['budget']} | {r['planner_rank']} | `{r['plan']}` | {r['macs']:,} | {r['params']:,} | "
            f"{100 * r['mean']:.2f}% ({100 * lo:.2f}–{100 * hi:.2f}) | {r['acc_rank']} |"
        )
    for budget_text, s in summary.items():
        print(
            f"{budget_text}: the pick ranks {s['pick_acc_rank']} by accuracy; Spearman(acc, MACs) "
            f"{s['spearman_acc_macs']:+.2f}, Spearman(acc, params) {s['spearman_acc_params']:+.2f}"
        )


if __name__ == "__main__":
    main()
