"""`edgeconv parity`: every target on the same inputs, against the references and each other."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from edgeconv.artifacts.folder import BuiltModel, to_int8_convention
from edgeconv.backends import get_backend, require
from edgeconv.core import reference
from edgeconv.parity import metrics
from edgeconv.parity.policy import (
    Check,
    allowed_lsb,
    golden_runtime,
    lsb_check,
    requantizing_layers,
    softmax_head_checks,
    splits_softmax_head,
    sqnr_check,
    top1_check,
)
from edgeconv.plan.targets import Target
from edgeconv.quant.golden import run_int8
from edgeconv.quant.quantize import dequantize, quantize_input


@dataclass
class LayerDivergence:
    layer: str
    op: str
    max_lsb: int
    allowed: int
    share_differing: float
    layers_before: list[dict]  # name, op, max_lsb, share_differing of every earlier layer


@dataclass
class TargetResult:
    target: str
    golden: str
    activation_dtype: str
    seconds: float
    float_stats: dict
    lsb_stats: dict
    checks: list[Check]
    output_q: np.ndarray = field(repr=False, default=None)
    divergence: LayerDivergence | None = None
    per_layer: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


@dataclass
class ParityReport:
    model: str
    samples: int
    input_source: str
    results: list[TargetResult]
    pairwise: list[dict]
    seconds: float

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)


def parity_inputs(analysis, n: int, seed: int) -> np.ndarray:
    """n standard-normal samples drawn like the synthetic calibration set but from another
    random stream (entropy [seed, 1] instead of seed), so they are never the calibration samples."""
    m = analysis.model.input
    rng = np.random.default_rng([seed, 1])
    return rng.standard_normal((n, m.height, m.width, m.channels)).astype(np.float32)


def comparison_inputs(
    build: BuiltModel, inputs_path: str | None, samples: int, seed: int, min_synthetic: int = 32
) -> tuple[np.ndarray, str]:
    """The float inputs of a comparison and where they come from: the user's file, or the
    seeded synthetic set (at least `min_synthetic` samples)."""
    from pathlib import Path

    from edgeconv.core.errors import UsageError
    from edgeconv.quant.calibrate import load_calibration

    if inputs_path:
        x = load_calibration(inputs_path, build.analysis, min_samples=1, what="inputs")
        return x, f"file {Path(inputs_path).name}"
    if samples < min_synthetic:
        raise UsageError(f"--samples: expected at least {min_synthetic} synthetic samples, got {samples}")
    return (
        parity_inputs(build.analysis, samples, seed),
        f"synthetic standard normal, seed {seed}, a stream apart from the calibration samples",
    )


def target_dtype(build: BuiltModel, target: Target) -> str:
    return build.qdq_dtype if target.artifact == "qdq_onnx" else "int8"


def _is_classifier(build: BuiltModel) -> bool:
    info = build.analysis.layers[-1]
    return info.op in ("softmax", "dense") and info.out_shape[2] > 1


def per_layer_comparison(
    build: BuiltModel, target: Target, backend, x_q: np.ndarray, x_q_int8: np.ndarray, golden: str
) -> tuple[list[dict], LayerDivergence | None]:
    """Each layer's output on the target against the golden's; the first beyond tolerance."""
    names = [info.name for info in build.analysis.layers]
    got = backend.run_layers(build, x_q, names)
    want = run_int8(build.analysis, build.qparams, x_q_int8, golden, keep_all=True)
    rows, divergence = [], None
    for info in build.analysis.layers:
        stats = metrics.lsb_stats(want[info.name], to_int8_convention(got[info.name]).reshape(want[info.name].shape))
        allowed = allowed_lsb(
            target.tolerance.lsb_policy,
            target.tolerance.max_lsb_vs_golden,
            requantizing_layers(build.analysis, info.name),
        )
        row = {"layer": info.name, "op": info.op, "allowed": allowed, **stats}
        rows.append(row)
        if divergence is None and stats["max_lsb"] > allowed:
            divergence = LayerDivergence(
                info.name, info.op, stats["max_lsb"], allowed, stats["share_differing"], rows[:-1]
            )
    return rows, divergence


def check_target(
    build: BuiltModel, target: Target, x: np.ndarray, float_out: np.ndarray, per_layer: bool = False
) -> TargetResult:
    backend = require(get_backend(target))
    analysis, tol = build.analysis, target.tolerance
    dtype = target_dtype(build, target)
    in_tq = build.qparams.activations["input"]
    x_q, x_q_int8 = quantize_input(x, in_tq, dtype), quantize_input(x, in_tq, "int8")
    golden = golden_runtime(target.backend, target.rounding, target.option("kernels"))
    output = analysis.model.output
    split_head = splits_softmax_head(analysis, tol.lsb_policy)
    logits = analysis.layers[-1].inputs[0] if split_head else None
    start = time.perf_counter()
    if split_head:
        got = backend.run_layers(build, x_q, [logits, output])
        got = {k: to_int8_convention(v) for k, v in got.items()}
        out_q = got[output]
    else:
        out_q = to_int8_convention(backend.run(build, x_q))
    seconds = time.perf_counter() - start
    want_all = run_int8(analysis, build.qparams, x_q_int8, golden, keep_all=split_head)
    want = want_all[output]
    out_q = out_q.reshape(want.shape)
    classifier = _is_classifier(build)
    fstats = metrics.float_stats(float_out, dequantize(out_q, build.qparams.activations[output], "int8"), classifier)
    lstats = metrics.lsb_stats(want, out_q)
    if split_head:
        allowed = allowed_lsb(tol.lsb_policy, tol.max_lsb_vs_golden, requantizing_layers(analysis, logits))
        checks = softmax_head_checks(
            target.name,
            golden,
            logits,
            want_all[logits],
            got[logits],
            build.qparams.activations[logits],
            out_q,
            output,
            allowed,
            tol.head_lsb,
            lstats["max_lsb"],
        )
    else:
        allowed = allowed_lsb(tol.lsb_policy, tol.max_lsb_vs_golden, requantizing_layers(analysis))
        checks = [lsb_check(target.name, lstats["max_lsb"], allowed, f"{golden} golden reference")]
    checks.append(sqnr_check(target.name, fstats["sqnr_db"], tol.min_sqnr_db))
    if classifier:
        checks.append(top1_check(target.name, fstats["top1_agreement"], tol.min_top1_agreement))
    result = TargetResult(target.name, golden, dtype, seconds, fstats, lstats, checks, out_q)
    if per_layer or not all(c.passed for c in checks[:2]):
        result.per_layer, result.divergence = per_layer_comparison(build, target, backend, x_q, x_q_int8, golden)
    return result


def run_parity(
    build: BuiltModel,
    targets: Sequence[Target],
    x: np.ndarray,
    input_source: str,
    per_layer: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ParityReport:
    start = time.perf_counter()
    float_out = reference.run(build.analysis, build.weights, x)[build.analysis.model.output]
    for target in targets:  # fail fast on a missing runtime, before any long run
        require(get_backend(target))
    results = []
    for target in targets:
        if progress:
            progress(f"{target.name}: running {len(x)} samples")
        results.append(check_target(build, target, x, float_out, per_layer))
    pairwise = []
    for i, a in enumerate(results):
        for b in results[i + 1 :]:
            stats = metrics.lsb_stats(a.output_q, b.output_q)
            pairwise.append(
                {"a": a.target, "b": b.target, "max_lsb": stats["max_lsb"], "share_differing": stats["share_differing"]}
            )
    return ParityReport(build.name, len(x), input_source, results, pairwise, time.perf_counter() - start)
