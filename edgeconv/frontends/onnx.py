"""ONNX importer: a float ONNX file (PyTorch's dynamo or legacy exporter, tf2onnx) or a QDQ file
(ONNX Runtime's quantize_static) becomes the IR (+ the file's quantization for QDQ).

Pipeline
1. Read: size-checked; external data (`.onnx.data`) is resolved relative to the model file,
   only inside its folder, and a missing or short side file is a one-line refusal.
2. Canonicalize with maintained tools: a dynamic batch is fixed to 1, then
   `onnxscript.optimizer.optimize` (folds BatchNormalization into Conv/Gemm, folds constants,
   removes dead nodes), then the constant subgraphs it leaves (the legacy exporter's Pad-size
   chains through ConstantOfShape) are evaluated node by node with `onnx.reference` (ONNX's own
   reference implementation), and `onnx.shape_inference` (strict, with data propagation) gives
   every tensor's shape. Q/DQ nodes are never folded.
3. Map onto the IR, one IR layer per compute node (NCHW -> NHWC weights):
     Conv (group 1)                conv2d, weights OIHW -> (K, KH, KW, C)
     Conv (group = C_in = C_out)   depthwise_conv2d, weights (C, 1, KH, KW) -> (1, KH, KW, C)
     Relu / Clip(0, 6) / Clip(0)   the fused activation of the Conv, Gemm or Add before it
     Mul / Add by a per-channel constant after a Conv (tf2onnx's leftover BN)   folded into it
     MaxPool / AveragePool         max_pool / avg_pool (pads kept per side; count_include_pad=1
                                   only without padding)
     GlobalAveragePool, ReduceMean over H, W           global_avg_pool
     Flatten / Reshape to [1, N]   nothing: the flatten order is recorded and the next Dense's
                                   weight columns are permuted from C,H,W (PyTorch) to the
                                   IR's H,W,C; a tf2onnx Transpose to NHWC before it keeps H,W,C
     Gemm, MatMul (+ Add)          dense ((units, n_in) weights)
     Add of two activations        add
     Softmax on the last axis      softmax
     Pad (constant 0 on H, W)      folded into the padding of the Conv that reads it
     Concat on channels            concat (when the IR has it)
     Transpose [0, 3, 1, 2] of the NHWC input (tf2onnx)   the IR's NHWC input itself
     Identity, Dropout             nothing
   Padding is kept as the file has it, per side (top, left, bottom, right).
   A vector input [1, N] becomes an InputSpec 1 x 1 x N (a Dense on a 1x1 map is the same).
4. QDQ files: each QuantizeLinear -> DequantizeLinear pair on an activation is the IR tensor's
   quantization, read exactly (scale as float32; a uint8 zero point z is stored as z - 128 in
   edgeconv's int8 convention, the same real grid); weight and bias DequantizeLinear of integer
   initializers give the integer arrays (q_weights / q_biases) and their scales; the float
   weights are their dequantized values. ORT's quantizer drops a Relu whose output zero point is
   qmin (the clamp is in the QuantizeLinear): such a layer is given a fused ReLU, which is exact
   on the quantized grid.

Unsupported input is one line (InputError, exit 2): an unknown op names the node, its op type
and the supported list; dilation, grouped convs other than depthwise, batch other than 1,
dynamic H/W, a file that is not ONNX, corrupt or truncated files, missing external data.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeconv.core.errors import InputError
from edgeconv.core.ir import (
    INPUT,
    LAYER_TYPES,
    Activation,
    Add,
    AvgPool,
    Conv2d,
    Dense,
    DepthwiseConv2d,
    GlobalAvgPool,
    InputSpec,
    MaxPool,
    Model,
    Softmax,
)
from edgeconv.frontends import ImportedModel
from edgeconv.quant.params import QuantParams, TensorQuant

MAX_FILE_BYTES = 512 * 2**20
MAX_NODES = 1 << 16
SUPPORTED_OPS = (
    "Conv",
    "Relu",
    "Clip",
    "BatchNormalization",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "ReduceMean",
    "Flatten",
    "Reshape",
    "Gemm",
    "MatMul",
    "Add",
    "Mul",
    "Softmax",
    "Pad",
    "Concat",
    "Transpose",
    "Identity",
    "Dropout",
    "QuantizeLinear",
    "DequantizeLinear",
)
_NO_FOLD = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
# names ORT's quantizer adds to the float model's tensor names
_SUFFIXES = ("_DequantizeLinear_Output", "_QuantizeLinear_Input", "_QuantizeLinear_Output", "_quantized")
_CLEAN = re.compile(r"[^A-Za-z0-9_.-]+")
_KERAS_ROOT = re.compile(r"^(functional|model|sequential)(_\d+)?$")


# -- reading ------------------------------------------------------------------------------------


def _read(path: Path):
    """The ModelProto of `path` with external data loaded from the file's folder."""
    import onnx
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"model {path}: file not found") from None
    except OSError as err:
        raise InputError(f"model {path}: unreadable ({err.strerror})") from None
    if not os.path.isfile(path):
        raise InputError(f"model {path}: not a regular file")
    if st.st_size > MAX_FILE_BYTES:
        raise InputError(f"model {path}: {st.st_size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit")
    data = path.read_bytes()
    where = f"model {path.name}"
    try:
        proto = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as err:
        text = " ".join(str(err).split())[:120]
        raise InputError(f"{where}: not an ONNX file, or a corrupt or truncated one ({text})") from None
    if proto.ir_version < 3 or not proto.opset_import or not proto.graph.node:
        raise InputError(
            f"{where}: not an ONNX model (ir_version {proto.ir_version}, {len(proto.graph.node)} nodes, "
            f"{len(proto.opset_import)} opset imports); corrupt or truncated?"
        )
    if len(proto.graph.node) > MAX_NODES:
        raise InputError(f"{where}: {len(proto.graph.node):,} nodes, over the limit of {MAX_NODES:,}")
    _load_external(proto, path, where)
    return proto, data


def _load_external(proto, path: Path, where: str) -> None:
    """Resolve external tensors relative to the model's folder, never outside it."""
    from onnx import external_data_helper as ext

    base = path.resolve().parent
    tensors = [t for t in ext._get_all_tensors(proto) if ext.uses_external_data(t)]
    for t in tensors:
        info = ext.ExternalDataInfo(t)
        loc = Path(info.location)
        target = (base / loc).resolve()
        if loc.is_absolute() or base not in target.parents:
            raise InputError(
                f"{where}: initializer {t.name!r} points at external data {info.location!r} outside the model's folder"
            )
        if not target.is_file():
            raise InputError(
                f"{where}: external data file {info.location!r} (for initializer {t.name!r}) not found beside "
                f"the model in {base}; copy it there"
            )
        size = target.stat().st_size
        offset = int(info.offset or 0)
        length = int(info.length) if info.length is not None else size - offset
        if offset < 0 or length < 0 or offset + length > size:
            raise InputError(
                f"{where}: external data {info.location!r} has {size:,} bytes, initializer {t.name!r} needs "
                f"[{offset:,}, {offset + length:,}): truncated side file?"
            )
    if tensors:
        try:
            ext.load_external_data_for_model(proto, str(base))
        except (OSError, ValueError) as err:
            raise InputError(f"{where}: cannot read external data ({err})") from None


# -- canonicalization ---------------------------------------------------------------------------


def _fix_batch(proto, where: str, notes: list[str]) -> None:
    """Batch 1: a symbolic or 0 first dim of the input becomes 1; anything else is refused."""
    inits = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise InputError(f"{where}: expected one input, got {len(inputs)} ({', '.join(i.name for i in inputs)})")
    inp = inputs[0]
    tt = inp.type.tensor_type
    if not inp.type.HasField("tensor_type") or tt.elem_type != 1:
        raise InputError(f"{where}: input {inp.name!r} must be a float32 tensor (elem_type {tt.elem_type})")
    dims = list(tt.shape.dim)
    if len(dims) not in (2, 4):
        raise InputError(
            f"{where}: input {inp.name!r} has rank {len(dims)}, expected [1, C, H, W], [1, H, W, C] or [1, N]"
        )
    first = dims[0]
    if first.HasField("dim_value") and first.dim_value not in (0, 1):
        raise InputError(f"{where}: input {inp.name!r} has batch {first.dim_value}, expected 1 (or a dynamic batch)")
    if not first.HasField("dim_value") or first.dim_value == 0:
        notes.append(f"dynamic batch {first.dim_param or '?'} of input {inp.name!r} fixed to 1")
    first.Clear()
    first.dim_value = 1
    for i, d in enumerate(dims[1:], start=1):
        if not d.HasField("dim_value") or d.dim_value < 1:
            raise InputError(
                f"{where}: input {inp.name!r} has a dynamic dimension {i} ({d.dim_param or '?'}); "
                f"export with fixed sizes (only the batch may be dynamic)"
            )
    for out in proto.graph.output:  # let shape inference recompute the outputs' batch
        if out.type.tensor_type.shape.dim:
            d0 = out.type.tensor_type.shape.dim[0]
            if not d0.HasField("dim_value"):
                d0.Clear()
                d0.dim_value = 1


def _fold_constants(proto) -> int:
    """Evaluate nodes whose inputs are all constants with onnx.reference (ONNX's reference
    implementation), for the constant chains the optimizer leaves; returns how many folded."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    consts = {t.name: t for t in proto.graph.initializer}
    kept, folded = [], 0
    opsets = list(proto.opset_import)
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            ev = ReferenceEvaluator(
                helper.make_model(
                    helper.make_graph([node], "c", [], [helper.make_value_info(node.output[0], helper.TypeProto())]),
                    opset_imports=opsets,
                )
            )
            value = ev.run(None, {})[0]  # type: ignore[index]
            consts[node.output[0]] = numpy_helper.from_array(np.asarray(value), node.output[0])
            folded += 1
            continue
        ins = [i for i in node.input if i]
        if (
            node.op_type not in _NO_FOLD
            and node.domain in ("", "ai.onnx")
            and ins
            and all(i in consts for i in ins)
            and len(node.output) == 1
        ):
            init = [consts[i] for i in ins]
            g = helper.make_graph(
                [node], "fold", [], [helper.make_value_info(node.output[0], helper.TypeProto())], initializer=init
            )
            try:
                value = ReferenceEvaluator(helper.make_model(g, opset_imports=opsets)).run(None, {})[0]  # type: ignore[index]
            except Exception:  # leave the node; the mapper names it if it matters
                kept.append(node)
                continue
            value = np.asarray(value)
            if value.size <= 1 << 20:
                consts[node.output[0]] = numpy_helper.from_array(value, node.output[0])
                folded += 1
                continue
        kept.append(node)
    if folded:
        used = {i for n in kept for i in n.input} | {o.name for o in proto.graph.output}
        del proto.graph.node[:]
        proto.graph.node.extend(kept)
        del proto.graph.initializer[:]
        proto.graph.initializer.extend(t for name, t in consts.items() if name in used)
    return folded


@contextlib.contextmanager
def _quiet_loggers(*names: str):
    """Hold the libraries' warnings (printed to stderr by logging's last-resort handler): an
    error is one line from edgeconv; what canonicalization did goes to ImportedModel.notes."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def canonicalize(proto, where: str, notes: list[str]):
    """Batch 1, onnxscript's optimizer, leftover constant folding, strict shape inference."""
    import onnx
    import onnxscript.optimizer

    _fix_batch(proto, where, notes)
    try:  # dangling inputs, unknown ops, bad attributes: refused before anything runs on the graph
        if any(not o.type.tensor_type.HasField("shape") for o in proto.graph.output):
            proto = onnx.shape_inference.infer_shapes(proto)  # outputs declared without a shape
        onnx.checker.check_model(proto)
    except Exception as err:  # onnx.checker.ValidationError, shape inference's InferenceError
        text = " ".join(str(err).split())[:160]
        raise InputError(f"{where}: not a valid ONNX model ({text})") from None
    before = {n.op_type for n in proto.graph.node}
    try:
        with _quiet_loggers("onnx_ir", "onnxscript"):
            proto = onnxscript.optimizer.optimize(proto)
    except Exception as err:  # the optimizer raises assorted errors on malformed graphs
        text = " ".join(str(err).split())[:160]
        raise InputError(f"{where}: the ONNX optimizer cannot read the graph ({type(err).__name__}: {text})") from None
    if "BatchNormalization" in before and "BatchNormalization" not in {n.op_type for n in proto.graph.node}:
        notes.append("BatchNormalization folded into the convolutions (onnxscript optimizer)")
    for _ in range(4):
        if not _fold_constants(proto):
            break
    try:
        proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except Exception as err:
        text = " ".join(str(err).split())[:160]
        raise InputError(f"{where}: ONNX shape inference failed ({text})") from None
    return proto


# -- mapping ------------------------------------------------------------------------------------


@dataclass
class _Val:
    """What an ONNX tensor is in the IR."""

    layer: str  # the IR layer (or "input") whose output holds these values
    kind: str  # "nchw" (4-D, IR NHWC), "nhwc" (4-D laid out NHWC in the file), "flat" (2-D)
    order: str = "hwc"  # for "flat": the order its elements run in ("chw" = PyTorch flatten)
    spatial: tuple[int, int, int] = (1, 1, 1)  # for "flat": the (W, H, C) it was flattened from
    pads: tuple[int, int, int, int] | None = None  # a Pad not yet folded (top, left, bottom, right)


@dataclass
class _QConst:
    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None


@dataclass
class _Mapper:
    proto: Any
    where: str
    notes: list[str]
    layers: list = field(default_factory=list)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    values: dict[str, _Val] = field(default_factory=dict)
    tensor_names: dict[str, str] = field(default_factory=dict)
    used: set[str] = field(default_factory=lambda: {INPUT})
    # QDQ
    qdq: bool = False
    act_q: dict[str, TensorQuant] = field(default_factory=dict)  # ONNX tensor -> quantization
    w_q: dict[str, TensorQuant] = field(default_factory=dict)
    b_q: dict[str, TensorQuant] = field(default_factory=dict)
    q_w: dict[str, np.ndarray] = field(default_factory=dict)
    q_b: dict[str, np.ndarray] = field(default_factory=dict)
    act_q_layers: dict[str, TensorQuant] = field(default_factory=dict)  # IR layer -> its output's
    input_name: str = ""
    input_layout: str = "NCHW"

    def __post_init__(self) -> None:
        from onnx import numpy_helper

        g = self.proto.graph
        self.consts = {}
        for t in g.initializer:
            try:
                self.consts[t.name] = numpy_helper.to_array(t)
            except (ValueError, TypeError) as err:
                raise self.fail(f"initializer {t.name!r} is corrupt ({' '.join(str(err).split())[:100]})") from None
        self.shapes: dict[str, tuple[int, ...]] = {}
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            dims = vi.type.tensor_type.shape.dim
            self.shapes[vi.name] = tuple(int(d.dim_value) if d.HasField("dim_value") else -1 for d in dims)
        self.consumers: dict[str, list] = {}
        for n in g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.qconsts: dict[str, _QConst] = {}
        self.alias: dict[str, str] = {}  # DQ(Q(t)) output -> t

    def fail(self, message: str) -> InputError:
        return InputError(f"{self.where}: {message}")

    def node_text(self, node) -> str:
        return f"node {node.name or node.output[0]!r} ({node.op_type})"

    def attrs(self, node) -> dict:
        from onnx import helper

        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def resolve(self, tensor: str) -> str:
        while tensor in self.alias:
            tensor = self.alias[tensor]
        return tensor

    def const(self, tensor: str, node, what: str) -> np.ndarray:
        if tensor in self.qconsts:
            qc = self.qconsts[tensor]
            return _dequantize(qc)
        if tensor not in self.consts:
            raise self.fail(f"{self.node_text(node)}: {what} {tensor!r} is not a constant in the file")
        return self.consts[tensor]

    def value(self, tensor: str, node) -> _Val:
        tensor = self.resolve(tensor)
        if tensor not in self.values:
            raise self.fail(
                f"{self.node_text(node)} reads {tensor!r}, which no supported node before it computes "
                f"(a constant where an activation was expected?)"
            )
        return self.values[tensor]

    def new_name(self, hint: str, fallback: str) -> str:
        base = hint.split(":")[0]
        for suffix in _SUFFIXES:
            base = base.removesuffix(suffix)
        parts = [p for p in base.split("/") if p]
        if len(parts) >= 2 and _KERAS_ROOT.match(parts[0]):
            base = parts[1]
        elif len(parts) >= 2:
            base = parts[-2]
        elif parts:
            base = parts[0].removesuffix(".weight")
        base = _CLEAN.sub("_", base).strip("._-")[:48] or fallback
        if not re.match(r"^[A-Za-z0-9_]", base):
            base = f"{fallback}_{base}"
        name, k = base, 2
        while name in self.used:
            name, k = f"{base}_{k}", k + 1
        self.used.add(name)
        return name

    def emit(self, layer, out: str, kind: str = "nchw") -> None:
        self.layers.append(layer)
        self.values[out] = _Val(layer.name, kind)
        self.tensor_names[layer.name] = out

    def layer_at(self, tensor: str):
        val = self.values.get(self.resolve(tensor))
        if val is None or val.layer == INPUT:
            return None, -1
        for i, layer in enumerate(self.layers):
            if layer.name == val.layer:
                return layer, i
        return None, -1

    def readers(self, tensor: str) -> list:
        """The compute nodes reading `tensor`, looking through a QuantizeLinear -> DequantizeLinear pair."""
        out = []
        for n in self.consumers.get(tensor, []):
            if n.op_type == "QuantizeLinear":
                for dq in self.consumers.get(n.output[0], []):
                    out += self.consumers.get(dq.output[0], [])
            else:
                out.append(n)
        return out

    def single_reader(self, tensor: str) -> bool:
        """Whether `tensor` (and its Q/DQ alias chain) feeds exactly one compute node."""
        readers = [n for n in self.consumers.get(tensor, []) if n.op_type != "QuantizeLinear"]
        for n in self.consumers.get(tensor, []):
            if n.op_type == "QuantizeLinear":
                for dq in self.consumers.get(n.output[0], []):
                    readers += self.consumers.get(dq.output[0], [])
        return len(readers) <= 1 and tensor not in {o.name for o in self.proto.graph.output}

    # -- QDQ pre-pass ----------------------------------------------------------------------------

    def scan_qdq(self) -> None:
        g = self.proto.graph
        by_output = {o: n for n in g.node for o in n.output}
        for n in g.node:
            if n.op_type != "DequantizeLinear":
                continue
            self.qdq = True
            src = n.input[0]
            scale = self.consts.get(n.input[1]) if len(n.input) > 1 else None
            zp = self.consts.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
            if scale is None:
                raise self.fail(f"{self.node_text(n)}: its scale {n.input[1]!r} is not a constant")
            axis = self.attrs(n).get("axis", 1) if np.asarray(scale).size > 1 else None
            if src in self.consts:  # an integer weight or bias initializer
                q = self.consts[src]
                n_scale = np.asarray(scale).size
                zero = np.zeros(n_scale, q.dtype) if zp is None else zp
                if np.asarray(zero).size != n_scale or (
                    n_scale > 1 and (axis is None or not -q.ndim <= int(axis) < q.ndim or q.shape[int(axis)] != n_scale)
                ):
                    raise self.fail(
                        f"{self.node_text(n)}: {n_scale} scales for {src!r} of shape {list(q.shape)} along axis {axis}"
                    )
                self.qconsts[n.output[0]] = _QConst(q, np.asarray(scale, np.float32), np.asarray(zero), axis)
                continue
            q_node = by_output.get(src)
            if q_node is None or q_node.op_type != "QuantizeLinear":
                raise self.fail(f"{self.node_text(n)} dequantizes {src!r}, which no QuantizeLinear writes")
            if np.asarray(scale).size != 1:
                raise self.fail(f"{self.node_text(n)}: per-channel activation quantization is not supported")
            self.alias[n.output[0]] = q_node.input[0]
            self.act_q[q_node.input[0]] = _act_quant(float(np.asarray(scale).reshape(-1)[0]), zp, self, n)

    # -- the walk --------------------------------------------------------------------------------

    def run(self) -> Model:
        g = self.proto.graph
        inits = {t.name for t in g.initializer}
        inp = next(i for i in g.input if i.name not in inits)
        shape = self.shapes[inp.name]
        self.input_name = inp.name
        if len(shape) == 2:
            spec = InputSpec(1, 1, shape[1])
            self.values[inp.name] = _Val(INPUT, "flat", "hwc", (1, 1, shape[1]))
            self.notes.append(f"vector input [1, {shape[1]}] taken as a 1x1x{shape[1]} map")
            self.input_layout = "vector"
        else:
            readers = self.consumers.get(inp.name, [])
            nhwc = (
                len(readers) == 1
                and readers[0].op_type == "Transpose"
                and list(self.attrs(readers[0]).get("perm", [])) == [0, 3, 1, 2]
            )
            if nhwc:
                spec = InputSpec(shape[2], shape[1], shape[3])
                self.values[inp.name] = _Val(INPUT, "nhwc")
                self.input_layout = "NHWC"
            else:
                spec = InputSpec(shape[3], shape[2], shape[1])
                self.values[inp.name] = _Val(INPUT, "nchw")
                self.input_layout = "NCHW"
        self.scan_qdq()
        for node in g.node:
            if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
                continue
            handler = getattr(self, f"op_{node.op_type.lower()}", None)
            if node.domain not in ("", "ai.onnx") or handler is None:
                raise self.fail(f"{self.node_text(node)} is not supported; supported ops: {', '.join(SUPPORTED_OPS)}")
            handler(node)
        outs = [o.name for o in g.output]
        if len(outs) != 1:
            raise self.fail(f"expected one output, got {len(outs)} ({', '.join(outs)})")
        out = self.resolve(outs[0])
        if out not in self.values or self.values[out].layer == INPUT:
            raise self.fail(f"output {outs[0]!r} is not computed by a supported node")
        last = self.values[out].layer
        if not self.layers or last != self.layers[-1].name:
            raise self.fail(f"output {outs[0]!r} is not the last layer's result")
        if self.values[out].pads is not None:
            raise self.fail(f"output {outs[0]!r} is a Pad result; a padded output is not supported")
        name = Path(self.where.removeprefix("model ")).stem
        name = _CLEAN.sub("_", name)[:48] or "imported"
        return Model(name=name, input=spec, layers=tuple(self.layers), description=f"imported from {self.where[6:]}")

    # -- ops -------------------------------------------------------------------------------------

    def op_identity(self, node) -> None:
        self.values[node.output[0]] = self.value(node.input[0], node)
        self.carry_quant(node.input[0], node.output[0])

    op_dropout = op_identity

    def carry_quant(self, src: str, dst: str) -> None:
        src = self.resolve(src)
        if src in self.act_q and dst not in self.act_q:
            self.act_q[dst] = self.act_q[src]

    def op_transpose(self, node) -> None:
        src = self.value(node.input[0], node)
        perm = list(self.attrs(node).get("perm", []))
        if src.kind == "nhwc" and perm == [0, 3, 1, 2]:
            self.values[node.output[0]] = replace(src, kind="nchw")
            self.notes.append("tf2onnx's Transpose of the NHWC input is the IR's own NHWC layout")
        elif src.kind == "nchw" and perm == [0, 2, 3, 1]:
            self.values[node.output[0]] = replace(src, kind="nhwc")
        else:
            raise self.fail(f"{self.node_text(node)}: perm {perm} on a {src.kind} tensor is not supported")
        self.carry_quant(node.input[0], node.output[0])

    def window_pads(self, node, src: _Val, kernel_hw, stride_hw, in_hw) -> tuple[int, int, int, int]:
        a = self.attrs(node)
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else str(auto)
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = []
            for size, k, s in zip(in_hw, kernel_hw, stride_hw):
                out = -(-size // s)
                total = max((out - 1) * s + k - size, 0)
                small, big = total // 2, total - total // 2
                pads.append((small, big) if auto == "SAME_UPPER" else (big, small))
            top, left, bottom, right = pads[0][0], pads[1][0], pads[0][1], pads[1][1]
        elif auto == "VALID":
            top = left = bottom = right = 0
        else:
            p = [int(v) for v in a.get("pads", [0, 0, 0, 0])]
            if len(p) != 4 or min(p) < 0:
                raise self.fail(f"{self.node_text(node)}: pads {p}, expected 4 values >= 0")
            top, left, bottom, right = p
        if src.pads is not None:
            pt, pl, pb, pr = src.pads
            top, left, bottom, right = top + pt, left + pl, bottom + pb, right + pr
        return (top, left, bottom, right)

    def spatial_of(self, tensor: str, node) -> tuple[int, int, int]:
        """(W, H, C) of a 4-D NCHW tensor in the file."""
        shape = self.shapes.get(self.resolve(tensor)) or self.shapes.get(tensor)
        if not shape or len(shape) != 4 or min(shape) < 1:
            raise self.fail(
                f"{self.node_text(node)}: input {tensor!r} has shape {shape}, expected a static [1, C, H, W]"
            )
        return (shape[3], shape[2], shape[1])

    def input_spatial(self, tensor: str, node, src: _Val) -> tuple[int, int, int]:
        w, h, c = self.spatial_of(tensor, node)
        if src.pads is not None:  # the shape before the pending Pad
            pt, pl, pb, pr = src.pads
            return (w - pl - pr, h - pt - pb, c)
        return (w, h, c)

    def op_conv(self, node) -> None:
        a = self.attrs(node)
        src = self.value(node.input[0], node)
        if src.kind != "nchw":
            raise self.fail(f"{self.node_text(node)} reads a {src.kind} tensor, expected NCHW")
        if any(int(d) != 1 for d in a.get("dilations", [1, 1])):
            raise self.fail(
                f"{self.node_text(node)} has dilations {list(a['dilations'])}; dilated convolutions are not supported"
            )
        w = self.const(node.input[1], node, "weights").astype(np.float32)
        if w.ndim != 4:
            raise self.fail(f"{self.node_text(node)}: weights {list(w.shape)}, expected a 2-D convolution (4-D OIHW)")
        group = int(a.get("group", 1))
        w_in, h_in, c_in = self.input_spatial(node.input[0], node, src)
        k_out, k_in, kh, kw = w.shape
        stride = [int(v) for v in a.get("strides", [1, 1])]
        pads = self.window_pads(node, src, (kh, kw), stride, (h_in, w_in))
        hint = _weight_hint(node)
        layer: Conv2d | DepthwiseConv2d
        if group == 1:
            if k_in != c_in:
                raise self.fail(f"{self.node_text(node)}: weights {list(w.shape)} for {c_in} input channels")
            name = self.new_name(hint, "conv2d")
            layer = Conv2d(name, k_out, (kw, kh), (stride[1], stride[0]), pads, Activation.NONE, (src.layer,))
            self.weights[f"{name}.weight"] = np.ascontiguousarray(w.transpose(0, 2, 3, 1))
        elif group == c_in == k_out and k_in == 1:
            name = self.new_name(hint, "depthwise_conv2d")
            layer = DepthwiseConv2d(name, (kw, kh), (stride[1], stride[0]), pads, Activation.NONE, (src.layer,))
            self.weights[f"{name}.weight"] = np.ascontiguousarray(w.transpose(1, 2, 3, 0))
        else:
            raise self.fail(
                f"{self.node_text(node)} has group {group} with {c_in} input and {k_out} output channels; "
                f"only group 1 and depthwise (group = input channels = output channels) are supported"
            )
        bias = (
            self.const(node.input[2], node, "bias").astype(np.float32).reshape(-1)
            if len(node.input) > 2 and node.input[2]
            else np.zeros(k_out, np.float32)
        )
        self.weights[f"{name}.bias"] = bias
        if self.qdq:
            axis = 0 if group == 1 else 3
            self.take_qweights(
                name,
                node,
                node.input[1],
                node.input[2] if len(node.input) > 2 else "",
                axis,
                lambda q: q.transpose(0, 2, 3, 1) if group == 1 else q.transpose(1, 2, 3, 0),
                k_out,
            )
        self.emit(layer, node.output[0])
        self.out_quant(layer, node.output[0])

    # activations, fused into the layer before them

    def fuse(self, node, kind: Activation) -> None:
        tensor = self.resolve(node.input[0])
        layer, i = self.layer_at(tensor)
        fusable = (Conv2d, DepthwiseConv2d, Dense, Add)
        if layer is None or not isinstance(layer, fusable) or layer.activation is not Activation.NONE:
            what = "the input" if layer is None else f"{layer.op} {layer.name}"
            raise self.fail(
                f"{self.node_text(node)} after {what}: an activation is supported only right after a Conv, Gemm, "
                f"MatMul or Add"
            )
        if not self.single_reader(tensor) or self.tensor_names.get(layer.name) != tensor:
            raise self.fail(f"{self.node_text(node)}: the pre-activation tensor {tensor!r} is read elsewhere too")
        self.layers[i] = replace(layer, activation=kind)
        self.values[node.output[0]] = self.values[tensor]
        self.tensor_names[layer.name] = node.output[0]
        if self.qdq and node.output[0] in self.act_q:
            self.set_act(layer.name, node.output[0])

    def op_relu(self, node) -> None:
        self.fuse(node, Activation.RELU)

    def op_clip(self, node) -> None:
        a = self.attrs(node)
        lo = a.get("min", -np.inf)
        hi = a.get("max", np.inf)
        if len(node.input) > 1 and node.input[1]:
            lo = float(self.const(node.input[1], node, "min").reshape(-1)[0])
        if len(node.input) > 2 and node.input[2]:
            hi = float(self.const(node.input[2], node, "max").reshape(-1)[0])
        if lo == 0.0 and hi == 6.0:
            self.fuse(node, Activation.RELU6)
        elif lo == 0.0 and (hi == np.inf or hi >= np.finfo(np.float32).max):
            self.fuse(node, Activation.RELU)
        else:
            raise self.fail(
                f"{self.node_text(node)} clips to [{lo}, {hi}]; only Clip(0, 6) (ReLU6) and Clip(0) are supported"
            )

    # pools

    def _pool(self, node, cls) -> None:
        a = self.attrs(node)
        src = self.value(node.input[0], node)
        if src.kind != "nchw" or src.pads is not None:
            raise self.fail(
                f"{self.node_text(node)} reads a {'padded ' if src.pads else ''}{src.kind} tensor, expected NCHW"
            )
        if int(a.get("ceil_mode", 0)):
            raise self.fail(f"{self.node_text(node)} has ceil_mode 1; only floor (ceil_mode 0) is supported")
        if any(int(d) != 1 for d in a.get("dilations", [1, 1])):
            raise self.fail(
                f"{self.node_text(node)} has dilations {list(a['dilations'])}; dilated pools are not supported"
            )
        kh, kw = (int(v) for v in a["kernel_shape"])
        stride = [int(v) for v in a.get("strides", [1, 1])]
        w_in, h_in, _ = self.spatial_of(node.input[0], node)
        pads = self.window_pads(node, src, (kh, kw), stride, (h_in, w_in))
        name = self.new_name(_hint(node), cls.op)
        if cls is AvgPool and int(a.get("count_include_pad", 0)) and any(pads):
            # PyTorch's default: padded zeros count in the average = a zero pad, then a valid pool
            self.emit_pad(src, pads, f"{name}.pad", f"{node.output[0]}#pad", node.input[0])
            src, pads = self.values[f"{node.output[0]}#pad"], (0, 0, 0, 0)
            self.notes[-1] += " (AveragePool count_include_pad=1)"
        layer = cls(name, (kw, kh), (stride[1], stride[0]), pads, (src.layer,))
        self.emit(layer, node.output[0])
        self.out_quant(layer, node.output[0])

    def op_maxpool(self, node) -> None:
        if len(node.output) > 1 and node.output[1]:
            raise self.fail(f"{self.node_text(node)} also outputs indices; not supported")
        self._pool(node, MaxPool)

    def op_averagepool(self, node) -> None:
        self._pool(node, AvgPool)

    def _global(self, node, keep: bool) -> None:
        src = self.value(node.input[0], node)
        if src.kind != "nchw" or src.pads is not None:
            raise self.fail(f"{self.node_text(node)} reads a {src.kind} tensor, expected NCHW")
        name = self.new_name(_hint(node), "global_avg_pool")
        layer = GlobalAvgPool(name, (src.layer,))
        c = self.spatial_of(node.input[0], node)[2]
        self.emit(layer, node.output[0], "nchw" if keep else "flat")
        if not keep:
            self.values[node.output[0]].spatial = (1, 1, c)
        self.out_quant(layer, node.output[0])

    def op_globalaveragepool(self, node) -> None:
        self._global(node, True)

    def op_reducemean(self, node) -> None:
        a = self.attrs(node)
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = self.const(node.input[1], node, "axes").reshape(-1).tolist()
        axes = sorted(int(v) % 4 for v in (axes or []))
        if axes != [2, 3]:
            raise self.fail(
                f"{self.node_text(node)} reduces axes {axes}; only the mean over H, W (axes 2, 3) is supported"
            )
        self._global(node, bool(a.get("keepdims", 1)))

    # reshapes

    def _flatten(self, node, src: _Val, out_shape) -> None:
        if src.pads is not None:
            raise self.fail(f"{self.node_text(node)} flattens a padded tensor")
        if src.kind == "flat":
            self.values[node.output[0]] = src
        else:
            w, h, c = self.spatial_of(node.input[0], node) if src.kind == "nchw" else self._nhwc_spatial(node)
            order = "chw" if src.kind == "nchw" and (w > 1 or h > 1) else "hwc"
            self.values[node.output[0]] = _Val(src.layer, "flat", order, (w, h, c))
            if order == "chw":
                self.notes.append(
                    f"{node.op_type} {node.output[0]!r} flattens {c}x{h}x{w} in C,H,W order: the next dense layer's "
                    f"weights are permuted to the IR's H,W,C order"
                )
        self.carry_quant(node.input[0], node.output[0])

    def _nhwc_spatial(self, node) -> tuple[int, int, int]:
        shape = self.shapes.get(self.resolve(node.input[0])) or self.shapes.get(node.input[0])
        if not shape or len(shape) != 4:
            raise self.fail(f"{self.node_text(node)}: input has shape {shape}, expected [1, H, W, C]")
        return (shape[2], shape[1], shape[3])

    def op_flatten(self, node) -> None:
        if int(self.attrs(node).get("axis", 1)) != 1:
            raise self.fail(f"{self.node_text(node)}: only Flatten(axis=1) is supported")
        self._flatten(node, self.value(node.input[0], node), None)

    def op_reshape(self, node) -> None:
        src = self.value(node.input[0], node)
        out = self.shapes.get(node.output[0])
        if not out or -1 in out:
            target = self.const(node.input[1], node, "shape").reshape(-1).tolist()
            out = tuple(int(v) for v in target)
        if len(out) == 2 and out[0] in (1, -1, 0):
            self._flatten(node, src, out)
            return
        if src.kind == "flat" and len(out) == 4 and out[2] == out[3] == 1:
            self.values[node.output[0]] = _Val(src.layer, "nchw")
            self.carry_quant(node.input[0], node.output[0])
            return
        raise self.fail(f"{self.node_text(node)} reshapes to {list(out)}; only a flatten to [1, N] is supported")

    # dense

    def _dense_weights(self, node, src: _Val, w: np.ndarray) -> np.ndarray:
        """(units, n_in) weights with columns in the IR's H,W,C order."""
        w_, h_, c_ = src.spatial
        if w.shape[1] != w_ * h_ * c_:
            raise self.fail(f"{self.node_text(node)}: weights {list(w.shape)} for an input of {w_ * h_ * c_} values")
        if src.order == "chw":
            return np.ascontiguousarray(w.reshape(w.shape[0], c_, h_, w_).transpose(0, 2, 3, 1).reshape(w.shape[0], -1))
        return w

    def op_gemm(self, node) -> None:
        a = self.attrs(node)
        src = self.value(node.input[0], node)
        if src.kind != "flat":
            raise self.fail(f"{self.node_text(node)} reads a 4-D tensor; expected a Flatten or Reshape to [1, N] first")
        if int(a.get("transA", 0)):
            raise self.fail(f"{self.node_text(node)} has transA=1; not supported")
        w = self.const(node.input[1], node, "weights").astype(np.float32)
        trans_b = int(a.get("transB", 0))
        w_units = w if trans_b else w.T
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        units = w_units.shape[0]
        bias = np.zeros(units, np.float32)
        if len(node.input) > 2 and node.input[2]:
            bias = self.const(node.input[2], node, "bias").astype(np.float32).reshape(-1)
            if bias.size == 1:
                bias = np.full(units, bias[0], np.float32)
            if bias.shape != (units,):
                raise self.fail(f"{self.node_text(node)}: bias {list(bias.shape)}, expected [{units}]")
        if self.qdq and (alpha != 1.0 or beta != 1.0):
            raise self.fail(f"{self.node_text(node)}: alpha/beta other than 1 in a QDQ model")
        hint = _weight_hint(node)
        name = self.new_name(hint, "dense")
        self.weights[f"{name}.weight"] = (alpha * self._dense_weights(node, src, w_units)).astype(np.float32)
        self.weights[f"{name}.bias"] = (beta * bias).astype(np.float32)
        layer = Dense(name, units, Activation.NONE, (src.layer,))
        if self.qdq:
            bias_t = node.input[2] if len(node.input) > 2 else ""
            self.take_qweights(
                name,
                node,
                node.input[1],
                bias_t,
                0,
                lambda q: self._dense_weights(node, src, q if trans_b else q.T),
                units,
                onnx_axis=0 if trans_b else 1,
            )
        self.emit(layer, node.output[0], "flat")
        self.values[node.output[0]].spatial = (1, 1, units)
        self.out_quant(layer, node.output[0])

    def op_matmul(self, node) -> None:
        src = self.value(node.input[0], node)
        if src.kind != "flat":
            raise self.fail(f"{self.node_text(node)} reads a 4-D tensor; expected a Flatten or Reshape to [1, N] first")
        w = self.const(node.input[1], node, "weights").astype(np.float32)
        if w.ndim != 2:
            raise self.fail(f"{self.node_text(node)}: weights {list(w.shape)}, expected 2-D")
        units = w.shape[1]
        name = self.new_name(_hint(node), "dense")
        self.weights[f"{name}.weight"] = self._dense_weights(node, src, np.ascontiguousarray(w.T))
        self.weights[f"{name}.bias"] = np.zeros(units, np.float32)
        layer = Dense(name, units, Activation.NONE, (src.layer,))
        if self.qdq:
            self.take_qweights(
                name, node, node.input[1], "", 0, lambda q: self._dense_weights(node, src, q.T), units, onnx_axis=1
            )
        self.emit(layer, node.output[0], "flat")
        self.values[node.output[0]].spatial = (1, 1, units)
        self.out_quant(layer, node.output[0])

    # elementwise

    def _channel_const(self, node, tensor: str, channels: int) -> np.ndarray | None:
        """A constant broadcast per channel (shape [C], [1, C], [1, C, 1, 1]), else None."""
        if self.resolve(tensor) in self.values:
            return None
        value = self.const(tensor, node, "operand").astype(np.float32)
        flat = value.reshape(-1)
        if flat.size == 1:
            return np.full(channels, flat[0], np.float32)
        if flat.size == channels and value.ndim in (1, 2, 4) and max(value.shape) == channels:
            if value.ndim == 4 and value.shape[1] != channels:
                return None
            return flat
        return None

    def _affine_fold(self, node, scale: bool) -> bool:
        """tf2onnx's BN leftover: Mul / Add by a per-channel constant right after a conv or dense."""
        if self.qdq:
            return False
        ins = list(node.input)
        act = [i for i in ins if self.resolve(i) in self.values]
        if len(act) != 1:
            return False
        other = ins[1] if ins[0] == act[0] else ins[0]
        layer, _ = self.layer_at(act[0])
        if (
            layer is None
            or not isinstance(layer, (Conv2d, DepthwiseConv2d, Dense))
            or layer.activation is not Activation.NONE
        ):
            return False
        if not self.single_reader(self.resolve(act[0])):
            return False
        units = self.weights[f"{layer.name}.bias"].shape[0]
        c = self._channel_const(node, other, units)
        if c is None:
            return False
        w, b = f"{layer.name}.weight", f"{layer.name}.bias"
        if scale:
            axis_shape = (
                (1, 1, 1, -1) if isinstance(layer, DepthwiseConv2d) else (-1,) + (1,) * (self.weights[w].ndim - 1)
            )
            self.weights[w] = (self.weights[w] * c.reshape(axis_shape)).astype(np.float32)
            self.weights[b] = (self.weights[b] * c).astype(np.float32)
        else:
            self.weights[b] = (self.weights[b] + c).astype(np.float32)
        val = self.values[self.resolve(act[0])]
        self.values[node.output[0]] = val
        self.tensor_names[layer.name] = node.output[0]
        self.notes.append(f"{node.op_type} by a per-channel constant after {layer.name} folded into its weights")
        return True

    def op_mul(self, node) -> None:
        if self.qdq:
            raise self.fail(
                f"{self.node_text(node)}: a Mul in a QDQ model is a quantized op of its own (a BatchNormalization "
                f"the exporter left unfolded?); fold BN before quantizing"
            )
        if not self._affine_fold(node, scale=True):
            raise self.fail(
                f"{self.node_text(node)}: only a multiplication by a per-channel constant right after a Conv or "
                f"Gemm (a BatchNormalization left by the exporter) is supported"
            )

    def op_add(self, node) -> None:
        ins = [self.resolve(i) for i in node.input]
        if all(i in self.values for i in ins):
            a, b = (self.values[i] for i in ins)
            if a.kind != b.kind or a.pads or b.pads or a.order != b.order:
                raise self.fail(f"{self.node_text(node)} adds a {a.kind} and a {b.kind} tensor")
            sa, sb = self.shapes.get(ins[0]), self.shapes.get(ins[1])
            if sa != sb:
                raise self.fail(f"{self.node_text(node)} adds shapes {sa} and {sb}; broadcasting is not supported")
            name = self.new_name(_hint(node), "add")
            layer = Add(name, (a.layer, b.layer))
            self.emit(layer, node.output[0], a.kind)
            self.values[node.output[0]].order, self.values[node.output[0]].spatial = a.order, a.spatial
            self.out_quant(layer, node.output[0])
            return
        if self.qdq and len(ins) == 2:
            # a bias added after a MatMul: DQ(int32 bias) + MatMul
            act = [i for i in node.input if self.resolve(i) in self.values]
            other = [i for i in node.input if self.resolve(i) not in self.values]
            dense, _ = self.layer_at(act[0]) if act else (None, -1)
            if isinstance(dense, Dense) and other and other[0] in self.qconsts and dense.name not in self.b_q:
                self.weights[f"{dense.name}.bias"] = self.const(other[0], node, "bias").astype(np.float32).reshape(-1)
                self.take_qbias(dense.name, node, other[0], dense.units)
                self.values[node.output[0]] = self.values[self.resolve(act[0])]
                self.tensor_names[dense.name] = node.output[0]
                self.out_quant(dense, node.output[0])
                return
        if not self._affine_fold(node, scale=False):
            raise self.fail(
                f"{self.node_text(node)}: expected an add of two activations of one shape, or a per-channel "
                f"constant right after a Conv or MatMul"
            )

    def op_batchnormalization(self, node) -> None:
        raise self.fail(
            f"{self.node_text(node)} could not be folded into a convolution before it; only BatchNormalization "
            f"right after a Conv or Gemm is supported"
        )

    def op_softmax(self, node) -> None:
        src = self.value(node.input[0], node)
        axis = int(self.attrs(node).get("axis", -1))
        if src.kind != "flat" or axis not in (-1, 1):
            raise self.fail(
                f"{self.node_text(node)}: only a softmax over the last axis of a [1, N] tensor is supported"
            )
        name = self.new_name(_hint(node), "softmax")
        layer = Softmax(name, (src.layer,))
        self.emit(layer, node.output[0], "flat")
        self.values[node.output[0]].spatial = src.spatial
        self.out_quant(layer, node.output[0])

    def op_pad(self, node) -> None:
        src = self.value(node.input[0], node)
        a = self.attrs(node)
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        if len(node.input) > 1 and node.input[1]:
            pads = self.const(node.input[1], node, "pads").astype(np.int64).reshape(-1)
        else:
            pads = np.asarray(a.get("pads", []), np.int64)
        value = 0.0
        if len(node.input) > 2 and node.input[2]:
            value = float(self.const(node.input[2], node, "constant value").reshape(-1)[0])
        if len(node.input) > 3 and node.input[3]:
            raise self.fail(f"{self.node_text(node)}: Pad with axes is not supported")
        if (
            src.kind != "nchw"
            or mode != "constant"
            or value != 0.0
            or pads.size != 8
            or pads[[0, 1, 4, 5]].any()
            or (pads < 0).any()
            or src.pads is not None
        ):
            raise self.fail(
                f"{self.node_text(node)}: pads {pads.tolist()} mode {mode} value {value}; only a zero Pad of H and W "
                f"of an NCHW tensor, read by a Conv, is supported"
            )
        readers = self.readers(node.output[0])
        if (
            self.qdq
            and node.output[0] in self.act_q
            and self.act_q[node.output[0]] != self.act_q.get(self.resolve(node.input[0]))
        ):
            raise self.fail(
                f"{self.node_text(node)}: its output is quantized unlike its input; a zero pad keeps the input's grid"
            )
        # ONNX pads: [N_begin, C_begin, H_begin, W_begin, N_end, C_end, H_end, W_end]
        sides = (int(pads[2]), int(pads[3]), int(pads[6]), int(pads[7]))
        if not readers or any(r.op_type not in ("Conv",) for r in readers):
            # read by a pool (zero padding is not a pool's padding) or the output: a pad layer
            self.emit_pad(src, sides, _hint(node), node.output[0], node.input[0])
            return
        self.values[node.output[0]] = replace(src, pads=sides)
        self.carry_quant(node.input[0], node.output[0])
        self.notes.append(
            f"Pad {list(sides)} (top, left, bottom, right) folded into the padding of the Conv reading it"
        )

    def emit_pad(self, src: _Val, sides: tuple[int, int, int, int], hint: str, out: str, in_tensor: str) -> None:
        from edgeconv.core.ir import Pad

        layer = Pad(self.new_name(hint, "pad"), sides, (src.layer,))
        self.emit(layer, out)
        tq = self.act_q.get(self.resolve(in_tensor))
        if self.qdq and tq is not None:
            self.act_q_layers[layer.name] = tq
        self.notes.append(f"zero Pad {list(sides)} (top, left, bottom, right) kept as a pad layer {layer.name}")

    def op_concat(self, node) -> None:
        if "concat" not in LAYER_TYPES:
            raise self.fail(
                f"{self.node_text(node)}: the IR has no concat op yet; supported ops: {', '.join(o for o in SUPPORTED_OPS if o != 'Concat')}"
            )
        srcs = [self.value(i, node) for i in node.input]
        axis = int(self.attrs(node).get("axis", 1))
        if axis % 4 != 1 or any(s.kind != "nchw" or s.pads is not None for s in srcs):
            raise self.fail(f"{self.node_text(node)}: only a concat of NCHW tensors on channels (axis 1) is supported")
        cls = LAYER_TYPES["concat"]
        layer = cls(name=self.new_name(_hint(node), "concat"), inputs=tuple(s.layer for s in srcs))
        self.emit(layer, node.output[0])
        self.out_quant(layer, node.output[0])

    # -- quantization ----------------------------------------------------------------------------

    def set_act(self, layer: str, tensor: str) -> None:
        self.act_q_layers[layer] = self.act_q[tensor]

    def out_quant(self, layer, tensor: str) -> None:
        if self.qdq and tensor in self.act_q:
            self.set_act(layer.name, tensor)

    def take_qweights(self, name, node, w_tensor, b_tensor, axis, to_ir, units, onnx_axis=0) -> None:
        if w_tensor not in self.qconsts:
            raise self.fail(
                f"{self.node_text(node)}: weights {w_tensor!r} are float in a QDQ model; expected a DequantizeLinear of int8 weights"
            )
        qc = self.qconsts[w_tensor]
        if qc.q.dtype != np.int8:
            raise self.fail(f"{self.node_text(node)}: weights {w_tensor!r} are {qc.q.dtype}, expected int8")
        if np.any(qc.zero_point != 0):
            raise self.fail(
                f"{self.node_text(node)}: weights {w_tensor!r} are asymmetric (zero point != 0); expected symmetric int8"
            )
        scales = tuple(float(s) for s in qc.scale.reshape(-1))
        if len(scales) > 1:
            if qc.axis is None or int(qc.axis) % qc.q.ndim != onnx_axis or len(scales) != units:
                raise self.fail(
                    f"{self.node_text(node)}: weights {w_tensor!r} quantized along axis {qc.axis}, expected the output-channel axis {onnx_axis}"
                )
            self.w_q[name] = TensorQuant(scales, (0,) * len(scales), "int8", axis)
        else:
            self.w_q[name] = TensorQuant(scales, (0,), "int8", None)
        self.q_w[name] = np.ascontiguousarray(to_ir(qc.q)).astype(np.int8)
        if b_tensor:
            self.take_qbias(name, node, b_tensor, units)

    def take_qbias(self, name, node, b_tensor, units) -> None:
        if b_tensor not in self.qconsts:
            raise self.fail(f"{self.node_text(node)}: bias {b_tensor!r} is float in a QDQ model; expected int32")
        qb = self.qconsts[b_tensor]
        if qb.q.dtype != np.int32 or qb.q.reshape(-1).shape != (units,) or np.any(qb.zero_point != 0):
            raise self.fail(f"{self.node_text(node)}: bias {b_tensor!r} must be int32 [{units}] with zero point 0")
        scales = tuple(float(s) for s in qb.scale.reshape(-1))
        self.b_q[name] = TensorQuant(scales, (0,) * len(scales), "int32", 0 if len(scales) > 1 else None)
        self.q_b[name] = qb.q.reshape(-1).astype(np.int32)


def _hint(node) -> str:
    """What a layer is named after: a path-like node name (tf2onnx's 'model/layer/Op', the
    legacy exporter's '/module/Op'), else the output tensor (dynamo's 'relu_1', 'max_pool2d')."""
    return node.name if "/" in node.name else node.output[0]


def _weight_hint(node) -> str:
    """The name of a weighted layer's source: PyTorch's '<module>.weight', a Keras path, else _hint."""
    w = node.input[1]
    for suffix in _SUFFIXES:
        w = w.removesuffix(suffix)
    if w.endswith(".weight") or ("/" in w and _KERAS_ROOT.match(w.split("/")[0])):
        return w
    return _hint(node)


def _dequantize(qc: _QConst) -> np.ndarray:
    q = qc.q.astype(np.float64)
    scale = qc.scale.astype(np.float64)
    zp = qc.zero_point.astype(np.float64)
    if scale.size > 1:
        shape = [1] * q.ndim
        shape[int(qc.axis or 0) % q.ndim] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return ((q - zp) * scale).astype(np.float32)


def _act_quant(scale: float, zp, mapper: _Mapper, node) -> TensorQuant:
    s = float(np.float32(scale))
    if not np.isfinite(s) or s <= 0:
        raise mapper.fail(f"{mapper.node_text(node)}: scale {scale} must be finite and above 0")
    if zp is None:
        return TensorQuant((s,), (-128,), "int8")  # default uint8 zero point 0
    z = np.asarray(zp)
    if z.dtype == np.uint8:
        return TensorQuant((s,), (int(z.reshape(-1)[0]) - 128,), "int8")
    if z.dtype == np.int8:
        return TensorQuant((s,), (int(z.reshape(-1)[0]),), "int8")
    raise mapper.fail(
        f"{mapper.node_text(node)}: activations quantized as {z.dtype}; only uint8 and int8 activations are supported"
    )


def _qparams(m: _Mapper, model: Model) -> QuantParams:
    first = m.act_q.get(m.input_name)
    if first is None:
        raise InputError(f"{m.where}: the input {m.input_name!r} is not quantized (no QuantizeLinear reads it)")
    acts: dict[str, TensorQuant] = {INPUT: first}
    aliases: dict[str, list[str]] = {}
    for tensor, val in m.values.items():
        aliases.setdefault(val.layer, []).append(tensor)
    for layer in model.layers:
        tq = m.act_q_layers.get(layer.name)
        if tq is None:  # quantized only after a flatten (ORT leaves ReduceMean in float)
            found = [m.act_q[t] for t in aliases.get(layer.name, []) if t in m.act_q]
            tq = found[0] if found else None
        if tq is None:
            raise InputError(
                f"{m.where}: layer {layer.name} ({layer.op}, tensor {m.tensor_names.get(layer.name)!r}) has no "
                f"QuantizeLinear after it; a QDQ model must quantize every layer output"
            )
        acts[layer.name] = tq
    return QuantParams(
        activations=acts,
        weights=dict(m.w_q),
        biases=dict(m.b_q),
        q_weights=dict(m.q_w),
        q_biases=dict(m.q_b),
        calibration={"method": "from file", "source": m.where.removeprefix("model ")},
    )


def _relu_from_zero_points(model: Model, qp: QuantParams, notes: list[str]) -> Model:
    """ORT's quantizer drops a Relu whose output zero point is qmin: give the layer a fused ReLU."""
    layers = []
    for layer in model.layers:
        tq = qp.activations.get(layer.name)
        if (
            isinstance(layer, (Conv2d, DepthwiseConv2d, Dense, Add))
            and layer.activation is Activation.NONE
            and tq is not None
            and tq.zero_point[0] == -128
        ):
            layer = replace(layer, activation=Activation.RELU)
            notes.append(f"{layer.name}: output zero point at qmin, taken as a fused ReLU (exact on the int8 grid)")
        layers.append(layer)
    return replace(model, layers=tuple(layers))


def import_onnx(path: str | Path) -> ImportedModel:
    """Read a float or QDQ ONNX file into an ImportedModel (InputError when refused)."""
    path = Path(path)
    where = f"model {path.name}"
    proto, data = _read(path)
    notes: list[str] = []
    proto = canonicalize(proto, where, notes)
    mapper = _Mapper(proto, where, notes)
    model = mapper.run()
    from edgeconv.core.graph import analyze
    from edgeconv.core.weights import expected_shapes

    try:
        analysis = analyze(model)
    except InputError as err:  # a shape the IR cannot take (e.g. a kernel larger than its input)
        raise InputError(f"{where}: {err}") from None
    expected = expected_shapes(analysis)
    for key, shape in expected.items():
        if mapper.weights[key].shape != shape:
            raise InputError(f"{where}: {key} has shape {mapper.weights[key].shape}, the IR expects {shape}")
        if not np.all(np.isfinite(mapper.weights[key])):
            raise InputError(f"{where}: {key} holds NaN or Inf")
    weights = {k: mapper.weights[k] for k in expected}
    quant = None
    if mapper.qdq:
        quant = _qparams(mapper, model)
        model = _relu_from_zero_points(model, quant, notes)
    return ImportedModel(
        model=model,
        weights=weights,
        quant=quant,
        source=path,
        source_format="onnx-qdq" if mapper.qdq else "onnx",
        original_artifact=data if mapper.qdq else None,
        notes=tuple(notes),
        tensor_names=dict(mapper.tensor_names),
        input_layout=mapper.input_layout,
    )
