"""Predicted TFLite Micro tensor arena for a model's int8 .tflite (pure: no runtime imported).

TFLM splits its one arena in two:

- the head (non-persistent): every activation tensor, placed by TFLM's greedy memory planner
  (buffers sorted by size, largest first, each put at the lowest offset where it overlaps no
  already placed buffer whose lifetime intersects its own; sizes rounded up to 16 bytes). This
  module replays that planner over the op sequence export/tflite.py writes (PAD before an
  explicitly padded conv, RESHAPE before a dense layer on a spatial map), so the head is
  predicted exactly, not just bounded by the liveness peak of memory.py;
- the tail (persistent): per tensor a TfLiteEvalTensor (24 B, constants included), per op a
  NodeAndRegistration (64 B), a full TfLiteTensor + TfLiteAffineQuantization for the graph
  input and output (IO_TENSOR_BYTES), the kernels' OpData (per op type, PER_OP_BYTES) with the
  per-channel requantization data that conv/depthwise/FC keep there (an int32 multiplier and an
  int32 shift per output channel: PER_CHANNEL_BYTES, rounded to 16 B per array), and the
  interpreter's own bookkeeping (subgraph and allocation tables: FIXED_BYTES plus
  PER_OP_BOOKKEEPING per op).

How the constants were fitted (tflite-micro Python interpreter, RecordingMicroAllocator
output of print_allocations after one invoke, arena total checked by binary search in 16-byte
steps): the three recipes, planner outputs for 32x32x3 / 10 classes at model budgets 8 KB ..
256 KB (RAM 256 KB) and 49x10x1 / 12 classes at 8, 32, 128 KB. The head prediction equals the
measured head on all of them. The per-section sizes (24 B/tensor, 64 B/op, 192 B for the IO
tensors) are TFLM's struct sizes on 64-bit hosts, read off the per-section lines; the OpData
sizes and the unrecorded remainder were fitted by least squares on the section totals and then
raised (MARGIN_BYTES) so that no prediction falls below a measurement. Over the set above the
prediction is +0.06% .. +0.4% of the measured total (+48 .. +144 B).

On a 32-bit part (Cortex-M) the head also holds the kernels' scratch buffers (CMSIS-NN asks for
im2col and pooling buffers: `scratch_buffers`) and the tail's structs are smaller (half-size
pointers): `predict_arena_bytes(analysis, word_bytes=4, kernels="cmsis_nn")`, fitted and checked
on the emulated Cortex-M4 (TAIL_32 below; the firmware compiles it in).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeconv.core.graph import Analysis, LayerInfo
from edgeconv.core.ir import (
    INPUT,
    Add,
    AvgPool,
    Concat,
    Conv2d,
    Dense,
    DepthwiseConv2d,
    GlobalAvgPool,
    MaxPool,
    Pad,
    Softmax,
)
from edgeconv.core.optable import OpTable
from edgeconv.core.shapes import same_pads

ALIGN = 16  # TFLM aligns every arena allocation to 16 bytes
EVAL_TENSOR_BYTES = 24  # TfLiteEvalTensor, one per tensor (constants included)
NODE_BYTES = 64  # NodeAndRegistration, one per operator
IO_TENSOR_BYTES = 192  # TfLiteTensor (64 B) + quantization (32 B) for the input and the output
PER_CHANNEL_BYTES = 4  # per output channel, per array (multiplier, shift) of conv/dwconv/FC
# kernel OpData kept in the persistent area, per op type: least-squares fit of the
# "Persistent buffer data" section (after the per-channel arrays), rounded up. Fit residuals
# were within ±6 B per model. PAD does not occur in the fitted set: 32 B is an estimate.
PER_OP_BYTES = {
    "CONV_2D": 80,
    "DEPTHWISE_CONV_2D": 80,
    "FULLY_CONNECTED": 100,
    "MAX_POOL_2D": 32,
    "AVERAGE_POOL_2D": 48,
    "MEAN": 48,
    "ADD": 64,
    "SOFTMAX": 100,
    "RESHAPE": 16,
    "PAD": 32,
}
# tail bytes not in any recorded section (subgraph / allocation tables): fitted 477 + 27.9 B
# per op (residuals -44..+40 B), taken as 520 + 28 B per op so that it never falls short
FIXED_BYTES = 520
PER_OP_BOOKKEEPING = 28
MARGIN_BYTES = 16  # covers the OpData fit residuals


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


@dataclass(frozen=True)
class TfliteGraph:
    """The int8 .tflite export/tflite.py writes, reduced to what the arena depends on."""

    ops: tuple[tuple[str, tuple[str, ...], str, int], ...]  # (opcode, inputs, output, requant channels)
    activations: dict  # tensor name -> bytes
    n_constants: int


class _OpList:
    """The ops, activation tensors and constant count of the .tflite, filled layer by layer."""

    def __init__(self, acts: dict[str, int]) -> None:
        self.ops: list[tuple[str, tuple[str, ...], str, int]] = []
        self.acts = acts
        self.consts = 0

    def add(self, opcode: str, src: tuple[str, ...], out: str, elements: int, channels: int = 0, consts: int = 0):
        self.ops.append((opcode, src, out, channels))
        self.acts[out] = elements
        self.consts += consts
        return (out,)


ARENA_OPS: OpTable = OpTable("TFLite op sequence (arena model)")


def tflite_graph(analysis: Analysis) -> TfliteGraph:
    """The op sequence of the int8 .tflite (same expansion as export/tflite.py)."""
    spec = analysis.model.input
    g = _OpList({INPUT: spec.width * spec.height * spec.channels})
    for layer, info in zip(analysis.model.layers, analysis.layers):
        ARENA_OPS.handler(layer)(g, layer, info)
    return TfliteGraph(tuple(g.ops), g.acts, g.consts)


@ARENA_OPS.register(Conv2d, DepthwiseConv2d)
def _conv_ops(g: _OpList, layer, info: LayerInfo) -> None:
    src = tuple(layer.inputs)
    w, h, c = info.in_shape
    same = same_pads((h, w), (layer.kernel[1], layer.kernel[0]), (layer.stride[1], layer.stride[0]))
    if info.pads not in (same, (0, 0, 0, 0)):
        top, left, bottom, right = info.pads
        src = g.add("PAD", src, f"{layer.name}.pad", (w + left + right) * (h + top + bottom) * c, consts=1)
    opcode = "CONV_2D" if info.op == "conv2d" else "DEPTHWISE_CONV_2D"
    g.add(opcode, src, layer.name, info.out_elements, info.out_shape[2], consts=2)


@ARENA_OPS.register(MaxPool, AvgPool)
def _pool_ops(g: _OpList, layer, info: LayerInfo) -> None:
    opcode = "MAX_POOL_2D" if info.op == "max_pool" else "AVERAGE_POOL_2D"
    src = tuple(layer.inputs)
    w, h, c = info.in_shape
    same = same_pads((h, w), (layer.pool[1], layer.pool[0]), (layer.stride[1], layer.stride[0]))
    if info.op == "max_pool" and info.pads not in (same, (0, 0, 0, 0)):  # export/tflite.py's PADV2
        top, left, bottom, right = info.pads
        src = g.add("PADV2", src, f"{layer.name}.pad", (w + left + right) * (h + top + bottom) * c, consts=2)
    g.add(opcode, src, layer.name, info.out_elements)


@ARENA_OPS.register(GlobalAvgPool)
def _mean_ops(g: _OpList, layer, info: LayerInfo) -> None:
    g.add("MEAN", tuple(layer.inputs), layer.name, info.out_elements, consts=1)


@ARENA_OPS.register(Dense)
def _dense_ops(g: _OpList, layer, info: LayerInfo) -> None:
    src = tuple(layer.inputs)
    w, h, c = info.in_shape
    if w * h > 1:
        src = g.add("RESHAPE", src, f"{layer.name}.flat", w * h * c, consts=1)
    g.add("FULLY_CONNECTED", src, layer.name, info.out_elements, info.out_shape[2], consts=2)


@ARENA_OPS.register(Add)
def _add_ops(g: _OpList, layer, info: LayerInfo) -> None:
    g.add("ADD", tuple(layer.inputs), layer.name, info.out_elements)


@ARENA_OPS.register(Pad)
def _pad_ops(g: _OpList, layer, info: LayerInfo) -> None:
    g.add("PAD", tuple(layer.inputs), layer.name, info.out_elements, consts=1)


@ARENA_OPS.register(Concat)
def _concat_ops(g: _OpList, layer, info: LayerInfo) -> None:
    g.add("CONCATENATION", tuple(layer.inputs), layer.name, info.out_elements)


@ARENA_OPS.register(Softmax)
def _softmax_ops(g: _OpList, layer, info: LayerInfo) -> None:
    g.add("SOFTMAX", tuple(layer.inputs), layer.name, info.out_elements)


def lifetimes(g: TfliteGraph, output: str) -> dict[str, tuple[int, int]]:
    """(first op that needs the buffer, last op that needs it) per activation tensor; the
    model input lives from op 0, the model output to the last op."""
    first = {INPUT: 0}
    last = {INPUT: 0}
    for i, (_, inputs, out, _) in enumerate(g.ops):
        first.setdefault(out, i)
        last[out] = max(last.get(out, i), i)
        for src in inputs:
            last[src] = max(last.get(src, i), i)
    last[output] = len(g.ops) - 1
    return {name: (first[name], last[name]) for name in g.activations}


def greedy_placements(sizes: dict[str, int], life: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int, int, int]]:
    """Where the greedy first-fit planner puts each buffer: largest first, each at the lowest
    offset free over its lifetime (ties in size go in reverse tensor order: measured on TFLM
    with chains of equal-size residual blocks, where the forward order predicts 3 slots and TFLM
    uses 4; the reverse order matched the measured head on all 28 models of issue 15's check).
    name -> (offset, aligned size, first op, last op), in placement order (report.html draws these)."""
    index = {name: i for i, name in enumerate(sizes)}
    order = sorted(sizes, key=lambda n: (-_align(sizes[n]), -index[n]))
    placed: dict[str, tuple[int, int, int, int]] = {}
    for name in order:
        size, (first, last) = _align(sizes[name]), life[name]
        overlapping = sorted((o, s) for o, s, f, end in placed.values() if f <= last and first <= end)
        offset = 0
        for o, s in overlapping:
            if offset + size <= o:
                break
            offset = max(offset, o + s)
        placed[name] = (offset, size, first, last)
    return placed


def greedy_plan(sizes: dict[str, int], life: dict[str, tuple[int, int]]) -> int:
    """Bytes the greedy first-fit planner needs (the top of its highest buffer)."""
    return max((o + s for o, s, _, _ in greedy_placements(sizes, life).values()), default=0)


def tensor_and_op_counts(analysis: Analysis) -> tuple[int, int]:
    """(tensors incl. constants, operators) of the int8 .tflite."""
    g = tflite_graph(analysis)
    return len(g.activations) + g.n_constants, len(g.ops)


# -- scratch buffers ------------------------------------------------------------------------
# Kernels ask TFLM for scratch in the head (RequestScratchBufferInArena) for the lifetime of
# their op; the greedy planner places them with the tensors. On the x86-64 host (reference
# kernels) only MEAN asks, and its three small buffers always fit in gaps (the host head
# prediction above is exact without them). CMSIS-NN's kernels ask more, sized by the DSP
# (ARMv7E-M: Cortex-M4/M7/M33) branches of its *_get_buffer_size functions compiled with GCC:
# conv: 0 for 1x1, else an int16 im2col of two columns, 2 x align4(kh x kw x C_in) x 2 B;
# depthwise: 0 for 3x3 (padding <= 1 always here), else C x kh x kw x 2 B; average pool:
# C x 4 B; dense, max pool, add, softmax: none (dense on a 2-D output never takes the 1x1 path).


def scratch_buffers(analysis: Analysis, kernels: str) -> list[tuple[int, int]]:
    """(op index, bytes) of every scratch buffer the kernels request, in request order."""
    g = tflite_graph(analysis)
    index = {out: i for i, (_, _, out, _) in enumerate(g.ops)}
    scratch: list[tuple[int, int]] = []
    for layer, info in zip(analysis.model.layers, analysis.layers):
        i = index.get(layer.name)
        if i is None:
            continue
        c_in = info.in_shape[2]
        if isinstance(layer, GlobalAvgPool):  # reference MEAN: int32 sums, input iterator, axes
            scratch += [(i, 4 * info.out_shape[2]), (i, 4 * 4), (i, 4 * 2)]
        if kernels != "cmsis_nn":
            continue
        if isinstance(layer, Conv2d) and tuple(layer.kernel) != (1, 1):
            cols = layer.kernel[0] * layer.kernel[1] * c_in
            scratch.append((i, 2 * (-(-cols // 4) * 4) * 2))
        elif isinstance(layer, DepthwiseConv2d) and tuple(layer.kernel) != (3, 3):
            scratch.append((i, c_in * layer.kernel[0] * layer.kernel[1] * 2))
        elif isinstance(layer, AvgPool):
            scratch.append((i, 4 * c_in))
    return sorted(scratch, key=lambda t: t[0])


def predict_head_bytes(analysis: Analysis, kernels: str | None = None, outputs_live: bool = False) -> int:
    """The head: activations as TFLM's greedy planner places them, plus (kernels given) the
    kernels' scratch buffers, each alive during its op only (TFLM lists them after the tensors).
    outputs_live: every layer output made a graph output (export.expose), so alive to the end."""
    g = tflite_graph(analysis)
    sizes, life = dict(g.activations), lifetimes(g, analysis.model.output)
    if outputs_live:
        life = {name: (first, len(g.ops) - 1) for name, (first, _) in life.items()}
    if kernels is not None:
        for k, (op, size) in enumerate(scratch_buffers(analysis, kernels)):
            sizes[f"scratch{k}"] = size
            life[f"scratch{k}"] = (op, op)
    return greedy_plan(sizes, life)


@dataclass(frozen=True)
class TailModel:
    """TFLM's persistent bytes for one pointer size (struct sizes in bytes)."""

    eval_tensor: int  # TfLiteEvalTensor per tensor
    node: int  # NodeAndRegistration per operator
    io_tensors: int  # persistent TfLiteTensor + quantization of the graph input and output
    per_op: dict  # kernel OpData per op type
    fixed: int  # allocator, planner and subgraph objects
    per_op_bookkeeping: int  # builtin options and tables per operator
    per_scratch: int  # ScratchBufferHandle per scratch buffer
    margin: int
    builtin: dict | None = None  # builtin options per op type (replaces per_op_bookkeeping)


# the x86-64 host (fitted above; reference kernels)
TAIL_64 = TailModel(
    EVAL_TENSOR_BYTES, NODE_BYTES, IO_TENSOR_BYTES, PER_OP_BYTES, FIXED_BYTES, PER_OP_BOOKKEEPING, 0, MARGIN_BYTES
)


# A 32-bit part (Cortex-M). Measured on the emulated Cortex-M4 with CMSIS-NN and with reference
# kernels (scripts/firmware_arena.py --kernels K: RecordingMicroInterpreter's sections,
# arena_used_bytes() for the total): TfLiteEvalTensor 12 B/tensor, NodeAndRegistration 32 B/op,
# input + output TfLiteTensor 2 x 32 B + quantization 2 x 20 B (sizeof on arm-none-eabi: the
# pointers halve), exactly; the kernels' OpData (sizeof each kernel's OpData struct, rounded up
# to TFLM's 16-byte buffer alignment; checked on the persistent-buffer section after the
# per-channel arrays); the rest is each op's builtin options struct (BUILTIN_BYTES_32: parsed
# into the tail, 4-byte aligned) + 4 B per scratch buffer (a ScratchBufferHandle) + 112 B of
# allocator, planner and subgraph objects. An earlier fit took the builtin options as 19 B per
# op whatever the op: on the GAP plans (2-4 convs, 28 B of TfLiteConvParams each, and a MEAN
# whose TfLiteReducerParams is 1 B) it was 85-103 B over, and MEAN's OpData (OpDataReduce, 44 B)
# was taken as 64 B: +188 B in all. Now +60..+76 B (CMSIS-NN), +44..+92 B (reference) on the
# recipes, the MLPerf file, planner outputs at 8..128 KB and that GAP plan, never below.
PER_OP_BYTES_32 = {
    "CONV_2D": 64,
    "DEPTHWISE_CONV_2D": 64,
    "FULLY_CONNECTED": 96,
    "MAX_POOL_2D": 48,
    "AVERAGE_POOL_2D": 48,
    "MEAN": 48,  # sizeof(OpDataReduce) = 44 (reduce.h; CMSIS-NN has no MEAN of its own)
    "ADD": 64,
    "SOFTMAX": 96,
    "RESHAPE": 0,
    "PAD": 32,  # not in the measured set: an estimate
}
# TFLM's reference kernels on the same part (same sections, same fit): their OpData is smaller
# for FC, softmax and average pooling
PER_OP_BYTES_32_REFERENCE = PER_OP_BYTES_32 | {
    "FULLY_CONNECTED": 80,
    "SOFTMAX": 64,
    "AVERAGE_POOL_2D": 32,
}
# sizeof the builtin options struct flatbuffer_conversions.cc allocates per op (32-bit, rounded
# up to 4 B): TfLiteConvParams 28, TfLiteDepthwiseConvParams 28, TfLiteFullyConnectedParams 16,
# TfLitePoolParams 40, TfLiteAddParams 8, TfLiteSoftmaxParams 4, TfLiteReshapeParams 36,
# TfLiteReducerParams 1, TfLiteConcatenationParams 8; PAD / PADV2 allocate none
BUILTIN_BYTES_32 = {
    "CONV_2D": 28,
    "DEPTHWISE_CONV_2D": 28,
    "FULLY_CONNECTED": 16,
    "MAX_POOL_2D": 40,
    "AVERAGE_POOL_2D": 40,
    "ADD": 8,
    "SOFTMAX": 4,
    "RESHAPE": 36,
    "MEAN": 4,
    "CONCATENATION": 8,
    "PAD": 0,
    "PADV2": 0,
}
TAIL_32 = {
    "cmsis_nn": TailModel(12, 32, 104, PER_OP_BYTES_32, 112, 0, 4, 48, BUILTIN_BYTES_32),
    "reference": TailModel(12, 32, 104, PER_OP_BYTES_32_REFERENCE, 112, 0, 4, 48, BUILTIN_BYTES_32),
}


def tail_model(word_bytes: int = 8, kernels: str = "reference") -> TailModel:
    if word_bytes == 8:
        return TAIL_64
    if word_bytes == 4 and kernels in TAIL_32:
        return TAIL_32[kernels]
    raise ValueError(f"arena model: no tail for {word_bytes}-byte pointers with {kernels} kernels")


def predict_tail_bytes(analysis: Analysis, word_bytes: int = 8, kernels: str = "reference") -> int:
    """TFLM's persistent tail on a part with `word_bytes`-byte pointers."""
    t = tail_model(word_bytes, kernels)
    g = tflite_graph(analysis)
    n_tensors = len(g.activations) + g.n_constants
    op_data = sum(t.per_op[op] + 2 * _align(PER_CHANNEL_BYTES * ch) for op, _, _, ch in g.ops)
    n_scratch = len(scratch_buffers(analysis, kernels)) if word_bytes == 4 else 0
    builtin = sum(t.builtin[op] for op, *_ in g.ops) if t.builtin is not None else 0
    return (
        builtin
        + t.eval_tensor * n_tensors
        + t.node * len(g.ops)
        + t.io_tensors
        + op_data
        + t.fixed
        + t.per_op_bookkeeping * len(g.ops)
        + t.per_scratch * n_scratch
    )


def predict_arena_bytes(analysis: Analysis, word_bytes: int = 8, kernels: str = "reference") -> int:
    """Predicted smallest TFLM arena (bytes) that runs the model's int8 .tflite: on the x86-64
    host (the default: TFLM's Python interpreter, reference kernels), or on a 32-bit part with
    `kernels` (head with the kernels' scratch buffers + the 32-bit tail)."""
    t = tail_model(word_bytes, kernels)
    head = predict_head_bytes(analysis) if word_bytes == 8 else predict_head_bytes(analysis, kernels)
    return _align(head + predict_tail_bytes(analysis, word_bytes, kernels) + t.margin)
