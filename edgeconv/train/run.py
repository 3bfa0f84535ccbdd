"""`edgeconv train DIR`: train a build folder's model, write it back re-quantized and re-exported.

Steps: load the build folder; load the labelled data; build the nn.Module from the IR with the
folder's weights as the starting point; train (loop.py; QAT epochs after the float ones,
qat.py); fold BatchNorm into the weights; calibrate on the training inputs (a seeded subset of
at most `calib_samples`) or on --calib; re-export every artifact through
artifacts/build.run_build into the folder (atomically, a new manifest); report the float
reference's and the int8 goldens' accuracy on the validation split.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgeconv.core.errors import InputError
from edgeconv.train.data import Labelled, accuracy, load_labelled

GOLDENS = {"tflm": "tflite family (arm reference kernels, mcu)", "ort_cpu": "ONNX Runtime CPU (cpu; npu's golden)"}


@dataclass(frozen=True)
class TrainRequest:
    folder: str
    data: str
    val: str | None = None
    out: str | None = None
    epochs: int = 30
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    augment: tuple[str, ...] = ()
    seed: int = 0
    qat_epochs: int = 0
    calib: str | None = None
    calib_samples: int = 512
    calib_method: str = "minmax"
    checkpoint: str | None = None
    resume: bool = False
    threads: int = 1


def default_checkpoint(folder: str | Path) -> Path:
    """<DIR>.train/checkpoint.pt: next to the build folder, which is replaced whole on export."""
    folder = Path(folder)
    return folder.parent / f"{folder.name}.train" / "checkpoint.pt"


def accuracies(build, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Top-1 accuracy of the numpy float reference and of the int8 goldens on (x, y)."""
    from edgeconv.core import reference
    from edgeconv.quant.golden import run_int8
    from edgeconv.quant.quantize import quantize_input

    out = build.analysis.model.output
    ref = np.concatenate(
        [reference.run(build.analysis, build.weights, x[i : i + 256])[out] for i in range(0, len(x), 256)]
    )
    doc = {"float": accuracy(ref, y)}
    x_q = quantize_input(x, build.qparams.activations["input"], "int8")
    for runtime in GOLDENS:
        got = np.concatenate(
            [run_int8(build.analysis, build.qparams, x_q[i : i + 256], runtime)[out] for i in range(0, len(x), 256)]
        )
        doc[f"int8_{runtime}"] = accuracy(got.astype(np.int32), y)
    return doc


def _digest(data: Labelled) -> str:
    h = hashlib.sha256(np.ascontiguousarray(data.x).tobytes())
    h.update(np.ascontiguousarray(data.y).tobytes())
    return h.hexdigest()


def calibration_subset(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(x) <= n:
        return x
    idx = np.sort(np.random.default_rng([seed, 2**31 - 1]).choice(len(x), size=n, replace=False))
    return x[idx]


def run_training(req: TrainRequest, say=print, progress_enabled: bool = True) -> dict:
    """Train, re-export, evaluate. Returns a summary document (also printed by the CLI)."""
    from edgeconv.train import require_torch

    torch = require_torch()
    from edgeconv.artifacts.build import BuildRequest, run_build
    from edgeconv.artifacts.folder import load_build
    from edgeconv.plan.targets import load_target
    from edgeconv.quant.calibrate import check_samples, load_calibration
    from edgeconv.train import qat
    from edgeconv.train.loop import Progress, TrainConfig, load_checkpoint, train
    from edgeconv.train.module import to_module, weights_from_module

    build = load_build(req.folder)
    analysis = build.analysis
    plan_doc = json.loads((Path(req.folder) / "plan.json").read_text("utf-8"))
    data = load_labelled(req.data, analysis, what="--data")
    val = load_labelled(req.val, analysis, what="--val") if req.val else None
    if len(data.x) < 2:
        raise InputError(f"--data {req.data}: expected at least 2 training samples, got {len(data.x)}")
    if req.calib:
        calib = load_calibration(req.calib, analysis)
        calib_source = f"file {Path(req.calib).name}"
    else:
        calib = check_samples(
            calibration_subset(data.x, req.calib_samples, req.seed), analysis, f"--data {req.data}", 1
        )
        calib_source = f"training inputs ({len(calib)} of {len(data.x)}, {Path(req.data).name})"

    cfg = TrainConfig(
        epochs=req.epochs,
        batch=req.batch,
        lr=req.lr,
        weight_decay=req.weight_decay,
        label_smoothing=req.label_smoothing,
        augment=tuple(req.augment),
        seed=req.seed,
        qat_epochs=req.qat_epochs,
    )
    checkpoint = Path(req.checkpoint) if req.checkpoint else default_checkpoint(req.folder)
    torch.manual_seed(req.seed)
    torch.set_num_threads(req.threads)
    module = to_module(analysis, build.weights)
    fingerprint = {"data_sha256": _digest(data), "config": asdict(cfg), "model": analysis.model.name}
    if req.resume:
        doc = load_checkpoint(checkpoint, module)
        saved = {"config": doc.get("config"), **(doc.get("extra") or {})}
        for key in ("config", "data_sha256"):
            if key in saved and saved[key] != fingerprint[key]:
                what = "training options" if key == "config" else "training data"
                raise InputError(
                    f"--resume: the checkpoint {checkpoint} was made with other {what}; rerun without --resume"
                )
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    say(
        f"training {analysis.model.name} ({analysis.params:,} params, {analysis.macs:,} MACs) on {len(data.x)} samples"
        + (f", validating on {len(val.x)}" if val else "")
        + f"; checkpoint {checkpoint}"
    )
    t0 = time.perf_counter()
    state = train(
        module,
        data.x,
        data.y,
        cfg,
        val=(val.x, val.y) if val else None,
        checkpoint=checkpoint,
        resume=req.resume,
        progress=Progress(progress_enabled),
        qat_setup=qat.setup(calib, req.calib_method) if req.qat_epochs else None,
        checkpoint_extra={"data_sha256": fingerprint["data_sha256"]},
    )
    train_seconds = time.perf_counter() - t0
    qat.remove(module)
    weights = weights_from_module(module)

    summary = plan_doc.get("summary", {})
    budgets = summary.get("budgets", {}) if isinstance(summary, dict) else {}
    target = load_target(plan_doc["target"]) if plan_doc.get("target") else None
    training_doc = {
        "data": Path(req.data).name,
        "data_sha256": fingerprint["data_sha256"],
        "samples": len(data.x),
        "val": Path(req.val).name if req.val else None,
        "recipe": {**asdict(cfg), "optimizer": "AdamW", "schedule": "cosine", "batchnorm": "folded into convs"},
        "history": [{k: v for k, v in rec.items() if k != "seconds"} for rec in state.history],
        "calibration": calib_source,
    }
    out = req.out or req.folder
    say(f"re-quantizing on {calib_source} and re-exporting every artifact to {out}")
    run_build(
        BuildRequest(
            budget=budgets.get("model_bytes"),
            ram=budgets.get("ram_bytes"),
            macs=budgets.get("macs"),
            target=target,
            model=analysis.model,
            weights=weights,
            weights_source=f"trained by edgeconv train ({cfg.total_epochs} epochs"
            + (f", {cfg.qat_epochs} QAT" if cfg.qat_epochs else "")
            + f", seed {cfg.seed}) from {Path(req.data).name}",
            calib_data=calib,
            calib_source=calib_source,
            calib_method=req.calib_method,
            seed=req.seed,
            out=out,
            plan_extra={"plan": plan_doc.get("plan"), "training": training_doc},
        )
    )
    rebuilt = load_build(out)
    eval_set, eval_name = (val, "validation") if val else (data, "training (no --val given)")
    acc = accuracies(rebuilt, eval_set.x, eval_set.y)
    return {
        "model": analysis.model.name,
        "folder": str(out),
        "checkpoint": str(checkpoint),
        "epochs": cfg.total_epochs,
        "qat_epochs": cfg.qat_epochs,
        "train_seconds": round(train_seconds, 2),
        "final": state.history[-1] if state.history else None,
        "accuracy_on": eval_name,
        "samples": len(eval_set.y),
        "accuracy": acc,
    }
