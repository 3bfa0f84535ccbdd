"""The budget planner: choose depth, strides and filter counts of a small conv net.

Search space (the lecture's design rules):
  * a stem conv (3x3, 5x5 or 7x7) at the input resolution (stride 2 when the input is wider or
    taller than 64 pixels), then stages that each start with a 3x3 stride-2 conv, the cheap
    way to downsample; every conv uses 'same' zero padding, so only strides change sizes;
  * 1, 2 or 3 convs per stage (the same count in every stage), each conv ReLU;
  * filter counts are powers of two from 8 to 512 and never shrink from one stage to the next;
  * a head of global average pooling + FC, or, when the last map is at most 4x4, a flatten
    + FC (a small conv output keeps the FC small), then softmax.

Objective: the most MACs (compute is the usual accuracy proxy under a fixed memory budget)
among plans whose predicted int8 model bytes, peak activation RAM and MACs stay within the
budgets; ties go to fewer parameters, then to the plan name. The search is exhaustive over
this space, so the choice is deterministic and a larger budget never lowers the objective.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache

from edgeconv.core import shapes
from edgeconv.core.errors import InfeasibleError, UsageError
from edgeconv.core.graph import Analysis, analyze
from edgeconv.core.ir import Activation, Conv2d, Dense, GlobalAvgPool, InputSpec, Layer, Model, Softmax, chain
from edgeconv.core.sizes import format_size
from edgeconv.plan.memory import MemoryEstimate, estimate, model_bytes_formula

FILTER_CHOICES = (8, 16, 32, 64, 128, 256, 512)
STEM_KERNELS = (3, 5, 7)
CONVS_PER_STAGE = (1, 2, 3)
MAX_FLATTEN_PIXELS = 16  # flatten head only on maps of at most 4x4
# the search visits at most this many partial networks (a 32x32x3 input under 1 MB visits
# ~10^4; a huge input or budget would otherwise search for minutes): beyond it, a one-line error
MAX_SEARCH_NODES = 300_000
OBJECTIVE = "maximize MACs within the model-bytes, peak-RAM and MAC budgets; ties: fewer parameters, then plan name"


@dataclass(frozen=True)
class Budgets:
    model_bytes: int
    ram_bytes: int | None = None
    macs: int | None = None


@dataclass(frozen=True)
class TargetLimits:
    """What a target's hardware takes: kernel sizes, strides, ops (None = anything)."""

    kernels: tuple[int, ...] | None = None
    strides: tuple[int, ...] | None = None
    ops: tuple[str, ...] | None = None

    def allows_kernel(self, k: int) -> bool:
        return self.kernels is None or k in self.kernels

    def allows_stride(self, s: int) -> bool:
        return self.strides is None or s in self.strides

    def allows_op(self, op: str) -> bool:
        return self.ops is None or op in self.ops


@dataclass(frozen=True)
class Candidate:
    stem_kernel: int
    stem_stride: int
    stage_filters: tuple[int, ...]
    stage_convs: tuple[int, ...]
    head: str  # "gap" or "flatten"
    params: int
    macs: int
    model_bytes: int
    peak_ram: int

    @property
    def name(self) -> str:
        stages = ".".join(f"{f}x{n}" for f, n in zip(self.stage_filters, self.stage_convs))
        return f"k{self.stem_kernel}s{self.stem_stride}-{stages}-{self.head}"

    def sort_key(self) -> tuple:
        return (-self.macs, self.params, self.name)


@dataclass(frozen=True)
class Plan:
    model: Model
    analysis: Analysis
    memory: MemoryEstimate
    candidate: Candidate
    budgets: Budgets
    runners_up: tuple[Candidate, ...]


@dataclass(slots=True)
class _Acc:
    """Running totals of a partial network during the search."""

    weights: int = 0
    channels: int = 0
    convs: int = 0
    macs: int = 0
    ram: int = 0


@cache
def _same_out(size: int, k: int, s: int) -> int:
    return shapes.axis_geometry(size, k, s, shapes.SAME).out


def _conv_step(acc: _Acc, w: int, h: int, c_in: int, f: int, k: int, s: int) -> tuple[_Acc, int, int]:
    w2, h2 = _same_out(w, k, s), _same_out(h, k, s)
    params = shapes.conv_params(k, k, c_in, f)
    return (
        _Acc(
            acc.weights + params - f,
            acc.channels + f,
            acc.convs + 1,
            acc.macs + shapes.conv_macs(w2, h2, f, k, k, c_in),
            max(acc.ram, w * h * c_in + w2 * h2 * f),
        ),
        w2,
        h2,
    )


def _finish(acc: _Acc, w: int, h: int, c: int, classes: int, head: str) -> tuple[int, int, int, int]:
    """(params, macs, model_bytes, peak_ram) of the network with its head attached."""
    n_in = c if head == "gap" else w * h * c
    ram = acc.ram
    if head == "gap":
        ram = max(ram, w * h * c + c)
    ram = max(ram, n_in + classes, 2 * classes)  # dense, then softmax
    weights = acc.weights + shapes.dense_params(n_in, classes) - classes
    channels = acc.channels + classes
    n_ops = acc.convs + (2 if head == "flatten" else 3)
    params = weights + channels
    return (
        params,
        acc.macs + shapes.dense_macs(n_in, classes),
        model_bytes_formula(weights, channels, n_ops, acc.convs + 1, n_reshapes=int(head == "flatten" and w * h > 1)),
        ram,
    )


def _fits(value: int, limit: int | None) -> bool:
    return limit is None or value <= limit


class SearchCapped(InfeasibleError):
    """The search visited MAX_SEARCH_NODES partial networks without finishing."""


def search(
    input_spec: InputSpec,
    classes: int,
    budgets: Budgets | None,
    limits: TargetLimits = TargetLimits(),
    max_nodes: int | None = None,
) -> list[Candidate]:
    """Every candidate that meets the budgets (all candidates when budgets is None); raises
    SearchCapped after visiting max_nodes (default MAX_SEARCH_NODES) partial networks."""
    found: list[Candidate] = []
    cap = MAX_SEARCH_NODES if max_nodes is None else max_nodes
    visited = [0]
    stem_stride = 2 if max(input_spec.width, input_spec.height) > 64 else 1
    if not limits.allows_stride(stem_stride):
        stem_stride = 1  # a target without stride 2 keeps the stem at full resolution
    heads = [h for h in ("gap", "flatten") if h == "flatten" or limits.allows_op("global_avg_pool")]
    b = budgets or Budgets(model_bytes=10**18)

    def within(acc: _Acc) -> bool:
        # weights and RAM only grow as layers are added, so a prefix over budget is pruned
        return acc.weights <= b.model_bytes and _fits(acc.ram, b.ram_bytes) and _fits(acc.macs, b.macs)

    def stage(acc: _Acc, w: int, h: int, c: int, filters: tuple[int, ...], convs: tuple[int, ...], stem_k: int) -> None:
        first = not filters
        # every stage repeats the first stage's conv count, except that the last stage may
        # differ: finer steps in size without multiplying the search by 3 per stage
        for f, n in ((f, n) for f in FILTER_CHOICES for n in CONVS_PER_STAGE):
            if filters and f < filters[-1]:
                continue
            last_only = bool(convs) and n != convs[0]
            visited[0] += 1
            if visited[0] > cap:
                w0, h0, c0 = input_spec.shape
                raise SearchCapped(
                    f"the planner's search for a {w0}x{h0}x{c0} input under these budgets passed {cap:,} "
                    "candidate networks; give a smaller --input or tighter budgets, or build a --recipe"
                )
            cur, cw, ch, cc = acc, w, h, c
            for j in range(n):
                k = stem_k if first and j == 0 else 3
                s = (stem_stride if first else 2) if j == 0 else 1
                cur, cw, ch = _conv_step(cur, cw, ch, cc, f, k, s)
                cc = f
            if not within(cur):
                continue
            for head in heads:
                if head == "flatten" and cw * ch > MAX_FLATTEN_PIXELS:
                    continue
                params, macs, model_bytes, ram = _finish(cur, cw, ch, cc, classes, head)
                if model_bytes <= b.model_bytes and _fits(ram, b.ram_bytes) and _fits(macs, b.macs):
                    found.append(
                        Candidate(
                            stem_k, stem_stride, filters + (f,), convs + (n,), head, params, macs, model_bytes, ram
                        )
                    )
            if min(cw, ch) >= 2 and limits.allows_stride(2) and not last_only:
                stage(cur, cw, ch, cc, filters + (f,), convs + (n,), stem_k)

    for stem_k in STEM_KERNELS:
        if limits.allows_kernel(stem_k) and limits.allows_kernel(3):
            stage(_Acc(), input_spec.width, input_spec.height, input_spec.channels, (), (), stem_k)
    return found


def candidate_model(c: Candidate, input_spec: InputSpec, classes: int) -> Model:
    layers: list[Layer] = []
    for s, (f, n) in enumerate(zip(c.stage_filters, c.stage_convs)):
        for j in range(n):
            k = c.stem_kernel if s == 0 and j == 0 else 3
            stride = (c.stem_stride if s == 0 else 2) if j == 0 else 1
            layers.append(
                Conv2d(
                    name=f"s{s + 1}_conv{j + 1}",
                    filters=f,
                    kernel=(k, k),
                    stride=(stride, stride),
                    padding="same",
                    activation=Activation.RELU,
                )
            )
    if c.head == "gap":
        layers.append(GlobalAvgPool(name="gap"))
    layers += [Dense(name="fc", units=classes), Softmax(name="softmax")]
    w, h, ch = input_spec.shape
    return chain(
        f"plan_{c.name}", input_spec, layers, description=f"planned for {w}x{h}x{ch} input, {classes} classes: {c.name}"
    )


def _infeasible_message(input_spec: InputSpec, classes: int, budgets: Budgets, limits: TargetLimits) -> str:
    """Which budget binds and how far to raise it: lift the model-bytes budget, then RAM too,
    then the MAC limit too, keeping the others (each search bounded like the main one)."""
    head = (
        f"no plan fits model bytes <= {format_size(budgets.model_bytes)}"
        + (f", peak RAM <= {format_size(budgets.ram_bytes)}" if budgets.ram_bytes else "")
        + (f", MACs <= {budgets.macs:,}" if budgets.macs else "")
    )
    lift, cap = 10**18, MAX_SEARCH_NODES // 3
    try:
        found = search(input_spec, classes, Budgets(lift, budgets.ram_bytes, budgets.macs), limits, cap)
        if found:
            smallest = min(found, key=lambda c: (c.model_bytes, c.name))
            return (
                f"{head}; the smallest plan needs {format_size(smallest.model_bytes)} of model bytes "
                f"({smallest.name}); use --budget {smallest.model_bytes}B or more"
            )
        if budgets.ram_bytes:
            found = search(input_spec, classes, Budgets(lift, None, budgets.macs), limits, cap)
            if found:
                least = min(found, key=lambda c: (c.peak_ram, c.name))
                return (
                    f"{head}; the plan with the least RAM needs {format_size(least.peak_ram)} "
                    f"({least.name}); use --ram {least.peak_ram}B or more"
                )
        if budgets.macs:
            found = search(input_spec, classes, Budgets(lift, None, None), limits, cap)
            if found:
                least = min(found, key=lambda c: (c.macs, c.name))
                return (
                    f"{head}; the plan with the fewest MACs needs {least.macs:,} ({least.name}); "
                    f"use --macs {least.macs} or more"
                )
    except SearchCapped:
        return f"{head}; no relaxed budget was found within {cap:,} candidates (try a smaller --input)"
    return "no plan exists for this input and target (no supported conv fits the input)"


def plan(
    input_spec: InputSpec,
    classes: int,
    budgets: Budgets,
    limits: TargetLimits = TargetLimits(),
    top: int = 0,
    ram_model: Callable[[Analysis], int] | None = None,
) -> Plan:
    """The best plan under the budgets.

    `ram_model` replaces the liveness peak with a runtime's own RAM model (the TFLM arena for
    the mcu target). The liveness peak is a lower bound of any such model, so the search prunes
    with it and the ranked candidates are then checked with `ram_model` in order.
    """
    if classes < 1:
        raise UsageError(f"--classes: expected at least 1 class, got {classes}")
    if top < 0:
        raise UsageError(f"--top: expected N >= 0, got {top}")
    feasible = sorted(search(input_spec, classes, budgets, limits), key=Candidate.sort_key)
    if ram_model is not None and budgets.ram_bytes is not None:
        chosen = []
        for c in feasible:
            ram = ram_model(analyze(candidate_model(c, input_spec, classes)))
            if ram <= budgets.ram_bytes:
                chosen.append(replace(c, peak_ram=ram))
                if len(chosen) > top:
                    break
        if not chosen and feasible:
            raise InfeasibleError(
                f"no plan fits peak RAM <= {format_size(budgets.ram_bytes)} with the target's "
                f"RAM model (the leanest candidate needs more); raise --ram"
            )
        feasible = chosen
    if not feasible:
        raise InfeasibleError(_infeasible_message(input_spec, classes, budgets, limits))
    best = feasible[0]
    model = candidate_model(best, input_spec, classes)
    analysis = analyze(model)
    return Plan(model, analysis, estimate(analysis, ram_model), best, budgets, tuple(feasible[1 : 1 + top]))
