"""The budget planner: choose block type, depth, strides and widths of a small conv net.

Search space (the MLPerf Tiny reference designs' building blocks):
  * a stem conv whose kernel and stride follow the input's size and aspect, per axis: 3 at
    stride 1, also 3 at stride 2 on an axis of 10+ pixels, up to 7 (stride 2) on one of 16+
    (49x10 gets e.g. 7x3 stride 2x1 or 2x2; 32x32 stays square), then stages at the stem's
    resolution and below; a one-stage network (DS-CNN's shape) shares one width, any multiple
    up to twice the widest stem, between stem and blocks;
  * one block type per network: plain 3x3 conv, depthwise-separable (depthwise 3x3 + pointwise
    1x1, as DS-CNN / MobileNet) or residual (two 3x3 convs + identity or 1x1 projection, as
    ResNet-8); every layer ReLU, 'same' zero padding;
  * stage 1 runs at the stem's resolution; every later stage halves each axis longer than 1,
    by a stride-2 first block or by a 2x2 max pool (one downsampling kind per network), down
    to a map of 2 pixels on its longer axis;
  * widths in multiples of the target's channel multiple (default 8): the stem's from a short
    list, each later stage the same or twice its predecessor's, the last stage any multiple up
    to twice (it fills the budget); blocks per stage 1..3, the same in every stage but the last
    (1..4);
  * a head of global average pooling + FC, or flatten + FC when the last map is at most 4x4,
    then softmax.

Search: depth-first branch and bound over stages. Model bytes, MACs and peak RAM only grow as
stages are added, so a prefix over a budget is cut with everything below it; the last stage's
width is found by bisection (every budget is monotone in it); a prefix whose optimistic score
(objective.score of the most parameters, MACs and depth the remaining budget could buy, and
no more parameters than widths growing 2x per stage can hold) cannot beat the kept candidates
is cut too, and so is a last stage whose widest width (budgets ignored) cannot, with every
last stage of fewer blocks. Each stage's and head's totals are costed once per search (they do not depend on
the prefix) and a losing network is not built. Objective: edgeconv/plan/objective.py. The result
is exact over the space and deterministic (ties: fewer MACs, fewer parameters, then plan name).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache

from edgeconv.core import shapes
from edgeconv.core.errors import InfeasibleError, UsageError
from edgeconv.core.graph import Analysis, analyze
from edgeconv.core.ir import (
    Activation,
    Add,
    Conv2d,
    Dense,
    DepthwiseConv2d,
    GlobalAvgPool,
    InputSpec,
    Layer,
    MaxPool,
    Model,
    Softmax,
    chain,
)
from edgeconv.core.sizes import format_size
from edgeconv.plan import objective
from edgeconv.plan.memory import MemoryEstimate, estimate, model_bytes_formula

OBJECTIVE = objective.OBJECTIVE
BLOCKS = ("conv", "ds", "res")
DOWNSAMPLING = ("stride", "pool")
STEM_WIDTHS = (1, 2, 4, 8)  # x the channel multiple
BLOCKS_PER_STAGE = (1, 2, 3)
LAST_STAGE_BLOCKS = (1, 2, 3, 4)
MAX_STAGES = 8
DEFAULT_CHANNEL_MULTIPLE = 8
MAX_FLATTEN_PIXELS = 16  # flatten head only on maps of at most 4x4
# a stride-2 stem on an axis of 10+ pixels: DS-CNN halves its 10 MFCC features in the stem
# (49x10 -> 25x5), and its 4 blocks at 25x5 are what the keyword-spotting budget buys best
MIN_STEM_STRIDE_AXIS = 10
# the search visits at most this many stage prefixes (a 32x32x3 input under 1 MB visits ~10^3);
# a huge input or budget would otherwise search for long: beyond it, a one-line error
MAX_SEARCH_NODES = 300_000
MAX_RAM_RETRIES = 12  # searches with a lowered liveness budget when a runtime's RAM model rejects all kept


@dataclass(frozen=True)
class Budgets:
    model_bytes: int
    ram_bytes: int | None = None
    macs: int | None = None
    latency_ms: float | None = None  # needs macs_per_ms (the target's latency model)
    macs_per_ms: float | None = None
    # the MAC limit is the user's (--macs, --latency), not only the target's hardware cap: the
    # objective then spends it (objective.score), as it spends the flash budget
    macs_granted: bool = False

    @property
    def mac_limit(self) -> int | None:
        """The tighter of --macs and the MACs the latency budget allows."""
        limits = [m for m in (self.macs, self.latency_macs) if m is not None]
        return min(limits) if limits else None

    @property
    def latency_macs(self) -> int | None:
        if self.latency_ms is None or self.macs_per_ms is None:
            return None
        return int(self.latency_ms * self.macs_per_ms)


@dataclass(frozen=True)
class TargetLimits:
    """What a target's hardware takes: kernel sizes, strides, ops (None = anything)."""

    kernels: tuple[int, ...] | None = None
    strides: tuple[int, ...] | None = None
    ops: tuple[str, ...] | None = None
    channel_multiple: int = DEFAULT_CHANNEL_MULTIPLE

    def allows_kernel(self, k: int) -> bool:
        return self.kernels is None or k in self.kernels

    def allows_stride(self, s: int) -> bool:
        return self.strides is None or s in self.strides

    def allows_op(self, op: str) -> bool:
        return self.ops is None or op in self.ops


@dataclass(frozen=True)
class Candidate:
    stem_kernel: tuple[int, int]  # (F_w, F_h)
    stem_stride: tuple[int, int]
    block: str  # conv | ds | res
    down: str  # stride | pool
    stage_filters: tuple[int, ...]  # stage 1 is the stem's width and blocks
    stage_blocks: tuple[int, ...]
    head: str  # "gap" or "flatten"
    params: int
    macs: int
    model_bytes: int
    peak_ram: int
    depth: int
    score: float

    @property
    def name(self) -> str:
        kw, kh = self.stem_kernel
        sw, sh = self.stem_stride
        stem = f"k{kw}s{sw}" if (kw, sw) == (kh, sh) else f"k{kw}x{kh}s{sw}x{sh}"
        stages = ".".join(f"{f}x{n}" for f, n in zip(self.stage_filters, self.stage_blocks))
        down = "" if len(self.stage_filters) == 1 or self.down == "stride" else "-pool"
        return f"{stem}-{self.block}{down}-{stages}-{self.head}"

    def sort_key(self) -> tuple:
        return (-round(self.score, 9), self.macs, self.params, self.name)


@dataclass(frozen=True)
class SearchStats:
    visited: int = 0  # stage prefixes expanded
    evaluated: int = 0  # complete networks costed (bisection steps included)
    pruned_budget: int = 0  # prefixes cut because a budget was already exceeded
    pruned_bound: int = 0  # prefixes cut because their optimistic score could not win


@dataclass(frozen=True)
class Plan:
    model: Model
    analysis: Analysis
    memory: MemoryEstimate
    candidate: Candidate
    budgets: Budgets
    runners_up: tuple[Candidate, ...]
    stats: SearchStats = field(default_factory=SearchStats)


@dataclass(frozen=True, slots=True)
class _Acc:
    """Running totals of a partial network: what the model-bytes formula, the liveness peak and
    the objective need."""

    weights: int = 0  # non-bias parameters
    channels: int = 0  # biases (one per output channel of a weighted layer)
    ops: int = 0
    weighted: int = 0
    macs: int = 0
    ram: int = 0
    depth: int = 0
    joins_pools: int = 0

    def layer(
        self, weights: int, channels: int, macs: int, ram: int, spatial: bool, weighted: bool = True, join: bool = False
    ) -> _Acc:
        return _Acc(
            self.weights + weights,
            self.channels + channels,
            self.ops + 1,
            self.weighted + int(weighted),
            self.macs + macs,
            max(self.ram, ram),
            self.depth + int(spatial),
            self.joins_pools + int(join),
        )

    def plus(self, d: _Acc) -> _Acc:
        """This prefix followed by the layers totalled in d (every total adds; the peak is a max)."""
        return _Acc(
            self.weights + d.weights,
            self.channels + d.channels,
            self.ops + d.ops,
            self.weighted + d.weighted,
            self.macs + d.macs,
            max(self.ram, d.ram),
            self.depth + d.depth,
            self.joins_pools + d.joins_pools,
        )

    def model_bytes(self, reshapes: int = 0) -> int:
        return model_bytes_formula(self.weights, self.channels, self.ops, self.weighted, reshapes, self.joins_pools)


@cache
def _same_out(size: int, k: int, s: int) -> int:
    return shapes.axis_geometry(size, k, s, shapes.SAME).out


def _k(size: int) -> int:
    """A 3-tap kernel on an axis longer than 1, else 1 (taps on a 1-pixel axis only see padding)."""
    return 3 if size > 1 else 1


def _down(size: int) -> int:
    return 2 if size > 1 else 1


def _conv(acc: _Acc, w: int, h: int, c: int, f: int, kw: int, kh: int, sw: int, sh: int, extra_ram: int = 0):
    w2, h2 = _same_out(w, kw, sw), _same_out(h, kh, sh)
    acc = acc.layer(
        kw * kh * c * f, f, shapes.conv_macs(w2, h2, f, kw, kh, c), w * h * c + w2 * h2 * f + extra_ram, kw * kh > 1
    )
    return acc, w2, h2


def _block(acc: _Acc, w: int, h: int, c: int, f: int, block: str, sw: int, sh: int) -> tuple[_Acc, int, int]:
    """One block of the stage body (stride (sw, sh) on its first layer), closed form. The RAM
    terms are memory.py's liveness peak: a tensor lives from its writer to its last reader."""
    kw, kh = _k(w), _k(h)
    if block == "conv":
        return _conv(acc, w, h, c, f, kw, kh, sw, sh)
    if block == "ds":
        w2, h2 = _same_out(w, kw, sw), _same_out(h, kh, sh)
        acc = acc.layer(kw * kh * c, c, shapes.depthwise_macs(w2, h2, kw, kh, c), w * h * c + w2 * h2 * c, kw * kh > 1)
        return _conv(acc, w2, h2, c, f, 1, 1, 1, 1)
    # residual: conv1 (stride), conv2, [1x1 projection], add; the block input stays alive to
    # the projection (or the add)
    x = w * h * c
    acc, w2, h2 = _conv(acc, w, h, c, f, kw, kh, sw, sh)  # in + o1
    o = w2 * h2 * f
    acc, _, _ = _conv(acc, w2, h2, f, f, _k(w2), _k(h2), 1, 1, extra_ram=x)  # x + o1 + o2
    if (sw, sh) != (1, 1) or c != f:
        acc, _, _ = _conv(acc, w, h, c, f, 1, 1, sw, sh, extra_ram=o)  # x + o2 + p
    ram = 3 * o if (sw, sh) != (1, 1) or c != f else 2 * o + x
    return acc.layer(0, 0, 0, ram, False, weighted=False, join=True), w2, h2


def _pool(acc: _Acc, w: int, h: int, c: int) -> tuple[_Acc, int, int]:
    pw, ph = _down(w), _down(h)
    w2, h2 = _same_out(w, pw, pw), _same_out(h, ph, ph)
    return acc.layer(0, 0, 0, w * h * c + w2 * h2 * c, False, weighted=False, join=True), w2, h2


@cache
def receptive_field(
    size: tuple[int, int], stem: tuple[int, int, int, int], block: str, down: str, blocks: tuple[int, ...]
) -> tuple[int, int]:
    """(W, H) pixels of the input that one position of the last feature map sees, on the main
    path (a residual block's two convs; the 1x1 layers add nothing): what a global-average-pool
    head can relate. The same kernels and strides as candidate_model, per axis."""
    (w, h), (kw, kh, sw, sh) = size, stem
    rf, jump = [kw, kh], [sw, sh]
    dims = [_same_out(w, kw, sw), _same_out(h, kh, sh)]

    def layer(k: tuple[int, int], st: tuple[int, int]) -> None:
        for a in (0, 1):
            rf[a] += (k[a] - 1) * jump[a]
            jump[a] *= st[a]
            dims[a] = _same_out(dims[a], k[a], st[a])

    for i, n in enumerate(blocks):
        stride = (1, 1)
        if i:
            down_by = (_down(dims[0]), _down(dims[1]))
            if down == "pool":
                layer(down_by, down_by)
            else:
                stride = down_by
        for _ in range(n):
            layer((_k(dims[0]), _k(dims[1])), stride)
            if block == "res":
                layer((_k(dims[0]), _k(dims[1])), (1, 1))
            stride = (1, 1)
    return rf[0], rf[1]


def _inner_blocks(blocks: tuple[int, ...]) -> int:
    """objective.Summary.inner_blocks: the blocks of each stage but the last (all equal in the
    space), or of the only stage."""
    return blocks[0] if len(blocks) == 1 else min(blocks[:-1])


def _stage_totals(w: int, h: int, c: int, f: int, n: int, block: str, down: str, first: bool) -> tuple[_Acc, int, int]:
    """A stage's totals (from an empty prefix) and its output map."""
    acc = _Acc()
    sw = sh = 1
    if not first:
        if down == "pool":
            acc, w, h = _pool(acc, w, h, c)
        else:
            sw, sh = _down(w), _down(h)
    for j in range(n):
        acc, w, h = _block(acc, w, h, c, f, block, sw, sh) if j == 0 else _block(acc, w, h, f, f, block, 1, 1)
        c, sw, sh = f, 1, 1
    return acc, w, h


def _head_totals(w: int, h: int, c: int, classes: int, head: str) -> tuple[_Acc, int]:
    """The head's totals and reshapes (a stage's and a head's totals do not depend on the
    prefix before them: _Acc.plus adds them to it)."""
    acc = _Acc()
    if head == "gap":
        acc = acc.layer(0, 0, 0, w * h * c + c, False, weighted=False)
        n_in = c
    else:
        n_in = w * h * c
    acc = acc.layer(n_in * classes, classes, shapes.dense_macs(n_in, classes), n_in + classes, False)
    acc = acc.layer(0, 0, 0, 2 * classes, False, weighted=False)
    return acc, int(head == "flatten" and w * h > 1)


def _fits(value: int, limit: int | None) -> bool:
    return limit is None or value <= limit


def _stems(spec: InputSpec, limits: TargetLimits) -> list[tuple[int, int, int, int]]:
    """(F_w, F_h, S_w, S_h) of the stem, from the input's size and aspect: per axis a 3-tap
    kernel at stride 1, and on an axis of 16+ pixels also 3 or a longer kernel (~1/7 of the
    axis, odd, at most 7) at stride 2. A near-square input (axes within 2x) gets square stems."""

    def axis(n: int) -> list[tuple[int, int]]:
        if n == 1:
            return [(1, 1)]
        options = [(3, 1)]
        if n >= MIN_STEM_STRIDE_AXIS:
            options.append((3, 2))
        if n >= 16:
            options.append((min(7, max(3, (n // 7) | 1)), 2))
        return sorted(set(options))

    wide, tall = axis(spec.width), axis(spec.height)
    if max(spec.width, spec.height) < 2 * min(spec.width, spec.height):
        pairs = [(a, b) for a in wide for b in tall if a == b]
    else:
        pairs = [(a, b) for a in wide for b in tall]
    return [
        (kw, kh, sw, sh)
        for (kw, sw), (kh, sh) in pairs
        if all(limits.allows_kernel(k) for k in {kw, kh} - {1}) and all(limits.allows_stride(s) for s in {sw, sh})
    ]


class SearchCapped(InfeasibleError):
    """The search visited MAX_SEARCH_NODES stage prefixes without finishing."""


@dataclass
class _Search:
    spec: InputSpec
    classes: int
    b: Budgets
    limits: TargetLimits
    keep: int
    cap: int
    rank: str  # "score" (the objective) or "model_bytes" / "peak_ram" / "macs" (smallest)
    kept: list[Candidate] = field(default_factory=list)
    kept_keys: list[tuple] = field(default_factory=list)  # self.key of each kept candidate
    block: str = "conv"
    down: str = "stride"
    heads: tuple[str, ...] = ("gap", "flatten")
    mac: int | None = None
    blocks: tuple[str, ...] = BLOCKS
    bound: bool = True  # False: no cut by the objective (the exhaustive reference for tests)
    visited: int = 0
    evaluated: int = 0
    pruned_budget: int = 0
    pruned_bound: int = 0
    # a stage's and a head's totals depend only on their input map, widths and kind, not on the
    # prefix: the search costs the same stage under many prefixes and in every bisection step,
    # so each is costed once per search (exact: integer totals; the peak combines by max)
    stage_memo: dict[tuple, tuple[_Acc, int, int]] = field(default_factory=dict)
    head_memo: dict[tuple, tuple[_Acc, int]] = field(default_factory=dict)

    def stage(self, acc: _Acc, w: int, h: int, c: int, f: int, n: int, first: bool) -> tuple[_Acc, int, int]:
        k = (w, h, c, f, n, first)
        hit = self.stage_memo.get(k)
        if hit is None:
            hit = self.stage_memo[k] = _stage_totals(w, h, c, f, n, self.block, self.down, first)
        return acc.plus(hit[0]), hit[1], hit[2]

    def head(self, acc: _Acc, w: int, h: int, c: int, head: str) -> tuple[_Acc, int]:
        k = (w, h, c, head)
        hit = self.head_memo.get(k)
        if hit is None:
            hit = self.head_memo[k] = _head_totals(w, h, c, self.classes, head)
        return acc.plus(hit[0]), hit[1]

    # --- budgets and bounds ---------------------------------------------------------------
    def within(self, acc: _Acc) -> bool:
        return (
            acc.model_bytes() <= self.b.model_bytes and _fits(acc.ram, self.b.ram_bytes) and _fits(acc.macs, self.mac)
        )

    def key(self, c: Candidate) -> tuple:
        if self.rank == "score":
            return c.sort_key()
        return (getattr(c, self.rank), c.name)

    def worst(self) -> tuple | None:
        return self.kept_keys[-1] if len(self.kept) >= self.keep else None

    def completion_params(self, c: int, stages_left: int, n: int) -> int:
        """The most parameters any completion of a prefix ending at width c can add: stage i
        (1-based) is at most c * 2**i wide, the stages before the last have n blocks, the last
        at most 4, each block at most the block's parameters with a 3x3 kernel and a full-width
        input, and the head at most a flatten of 4x4 maps (budgets ignored)."""

        def block(f: int) -> int:  # conv: 9 f^2 + f; ds: (9 f + f) + (f^2 + f); res: 2 convs + projection
            return {"conv": 9 * f * f + f, "ds": f * f + 11 * f, "res": 19 * f * f + 3 * f}[self.block]

        body = sum(n * block(c << i) for i in range(1, stages_left))
        last = c << stages_left
        return body + max(LAST_STAGE_BLOCKS) * block(last) + (MAX_FLATTEN_PIXELS * last + 1) * self.classes

    def hopeless(self, acc: _Acc, w: int, h: int, c: int, stages_left: int, n: int) -> bool:
        """True when no completion of this prefix can enter the kept list."""
        worst = self.worst()
        if worst is None or not self.bound:
            return False
        if self.rank != "score":
            value = {"model_bytes": acc.model_bytes(), "peak_ram": acc.ram, "macs": acc.macs}[self.rank]
            return value > worst[0]
        # every parameter costs >= 1 byte, and every completion adds at least a conv stage of >= c
        # filters and a head (FC, softmax, a pool or reshape): their biases cost 28 B for 1
        # parameter each and their op records buy none (model_bytes_formula is linear)
        fixed = model_bytes_formula(0, c + self.classes, 4, 2) - model_bytes_formula(0, 0, 0, 0) - (c + self.classes)
        room = max(self.b.model_bytes - acc.model_bytes() - fixed, 0)
        # nor can the widths (at most 2x per stage) buy more than completion_params
        added = min(room, self.completion_params(c, stages_left, n))
        # every later stage halves the map first, so each later weight is used at most
        # ceil(W/2) * ceil(H/2) times
        macs = acc.macs + added * _same_out(w, _down(w), _down(w)) * _same_out(h, _down(h), _down(h))
        if self.mac is not None:
            macs = min(macs, self.mac)
        per_block = 2 if self.block == "res" else 1
        depth = acc.depth + min(stages_left * max(LAST_STAGE_BLOCKS) * per_block, room // (9 * c + 1))
        # every stage of a prefix is an inner stage of its completions: n blocks (or, ending at
        # stage 1, its one-stage networks are offered apart, by one_stage)
        best = objective.score(
            objective.Summary(acc.weights + acc.channels + added, macs, depth, 1.0, n, self.b.macs_granted)
        )
        return -round(best, 9) > worst[0]

    def coverage(self, stem: tuple, blocks: tuple, head: str) -> float:
        """objective.Summary.coverage of a network: 1 for a flatten head (its dense layer sees
        every position), else the receptive field's share of the input on the worse axis."""
        if head == "flatten":
            return 1.0
        rw, rh = receptive_field((self.spec.width, self.spec.height), stem, self.block, self.down, blocks)
        return min(rw / self.spec.width, rh / self.spec.height, 1.0)

    def cannot_win(
        self, acc: _Acc, w: int, h: int, c: int, f: int, n: int, first: bool, stem: tuple, blocks: tuple
    ) -> bool:
        """True when the last stage at its widest width f (budgets ignored) cannot enter the kept
        list: params, MACs and depth grow with the width, so no narrower width can either."""
        worst = self.worst()
        if worst is None or not self.bound:
            return False
        s_acc, w2, h2 = self.stage(acc, w, h, c, f, n, first)
        best = -math.inf
        for head in self.heads:
            if head == "flatten" and w2 * h2 > MAX_FLATTEN_PIXELS:
                continue
            total, _ = self.head(s_acc, w2, h2, f, head)
            summary = objective.Summary(
                total.weights + total.channels,
                total.macs,
                total.depth,
                self.coverage(stem, blocks, head),
                _inner_blocks(blocks),
                self.b.macs_granted,
            )
            best = max(best, objective.score(summary))
        return -round(best, 9) > worst[0]

    def offer(self, c: Candidate) -> None:
        k = self.key(c)
        if len(self.kept) >= self.keep and k >= self.kept_keys[-1]:
            return
        i = bisect.bisect_right(self.kept_keys, k)
        self.kept.insert(i, c)
        self.kept_keys.insert(i, k)
        del self.kept[self.keep :], self.kept_keys[self.keep :]

    def loses(self, score: float, params: int, macs: int, peak_ram: int, model_bytes: int) -> bool:
        """True when a candidate with these totals cannot enter the kept list whatever its name
        (so it is not built: naming it is the dear part of a key)."""
        worst = self.worst()
        if worst is None:
            return False
        if self.rank == "score":
            return (-round(score, 9), macs, params) > worst[:3]
        value = {"model_bytes": model_bytes, "peak_ram": peak_ram, "macs": macs}[self.rank]
        return value > worst[0]

    # --- the search -----------------------------------------------------------------------
    def costed(self, acc: _Acc, w: int, h: int, c: int, head: str) -> tuple[_Acc, int] | None:
        """(totals, model bytes) of the network with this head, None when it does not fit."""
        if head == "flatten" and w * h > MAX_FLATTEN_PIXELS:
            return None
        self.evaluated += 1
        total, reshapes = self.head(acc, w, h, c, head)
        model_bytes = total.model_bytes(reshapes)
        if (
            model_bytes > self.b.model_bytes
            or not _fits(total.ram, self.b.ram_bytes)
            or not _fits(total.macs, self.mac)
        ):
            return None
        return total, model_bytes

    def finish(self, acc: _Acc, w: int, h: int, c: int, stem: tuple, filters: tuple, blocks: tuple) -> bool:
        """Offer the network with each head; True when one fits."""
        fitted = False
        for head in self.heads:
            costed = self.costed(acc, w, h, c, head)
            if costed is None:
                continue
            total, model_bytes = costed
            fitted = True
            params = total.weights + total.channels
            summary = objective.Summary(
                params,
                total.macs,
                total.depth,
                self.coverage(stem, blocks, head),
                _inner_blocks(blocks),
                self.b.macs_granted,
            )
            score = objective.score(summary)
            if self.loses(score, params, total.macs, total.ram, model_bytes):
                continue
            self.offer(
                Candidate(
                    stem[:2],
                    stem[2:],
                    self.block,
                    self.down,
                    filters,
                    blocks,
                    head,
                    params,
                    total.macs,
                    model_bytes,
                    total.ram,
                    total.depth,
                    score,
                )
            )
        return fitted

    def last_stage(self, acc, w, h, c, lo, hi, n, stem, filters, blocks, first) -> bool:
        """The last stage with n blocks: every width in [lo, hi] (multiples of the channel
        multiple) is monotone in every budget, so bisect for the widest (the smallest when
        ranking by a size) that fits; the objective is non-decreasing in the width. True when
        even the widest cannot win (then no fewer blocks can either)."""
        m = self.limits.channel_multiple
        widths = list(range(lo, hi + 1, m))

        def attempt(f: int, offer: bool) -> bool:
            s_acc, w2, h2 = self.stage(acc, w, h, c, f, n, first)
            if not self.within(s_acc):
                return False
            if not offer:
                return any(self.costed(s_acc, w2, h2, f, head) is not None for head in self.heads)
            return self.finish(s_acc, w2, h2, f, stem, filters + (f,), blocks + (n,))

        if self.rank != "score":
            for f in widths[:1]:
                attempt(f, True)
            return False
        left, right = 0, len(widths) - 1
        if self.cannot_win(acc, w, h, c, widths[-1], n, first, stem, blocks + (n,)):
            return True
        if not attempt(widths[0], False):
            return False
        while left < right:  # invariant: widths[left] fits
            mid = (left + right + 1) // 2
            if attempt(widths[mid], False):
                left = mid
            else:
                right = mid - 1
        attempt(widths[left], True)
        return False

    def one_stage(self, stem: tuple[int, int, int, int], n: int) -> None:
        """The one-stage network of n blocks at the stem's resolution (DS-CNN's shape: one stage
        at 25x5): stem and stage share one width, any multiple up to twice the widest stem;
        every budget grows with it, so bisect for the widest that fits (the smallest when
        ranking by a size)."""
        m, spec = self.limits.channel_multiple, self.spec
        kw, kh, sw, sh = stem

        def network(f: int) -> tuple[_Acc, int, int]:
            acc, w, h = _conv(_Acc(), spec.width, spec.height, spec.channels, f, kw, kh, sw, sh)
            return self.stage(acc, w, h, f, f, n, True)

        def fits(f: int) -> bool:
            acc, w, h = network(f)
            return self.within(acc) and any(self.costed(acc, w, h, f, head) is not None for head in self.heads)

        widths = [m * k for k in range(1, 2 * max(STEM_WIDTHS) + 1)]
        if not fits(widths[0]):
            return
        left, right = 0, 0 if self.rank != "score" else len(widths) - 1
        while left < right:  # invariant: widths[left] fits
            mid = (left + right + 1) // 2
            if fits(widths[mid]):
                left = mid
            else:
                right = mid - 1
        f = widths[left]
        acc, w, h = network(f)
        self.finish(acc, w, h, f, stem, (f,), (n,))

    def stages(self, acc, w, h, c, stem, filters, blocks, depth_rule: int) -> None:
        """Expand a prefix that ends at a stage of width c (map w x h): end the network with
        one more stage, or add a full stage and recurse."""
        self.visited += 1
        if self.visited > self.cap:
            w0, h0, c0 = self.spec.shape
            raise SearchCapped(
                f"the planner's search for a {w0}x{h0}x{c0} input under these budgets passed {self.cap:,} "
                "candidate networks; give a smaller --input or tighter budgets, or build a --recipe"
            )
        # a later stage halves the map; none goes below 2 pixels on its longer axis (a stage on
        # a 1x1 map is a stack of dense layers that buys parameters without spatial work)
        can_down = max(w, h) > 2 and (self.down == "pool" or self.limits.allows_stride(2))
        if not can_down or len(filters) >= MAX_STAGES:
            return
        stages_left = min(MAX_STAGES - len(filters), math.ceil(math.log2(max(w, h))) - 1)
        if self.hopeless(acc, w, h, c, stages_left, depth_rule):
            self.pruned_bound += 1
            return
        # the likely best first (deep, wide), so that the bound has a strong incumbent early
        # most blocks first: fewer blocks have fewer parameters, MACs and depth at every width,
        # so once the widest last stage of n blocks cannot win, none of fewer blocks can
        for n in reversed(LAST_STAGE_BLOCKS):
            if self.last_stage(acc, w, h, c, c, 2 * c, n, stem, filters, blocks, False):
                break
        for grow in (2, 1):
            f = c * grow
            for n in (depth_rule,):
                s_acc, w2, h2 = self.stage(acc, w, h, c, f, n, False)
                if not self.within(s_acc):
                    self.pruned_budget += 1
                    continue
                self.stages(s_acc, w2, h2, f, stem, filters + (f,), blocks + (n,), n)

    def run(self) -> None:
        m = self.limits.channel_multiple
        spec = self.spec
        self.mac = self.b.mac_limit
        self.heads = tuple(h for h in ("gap", "flatten") if h == "flatten" or self.limits.allows_op("global_avg_pool"))
        for block in self.blocks:
            needs = {"conv": ("conv2d",), "ds": ("conv2d", "depthwise_conv2d"), "res": ("conv2d", "add")}[block]
            if not all(self.limits.allows_op(op) for op in needs) or not self.limits.allows_kernel(3):
                continue
            if block != "conv" and not self.limits.allows_kernel(1):
                continue
            modes = [
                d
                for d in DOWNSAMPLING
                if (d == "pool" and self.limits.allows_op("max_pool"))
                or (d == "stride" and self.limits.allows_stride(2))
            ] or ["stride"]
            for down in modes:
                self.block, self.down = block, down
                self.stage_memo.clear()
                for kw, kh, sw, sh in _stems(spec, self.limits):
                    stem = (kw, kh, sw, sh)
                    if down == modes[0]:  # a one-stage network does not downsample
                        for n in reversed(LAST_STAGE_BLOCKS):
                            self.one_stage(stem, n)
                    for mult in STEM_WIDTHS:
                        c0 = mult * m
                        acc, w, h = _conv(_Acc(), spec.width, spec.height, spec.channels, c0, kw, kh, sw, sh)
                        if not self.within(acc):
                            self.pruned_budget += 1
                            continue
                        # stage 1 at the stem's resolution: its width is the stem's, its blocks follow
                        for n in reversed(BLOCKS_PER_STAGE):
                            s_acc, w2, h2 = self.stage(acc, w, h, c0, c0, n, True)
                            if not self.within(s_acc):
                                self.pruned_budget += 1
                                continue
                            self.stages(s_acc, w2, h2, c0, stem, (c0,), (n,), n)

    def stats(self) -> SearchStats:
        return SearchStats(self.visited, self.evaluated, self.pruned_budget, self.pruned_bound)


def search(
    input_spec: InputSpec,
    classes: int,
    budgets: Budgets | None,
    limits: TargetLimits = TargetLimits(),
    max_nodes: int | None = None,
    keep: int = 1,
    rank: str = "score",
    blocks: tuple[str, ...] = BLOCKS,
    bound: bool = True,
) -> tuple[list[Candidate], SearchStats]:
    """The `keep` best candidates that meet the budgets (no budgets: any size), best first, by
    the objective (rank="score") or by the smallest model_bytes / peak_ram / macs; raises
    SearchCapped after max_nodes (default MAX_SEARCH_NODES) stage prefixes. `blocks` narrows
    the block types (e.g. ("ds",) for a DS-CNN-like space); bound=False turns the objective's
    cuts off (exhaustive within the budgets: the reference the bound is tested against)."""
    s = _Search(
        input_spec,
        classes,
        budgets or Budgets(model_bytes=10**18),
        limits,
        keep,
        MAX_SEARCH_NODES if max_nodes is None else max_nodes,
        rank,
        blocks=blocks,
        bound=bound,
    )
    s.run()
    return s.kept, s.stats()


def candidate_model(c: Candidate, input_spec: InputSpec, classes: int) -> Model:
    relu = Activation.RELU
    layers: list[Layer] = []
    (kw, kh), (sw, sh) = c.stem_kernel, c.stem_stride
    layers.append(Conv2d("stem", c.stage_filters[0], (kw, kh), (sw, sh), "same", relu))
    w, h = _same_out(input_spec.width, kw, sw), _same_out(input_spec.height, kh, sh)
    prev, ch = "stem", c.stage_filters[0]
    for s, (f, n) in enumerate(zip(c.stage_filters, c.stage_blocks), 1):
        stride = (1, 1)
        if s > 1:
            if c.down == "pool":
                pw, ph = _down(w), _down(h)
                layers.append(MaxPool(f"s{s}_pool", (pw, ph), (pw, ph), "same", inputs=(prev,)))
                prev = f"s{s}_pool"
                w, h = _same_out(w, pw, pw), _same_out(h, ph, ph)
            else:
                stride = (_down(w), _down(h))
        for j in range(1, n + 1):
            p = f"s{s}_b{j}" if n > 1 else f"s{s}"
            k = (_k(w), _k(h))
            w2, h2 = _same_out(w, k[0], stride[0]), _same_out(h, k[1], stride[1])
            if c.block == "conv":
                layers.append(Conv2d(f"{p}_conv", f, k, stride, "same", relu, (prev,)))
                prev = f"{p}_conv"
            elif c.block == "ds":
                layers.append(DepthwiseConv2d(f"{p}_dw", k, stride, "same", relu, (prev,)))
                layers.append(Conv2d(f"{p}_pw", f, (1, 1), (1, 1), "same", relu, (f"{p}_dw",)))
                prev = f"{p}_pw"
            else:
                layers.append(Conv2d(f"{p}_conv1", f, k, stride, "same", relu, (prev,)))
                k2 = (_k(w2), _k(h2))
                layers.append(Conv2d(f"{p}_conv2", f, k2, (1, 1), "same", Activation.NONE, (f"{p}_conv1",)))
                short = prev
                if stride != (1, 1) or ch != f:
                    layers.append(Conv2d(f"{p}_proj", f, (1, 1), stride, "same", Activation.NONE, (prev,)))
                    short = f"{p}_proj"
                layers.append(Add(f"{p}_add", (f"{p}_conv2", short), relu))
                prev = f"{p}_add"
            w, h, ch, stride = w2, h2, f, (1, 1)
    if c.head == "gap":
        layers.append(GlobalAvgPool("gap", (prev,)))
        prev = "gap"
    layers += [Dense("fc", classes, inputs=(prev,)), Softmax("softmax")]
    w0, h0, c0 = input_spec.shape
    return chain(
        f"plan_{c.name}",
        input_spec,
        layers,
        description=f"planned for {w0}x{h0}x{c0} input, {classes} classes: {c.name}",
    )


def _infeasible_message(input_spec: InputSpec, classes: int, budgets: Budgets, limits: TargetLimits) -> str:
    """Which budget binds and how far to raise it: lift the model-bytes budget, then RAM too,
    then the MAC (and latency) limit too, keeping the others (each search bounded)."""
    head = (
        f"no plan fits model bytes <= {format_size(budgets.model_bytes)}"
        + (f", peak RAM <= {format_size(budgets.ram_bytes)}" if budgets.ram_bytes else "")
        + (f", MACs <= {budgets.macs:,}" if budgets.macs else "")
        + (f", latency <= {budgets.latency_ms:g} ms" if budgets.latency_macs is not None else "")
    )
    lift, cap = 10**18, MAX_SEARCH_NODES // 3
    try:
        found, _ = search(input_spec, classes, replace(budgets, model_bytes=lift), limits, cap, rank="model_bytes")
        if found:
            smallest = found[0]
            return (
                f"{head}; the smallest plan needs {format_size(smallest.model_bytes)} of model bytes "
                f"({smallest.name}); use --budget {smallest.model_bytes}B or more"
            )
        if budgets.ram_bytes:
            relaxed = replace(budgets, model_bytes=lift, ram_bytes=None)
            found, _ = search(input_spec, classes, relaxed, limits, cap, rank="peak_ram")
            if found:
                least = found[0]
                return (
                    f"{head}; the plan with the least RAM needs {format_size(least.peak_ram)} "
                    f"({least.name}); use --ram {least.peak_ram}B or more"
                )
        if budgets.mac_limit is not None:
            found, _ = search(input_spec, classes, Budgets(lift), limits, cap, rank="macs")
            if found:
                least = found[0]
                advice = f"use --macs {least.macs} or more"
                if (
                    budgets.latency_macs is not None
                    and budgets.macs_per_ms
                    and budgets.mac_limit == budgets.latency_macs
                ):
                    ms = math.ceil(least.macs / budgets.macs_per_ms * 10) / 10
                    advice = f"use --latency {ms:g}ms or more"
                return f"{head}; the plan with the fewest MACs needs {least.macs:,} ({least.name}); {advice}"
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
    the mcu target), as _feasible explains.
    """
    if classes < 1:
        raise UsageError(f"--classes: expected at least 1 class, got {classes}")
    if top < 0:
        raise UsageError(f"--top: expected N >= 0, got {top}")
    found, total, searched_any = _feasible(input_spec, classes, budgets, limits, top + 1, ram_model)
    if not found:
        if not searched_any:
            raise InfeasibleError(_infeasible_message(input_spec, classes, budgets, limits))
        raise InfeasibleError(
            f"no plan fits peak RAM <= {format_size(budgets.ram_bytes or 0)} with the target's "
            f"RAM model (the leanest candidate needs more); raise --ram"
        )
    model = candidate_model(found[0], input_spec, classes)
    analysis = analyze(model)
    runners_up = tuple(found[1 : 1 + top])
    return Plan(model, analysis, estimate(analysis, ram_model), found[0], budgets, runners_up, SearchStats(*total))


def _feasible(
    input_spec: InputSpec,
    classes: int,
    budgets: Budgets,
    limits: TargetLimits,
    want: int,
    ram_model: Callable[[Analysis], int] | None,
) -> tuple[list[Candidate], tuple[int, int, int, int], bool]:
    """Up to `want` best candidates that also pass `ram_model` (when given with a RAM budget),
    the summed search statistics, and whether the first search found anything at all.

    The liveness peak is a lower bound of any runtime RAM model, so the search prunes with it and
    the kept candidates are then checked with `ram_model` in order; when none passes, the search
    runs again with a RAM budget just below the leanest of them (so a narrower width of the same
    network is found next)."""
    checked = ram_model is not None and budgets.ram_bytes is not None
    keep = want + 7 if checked else want
    search_budgets = budgets
    total = (0, 0, 0, 0)
    chosen: list[Candidate] = []
    for _attempt in range(MAX_RAM_RETRIES):
        found, stats = search(input_spec, classes, search_budgets, limits, keep=keep)
        total = tuple(a + b for a, b in zip(total, _astuple(stats)))  # type: ignore[assignment]
        if not found:
            return chosen, total, search_budgets is not budgets
        if not checked:
            return found, total, True
        assert ram_model is not None and budgets.ram_bytes is not None and search_budgets.ram_bytes is not None
        for c in found:
            ram = ram_model(analyze(candidate_model(c, input_spec, classes)))
            if ram <= budgets.ram_bytes:
                chosen.append(replace(c, peak_ram=ram))
        if chosen:
            return chosen, total, True
        search_budgets = replace(search_budgets, ram_bytes=min(c.peak_ram for c in found) - 1)
    return chosen, total, True


def _astuple(s: SearchStats) -> tuple[int, int, int, int]:
    return (s.visited, s.evaluated, s.pruned_budget, s.pruned_bound)
