"""`edgeconv parity`: every target on the same inputs, against the references and each other."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeconv.artifacts.folder import BuiltModel, to_int8_convention
from edgeconv.backends import get_backend, require, runtime_pins
from edgeconv.core import reference
from edgeconv.core.ir import INPUT
from edgeconv.parity import metrics
from edgeconv.parity.policy import (
    KINDS,
    Check,
    accuracy_check,
    bounded_layers,
    end_to_end_allowance,
    exit_code,
    golden_runtime,
    layer_allowance,
    layers_check,
    lsb_check,
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
    float_stats: metrics.FloatStats
    lsb_stats: metrics.LsbStats
    checks: list[Check]
    output_q: np.ndarray | None = field(repr=False, default=None)
    divergence: LayerDivergence | None = None
    per_layer: list[dict] = field(default_factory=list)
    pins: dict = field(default_factory=dict)  # what the numerics depend on (runtime versions, htp_arch, ...)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def of_kind(self, kind: str) -> list[Check]:
        return [c for c in self.checks if c.kind == kind]

    def verdict(self, kind: str) -> bool | None:
        """True/False for the kind's checks, None when the target has none of that kind."""
        checks = self.of_kind(kind)
        return all(c.passed for c in checks) if checks else None


@dataclass
class ParityReport:
    model: str
    samples: int
    input_source: str
    results: list[TargetResult]
    pairwise: list[dict]
    seconds: float
    source_checks: list[Check] = field(default_factory=list)  # the IR vs the source model (no target)
    source_stats: dict | None = None
    float_accuracy: float | None = None

    @property
    def checks(self) -> list[Check]:
        return [c for r in self.results for c in r.checks] + self.source_checks

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def verdict(self, kind: str) -> bool | None:
        checks = [c for c in self.checks if c.kind == kind]
        return all(c.passed for c in checks) if checks else None

    @property
    def failed_kinds(self) -> list[str]:
        return [k for k in KINDS if self.verdict(k) is False]

    @property
    def exit_code(self) -> int:
        return exit_code(self.failed_kinds)


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


def per_layer_rows(
    build: BuiltModel,
    target: Target,
    got: dict[str, np.ndarray],
    want: dict[str, np.ndarray],
    golden: str | None = None,
    float_all: dict[str, np.ndarray] | None = None,
) -> tuple[list[dict], LayerDivergence | None]:
    """Each layer the target exposes against the golden, two ways:

    - local ("max_lsb", the deployment gate): the golden op run on the target's own inputs to
      that layer, against the target's output: what this layer computed, independent of
      rounding differences upstream (which across families accumulate with depth);
    - chain ("chain_max_lsb", informational): against the golden run end to end from the input.
    Without `golden` only the chain comparison is made (and gated as before). With `float_all`
    (the float reference's tensors) each row also has "sqnr_db": the target's dequantized
    layer output against the float layer output (quality, informational per layer)."""
    from edgeconv.quant.golden import run_layer

    analysis = build.analysis
    rows, divergence = [], None
    for layer, info in zip(analysis.model.layers, analysis.layers):
        if info.name not in got:
            continue
        target_out = to_int8_convention(got[info.name]).reshape(want[info.name].shape)
        chain = metrics.lsb_stats(want[info.name], target_out)
        row: dict[str, Any] = {"layer": info.name, "op": info.op}
        if golden is not None and all(src in got or src == INPUT for src in layer.inputs):
            args = [
                want[INPUT] if src == INPUT else to_int8_convention(got[src]).reshape(want[src].shape)
                for src in layer.inputs
            ]
            if all(np.array_equal(a, want[src]) for a, src in zip(args, layer.inputs)):
                local = chain  # the same inputs as the golden chain: the same golden output
            else:
                local = metrics.lsb_stats(run_layer(layer, info, args, build.qparams, golden), target_out)
            tol = target.tolerance
            row.update(allowed=layer_allowance(tol.lsb_policy, tol.layer_lsb, golden, info.op), **local)
        else:
            tol = target.tolerance
            allowed = end_to_end_allowance(tol.lsb_policy, tol.max_lsb_vs_golden, analysis, golden or "", info.name)
            row.update(allowed=allowed, **chain)
        row.update(chain_max_lsb=chain["max_lsb"], chain_share_differing=chain["share_differing"])
        tq = build.qparams.activations.get(info.name)
        if float_all is not None and info.name in float_all and tq is not None:
            ref = float_all[info.name]
            row["sqnr_db"] = metrics.sqnr_db(ref, dequantize(target_out, tq, "int8").reshape(ref.shape))
        rows.append(row)
        if divergence is None and row["max_lsb"] > row["allowed"]:
            divergence = LayerDivergence(
                info.name, info.op, row["max_lsb"], row["allowed"], row["share_differing"], rows[:-1]
            )
    return rows, divergence


def per_layer_comparison(
    build: BuiltModel, target: Target, backend, x_q: np.ndarray, x_q_int8: np.ndarray, golden: str
) -> tuple[list[dict], LayerDivergence | None]:
    """Each layer's output on the target (the artifact with every layer exposed) against the golden's."""
    names = [info.name for info in build.analysis.layers]
    got = backend.run_layers(build, x_q, names)
    want = run_int8(build.analysis, build.qparams, x_q_int8, golden, keep_all=True)
    return per_layer_rows(build, target, got, want, golden)


@dataclass(frozen=True)
class Floors:
    """Quality floors of one run: the profile's, or what --min-sqnr / --min-top1 set."""

    min_sqnr_db: float | None = None
    min_sqnr_output_db: float | None = None
    min_top1_agreement: float | None = None

    def resolve(self, target: Target) -> tuple[float, float, float]:
        tol = target.tolerance
        return (
            tol.min_sqnr_db if self.min_sqnr_db is None else self.min_sqnr_db,
            tol.min_sqnr_output_db if self.min_sqnr_output_db is None else self.min_sqnr_output_db,
            tol.min_top1_agreement if self.min_top1_agreement is None else self.min_top1_agreement,
        )


def declared_grids(build: BuiltModel, target: Target, names: Sequence[str]) -> dict[str, int]:
    """Layers whose tensor the artifact declares on the build's scale but another zero point:
    {layer: zero point shift (artifact − build), int8 convention}. A zero point moved for both
    the producer and the consumer of a tensor represents the same real values, so parity
    compares such a tensor on the build's grid (q − shift), and only clamping can differ."""
    from edgeconv.export.tamper import activation_quant

    kind = target.artifact
    try:
        data = build.artifact(kind).read_bytes()
    except (KeyError, OSError):
        return {}
    declared = activation_quant(data, kind, {n: build.tensor_name(kind, n) for n in names})
    shifts = {}
    for name, (scale, zp) in declared.items():
        tq = build.qparams.activations.get(name)
        if tq is None or len(tq.scale) != 1:
            continue
        if np.float32(scale) == np.float32(tq.scale[0]) and zp != tq.zero_point[0]:
            shifts[name] = zp - tq.zero_point[0]
    return shifts


def logits_layer(build: BuiltModel) -> str | None:
    """The softmax input of a model that ends in softmax (quality is measured there), else None."""
    last = build.analysis.layers[-1]
    return last.inputs[0] if last.op == "softmax" else None


def check_target(
    build: BuiltModel,
    target: Target,
    x: np.ndarray,
    float_out: np.ndarray | dict[str, np.ndarray],
    per_layer: bool = True,
    floors: Floors | None = None,
    labels: np.ndarray | None = None,
    feed: Callable[[np.ndarray], np.ndarray] | None = None,
) -> TargetResult:
    """Deployment checks (LSB vs the target's golden at the output and, by default, at every
    layer the artifact exposes) and quality checks (SQNR at the logits and the output, top-1,
    accuracy with labels). `float_out` is the float reference's output, or all its tensors
    (reference.run keep_all), which the logits SQNR needs. `feed` (bug catalogue): what the
    application does to the quantized input bytes before the target sees them."""
    backend = require(get_backend(target))
    analysis, tol = build.analysis, target.tolerance
    dtype = target_dtype(build, target)
    in_tq = build.qparams.activations["input"]
    x_q, x_q_int8 = quantize_input(x, in_tq, dtype), quantize_input(x, in_tq, "int8")
    golden = golden_runtime(target.backend, target.rounding, target.option("kernels"))
    output = analysis.model.output
    split_head = splits_softmax_head(analysis, tol.lsb_policy, golden)
    logits = logits_layer(build)
    float_all = float_out if isinstance(float_out, dict) else {output: float_out}
    x_fed = feed(x_q) if feed is not None else x_q
    start = time.perf_counter()
    out_q = to_int8_convention(backend.run(build, x_fed))  # the artifact as deployed, nothing exposed
    seconds = time.perf_counter() - start
    names = [info.name for info in analysis.layers] if per_layer else [n for n in (logits,) if n]
    got = {k: to_int8_convention(v) for k, v in backend.run_layers(build, x_fed, names).items()} if names else {}
    shifts = declared_grids(build, target, sorted(set(names) | {output}))
    for name, shift in shifts.items():  # tensors the file declares with a moved zero point
        if name in got:
            got[name] = got[name].astype(np.int32) - shift
    if output in shifts:
        out_q = out_q.astype(np.int32) - shifts[output]
    want_all = run_int8(analysis, build.qparams, x_q_int8, golden, keep_all=True)
    want = want_all[output]
    out_q = out_q.reshape(want.shape)
    classifier = _is_classifier(build)
    out_tq = build.qparams.activations[output]
    fstats = metrics.float_stats(float_all[output], dequantize(out_q, out_tq, "int8"), classifier)
    lstats = metrics.lsb_stats(want, out_q)
    # -- deployment --------------------------------------------------------------------------
    # in the golden's own family, with every op on the path exact, the output must match end to
    # end; across families, or through ops the golden only bounds (qnn_htp's add, pools,
    # softmax), differences accumulate with depth, so the gate is every layer on its own inputs
    # (below) and the end-to-end LSB are reported for information
    checks = []
    if tol.lsb_policy == "exact" and bounded_layers(analysis, golden) == 0:
        checks.append(lsb_check(target.name, lstats["max_lsb"], 0, f"{golden} golden reference"))
    elif not per_layer:  # output only: the logits bound and the softmax head
        if split_head and logits is not None:
            allowed = end_to_end_allowance(tol.lsb_policy, tol.max_lsb_vs_golden, analysis, golden, logits)
            checks += softmax_head_checks(
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
            allowed = end_to_end_allowance(tol.lsb_policy, tol.max_lsb_vs_golden, analysis, golden)
            checks.append(lsb_check(target.name, lstats["max_lsb"], allowed, f"{golden} golden reference"))
    rows: list[dict] = []
    divergence: LayerDivergence | None = None
    if per_layer:
        rows, divergence = per_layer_rows(build, target, got, want_all, golden, float_all)
        checks.append(layers_check(target.name, rows, golden))
    # -- quality -----------------------------------------------------------------------------
    min_sqnr, min_sqnr_out, min_top1 = (floors or Floors()).resolve(target)
    if logits and logits in float_all and logits in got:
        got_logits = dequantize(got[logits], build.qparams.activations[logits], "int8")
        sqnr_logits = metrics.sqnr_db(float_all[logits], got_logits.reshape(float_all[logits].shape))
        fstats["sqnr_logits_db"] = sqnr_logits
        checks.append(sqnr_check(target.name, sqnr_logits, min_sqnr, logits))
        checks.append(sqnr_check(target.name, fstats["sqnr_db"], min_sqnr_out))
    else:  # no softmax: the output is the logits (or the model's last tensor)
        checks.append(sqnr_check(target.name, fstats["sqnr_db"], min_sqnr))
    top1 = fstats["top1_agreement"]
    if classifier and top1 is not None:
        checks.append(top1_check(target.name, top1, min_top1))
    if labels is not None:
        y = dequantize(out_q, out_tq, "int8").reshape(len(x), -1)
        accuracy = float(np.mean(y.argmax(axis=1) == labels))
        float_accuracy = float(np.mean(float_all[output].reshape(len(x), -1).argmax(axis=1) == labels))
        fstats["accuracy"] = accuracy
        checks.append(accuracy_check(target.name, accuracy, float_accuracy, tol.max_accuracy_drop))
    result = TargetResult(target.name, golden, dtype, seconds, fstats, lstats, checks, out_q)
    result.per_layer, result.divergence = rows, divergence
    return result


def run_parity(
    build: BuiltModel,
    targets: Sequence[Target],
    x: np.ndarray,
    input_source: str,
    per_layer: bool = True,
    progress: Callable[[str], None] | None = None,
    floors: Floors | None = None,
    labels: np.ndarray | None = None,
    source: str | None = None,
    feed: Callable[[np.ndarray], np.ndarray] | None = None,
) -> ParityReport:
    """Every target on x. per_layer (default): the deployment check covers every layer the
    artifact exposes, not only the output. `source`: a source model file (.onnx / .tflite)
    whose own runtime's outputs the IR's float reference must match (the source check)."""
    start = time.perf_counter()
    float_all = reference.run(build.analysis, build.weights, x, keep_all=True)
    for target in targets:  # fail fast on a missing runtime, before any long run
        require(get_backend(target))
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.shape[0] != len(x):
            from edgeconv.core.errors import UsageError

            raise UsageError(f"--labels: expected {len(x)} labels (one per input), got {labels.shape[0]}")
    source_checks, source_stats = [], None
    if source:
        from edgeconv.parity.source import source_check

        if progress:
            progress(f"source: running {source} on its own runtime")
        check, source_stats = source_check(build, source, x, float_all[build.analysis.model.output], float_all)
        source_checks.append(check)
    results = []
    for target in targets:
        if progress:
            progress(f"{target.name}: running {len(x)} samples")
        result = check_target(build, target, x, float_all, per_layer, floors, labels, feed)
        result.pins = target_pins(target)
        pinned = pin_check(target, result.pins)
        if pinned is not None:
            result.checks.append(pinned)
        results.append(result)
    pairwise = []
    for i, a in enumerate(results):
        for b in results[i + 1 :]:
            assert a.output_q is not None and b.output_q is not None, "check_target keeps every output"
            stats = metrics.lsb_stats(a.output_q, b.output_q)
            pairwise.append(
                {"a": a.target, "b": b.target, "max_lsb": stats["max_lsb"], "share_differing": stats["share_differing"]}
            )
    float_accuracy = None
    if labels is not None:
        out = float_all[build.analysis.model.output].reshape(len(x), -1)
        float_accuracy = float(np.mean(out.argmax(axis=1) == labels))
    return ParityReport(
        build.name,
        len(x),
        input_source,
        results,
        pairwise,
        time.perf_counter() - start,
        source_checks,
        source_stats,
        float_accuracy,
    )


def target_pins(target: Target) -> dict:
    """What a target's numerics depend on, recorded in every report: the runtime packages'
    versions and the pinned options (htp_arch, soc_model, kernels, ...)."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for package in target.packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    pins: dict = {"packages": versions, "rounding": target.rounding}
    for key in ("htp_arch", "soc_model", "qnn_sdk", "kernels"):
        if target.option(key) is not None:
            pins[key] = str(target.option(key))
    installed = runtime_pins(target)
    if installed.get("qnn_sdk"):
        pins["qnn_sdk_installed"] = installed["qnn_sdk"]
    return pins


def pin_check(target: Target, pins: dict) -> Check | None:
    """A deployment check that the installed runtime is the one the target's golden was measured
    on (the profile's `qnn_sdk` pin against the wheel's QNN SDK), or None when nothing is pinned."""
    pinned, installed = pins.get("qnn_sdk"), pins.get("qnn_sdk_installed")
    if pinned is None or installed is None:
        return None
    ok = pinned == installed
    return Check(
        target.name,
        "runtime_pins",
        ok,
        None,
        None,
        f"QNN SDK {installed} installed"
        + ("" if ok else f", but the {golden_runtime(target.backend, target.rounding)} golden was measured on {pinned}")
        + f" (profile pin qnn_sdk = {pinned})",
    )
