"""The source check: the IR's float reference against the source model on its own runtime.

The int8 goldens are computed from the IR, so a wrong padding convention, flatten order or
weight layout in the IR (from an importer or a --weights file) is invisible to the deployment
check. Here the float reference (numpy, float64) meets the source model run by its own runtime
(ONNX Runtime / LiteRT, float32): with the same graph the two differ by float32 rounding only
(1.4e-6 at the softmax output of the trained ResNet-8, SQNR > 100 dB); any structural mistake
costs tens of dB. The floor, SOURCE_MIN_SQNR_DB, sits between the two.
"""

from __future__ import annotations

import numpy as np

from edgeconv.artifacts.folder import BuiltModel
from edgeconv.core.errors import InputError
from edgeconv.parity import metrics
from edgeconv.parity.policy import Check

SOURCE_MIN_SQNR_DB = 60.0  # float32 runtime vs float64 reference of the same graph: > 100 dB measured


def first_diverging_layer(
    build: BuiltModel, source: str, x: np.ndarray, float_all: dict[str, np.ndarray]
) -> tuple[str, float] | None:
    """The first IR layer whose float output no tensor of the source model reproduces (best
    SQNR over the source's tensors of the same size below the floor), with that SQNR. A layer
    the source has no tensor of that size for (fused away) is skipped; None when every layer
    matches or the source cannot be opened up (a .tflite source)."""
    from edgeconv.backends.source import run_source_tensors

    tensors = run_source_tensors(source, x)
    for info in build.analysis.layers:
        if info.name not in float_all:
            continue
        want = np.asarray(float_all[info.name], np.float32).reshape(len(x), -1)
        best = max((metrics.sqnr_db(want, t) for t in tensors if t.shape == want.shape), default=None)
        if best is not None and best < SOURCE_MIN_SQNR_DB:
            return info.name, float(best)
    return None


def source_check(
    build: BuiltModel,
    source: str,
    x: np.ndarray,
    float_out: np.ndarray,
    float_all: dict[str, np.ndarray] | None = None,
) -> tuple[Check, dict]:
    """The IR's float reference against the source's output; when they differ and `float_all`
    (every layer of the float reference) is given, the first diverging layer is named."""
    from edgeconv.backends.source import run_source

    got = run_source(source, x)
    want = np.asarray(float_out, np.float32).reshape(len(x), -1)
    if got.shape != want.shape:
        raise InputError(
            f"--source {source}: its output has {got.shape[1]} values per sample, {build.name} has {want.shape[1]}"
        )
    sqnr = metrics.sqnr_db(got, want)
    stats = {
        "source": str(source),
        "sqnr_db": sqnr,
        "max_abs_error": metrics.max_abs_error(got, want),
        "top1_agreement": metrics.top1_agreement(got, want) if want.shape[1] > 1 else None,
    }
    where = ""
    if sqnr < SOURCE_MIN_SQNR_DB and float_all is not None:
        first = first_diverging_layer(build, source, x, float_all)
        if first is not None:
            stats["first_layer"], stats["first_layer_sqnr_db"] = first
            where = f"; first diverging layer {first[0]} (SQNR {first[1]:.1f} dB against the source's closest tensor)"
    check = Check(
        "source",
        "source_vs_ir",
        sqnr >= SOURCE_MIN_SQNR_DB,
        round(sqnr, 2) if np.isfinite(sqnr) else sqnr,
        SOURCE_MIN_SQNR_DB,
        f"IR float reference vs {source} on its own runtime: SQNR {sqnr:.1f} dB, max |Δ| "
        f"{stats['max_abs_error']:.3g} (floor {SOURCE_MIN_SQNR_DB:g} dB){where}",
    )
    return check, stats
