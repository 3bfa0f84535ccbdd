"""Option parsers and output helpers shared by the command modules."""

from __future__ import annotations

import json

import click

from edgeconv.core.errors import UsageError

MAX_SAMPLES = 1_000_000
MAX_SEED = 2**63 - 1


class _AsciiInt(click.ParamType):
    """click's int, but ASCII digits only (Python's int() also takes '２２' and '٣')."""

    name = "integer"

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        text = str(value).strip()
        if not text.isascii() or not text.lstrip("+-").isdigit():
            self.fail(f"expected an integer in ASCII digits, got {value!r}", param, ctx)
        return int(text)


class _AsciiFloat(click.ParamType):
    """click's float, but ASCII only and finite (no nan, inf)."""

    name = "number"

    def convert(self, value, param, ctx):
        if isinstance(value, float | int) and not isinstance(value, bool):
            number = float(value)
        else:
            text = str(value).strip()
            try:
                number = float(text) if text.isascii() else float("nan")
            except ValueError:
                number = float("nan")
        if number != number or number in (float("inf"), float("-inf")):
            self.fail(f"expected a finite number in ASCII digits, got {value!r}", param, ctx)
        return number


INT = _AsciiInt()
FLOAT = _AsciiFloat()


def check_sample_count(value: int, what: str, minimum: int = 1) -> int:
    if not minimum <= value <= MAX_SAMPLES:
        raise UsageError(f"{what}: expected {minimum} to {MAX_SAMPLES:,} samples, got {value}")
    return value


def check_seed(value: int, what: str = "--seed") -> int:
    if not 0 <= value <= MAX_SEED:
        raise UsageError(f"{what}: expected an integer from 0 to 2**63-1, got {value}")
    return value


def emit_json(document: object) -> None:
    click.echo(json.dumps(document, indent=2))


def pair_option(text: str, what: str) -> tuple[int, int]:
    parts = str(text).lower().split("x")
    try:
        values = [int(p) for p in parts if p.isascii()]
    except ValueError:
        values = []
    if len(values) != len(parts):
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
        value = int(text) if str(text).isascii() else -1
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
    return [load_target(n, option="--targets") for n in names]


def float_inputs(path: str, build, what: str, min_samples: int = 1):
    from edgeconv.quant.calibrate import load_calibration

    return load_calibration(path, build.analysis, min_samples=min_samples, what=what)
