"""TFLite importer: a float or full-integer int8 .tflite becomes the IR (+ its quantization).

The file is read with the schema module LiteRT ships (`ai_edge_litert.schema_py_generated`,
object API): no TensorFlow. Before the object API unpacks anything, every vector of tables is
bounded by the file size and constant data is bounds-checked, so a corrupt or truncated file is
a one-line InputError and never a huge allocation or a long loop.

Mapping (one IR layer per TFLite operator, except the data movement the IR expresses itself):

  CONV_2D             conv2d (OHWI weights = edgeconv's (K, F_h, F_w, D1) layout)
  DEPTHWISE_CONV_2D   depthwise_conv2d (depth multiplier 1; weights (1, F_h, F_w, C))
  PAD / PADV2         folded into the padding of the CONV_2D / DEPTHWISE_CONV_2D that reads it
                      ('same' when it equals SAME, a symmetric P when it tiles)
  ADD                 add (two activations)
  AVERAGE_POOL_2D     avg_pool              MAX_POOL_2D   max_pool
  MEAN over H, W      global_avg_pool
  RESHAPE             the NHWC flatten in front of a FULLY_CONNECTED (no IR layer)
  FULLY_CONNECTED     dense ((units, n_in) weights, n_in in H, W, C order: TFLite's own)
  SOFTMAX             softmax (beta 1)
  CONCATENATION       concat on channels (when the IR has it)
  fused RELU / RELU6  the layer's activation

For an int8 file the scales and zero points are read exactly into QuantParams (activations per
tensor; weights per channel or per tensor, as the file has them; int32 biases with the file's
scales) and the integer weights and biases are kept as they are (q_weights / q_biases); the
float weights are their dequantized values (for the float reference). Refused with one line:
an unknown operator (named, with its output tensor and the supported list), int16 or uint8
activations, hybrid or float16 files, dynamic shapes, batch other than 1, more than one
subgraph, input or output, a file that is not TFLite, corrupt or truncated buffers.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
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
from edgeconv.plan.recipes import LAYER_NAME
from edgeconv.quant.params import QuantParams, TensorQuant

MAX_FILE_BYTES = 512 * 2**20
MAX_TABLES = 1 << 16  # tensors, operators, buffers, opcodes per file
SUPPORTED_OPS = (
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "ADD",
    "AVERAGE_POOL_2D",
    "MAX_POOL_2D",
    "MEAN",
    "RESHAPE",
    "FULLY_CONNECTED",
    "SOFTMAX",
    "PAD",
    "PADV2",
    "CONCATENATION",
)
WEIGHT_AXIS = {"conv2d": 0, "depthwise_conv2d": 3, "dense": 0}


def _schema():
    from ai_edge_litert import schema_py_generated as fb

    return fb


def is_tflite(data: bytes) -> bool:
    return len(data) >= 8 and data[4:8] == b"TFL3"


# -- reading the flatbuffer safely ---------------------------------------------------------------


def _bounded(length: int, what: str, size: int, limit: int = MAX_TABLES) -> int:
    if length < 0 or length > limit or length * 4 > size:
        raise ValueError(f"{what}: {length} entries do not fit a {size:,}-byte file")
    return length


def _check_structure(fb, data: bytes) -> None:
    """Bound every vector the object API will walk (raw accessors; nothing is unpacked)."""
    size = len(data)
    m = fb.Model.GetRootAs(data, 0)
    _bounded(m.OperatorCodesLength(), "operator codes", size)
    n_buffers = _bounded(m.BuffersLength(), "buffers", size)
    _bounded(m.MetadataLength(), "metadata", size)
    _bounded(m.SignatureDefsLength(), "signatures", size, 1024)
    for i in range(n_buffers):
        b = m.Buffers(i)
        n = b.DataLength()
        if n:
            b.DataAsNumpy()  # numpy.frombuffer: raises if the vector runs past the file
        offset, length = b.Offset(), b.Size()
        if offset > 1 and (offset + length > size):
            raise ValueError(f"buffer {i}: external data [{offset}, {offset + length}) past the end of the file")
    for s in range(_bounded(m.SubgraphsLength(), "subgraphs", size, 1024)):
        sg = m.Subgraphs(s)
        for t in range(_bounded(sg.TensorsLength(), "tensors", size)):
            tensor = sg.Tensors(t)
            _bounded(tensor.ShapeLength(), "tensor shape", size, 8)
            q = tensor.Quantization()
            if q is not None:
                _bounded(q.ScaleLength(), "quantization scales", size, 1 << 20)
                _bounded(q.ZeroPointLength(), "zero points", size, 1 << 20)
        for o in range(_bounded(sg.OperatorsLength(), "operators", size)):
            op = sg.Operators(o)
            _bounded(op.InputsLength(), "operator inputs", size, 64)
            _bounded(op.OutputsLength(), "operator outputs", size, 64)


def read_file(path: Path) -> bytes:
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
    with open(path, "rb") as handle:
        return handle.read(MAX_FILE_BYTES + 1)


def parse(data: bytes, where: str):
    """The object-API ModelT of a .tflite, or InputError (not TFLite / corrupt / truncated)."""
    if not is_tflite(data):
        head = data[:8].hex(" ") if data else "an empty file"
        raise InputError(f"{where}: not a TFLite file (expected the identifier 'TFL3' at byte 4, got {head})")
    fb = _schema()
    try:
        _check_structure(fb, data)
        return fb.ModelT.InitFromObj(fb.Model.GetRootAs(data, 0))
    except InputError:
        raise
    except Exception as err:  # the flatbuffers runtime raises assorted errors on garbage
        text = " ".join(str(err).split())[:160]
        raise InputError(f"{where}: corrupt or truncated TFLite file ({type(err).__name__}: {text})") from None


# -- the graph -----------------------------------------------------------------------------------


def _name(value) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


_CLEAN = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class _Value:
    """What an activation tensor of the file is in the IR."""

    layer: str  # the IR layer (or "input") whose output holds these values
    shape: tuple[int, ...]  # the tensor's shape in the file
    pads: tuple[int, int, int, int] | None = None  # a PAD not yet folded: (top, left, bottom, right)
    unpadded: tuple[int, ...] = ()  # with pads: the shape before the PAD


@dataclass
class _Importer:
    model_t: Any
    where: str
    fb: Any
    layers: list = field(default_factory=list)
    values: dict[int, _Value] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    acts: dict[str, TensorQuant] = field(default_factory=dict)
    w_q: dict[str, TensorQuant] = field(default_factory=dict)
    b_q: dict[str, TensorQuant] = field(default_factory=dict)
    q_w: dict[str, np.ndarray] = field(default_factory=dict)
    q_b: dict[str, np.ndarray] = field(default_factory=dict)
    tensor_names: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    used_names: set[str] = field(default_factory=lambda: {INPUT})
    int8: bool = False
    input_layout: str = "NHWC"

    def __post_init__(self) -> None:
        fb = self.fb
        self.op_names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
        self.type_names = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
        self.sg = self.model_t.subgraphs[0]

    # -- helpers ---------------------------------------------------------------------------------

    def fail(self, message: str) -> InputError:
        return InputError(f"{self.where}: {message}")

    def tensor(self, index: int):
        if not 0 <= index < len(self.sg.tensors):
            raise self.fail(f"operator refers to tensor #{index}, the subgraph has {len(self.sg.tensors)}")
        return self.sg.tensors[index]

    def tname(self, index: int) -> str:
        return _name(self.tensor(index).name)

    def dtype(self, index: int) -> str:
        return self.type_names.get(self.tensor(index).type, str(self.tensor(index).type))

    def shape(self, index: int) -> tuple[int, ...]:
        t = self.tensor(index)
        return tuple(int(v) for v in (t.shape if t.shape is not None else ()))

    def const(self, index: int, what: str) -> np.ndarray:
        """A constant tensor's data as numpy, in its own dtype and shape."""
        t = self.tensor(index)
        buffers = self.model_t.buffers
        b = buffers[t.buffer] if 0 <= t.buffer < len(buffers) else None
        raw = None
        if b is not None and b.data is not None and len(b.data):
            raw = np.asarray(b.data, dtype=np.uint8).tobytes()
        if raw is None:
            raise self.fail(f"{what} (tensor {self.tname(index)!r}) is not a constant in the file")
        np_types = {"FLOAT32": "<f4", "INT8": "i1", "INT32": "<i4", "INT64": "<i8", "FLOAT16": "<f2", "UINT8": "u1"}
        dt = self.dtype(index)
        if dt not in np_types:
            raise self.fail(f"{what} (tensor {self.tname(index)!r}) has type {dt}, expected float32, int8 or int32")
        shape = self.shape(index)
        count = int(np.prod(shape)) if shape else 1
        itemsize = np.dtype(np_types[dt]).itemsize
        if len(raw) != count * itemsize:
            raise self.fail(
                f"{what} (tensor {self.tname(index)!r}): buffer has {len(raw):,} bytes, "
                f"shape {list(shape)} of {dt} needs {count * itemsize:,} (corrupt file?)"
            )
        return np.frombuffer(raw, dtype=np_types[dt]).reshape(shape).copy()

    def quant(self, index: int) -> TensorQuant | None:
        q = self.tensor(index).quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            return None
        scale = [float(np.float32(s)) for s in q.scale]
        zp = [int(z) for z in (q.zeroPoint if q.zeroPoint is not None else [0] * len(scale))]
        if len(zp) != len(scale):
            raise self.fail(f"tensor {self.tname(index)!r}: {len(scale)} scales but {len(zp)} zero points")
        if not all(np.isfinite(s) and s > 0 for s in scale):
            raise self.fail(f"tensor {self.tname(index)!r}: quantization scales must be finite and above 0")
        axis = int(q.quantizedDimension) if len(scale) > 1 else None
        return TensorQuant(tuple(scale), tuple(zp), "int8", axis)

    def new_name(self, op: str, out_tensor: str, hint_tensor: str | None = None) -> str:
        """A layer name: the output tensor's name when it is already a clean layer name (files
        edgeconv wrote), else the Keras layer in the file's names ('model/conv2d_3/Conv2D' ->
        'conv2d_3', from the weights for a weighted op), else the op; unique."""
        if LAYER_NAME.match(out_tensor) and out_tensor not in self.used_names:
            self.used_names.add(out_tensor)
            return out_tensor
        base = ""
        last = (hint_tensor or out_tensor).split(";")[-1]
        parts = [p for p in last.split("/") if p]
        if len(parts) >= 2:
            base = parts[-2]
        base = _CLEAN.sub("_", base).strip("._-")[:48] or op
        name, k = base, 2
        while name in self.used_names:
            name, k = f"{base}_{k}", k + 1
        self.used_names.add(name)
        return name

    def value(self, index: int, op: str) -> _Value:
        if index not in self.values:
            raise self.fail(
                f"{op} reads tensor {self.tname(index)!r}, which no earlier supported operator writes "
                f"(a constant where an activation was expected?)"
            )
        return self.values[index]

    def activation_of(self, fused: int, op: str, out: int) -> Activation:
        act = self.fb.ActivationFunctionType
        if fused == act.NONE:
            return Activation.NONE
        if fused == act.RELU:
            return Activation.RELU
        if fused == act.RELU6:
            return Activation.RELU6
        names = {v: k for k, v in vars(act).items() if not k.startswith("_")}
        raise self.fail(
            f"{op} writing {self.tname(out)!r} has fused activation {names.get(fused, fused)}; "
            f"supported: NONE, RELU, RELU6"
        )

    def check_activation_tensor(self, index: int, op: str) -> None:
        dt = self.dtype(index)
        want = "INT8" if self.int8 else "FLOAT32"
        if dt == want:
            return
        if dt == "INT16":
            raise self.fail(
                f"{op} writes tensor {self.tname(index)!r} as int16: int16 activations are not supported "
                f"(convert with full-integer int8 quantization)"
            )
        raise self.fail(
            f"{op} writes tensor {self.tname(index)!r} as {dt}, expected {want.lower()} like the model input "
            f"(hybrid, float16 or mixed-precision files are not supported)"
        )

    def emit(self, layer, out: int, source_tensor: int | None = None) -> None:
        """Add an IR layer whose output is file tensor `out`."""
        self.check_activation_tensor(out, layer.op)
        self.layers.append(layer)
        self.values[out] = _Value(layer.name, self.shape(out))
        self.tensor_names[layer.name] = self.tname(out)
        if self.int8:
            tq = self.quant(out)
            if tq is None or len(tq.scale) != 1:
                raise self.fail(f"tensor {self.tname(out)!r}: expected per-tensor int8 quantization")
            if not -128 <= tq.zero_point[0] <= 127:
                raise self.fail(f"tensor {self.tname(out)!r}: int8 zero point {tq.zero_point[0]} out of range")
            self.acts[layer.name] = TensorQuant(tq.scale, tq.zero_point, "int8", None)

    # -- weights ---------------------------------------------------------------------------------

    def take_weights(self, name: str, op: str, w_index: int, b_index: int, units: int, in_layer: str) -> None:
        axis = WEIGHT_AXIS[op]
        if self.int8:
            if self.dtype(w_index) != "INT8":
                raise self.fail(
                    f"{op} {self.tname(w_index)!r}: weights are {self.dtype(w_index)}, expected int8 in a "
                    f"full-integer file"
                )
            q = self.const(w_index, f"{name} weights").astype(np.int8)
            tq = self.quant(w_index)
            if tq is None:
                raise self.fail(f"{name}: int8 weights {self.tname(w_index)!r} have no quantization")
            if any(z != 0 for z in tq.zero_point):
                raise self.fail(f"{name}: weights {self.tname(w_index)!r} are asymmetric (zero point != 0)")
            if len(tq.scale) > 1:
                if tq.axis != axis or len(tq.scale) != q.shape[axis]:
                    raise self.fail(
                        f"{name}: weights {self.tname(w_index)!r} quantized along axis {tq.axis} with "
                        f"{len(tq.scale)} scales, expected axis {axis} with {q.shape[axis]}"
                    )
                wq = TensorQuant(tq.scale, tq.zero_point, "int8", axis)
            else:
                wq = TensorQuant(tq.scale, (0,), "int8", None)
            shape = [1] * q.ndim
            shape[axis] = -1
            scales = wq.scale_array().reshape(shape) if len(wq.scale) > 1 else wq.scale_array()[0]
            w = (q.astype(np.float32) * scales).astype(np.float32)
            if b_index >= 0:
                if self.dtype(b_index) != "INT32":
                    raise self.fail(f"{name}: bias {self.tname(b_index)!r} is {self.dtype(b_index)}, expected int32")
                qb = self.const(b_index, f"{name} bias").astype(np.int32).reshape(-1)
                btq = self.quant(b_index)
                if btq is None:
                    raise self.fail(f"{name}: int32 bias {self.tname(b_index)!r} has no quantization")
            else:
                qb = np.zeros(units, np.int32)
                s_in = self.acts[in_layer].scale[0]
                btq = TensorQuant(
                    tuple(float(np.float32(s_in) * np.float32(s)) for s in wq.scale), (0,) * len(wq.scale)
                )
            if qb.shape != (units,):
                raise self.fail(f"{name}: bias has shape {list(qb.shape)}, expected [{units}]")
            bq = TensorQuant(btq.scale, (0,) * len(btq.scale), "int32", 0 if len(btq.scale) > 1 else None)
            b_scales = np.asarray(bq.scale, np.float64)
            b = (qb.astype(np.float64) * b_scales).astype(np.float32)
            self.w_q[name], self.q_w[name] = wq, q
            self.b_q[name], self.q_b[name] = bq, qb
        else:
            if self.dtype(w_index) != "FLOAT32":
                raise self.fail(
                    f"{name}: weights {self.tname(w_index)!r} are {self.dtype(w_index)} in a float file "
                    f"(hybrid or float16-quantized files are not supported; export float32 or full int8)"
                )
            w = self.const(w_index, f"{name} weights").astype(np.float32)
            b = (
                self.const(b_index, f"{name} bias").astype(np.float32).reshape(-1)
                if b_index >= 0
                else np.zeros(units, np.float32)
            )
            if b.shape != (units,):
                raise self.fail(f"{name}: bias has shape {list(b.shape)}, expected [{units}]")
        if not np.all(np.isfinite(w)) or not np.all(np.isfinite(b)):
            raise self.fail(f"{name}: weights or bias hold NaN or Inf")
        self.weights[f"{name}.weight"] = w
        self.weights[f"{name}.bias"] = b

    # -- operators -------------------------------------------------------------------------------

    def run(self) -> None:
        sg = self.sg
        if len(sg.inputs) != 1 or len(sg.outputs) != 1:
            raise self.fail(
                f"expected one input and one output tensor, got {len(sg.inputs)} inputs and {len(sg.outputs)} outputs"
            )
        for index in (*sg.inputs, *sg.outputs):
            self.check_shape(int(index))
        x = int(sg.inputs[0])
        dt = self.dtype(x)
        if dt == "FLOAT32":
            self.int8 = False
        elif dt == "INT8":
            self.int8 = True
        elif dt == "INT16":
            raise self.fail(f"input {self.tname(x)!r} is int16: int16 activations are not supported")
        else:
            raise self.fail(
                f"input {self.tname(x)!r} is {dt}, expected float32 (float file) or int8 (full-integer file)"
            )
        shape = self.shape(x)
        if len(shape) == 4:
            self.input_spec = InputSpec(shape[2], shape[1], shape[3])
        elif len(shape) == 2:  # a vector [1, N]: the IR's 1 x 1 x N map (a Dense reads it the same)
            self.input_spec = InputSpec(1, 1, shape[1])
            self.input_layout = "vector"
        else:
            raise self.fail(f"input {self.tname(x)!r} has shape {list(shape)}, expected [1, H, W, C] or [1, N]")
        self.values[x] = _Value(INPUT, shape)
        if self.int8:
            tq = self.quant(x)
            if tq is None or len(tq.scale) != 1:
                raise self.fail(f"input {self.tname(x)!r}: expected per-tensor int8 quantization")
            self.acts[INPUT] = TensorQuant(tq.scale, tq.zero_point, "int8", None)
        for i, op in enumerate(sg.operators):
            codes = self.model_t.operatorCodes
            if not 0 <= op.opcodeIndex < len(codes):
                raise self.fail(f"operator #{i} has opcode index {op.opcodeIndex}, the file has {len(codes)} codes")
            code = codes[op.opcodeIndex]
            opname = self.op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")
            outs = [int(v) for v in (op.outputs if op.outputs is not None else [])]
            ins = [int(v) for v in (op.inputs if op.inputs is not None else [])]
            if opname == "CUSTOM":
                opname = f"CUSTOM({_name(code.customCode)})"
            handler = getattr(self, f"op_{opname.lower()}", None)
            if opname not in SUPPORTED_OPS or handler is None or len(outs) != 1:
                out = self.tname(outs[0]) if outs else "?"
                raise self.fail(
                    f"operator #{i} {opname} (output tensor {out!r}) is not supported; supported: "
                    f"{', '.join(SUPPORTED_OPS)} with fused RELU/RELU6"
                )
            for t in outs:
                self.check_shape(t)
            handler(op, ins, outs[0])
        y = int(sg.outputs[0])
        if y not in self.values or self.values[y].layer == INPUT:
            raise self.fail(f"output {self.tname(y)!r} is not computed by a supported operator")
        if self.values[y].layer != self.layers[-1].name:
            raise self.fail(f"output {self.tname(y)!r} is not the last operator's result")
        if self.values[y].pads is not None:
            raise self.fail(f"output {self.tname(y)!r} is a PAD result; a padded output is not supported")

    def check_shape(self, index: int) -> None:
        t = self.tensor(index)
        shape = self.shape(index)
        sig = [int(v) for v in t.shapeSignature] if t.shapeSignature is not None else list(shape)
        if any(v < 0 for v in sig[1:]) or any(v < 1 for v in shape):
            raise self.fail(
                f"tensor {self.tname(index)!r} has a dynamic shape {sig} (only the batch may be -1; "
                f"export with fixed H, W, C)"
            )
        if shape and shape[0] != 1:
            raise self.fail(f"tensor {self.tname(index)!r} has batch {shape[0]}, expected 1")

    def options(self, op):
        return op.builtinOptions

    def _window_padding(self, opts, src: _Value, kernel_wh, stride_wh, name: str) -> str | int | tuple:
        """The IR padding of a windowed op: its own SAME/VALID, or a folded PAD before a VALID op."""
        fb = self.fb
        if src.pads is None:
            return "same" if opts.padding == fb.Padding.SAME else "valid"
        if opts.padding == fb.Padding.SAME:
            raise self.fail(f"{name}: PAD followed by a SAME window is not supported")
        from edgeconv.core.shapes import same_pads

        top, left, bottom, right = src.pads
        _, h, w, _ = src.unpadded
        if src.pads == same_pads((h, w), (kernel_wh[1], kernel_wh[0]), (stride_wh[1], stride_wh[0])):
            self.notes.append(f"{name}: PAD {list(src.pads)} folded as SAME padding")
            return "same"
        if _ir_takes_side_pads():  # kept per side, with the frameworks' floor semantics
            self.notes.append(f"{name}: PAD (top, left, bottom, right) {list(src.pads)} folded into its padding")
            return (int(top), int(left), int(bottom), int(right))
        if top == left == bottom == right:
            self.notes.append(f"{name}: PAD {top} on every side folded as P={top}")
            return int(top)
        raise self.fail(
            f"{name}: PAD (top, left, bottom, right) {list(src.pads)} is neither SAME nor symmetric; "
            f"the IR has no per-side padding yet"
        )

    def op_conv_2d(self, op, ins, out) -> None:
        self._conv(op, ins, out, depthwise=False)

    def op_depthwise_conv_2d(self, op, ins, out) -> None:
        self._conv(op, ins, out, depthwise=True)

    def _conv(self, op, ins, out, depthwise: bool) -> None:
        kind = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
        if len(ins) < 2:
            raise self.fail(f"{kind} writing {self.tname(out)!r}: expected input, weights and bias")
        src = self.value(ins[0], kind)
        opts = self.options(op)
        if opts.dilationWFactor != 1 or opts.dilationHFactor != 1:
            raise self.fail(
                f"{kind} writing {self.tname(out)!r} has dilation {opts.dilationWFactor}x{opts.dilationHFactor}; "
                f"dilated convolutions are not supported"
            )
        w_shape = self.shape(ins[1])
        in_shape = src.unpadded if src.pads is not None else src.shape
        if len(w_shape) != 4 or len(in_shape) != 4:
            raise self.fail(f"{kind} writing {self.tname(out)!r}: expected 4-D input and weights, got {list(w_shape)}")
        c_in = in_shape[3]
        name = self.new_name("depthwise_conv2d" if depthwise else "conv2d", self.tname(out), self.tname(ins[1]))
        kernel = (w_shape[2], w_shape[1])
        stride = (opts.strideW, opts.strideH)
        padding = self._window_padding(opts, src, kernel, stride, name)
        act = self.activation_of(opts.fusedActivationFunction, kind, out)
        bias = ins[2] if len(ins) > 2 else -1
        if depthwise:
            if w_shape[0] != 1 or w_shape[3] != c_in or getattr(opts, "depthMultiplier", 1) not in (0, 1):
                raise self.fail(
                    f"{kind} writing {self.tname(out)!r}: depth multiplier {opts.depthMultiplier} (weights "
                    f"{list(w_shape)}, {c_in} input channels); only multiplier 1 is supported"
                )
            layer: Conv2d | DepthwiseConv2d = DepthwiseConv2d(name, kernel, stride, padding, act, (src.layer,))
            units = c_in
        else:
            if w_shape[3] != c_in:
                raise self.fail(
                    f"{kind} writing {self.tname(out)!r}: weights {list(w_shape)} read {w_shape[3]} channels of "
                    f"{c_in}: grouped convolutions are not supported"
                )
            layer = Conv2d(name, w_shape[0], kernel, stride, padding, act, (src.layer,))
            units = w_shape[0]
        in_layer = src.layer
        self.take_weights(name, layer.op, ins[1], bias, units, in_layer)
        self.emit(layer, out)

    def op_add(self, op, ins, out) -> None:
        if len(ins) != 2:
            raise self.fail(f"ADD writing {self.tname(out)!r}: expected 2 inputs, got {len(ins)}")
        a, b = (self.value(i, "ADD") for i in ins)
        if a.shape != b.shape or a.pads is not None or b.pads is not None:
            raise self.fail(
                f"ADD writing {self.tname(out)!r}: inputs {list(a.shape)} and {list(b.shape)}; only an add of "
                f"two equal shapes (no broadcasting) is supported"
            )
        opts = self.options(op)
        act = self.activation_of(opts.fusedActivationFunction if opts else 0, "ADD", out)
        hint = self.tname(out)
        self.emit(Add(self.new_name("add", hint), (a.layer, b.layer), act), out)

    def _pool(self, op, ins, out, kind: str) -> None:
        src = self.value(ins[0], kind)
        opts = self.options(op)
        if opts.fusedActivationFunction != 0:
            raise self.fail(f"{kind} writing {self.tname(out)!r}: a fused activation on a pool is not supported")
        pool, stride = (opts.filterWidth, opts.filterHeight), (opts.strideW, opts.strideH)
        if src.pads is not None:
            raise self.fail(f"{kind} writing {self.tname(out)!r}: a PAD before a pool is not supported")
        padding = "same" if opts.padding == self.fb.Padding.SAME else "valid"
        cls, op_name = (AvgPool, "avg_pool") if kind == "AVERAGE_POOL_2D" else (MaxPool, "max_pool")
        name = self.new_name(op_name, self.tname(out))
        if self.int8 and self.quant(out) != self.quant(ins[0]):
            raise self.fail(f"{kind} writing {self.tname(out)!r}: int8 output scale differs from its input's")
        self.emit(cls(name, pool, stride, padding, (src.layer,)), out)

    def op_average_pool_2d(self, op, ins, out) -> None:
        self._pool(op, ins, out, "AVERAGE_POOL_2D")

    def op_max_pool_2d(self, op, ins, out) -> None:
        self._pool(op, ins, out, "MAX_POOL_2D")

    def op_mean(self, op, ins, out) -> None:
        src = self.value(ins[0], "MEAN")
        axes = sorted(int(a) % 4 for a in self.const(ins[1], "MEAN axes").reshape(-1))
        if len(src.shape) != 4 or axes != [1, 2]:
            raise self.fail(
                f"MEAN writing {self.tname(out)!r} over axes {axes} of {list(src.shape)}; only the mean over "
                f"H and W of an NHWC tensor is supported"
            )
        self.emit(GlobalAvgPool(self.new_name("global_avg_pool", self.tname(out)), (src.layer,)), out)
        self.values[out].shape = (1, 1, 1, src.shape[3])

    def op_reshape(self, op, ins, out) -> None:
        src = self.value(ins[0], "RESHAPE")
        new = self.shape(out)
        if src.pads is not None or int(np.prod(new)) != int(np.prod(src.shape)):
            raise self.fail(f"RESHAPE writing {self.tname(out)!r}: {list(src.shape)} -> {list(new)} is not supported")
        flatten = len(new) == 2
        same_map = len(new) == 4 and len(src.shape) in (2, 4) and new[1] == new[2] == 1
        if not (flatten or same_map):
            raise self.fail(
                f"RESHAPE writing {self.tname(out)!r}: {list(src.shape)} -> {list(new)}; only a flatten to "
                f"[1, N] (before FULLY_CONNECTED) or [1, 1, 1, C] is supported"
            )
        if self.int8 and self.quant(out) != self.quant(ins[0]):
            raise self.fail(f"RESHAPE writing {self.tname(out)!r}: int8 output scale differs from its input's")
        self.check_activation_tensor(out, "RESHAPE")
        self.values[out] = _Value(src.layer, new)
        self.notes.append(f"RESHAPE {list(src.shape)} -> {list(new)} ({self.tname(out)!r}) is the IR's NHWC flatten")

    def op_fully_connected(self, op, ins, out) -> None:
        src = self.value(ins[0], "FULLY_CONNECTED")
        opts = self.options(op)
        if opts is not None and opts.weightsFormat != 0:
            raise self.fail(f"FULLY_CONNECTED writing {self.tname(out)!r}: shuffled weights are not supported")
        w_shape = self.shape(ins[1])
        n_in = int(np.prod(src.shape))
        if len(w_shape) != 2 or w_shape[1] != n_in:
            raise self.fail(
                f"FULLY_CONNECTED writing {self.tname(out)!r}: weights {list(w_shape)} for an input of {n_in} values"
            )
        if len(src.shape) == 4 and (src.shape[1] > 1 or src.shape[2] > 1):
            raise self.fail(
                f"FULLY_CONNECTED writing {self.tname(out)!r} reads the 4-D {list(src.shape)} without a RESHAPE"
            )
        act = self.activation_of(opts.fusedActivationFunction if opts else 0, "FULLY_CONNECTED", out)
        name = self.new_name("dense", self.tname(out), self.tname(ins[1]))
        bias = ins[2] if len(ins) > 2 else -1
        self.take_weights(name, "dense", ins[1], bias, w_shape[0], src.layer)
        self.emit(Dense(name, w_shape[0], act, (src.layer,)), out)

    def op_softmax(self, op, ins, out) -> None:
        src = self.value(ins[0], "SOFTMAX")
        opts = self.options(op)
        if opts is not None and abs(opts.beta - 1.0) > 0:
            raise self.fail(f"SOFTMAX writing {self.tname(out)!r} has beta {opts.beta}; only beta 1 is supported")
        if self.int8:
            tq = self.quant(out)
            if tq is None or tq.scale != (1.0 / 256.0,) or tq.zero_point != (-128,):
                raise self.fail(
                    f"SOFTMAX writing {self.tname(out)!r}: int8 output must have scale 1/256, zero point -128"
                )
        self.emit(Softmax(self.new_name("softmax", self.tname(out)), (src.layer,)), out)
        self.values[out].shape = src.shape

    def op_pad(self, op, ins, out) -> None:
        src = self.value(ins[0], "PAD")
        paddings = self.const(ins[1], "PAD paddings").astype(np.int64)
        if paddings.shape != (4, 2) or paddings[0].any() or paddings[3].any() or (paddings < 0).any():
            raise self.fail(
                f"PAD writing {self.tname(out)!r}: paddings {paddings.tolist()}; only zero padding of H and W "
                f"of an NHWC tensor is supported"
            )
        if src.pads is not None:
            raise self.fail(f"PAD writing {self.tname(out)!r}: two PADs in a row are not supported")
        if self.int8 and self.quant(out) != self.quant(ins[0]):
            raise self.fail(f"PAD writing {self.tname(out)!r}: int8 output scale differs from its input's")
        if len(ins) > 2 and ins[2] >= 0:  # PADV2: the constant must be real zero
            value = self.const(ins[2], "PADV2 value").reshape(-1)
            zero = self.acts[src.layer].zero_point[0] if self.int8 else 0.0
            if value.size != 1 or value[0] != zero:
                raise self.fail(f"PADV2 writing {self.tname(out)!r} pads with {value.tolist()}, expected real zero")
        self.check_activation_tensor(out, "PAD")
        pads = (int(paddings[1, 0]), int(paddings[2, 0]), int(paddings[1, 1]), int(paddings[2, 1]))
        self.values[out] = _Value(src.layer, self.shape(out), pads, src.shape)

    op_padv2 = op_pad

    def op_concatenation(self, op, ins, out) -> None:
        if "concat" not in LAYER_TYPES:
            raise self.fail(
                f"CONCATENATION writing {self.tname(out)!r}: the IR has no concat op yet; supported: "
                f"{', '.join(o for o in SUPPORTED_OPS if o != 'CONCATENATION')}"
            )
        srcs = [self.value(i, "CONCATENATION") for i in ins]
        opts = self.options(op)
        if int(opts.axis) % 4 != 3 or any(len(s.shape) != 4 or s.pads is not None for s in srcs):
            raise self.fail(f"CONCATENATION writing {self.tname(out)!r}: only a concat on channels is supported")
        self.activation_of(opts.fusedActivationFunction, "CONCATENATION", out)
        if opts.fusedActivationFunction != 0:
            raise self.fail(f"CONCATENATION writing {self.tname(out)!r}: a fused activation is not supported")
        cls = LAYER_TYPES["concat"]
        self.emit(cls(name=self.new_name("concat", self.tname(out)), inputs=tuple(s.layer for s in srcs)), out)


def _ir_takes_side_pads() -> bool:
    """Whether the IR accepts padding as (top, left, bottom, right) (issue 9's IR growth)."""
    from edgeconv.core import shapes

    return bool(getattr(shapes, "SIDE_PADS", False))


def import_tflite(path: str | Path, data: bytes | None = None) -> ImportedModel:
    """Read a float or full-integer int8 .tflite into an ImportedModel (InputError if refused)."""
    path = Path(path)
    data = read_file(path) if data is None else data
    where = f"model {path.name}"
    model_t = parse(data, where)
    if not model_t.subgraphs or len(model_t.subgraphs) != 1:
        raise InputError(f"{where}: expected one subgraph, got {len(model_t.subgraphs or [])}")
    imp = _Importer(model_t, where, _schema())
    imp.run()
    name = _CLEAN.sub("_", path.stem).strip("._-")[:64] or "imported"
    desc = f"imported from {path.name} ({'int8' if imp.int8 else 'float32'} TFLite, {len(imp.sg.operators)} operators)"
    model = Model(name, imp.input_spec, tuple(imp.layers), description=desc)
    quant = None
    if imp.int8:
        quant = QuantParams(
            activations=imp.acts,
            weights=imp.w_q,
            biases=imp.b_q,
            q_weights=imp.q_w,
            q_biases=imp.q_b,
            calibration={"method": "from file", "source": path.name, "samples": None},
        )
    return _imported(
        model,
        imp.weights,
        quant,
        path,
        "tflite-int8" if imp.int8 else "tflite",
        data if imp.int8 else None,
        tuple(imp.notes),
        imp.tensor_names,
        imp.input_layout,
    )


def _imported(model, weights, quant, path, fmt, original, notes, tensor_names, layout) -> ImportedModel:
    return ImportedModel(
        model, weights, quant, path, fmt, original, notes, tensor_names=dict(tensor_names), input_layout=layout
    )


def op_counts(data: bytes) -> dict[str, int]:
    """Operator name -> count in a .tflite (for reports)."""
    fb = _schema()
    model_t = parse(data, "tflite")
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    counts: dict[str, int] = {}
    for sg in model_t.subgraphs[:1]:
        for op in sg.operators or []:
            code = model_t.operatorCodes[op.opcodeIndex]
            key = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")
            counts[key] = counts.get(key, 0) + 1
    return counts


def operator_output_names(data: bytes, where: str = "tflite") -> tuple[str, list[str]]:
    """The main subgraph's name ("main" when unnamed) and its operators' output tensor names in
    op order: what a graph viewer (Model Explorer) names the graph and keys each node by."""
    model_t = parse(data, where)
    sub = model_t.subgraphs[0]
    names = [_name(sub.tensors[i].name) for op in sub.operators or [] for i in op.outputs if i >= 0]
    return _name(sub.name) or "main", names
