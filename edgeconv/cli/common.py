"""Option parsers and output helpers shared by the command modules."""

from __future__ import annotations

import json

import click

from edgeconv.core.errors import UsageError


def emit_json(document: object) -> None:
    click.echo(json.dumps(document, indent=2))


def pair_option(text: str, what: str) -> tuple[int, int]:
    parts = str(text).lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise UsageError(f"{what}: expected a positive integer N or WxH like 3 or 5x3, got {text!r}")
    return values[0], values[1]


def padding_option(text: str) -> str | int:
    if text in ("same", "valid"):
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise UsageError(f"--pad: expected same, valid or an integer P >= 0, got {text!r}")
    return value


def targets_option(text: str):
    from edgeconv.plan.targets import load_target

    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise UsageError(f"--targets: expected a comma-separated list like cpu,arm,npu,mcu, got {text!r}")
    return [load_target(n) for n in names]


def float_inputs(path: str, build, what: str, min_samples: int = 1):
    from edgeconv.quant.calibrate import load_calibration

    return load_calibration(path, build.analysis, min_samples=min_samples, what=what)
