"""`edgeconv train`: train a build folder's model on labelled data, re-quantize, re-export."""

from __future__ import annotations

import sys

import click

from edgeconv.cli.common import emit_json
from edgeconv.core.errors import UsageError


def _augment_option(text: str | None) -> tuple[str, ...]:
    from edgeconv.train.loop import AUGMENTS

    if not text:
        return ()
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in AUGMENTS]
    if bad:
        raise UsageError(f"--augment: expected a comma-separated list of {', '.join(AUGMENTS)}, got {bad[0]!r}")
    return kinds


@click.command()
@click.argument("folder", metavar="DIR")
@click.option(
    "--data",
    required=True,
    metavar="TRAIN.npz|FOLDER",
    help="Training data: .npz with x (N x H x W x C float32) and y (N integer labels), "
    "or a folder with one sub-folder of images per class.",
)
@click.option("--val", metavar="VAL.npz|FOLDER", help="Validation data (same forms); accuracy is reported on it.")
@click.option("--epochs", type=click.IntRange(0, 100_000), default=30, show_default=True, help="Float epochs.")
@click.option("--batch", type=click.IntRange(1, 1_000_000), default=64, show_default=True, help="Batch size.")
@click.option(
    "--lr", type=click.FloatRange(0, 10, min_open=True), default=2e-3, show_default=True, help="AdamW peak lr."
)
@click.option(
    "--weight-decay", type=click.FloatRange(0, 10), default=1e-4, show_default=True, help="AdamW weight decay."
)
@click.option(
    "--label-smoothing", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True, help="Of the loss."
)
@click.option("--augment", metavar="crop,flip", help="Augmentations: crop (pad and random crop), flip (horizontal).")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True, help="Shuffle/augment seed.")
@click.option(
    "--qat",
    "qat_epochs",
    type=click.IntRange(0, 100_000),
    default=0,
    show_default=True,
    metavar="EPOCHS",
    help="Quantization-aware fine-tuning epochs after the float ones.",
)
@click.option("--calib", metavar="FILE", help="Calibration inputs (.npy/.npz). Default: the training inputs.")
@click.option(
    "--calib-samples",
    type=click.IntRange(8, 1_000_000),
    default=512,
    show_default=True,
    help="Training inputs used for calibration (a seeded subset).",
)
@click.option(
    "--calib-method",
    type=click.Choice(["minmax", "percentile", "mse"]),
    default="minmax",
    show_default=True,
    help="How activation ranges are chosen.",
)
@click.option("--checkpoint", metavar="FILE", help="Checkpoint path. Default: <DIR>.train/checkpoint.pt.")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint (same data and options).")
@click.option("--out", metavar="DIR2", help="Write the trained build folder here instead of replacing DIR.")
@click.option(
    "--threads",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="CPU threads (results are deterministic for a given count).",
)
@click.option("--quiet", is_flag=True, help="No per-epoch progress.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def train(
    folder,
    data,
    val,
    epochs,
    batch,
    lr,
    weight_decay,
    label_smoothing,
    augment,
    seed,
    qat_epochs,
    calib,
    calib_samples,
    calib_method,
    checkpoint,
    resume,
    out,
    threads,
    quiet,
    as_json,
):
    """Train the model of a build folder (from build or import), then re-quantize and re-export it.

    Recipe: AdamW, cosine learning-rate decay, BatchNorm after each conv (folded into the conv
    when written back), cross-entropy on the logits. Deterministic for a seed on CPU. A
    checkpoint is written after every epoch; Ctrl-C leaves the last good one (--resume).
    At the end: weights.npz, calibration on the training inputs (or --calib), every artifact
    re-exported, and the accuracy of the float reference and the int8 goldens on --val.
    """
    from edgeconv.train.run import GOLDENS, TrainRequest, default_checkpoint, run_training

    if epochs + qat_epochs < 1:
        raise UsageError("--epochs / --qat: expected at least one epoch in all, got 0")
    req = TrainRequest(
        folder=folder,
        data=data,
        val=val,
        out=out,
        epochs=epochs,
        batch=batch,
        lr=lr,
        weight_decay=weight_decay,
        label_smoothing=label_smoothing,
        augment=_augment_option(augment),
        seed=seed,
        qat_epochs=qat_epochs,
        calib=calib,
        calib_samples=calib_samples,
        calib_method=calib_method,
        checkpoint=checkpoint,
        resume=resume,
        threads=threads,
    )

    def say(message: str) -> None:
        if not quiet:
            click.echo(message, err=True)

    try:
        doc = run_training(req, say=say, progress_enabled=not quiet)
    except KeyboardInterrupt:
        path = checkpoint or default_checkpoint(folder)
        click.echo(f"edgeconv: training interrupted; the last complete epoch is in {path} (--resume)", err=True)
        raise
    if as_json:
        emit_json(doc)
        return
    acc = doc["accuracy"]
    click.echo(
        f"{doc['model']}: {doc['epochs']} epochs"
        + (f" ({doc['qat_epochs']} QAT)" if doc["qat_epochs"] else "")
        + f" in {doc['train_seconds']:.1f} s"
    )
    click.echo(f"accuracy on {doc['samples']} {doc['accuracy_on']} samples:")
    click.echo(f"  float reference   {100 * acc['float']:6.2f}%")
    for runtime, what in GOLDENS.items():
        click.echo(f"  int8 {runtime:<12} {100 * acc[f'int8_{runtime}']:6.2f}%  ({what})")
    click.echo(f"wrote {doc['folder']} (run 'edgeconv parity {doc['folder']} --inputs VAL.npz --labels' per target)")
    sys.stdout.flush()
