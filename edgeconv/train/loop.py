"""The training recipe of `edgeconv train` (PyTorch, CPU).

Recipe (standard for small CNNs, chosen to need no tuning on small data sets):
- AdamW, lr 2e-3 by default, weight decay 1e-4 on conv/dense weights (not on biases or
  BatchNorm), batch 64, cosine decay of the learning rate to 0 over all steps, cross-entropy
  on the logits (the input of the softmax head) with optional label smoothing;
- BatchNorm after each conv, folded into the conv when the weights are written back;
- augmentation (`crop`: pad by ⌈size/8⌉ pixels with zeros and crop back at a random offset;
  `flip`: horizontal flip with probability ½), drawn from the epoch's own generator;
- QAT epochs (qat.py) follow the float epochs with their own cosine schedule at lr/10.

Determinism: the shuffle and augmentation of epoch e come from numpy's default_rng([seed, e]),
nothing draws from torch's generator, and torch's CPU kernels for these ops are deterministic
for a fixed thread count (`edgeconv train --threads`, default 1: the small nets edgeconv plans
train fastest on one thread), so the same data, seed and thread count give the same weights, and a run resumed from a checkpoint gives the same weights as one that was
never interrupted. The checkpoint (module, optimizer, scheduler, epoch, history) is written
atomically after every epoch, so Ctrl-C leaves the last good one.
"""

from __future__ import annotations

import io
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgeconv.core.errors import InputError
from edgeconv.core.io import write_bytes_atomic
from edgeconv.train.module import IRModule

CHECKPOINT_FORMAT = 1
AUGMENTS = ("crop", "flip")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    augment: tuple[str, ...] = ()
    seed: int = 0
    qat_epochs: int = 0
    qat_lr_factor: float = 0.1

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.qat_epochs


@dataclass
class EpochRecord:
    epoch: int
    phase: str  # "float" or "qat"
    loss: float
    train_acc: float
    val_acc: float | None
    lr: float
    seconds: float


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    history: list[dict] = field(default_factory=list)


def augment_batch(x: np.ndarray, kinds: tuple[str, ...], rng: np.random.Generator) -> np.ndarray:
    """NHWC batch augmented with the named transforms (a fresh array)."""
    n, h, w, _ = x.shape
    out = x
    if "crop" in kinds:
        ph, pw = math.ceil(h / 8), math.ceil(w / 8)
        padded = np.pad(out, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        dy = rng.integers(0, 2 * ph + 1, size=n)
        dx = rng.integers(0, 2 * pw + 1, size=n)
        out = np.stack([padded[i, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    if "flip" in kinds:
        flip = np.asarray(rng.random(n) < 0.5, dtype=bool)
        out = np.where(flip[:, None, None, None], out[:, :, ::-1], out)
    return np.ascontiguousarray(out, dtype=np.float32)


def _param_groups(module: IRModule, weight_decay: float) -> list[dict]:
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in module.named_parameters():
        (decay if name.endswith("weight") and ".bn." not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _optimizer(module: IRModule, cfg: TrainConfig, lr: float, steps: int):
    opt = torch.optim.AdamW(_param_groups(module, cfg.weight_decay), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    return opt, sched


def evaluate(module: IRModule, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    """Top-1 accuracy of the module in eval mode."""
    was_training = module.training
    module.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch):
            logits = module.logits(torch.from_numpy(x[start : start + batch]))
            correct += int((logits.argmax(dim=1).numpy() == y[start : start + batch]).sum())
    module.train(was_training)
    return correct / max(len(x), 1)


def save_checkpoint(path: Path, module: IRModule, opt, sched, state: TrainState, cfg: TrainConfig, extra: dict) -> None:
    buffer = io.BytesIO()
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "model": module.model.name,
            "config": asdict(cfg),
            "epoch": state.epoch,
            "history": state.history,
            "module": module.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "extra": extra,
        },
        buffer,
    )
    write_bytes_atomic(path, buffer.getvalue())


def load_checkpoint(path: Path, module: IRModule) -> dict:
    if not path.is_file():
        raise InputError(f"--resume: no checkpoint at {path} (train once without --resume first)")
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt file
        raise InputError(f"checkpoint {path}: unreadable ({type(err).__name__}: {str(err)[:120]})") from None
    if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"checkpoint {path}: expected an edgeconv training checkpoint of format {CHECKPOINT_FORMAT}")
    if doc.get("model") != module.model.name:
        raise InputError(
            f"checkpoint {path}: holds model {doc.get('model')!r}, the build folder has {module.model.name!r}"
        )
    return doc


class Progress:
    """tqdm bar per epoch on a terminal, one plain line per epoch otherwise."""

    def __init__(self, enabled: bool, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = None

    def start(self, epoch: int, total_epochs: int, steps: int, phase: str) -> None:
        if self.tty:
            from tqdm import tqdm

            label = f"epoch {epoch}/{total_epochs}" + (" (qat)" if phase == "qat" else "")
            self.bar = tqdm(total=steps, desc=label, file=self.stream, leave=True, dynamic_ncols=True)

    def step(self, loss: float, acc: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", acc=f"{100 * acc:.1f}%", refresh=False)
            self.bar.update(1)

    def end(self, rec: EpochRecord, total_epochs: int) -> None:
        val = "" if rec.val_acc is None else f" val {100 * rec.val_acc:.1f}%"
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {rec.loss:.4f} acc {100 * rec.train_acc:.1f}%{val}")
            self.bar.close()
            self.bar = None
        elif self.enabled:
            phase = " qat" if rec.phase == "qat" else ""
            print(
                f"epoch {rec.epoch}/{total_epochs}{phase}: loss {rec.loss:.4f} acc {100 * rec.train_acc:.1f}%"
                f"{val} lr {rec.lr:.2e} ({rec.seconds:.1f} s)",
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def train(
    module: IRModule,
    x: np.ndarray,
    y: np.ndarray,
    cfg: TrainConfig,
    *,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    qat_setup: Callable[[IRModule], None] | None = None,
    checkpoint_extra: dict | None = None,
) -> TrainState:
    """Train `module` in place; returns the state with one history record per epoch.

    `qat_setup(module)` is called at the start of every QAT epoch (it installs or refreshes
    the fake quantization; see qat.py).
    """
    progress = progress or Progress(False)
    n = len(x)
    steps = math.ceil(n / cfg.batch)
    state = TrainState()
    opt, sched = _optimizer(module, cfg, cfg.lr, cfg.epochs * steps)
    phase_opt = "float"
    doc = None
    if resume and checkpoint is not None:
        doc = load_checkpoint(checkpoint, module)
        state = TrainState(int(doc["epoch"]), list(doc["history"]))
    if doc is not None and state.epoch > cfg.epochs:
        # the checkpoint is inside the QAT phase: rebuild that phase's optimizer before loading
        opt, sched = _optimizer(module, cfg, cfg.lr * cfg.qat_lr_factor, cfg.qat_epochs * steps)
        phase_opt = "qat"
    if doc is not None:
        module.load_state_dict(doc["module"])
        opt.load_state_dict(doc["optimizer"])
        sched.load_state_dict(doc["scheduler"])
    for epoch in range(state.epoch + 1, cfg.total_epochs + 1):
        phase = "float" if epoch <= cfg.epochs else "qat"
        if phase == "qat":
            if qat_setup is None:
                raise InputError("QAT epochs requested without a fake-quantization set-up")
            qat_setup(module)
            if phase_opt != "qat":
                opt, sched = _optimizer(module, cfg, cfg.lr * cfg.qat_lr_factor, cfg.qat_epochs * steps)
                phase_opt = "qat"
        rng = np.random.default_rng([cfg.seed, epoch])
        order = rng.permutation(n)
        module.train()
        if phase == "qat":
            module.apply(_freeze_bn)  # QAT folds BN with its running statistics: keep them fixed
        progress.start(epoch, cfg.total_epochs, steps, phase)
        t0 = time.perf_counter()
        total_loss, correct, seen = 0.0, 0, 0
        lr_used = opt.param_groups[0]["lr"]
        for start in range(0, n, cfg.batch):
            idx = order[start : start + cfg.batch]
            xb = x[idx]
            if cfg.augment:
                xb = augment_batch(xb, cfg.augment, rng)
            xt = torch.from_numpy(np.ascontiguousarray(xb))
            yt = torch.from_numpy(y[idx])
            logits = module.logits(xt)
            loss = F.cross_entropy(logits, yt, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += float(loss.detach()) * len(idx)
            correct += int((logits.detach().argmax(dim=1) == yt).sum())
            seen += len(idx)
            progress.step(total_loss / seen, correct / seen)
        val_acc = evaluate(module, *val) if val is not None else None
        rec = EpochRecord(epoch, phase, total_loss / seen, correct / seen, val_acc, lr_used, time.perf_counter() - t0)
        state.epoch = epoch
        state.history.append(asdict(rec))
        progress.end(rec, cfg.total_epochs)
        if checkpoint is not None:
            save_checkpoint(checkpoint, module, opt, sched, state, cfg, checkpoint_extra or {})
    progress.close()
    return state


def _freeze_bn(m) -> None:
    if isinstance(m, torch.nn.BatchNorm2d):
        m.eval()
