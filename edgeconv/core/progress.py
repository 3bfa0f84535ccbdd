"""Progress of long steps: a tqdm bar on a terminal, one plain line per step on a pipe or in CI.

    with progress_step("calibrating", total=64, unit="sample") as update:
        for batch in batches:
            ...
            update(len(batch))

On a terminal (the stream is a tty and $CI is unset) a tqdm bar counts the units and stays
on screen when the step ends. Otherwise nothing is drawn while the step runs and, if
``line`` is set, one line is written when it ends: "calibrating: 64 samples in 0.4 s".
``enabled=False`` (e.g. under --json) writes nothing at all.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO


def on_terminal(stream: TextIO | None = None) -> bool:
    """True when bars should be drawn: the stream is a tty and $CI is not set."""
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("CI")


def _bar(stream: TextIO, **kwargs):
    """A tqdm bar on `stream`. A terminal that reports a size of 0 (a pty nobody sized: `script`,
    `docker exec -t`, some CI runners) would get nothing drawn at all: 80 x 24 then."""
    from tqdm import tqdm

    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        columns = 0
    size = {} if columns else {"ncols": 80, "nrows": 24}
    return tqdm(file=stream, leave=True, **size, **kwargs)


@contextmanager
def progress_step(
    desc: str,
    total: int | None = None,
    unit: str = "it",
    enabled: bool = True,
    line: bool = True,
    stream: TextIO | None = None,
) -> Iterator[Callable[[int], None]]:
    """Yield update(n); see the module doc for what is shown where."""
    stream = stream or sys.stderr
    done = [0]
    start = time.perf_counter()
    bar = None
    if enabled and on_terminal(stream):
        bar = _bar(stream, total=total, desc=desc, unit=unit)

    def update(n: int = 1) -> None:
        done[0] += n
        if bar is not None:
            bar.update(n)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()
        elif enabled and line:
            plural = "" if done[0] == 1 or unit.endswith("s") else "s"
            print(f"{desc}: {done[0]:,} {unit}{plural} in {time.perf_counter() - start:.1f} s", file=stream, flush=True)


@contextmanager
def step_lines(
    total: int, enabled: bool = True, unit: str = "step", stream: TextIO | None = None
) -> Iterator[Callable[[str], None]]:
    """Yield say(message) for a run of `total` steps (e.g. the targets of a parity run): on a
    terminal a tqdm bar over the steps whose label is the current step's message; otherwise
    each message as one line. ``enabled=False`` writes nothing."""
    stream = stream or sys.stderr
    bar = None
    if enabled and on_terminal(stream):
        bar = _bar(stream, total=total, unit=unit)
    started = [0]

    def say(message: str) -> None:
        if bar is not None:
            if started[0]:
                bar.update(1)
            started[0] += 1
            bar.set_description_str(message)
        elif enabled:
            print(message, file=stream, flush=True)

    try:
        yield say
        if bar is not None and started[0]:
            bar.update(1)
    finally:
        if bar is not None:
            bar.close()
