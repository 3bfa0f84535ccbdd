"""Parsing of byte sizes ("1MB", "256KiB") and W×H×C shapes ("32x32x3")."""

from __future__ import annotations

import re
from fractions import Fraction

from edgeconv.core.errors import UsageError

# Decimal units are powers of ten and binary units powers of two, as in IEC 80000-13.
_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$", re.ASCII)  # ASCII: not '１MB'
MAX_SIZE = 10**15  # 1 PB: any budget beyond is a typo


def parse_size(text: str, what: str = "size") -> int:
    """Return the byte count of `text` such as '1MB', '256KiB', '4096' or '1.5MB'."""
    match = _SIZE_RE.match(str(text))
    if not match or match.group(2).upper() not in _UNITS:
        raise UsageError(f"{what}: expected a size like 1MB, 256KB, 64KiB or 4096B, got {text!r}")
    number, unit = match.groups()
    value = Fraction(number) * _UNITS[unit.upper()]  # exact: float would round 99999999999GB
    if value.denominator != 1:
        raise UsageError(f"{what}: {text!r} is not a whole number of bytes ({float(value):g} B)")
    if value <= 0:
        raise UsageError(f"{what}: expected a size above zero, got {text!r}")
    if value > MAX_SIZE:
        raise UsageError(f"{what}: {text!r} is {int(value):,} B, over the largest size edgeconv takes (1 PB)")
    return int(value)


def format_size(n_bytes: int) -> str:
    """Human-readable size in decimal units, with the exact byte count."""
    if n_bytes >= 10**6:
        return f"{n_bytes / 10**6:.2f} MB ({n_bytes:,} B)"
    if n_bytes >= 10**3:
        return f"{n_bytes / 10**3:.1f} KB ({n_bytes:,} B)"
    return f"{n_bytes} B"


def parse_shape(text: str, what: str = "--input") -> tuple[int, int, int]:
    """Parse 'WxHxC' (as in the lecture notes) into (W, H, C)."""
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts if p.strip().isascii())  # int() also takes '٣'
    except ValueError:
        dims = ()
    if len(dims) != len(parts):
        dims = ()
    if len(dims) != 3 or min(dims) <= 0:
        raise UsageError(f"{what}: expected WxHxC with three positive integers like 32x32x3, got {text!r}")
    return dims


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|us)")


def parse_duration_ms(text: str, what: str = "duration") -> float:
    """'100ms', '0.1s' or '500us' as milliseconds (ASCII digits only; above 0, at most 1 hour)."""
    m = _DURATION.fullmatch(text.strip().lower()) if text.isascii() else None
    value = None if m is None else float(m.group(1)) * {"ms": 1.0, "s": 1e3, "us": 1e-3}[m.group(2)]
    if value is None or not 0 < value <= 3.6e6:
        raise UsageError(f"{what}: expected a time like 100ms, 0.1s or 500us (above 0, at most 1 hour), got {text!r}")
    return value
