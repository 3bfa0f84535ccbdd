"""The tolerance policy: which differences a target may show and still pass.

- LSB against the int8 golden reference of the target's rounding family: exact (0 LSB) where
  the runtime belongs to that family, op by op: a golden that bounds an op instead of matching
  it (quant.golden.BOUNDED_OPS: qnn_htp's add, pools, softmax) allows that bound at that op
  only, every other op stays at 0. End to end (device bundles, `--layers output`, where no
  layer is fed the target's own inputs) a path through bounded ops allows
  min(bounded layers on the path, cap). Across families ("cross_family", a profile judged
  against another family's golden) at most min(number of requantizing layers, cap) LSB,
  cap = 3 by default — rounding differences of up to 1 LSB per requantizing layer, bounded.
- Across families, a model ending in softmax is bounded at its logits (the softmax input), and
  the softmax is checked on the target's own logits with at most `head_lsb` LSB: softmax turns a
  1-LSB logit difference into several LSB of probability, so LSB at its output say nothing
  about rounding.
- SQNR against the float reference at least `min_sqnr_db`; top-1 agreement with the float
  reference at least `min_top1_agreement` (classifiers only).
All numbers live in the target profiles (targets/*.toml, [tolerance]).

Every check has a kind, and the kinds are reported apart (a table column, a JSON section, a
JUnit test suite each) and map to separate exit-code bits:
- deployment (exit bit 1): does the target compute what its kernels should: LSB against its
  family's golden at the output and at every layer the artifact exposes; a hard gate.
- quality (exit bit 4): how far int8 is from float on the user's inputs: SQNR at the logits
  (the softmax input, where softmax can neither amplify nor hide differences) and at the
  output, top-1 agreement, accuracy when labels are given. Floors are defaults (measured on
  the trained MLPerf ResNet-8 with real-photo inputs, README "Parity verdicts").
- source (exit bit 8): the IR's float reference against the source model on its own runtime.
Bits are OR'ed when several kinds fail (5 = deployment and quality); 2 stays "bad usage" and
3 "internal error", so every code is unambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeconv.core.graph import Analysis, LayerInfo
from edgeconv.core.ir import Softmax
from edgeconv.parity import metrics
from edgeconv.quant.golden import BOUNDED_OPS, op_bound, run_layer
from edgeconv.quant.params import QuantParams, TensorQuant
from edgeconv.quant.quantize import SOFTMAX_QUANT

# ops whose output is requantized to a new scale (max_pool only selects, so it does not count)
REQUANTIZING_OPS = ("conv2d", "depthwise_conv2d", "dense", "add", "avg_pool", "global_avg_pool", "softmax")


def requantizing_layers(analysis: Analysis, upto: str | None = None) -> int:
    """Requantizing layers on the way to `upto` (inclusive; default the whole model)."""
    count = 0
    for info in analysis.layers:
        count += info.op in REQUANTIZING_OPS
        if info.name == upto:
            break
    return count


def bounded_layers(analysis: Analysis, golden: str, upto: str | None = None) -> int:
    """Layers on the way to `upto` (inclusive; default the whole model) whose op the golden
    `golden` bounds rather than matches exactly (quant.golden.BOUNDED_OPS)."""
    count = 0
    for info in analysis.layers:
        count += op_bound(golden, info.op) > 0
        if info.name == upto:
            break
    return count


def allowed_lsb(policy: str, cap: int, n_requantizing: int, n_bounded: int = 0) -> int:
    """End-to-end allowance: exact 0, or min(bounded layers, cap) when the golden bounds some op
    on the path; cross_family min(requantizing layers, cap)."""
    if policy == "exact":
        return min(n_bounded, cap)
    if policy == "cross_family":
        return min(n_requantizing, cap)
    raise ValueError(f"tolerance policy: expected 'exact' or 'cross_family', got {policy!r}")


def end_to_end_allowance(policy: str, cap: int, analysis: Analysis, golden: str, upto: str | None = None) -> int:
    return allowed_lsb(policy, cap, requantizing_layers(analysis, upto), bounded_layers(analysis, golden, upto))


def layer_allowance(policy: str, layer_lsb: int, golden: str, op: str) -> int:
    """LSB one layer fed with the target's own inputs may differ from the golden op: in the
    golden's own family 0, or the bound the golden records for that op (BOUNDED_OPS); across
    families the profile's `layer_lsb`."""
    if policy == "exact":
        return op_bound(golden, op)
    return layer_lsb


DEPLOYMENT, QUALITY, SOURCE = "deployment", "quality", "source"
KINDS = (DEPLOYMENT, QUALITY, SOURCE)
EXIT_BITS = {DEPLOYMENT: 1, QUALITY: 4, SOURCE: 8}
# check name -> kind; a name not listed is a deployment check (a gate, never silently soft)
CHECK_KINDS = {
    "lsb_vs_golden": DEPLOYMENT,
    "lsb_every_layer": DEPLOYMENT,
    "softmax_head": DEPLOYMENT,
    "runtime_pins": DEPLOYMENT,
    "sqnr_logits": QUALITY,
    "sqnr_vs_float": QUALITY,
    "top1_vs_float": QUALITY,
    "accuracy": QUALITY,
    "source_vs_ir": SOURCE,
}


def check_kind(name: str) -> str:
    return CHECK_KINDS.get(name, DEPLOYMENT)


def exit_code(failed_kinds) -> int:
    """The exit code for the kinds of check that failed (0 when none did)."""
    code = 0
    for kind in set(failed_kinds):
        code |= EXIT_BITS[kind]
    return code


@dataclass(frozen=True)
class Check:
    """One verdict: a target × check pair, as it appears in every report."""

    target: str
    name: str  # "lsb_vs_golden", "sqnr_vs_float", "top1_vs_float", "runs"
    passed: bool
    value: float | int | None
    limit: float | int | None
    message: str

    @property
    def kind(self) -> str:
        return check_kind(self.name)


def lsb_check(target: str, max_lsb: int, allowed: int, golden: str) -> Check:
    ok = max_lsb <= allowed
    return Check(
        target, "lsb_vs_golden", ok, max_lsb, allowed, f"max {max_lsb} LSB vs the {golden} (allowed {allowed})"
    )


def sqnr_check(target: str, sqnr: float, floor: float, where: str | None = None) -> Check:
    """SQNR at the output ("sqnr_vs_float"), or at the logits when `where` names them."""
    at = f" at the logits ({where})" if where else " at the output"
    return Check(
        target,
        "sqnr_logits" if where else "sqnr_vs_float",
        sqnr >= floor,
        round(sqnr, 2) if sqnr != float("inf") else sqnr,
        floor,
        f"SQNR {sqnr:.2f} dB{at} vs the float reference (floor {floor:g} dB)",
    )


def accuracy_check(target: str, accuracy: float, float_accuracy: float, max_drop: float) -> Check:
    """Accuracy on labelled inputs: at most `max_drop` below the float model's (slot for `--labels`)."""
    return Check(
        target,
        "accuracy",
        accuracy >= float_accuracy - max_drop,
        round(accuracy, 4),
        round(float_accuracy - max_drop, 4),
        f"accuracy {accuracy:.1%} with labels, float {float_accuracy:.1%} (allowed drop {max_drop:.0%})",
    )


def layers_check(target: str, rows: list[dict], golden: str, skip: tuple[str, ...] = ()) -> Check:
    """The LSB bound at every layer the artifact exposes (rows of per-layer statistics with
    'allowed', each layer against the golden op fed with the target's own inputs); names the
    first layer beyond its allowance, else the worst layer."""
    rows = [r for r in rows if r["layer"] not in skip]
    bad = [r for r in rows if r["max_lsb"] > r["allowed"]]
    if not rows:
        return Check(target, "lsb_every_layer", True, 0, 0, "no layer exposed")
    worst = bad[0] if bad else max(rows, key=lambda r: (r["max_lsb"] - r["allowed"], r["max_lsb"]))
    where = "first beyond tolerance" if bad else "worst"
    return Check(
        target,
        "lsb_every_layer",
        not bad,
        int(worst["max_lsb"]),
        int(worst["allowed"]),
        f"{len(rows)} layers, each on the target's own inputs, vs the {golden} golden: {where} {worst['layer']} ({worst['op']}) "
        f"max {worst['max_lsb']} LSB (allowed {worst['allowed']})"
        + (f"; {len(bad)} layers beyond tolerance" if len(bad) > 1 else ""),
    )


def top1_check(target: str, agreement: float, floor: float) -> Check:
    return Check(
        target,
        "top1_vs_float",
        agreement >= floor,
        round(agreement, 4),
        floor,
        f"top-1 agreement {agreement:.1%} with the float reference (floor {floor:.0%})",
    )


def golden_runtime(backend: str, rounding: str, kernels: str | None = None) -> str:
    """The golden-reference variant (quant.golden runtime name) a target is compared with.

    cpu: ONNX Runtime's own integer kernels (fp32 family); arm: the LiteRT kernels selected in
    the profile; mcu: TFLM (tflite family); npu: the QNN HTP family (quant/htp.py), exact per
    op except the ops it bounds (quant.golden.BOUNDED_OPS).
    """
    if backend == "cpu":
        return "ort_cpu"
    if backend == "npu":
        return "qnn_htp"
    if backend == "arm":
        return {"xnnpack": "litert_xnnpack", "builtin": "litert_builtin", "reference": "litert_ref"}[
            kernels or "xnnpack"
        ]
    if backend in ("mcu", "mcu_qemu"):  # TFLM on the host or as Cortex-M firmware: tflite family
        return "tflm"
    return {"tflite": "litert_ref", "fp32": "litert_xnnpack", "htp": "qnn_htp"}.get(rounding, "litert_xnnpack")


def splits_softmax_head(analysis: Analysis, lsb_policy: str, golden: str | None = None) -> bool:
    """Across rounding families, or when the golden bounds softmax rather than matching it, a
    softmax head is checked on its own (see the module docstring): the LSB bound applies to
    its logits, and the softmax to the target's own logits."""
    if analysis.layers[-1].op != "softmax":
        return False
    return lsb_policy == "cross_family" or (golden is not None and "softmax" in BOUNDED_OPS.get(golden, {}))


def softmax_head_checks(
    target: str,
    golden: str,
    logits: str,
    want_logits: np.ndarray,
    got_logits: np.ndarray,
    logits_tq: TensorQuant,
    got_out: np.ndarray,
    out_name: str,
    allowed: int,
    head_lsb: int,
    overall_lsb: int,
) -> list[Check]:
    """The LSB bound at the logits, and the golden softmax of the target's own logits against
    the target's softmax output (int8 grid throughout)."""
    got_logits = got_logits.reshape(want_logits.shape)
    lsb = lsb_check(
        target,
        metrics.lsb_stats(want_logits, got_logits)["max_lsb"],
        allowed,
        f"{golden} golden reference at the logits ({logits})",
    )
    shape = (int(want_logits.shape[2]), int(want_logits.shape[1]), int(want_logits.shape[3]))
    layer = Softmax(name=out_name, inputs=(logits,))
    info = LayerInfo(out_name, "softmax", (logits,), shape, shape, 0, 0)
    qparams = QuantParams(activations={logits: logits_tq, out_name: SOFTMAX_QUANT})
    head_want = run_layer(layer, info, [got_logits], qparams, golden)
    worst = metrics.lsb_stats(head_want.reshape(got_out.shape), got_out)["max_lsb"]
    return [
        lsb,
        Check(
            target,
            "softmax_head",
            worst <= head_lsb,
            worst,
            head_lsb,
            f"softmax on the target's own logits: max {worst} LSB vs the {golden} softmax "
            f"(allowed {head_lsb}); {overall_lsb} LSB at the output overall",
        ),
    ]
