"""The mcu backend: TensorFlow Lite Micro's Python interpreter (tflite-micro) on model.int8.tflite.

TFLM takes one explicit tensor arena. The profile option `arena` is "auto" (the smallest arena
that runs, measured) or a size ("96KB", "98304", or an integer). The measurement reads the
RecordingMicroAllocator's "Arena allocation total" line that `print_allocations()` writes to
fd 2 (redirected to a temporary file) after one invoke with a generous arena; that figure is
then verified by building an interpreter with exactly that arena, and if it would not run, the
smallest working arena is found by binary search in 16-byte steps (TFLM aligns its
allocations to 16 bytes). On the models of this project the printed total and the binary
search agree to the byte.

The TFLM target is int8-only: run_float returns None.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgeconv.artifacts.folder import BuiltModel
from edgeconv.backends import check_input, layer_outputs
from edgeconv.core.errors import InputError, UsageError
from edgeconv.core.sizes import parse_size
from edgeconv.plan.arena import predict_arena_bytes
from edgeconv.plan.targets import Target

ALIGN = 16
_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")
_HEAD = re.compile(r"Arena allocation head (\d+) bytes")
_TAIL = re.compile(r"Arena allocation tail (\d+) bytes")


@dataclass(frozen=True)
class ArenaReport:
    measured_bytes: int  # smallest arena that runs the model (verified)
    predicted_bytes: int  # arena.predict_arena_bytes(analysis)
    head_bytes: int | None  # non-persistent part: planned activations (and planner scratch)
    tail_bytes: int | None  # persistent part: tensor structs, op data, quantization data
    method: str  # "print_allocations" or "binary_search"

    @property
    def ratio(self) -> float:
        return self.predicted_bytes / self.measured_bytes


@contextlib.contextmanager
def _fd2_to(path: str | None):
    """Send fd 2 (where TFLM's C++ side writes) to `path`, or to /dev/null."""
    sys.stderr.flush()
    saved = os.dup(2)
    target = os.open(path or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(target, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(target)


def _runtime():
    from tflite_micro.python.tflite_micro import runtime

    return runtime


def _try_interpreter(model: bytes, arena: int):
    """(interpreter, None) when the model allocates in `arena` bytes and invokes, else (None, why)."""
    runtime = _runtime()
    try:
        with _fd2_to(None):
            it = runtime.Interpreter.from_bytes(model, arena_size=arena)
            details = it.get_input_details(0)
            it.set_input(np.zeros(details["shape"], details["dtype"]), 0)
            it.invoke()
        return it, None
    except (RuntimeError, ValueError) as err:
        return None, " ".join(str(err).split())


def _print_allocations(it) -> str:
    fd, path = tempfile.mkstemp(prefix="edgeconv-tflm-", suffix=".txt")
    os.close(fd)
    try:
        with _fd2_to(path):
            it.print_allocations()
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    finally:
        os.unlink(path)


def _runs_isolated(model: bytes, arena: int) -> bool:
    """Whether the model allocates and invokes in `arena` bytes, probed in a forked child: TFLM
    2026-10 segfaults (instead of failing) on some arenas just too small (measured: a 4-dense
    MLP at 256 B and at 3,648 B, where 3,664 B runs), which must not take edgeconv down."""
    if not hasattr(os, "fork"):
        return _try_interpreter(model, arena)[0] is not None
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 when it runs; never returns into the caller
        code = 1
        # an expected segfault here must not print a Python crash dump (pytest, -X faulthandler)
        faulthandler.disable()
        try:
            code = 0 if _try_interpreter(model, arena)[0] is not None else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def measure_model_arena(model: bytes, start: int = 1 << 20) -> tuple[int, int | None, int | None, str]:
    """(smallest arena in bytes, head, tail, method) for a .tflite model's bytes."""
    big = start
    it, why = _try_interpreter(model, big)
    while it is None and big < (1 << 30):
        big *= 4
        it, why = _try_interpreter(model, big)
    if it is None:
        raise InputError(f"mcu: TFLM cannot run the model even with a {big}-byte arena: {why}")
    text = _print_allocations(it)
    del it
    total, head, tail = (_TOTAL.search(text), _HEAD.search(text), _TAIL.search(text))
    head_b = int(head.group(1)) if head else None
    tail_b = int(tail.group(1)) if tail else None
    lo = 0
    if total:
        n = int(total.group(1))
        if _try_interpreter(model, n)[0] is not None:
            return n, head_b, tail_b, "print_allocations"
        lo = n  # the reported total failed (alignment slack): search upwards from it
    hi = big  # lo fails (or 0), hi runs
    while hi - lo > ALIGN:
        mid = (lo + hi) // 2 // ALIGN * ALIGN
        if mid <= lo:
            break
        if not _runs_isolated(model, mid):
            lo = mid
        else:
            hi = mid
    return hi, head_b, tail_b, "binary_search"


def parse_arena(value, where: str) -> int | None:
    """None for "auto", else a size in bytes."""
    if value is None or value == "auto":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        try:
            return parse_size(value, where)
        except UsageError as err:
            raise InputError(str(err)) from None
    raise InputError(f'{where}: expected "auto" or a size like 96KB, got {value!r}')


class McuBackend:
    def __init__(self, target: Target):
        self.target = target
        self._measured: dict = {}

    def unavailable(self) -> str | None:
        return self.target.missing_runtime()

    # -- arena -------------------------------------------------------------------------------

    def _measure(self, model: bytes) -> tuple[int, int | None, int | None, str]:
        key = hash(model)
        if key not in self._measured:
            self._measured[key] = measure_model_arena(model)
        return self._measured[key]

    def measure_arena(self, build: BuiltModel) -> ArenaReport:
        measured, head, tail, method = self._measure(build.artifact("int8_tflite").read_bytes())
        return ArenaReport(measured, predict_arena_bytes(build.analysis), head, tail, method)

    def arena_bytes(self, model: bytes) -> int:
        fixed = parse_arena(self.target.option("arena", "auto"), f"{self.target.source}, field 'options.arena'")
        return self._measure(model)[0] if fixed is None else fixed

    def _interpreter(self, model: bytes, label: str):
        arena = self.arena_bytes(model)
        it, why = _try_interpreter(model, arena)
        if it is None:
            needed = self._measure(model)[0]
            if needed > arena:
                raise InputError(
                    f"mcu: {label}: a {arena}-byte TFLM arena is too small, the model needs "
                    f'{needed} bytes (set options.arena = "{needed}" or "auto" in '
                    f"{self.target.source})"
                )
            raise InputError(f"mcu: {label}: TFLM cannot run the model: {why}")
        return it

    # -- running -----------------------------------------------------------------------------

    def _run_model(self, model: bytes, label: str, x_q: np.ndarray, n_outputs: int = 1) -> list[np.ndarray]:
        it = self._interpreter(model, label)
        outs: list[list[np.ndarray]] = [[] for _ in range(n_outputs)]
        shape = tuple(int(v) for v in it.get_input_details(0)["shape"])  # NHWC, or [1, N] (imported vector)
        for i in range(x_q.shape[0]):
            it.set_input(np.ascontiguousarray(x_q[i : i + 1]).reshape(shape), 0)
            it.invoke()
            for k in range(n_outputs):
                y = np.array(it.get_output(k))
                outs[k].append(y.reshape(1, 1, 1, -1) if y.ndim == 2 else y)
        return [np.concatenate(o) for o in outs]

    def run(self, build: BuiltModel, x_q: np.ndarray) -> np.ndarray:
        x_q = check_input(build, x_q, "int8")
        path = build.artifact("int8_tflite")
        return self._run_model(path.read_bytes(), path.name, x_q)[0]

    def run_layers(self, build: BuiltModel, x_q: np.ndarray, layers: Sequence[str]) -> dict[str, np.ndarray]:
        """The named layers' outputs from the artifact itself with those tensors made graph
        outputs (export.expose): TFLM reuses arena memory, so only outputs are kept, and a fault
        in the file under test must show up here. The arena grows to hold them all."""
        from edgeconv.export.expose import tflite_with_outputs

        x_q = check_input(build, x_q, "int8")
        path = build.artifact("int8_tflite")

        def run_exposed(names: list[str]) -> dict[str, np.ndarray]:
            content = tflite_with_outputs(path.read_bytes(), names)
            return dict(
                zip(names, self._run_model(content, f"{path.name} with {len(names)} layer outputs", x_q, len(names)))
            )

        return layer_outputs(build, x_q, layers, run_exposed, artifact="int8_tflite")

    def run_float(self, build: BuiltModel, x: np.ndarray) -> None:
        """None: the TFLM target runs the int8 model only (no float kernels are pinned for it)."""
        return None


def create(target: Target) -> McuBackend:
    return McuBackend(target)
