"""A small, deterministic TFLite flatbuffer writer (no TensorFlow).

It packs a flat list of tensors and builtin operators into one subgraph using the object API
of the schema that ships with ai-edge-litert. The same arguments always give the same bytes:
the tensor, buffer and opcode orders follow the arguments, and nothing depends on time,
hash order or memory addresses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as fb


@dataclass(frozen=True)
class TfliteTensor:
    name: str
    shape: tuple[int, ...]
    dtype: str  # "float32" | "int8" | "int32"
    data: np.ndarray | None = None  # constant data (weights/bias/shape), None for activations
    scale: tuple[float, ...] | None = None  # quantization; len 1 or per channel
    zero_point: tuple[int, ...] | None = None
    quantized_dimension: int = 0


@dataclass(frozen=True)
class TfliteOp:
    opcode: str  # builtin name, e.g. "CONV_2D"
    inputs: tuple[str, ...]  # tensor names ("" = optional input absent, written as -1)
    outputs: tuple[str, ...]
    options: tuple[tuple[str, object], ...] = ()


_DTYPES: dict[str, tuple[int, np.dtype]] = {
    "float32": (fb.TensorType.FLOAT32, np.dtype("<f4")),
    "int8": (fb.TensorType.INT8, np.dtype("i1")),
    "int32": (fb.TensorType.INT32, np.dtype("<i4")),
}

# Constant data is 16-byte aligned so that runtimes which map the file (LiteRT, TFLM on a
# microcontroller) can read weights with aligned SIMD loads and never need to copy them.
_BUFFER_ALIGNMENT = 16

# Operator versions: the version TFLite's converter would write for int8 tensors
# (per-channel for convolutions). Measured on LiteRT 2.3.0: its resolvers reject a version
# they have not registered (e.g. 50) with "Didn't find op ... version", but kernels do not
# check the version against the tensor types, so version 1 would also load; TFLM ignores
# versions. Writing the converter's values keeps the files what other tools expect.
_INT8_VERSIONS = {
    "CONV_2D": 3,  # int8 per-channel
    "DEPTHWISE_CONV_2D": 3,  # int8 per-channel
    "FULLY_CONNECTED": 4,  # int8
    "AVERAGE_POOL_2D": 2,
    "MAX_POOL_2D": 2,
    "MEAN": 2,
    "ADD": 2,
    "SOFTMAX": 2,
    "RESHAPE": 1,
    "PAD": 2,
    "CONCATENATION": 2,
    "PADV2": 2,
}

# Which options table each builtin takes, and which option names map to which field.
_OPTION_TABLES = {
    "CONV_2D": (fb.BuiltinOptions.Conv2DOptions, fb.Conv2DOptionsT),
    "DEPTHWISE_CONV_2D": (fb.BuiltinOptions.DepthwiseConv2DOptions, fb.DepthwiseConv2DOptionsT),
    "AVERAGE_POOL_2D": (fb.BuiltinOptions.Pool2DOptions, fb.Pool2DOptionsT),
    "MAX_POOL_2D": (fb.BuiltinOptions.Pool2DOptions, fb.Pool2DOptionsT),
    "MEAN": (fb.BuiltinOptions.ReducerOptions, fb.ReducerOptionsT),
    "FULLY_CONNECTED": (fb.BuiltinOptions.FullyConnectedOptions, fb.FullyConnectedOptionsT),
    "ADD": (fb.BuiltinOptions.AddOptions, fb.AddOptionsT),
    "SOFTMAX": (fb.BuiltinOptions.SoftmaxOptions, fb.SoftmaxOptionsT),
    "RESHAPE": (fb.BuiltinOptions.ReshapeOptions, fb.ReshapeOptionsT),
    "PAD": (fb.BuiltinOptions.PadOptions, fb.PadOptionsT),
    "CONCATENATION": (fb.BuiltinOptions.ConcatenationOptions, fb.ConcatenationOptionsT),
    "PADV2": (fb.BuiltinOptions.PadV2Options, fb.PadV2OptionsT),
}

_OPTION_FIELDS = {
    "padding": "padding",
    "stride_w": "strideW",
    "stride_h": "strideH",
    "dilation_w": "dilationWFactor",
    "dilation_h": "dilationHFactor",
    "fused_activation": "fusedActivationFunction",
    "depth_multiplier": "depthMultiplier",
    "filter_w": "filterWidth",
    "filter_h": "filterHeight",
    "keep_dims": "keepDims",
    "keep_num_dims": "keepNumDims",
    "beta": "beta",
    "new_shape": "newShape",
    "axis": "axis",
}

_PADDINGS = {"SAME": fb.Padding.SAME, "VALID": fb.Padding.VALID}
_ACTIVATIONS = {
    "NONE": fb.ActivationFunctionType.NONE,
    "RELU": fb.ActivationFunctionType.RELU,
    "RELU6": fb.ActivationFunctionType.RELU6,
    "RELU_N1_TO_1": fb.ActivationFunctionType.RELU_N1_TO_1,
}


def _builtin_code(opcode: str) -> int:
    if opcode not in _OPTION_TABLES:
        raise ValueError(f"unsupported TFLite opcode {opcode!r}")
    return getattr(fb.BuiltinOperator, opcode)


def _option_value(name: str, value: Any) -> object:
    """Translate a user-facing option value into the schema's encoding."""
    if name == "padding":
        if value not in _PADDINGS:
            raise ValueError(f"unknown padding {value!r}")
        return _PADDINGS[value]
    if name == "fused_activation":
        if value not in _ACTIVATIONS:
            raise ValueError(f"unknown fused activation {value!r}")
        return _ACTIVATIONS[value]
    if name == "beta":
        return float(value)
    if name == "keep_dims" or name == "keep_num_dims":
        return bool(value)
    if name == "new_shape":
        return [int(v) for v in value]
    return int(value)


def _make_options(op: TfliteOp):
    """Returns (options type, options object) for one operator."""
    options_type, options_cls = _OPTION_TABLES[op.opcode]
    options = options_cls()
    if op.opcode == "DEPTHWISE_CONV_2D":
        options.depthMultiplier = 1  # the schema default 0 is not a valid multiplier
    if op.opcode == "SOFTMAX":
        options.beta = 1.0
    for name, value in op.options:
        field = _OPTION_FIELDS.get(name)
        if field is None or not hasattr(options, field):
            raise ValueError(f"unknown option {name!r} for TFLite opcode {op.opcode}")
        setattr(options, field, _option_value(name, value))
    return options_type, options


def _make_quantization(t: TfliteTensor) -> fb.QuantizationParametersT | None:
    if t.scale is None:
        return None
    zero_point = t.zero_point if t.zero_point is not None else (0,) * len(t.scale)
    if len(zero_point) != len(t.scale):
        raise ValueError(f"tensor {t.name!r}: {len(t.scale)} scales but {len(zero_point)} zero points")
    q = fb.QuantizationParametersT()
    q.scale = [float(np.float32(s)) for s in t.scale]
    q.zeroPoint = [int(z) for z in zero_point]
    q.quantizedDimension = int(t.quantized_dimension)
    return q


class _AlignedBufferT(fb.BufferT):
    """A buffer whose data vector starts on a _BUFFER_ALIGNMENT boundary.

    The generated BufferT packs bytes with alignment 1; weights then land on arbitrary
    offsets, which some kernels dislike and which makes the file layout depend on padding
    luck. Packing the vector ourselves keeps the rest of the object API untouched.
    """

    def Pack(self, builder):
        data_offset = None
        if self.data is not None:
            payload = bytes(self.data)
            builder.StartVector(1, len(payload), _BUFFER_ALIGNMENT)
            builder.head -= len(payload)
            builder.Bytes[builder.head : builder.head + len(payload)] = payload
            data_offset = builder.EndVector()
        fb.BufferStart(builder)
        if data_offset is not None:
            fb.BufferAddData(builder, data_offset)
        return fb.BufferEnd(builder)


def _constant_bytes(t: TfliteTensor) -> bytes:
    _, np_dtype = _DTYPES[t.dtype]
    data = np.asarray(t.data)
    if tuple(data.shape) != tuple(t.shape):
        raise ValueError(f"tensor {t.name!r}: data shape {data.shape} != declared {t.shape}")
    return np.ascontiguousarray(data.astype(np_dtype, copy=False)).tobytes()


def _make_tensors(tensors: Sequence[TfliteTensor]):
    """Returns (TensorT list, BufferT list, name -> index). Buffer 0 is the empty sentinel."""
    buffers = [fb.BufferT()]
    out: list[Any] = []
    index: dict[str, int] = {}
    for t in tensors:
        if t.dtype not in _DTYPES:
            raise ValueError(f"tensor {t.name!r}: unsupported dtype {t.dtype!r}")
        if t.name in index or t.name == "":
            raise ValueError(f"duplicate or empty tensor name {t.name!r}")
        tt = fb.TensorT()
        tt.name = t.name
        tt.shape = [int(d) for d in t.shape]
        tt.type = _DTYPES[t.dtype][0]
        tt.quantization = _make_quantization(t)
        if t.data is not None:
            buf = _AlignedBufferT()
            buf.data = _constant_bytes(t)
            buffers.append(buf)
            tt.buffer = len(buffers) - 1
        else:
            tt.buffer = 0  # activations share the empty sentinel buffer
        index[t.name] = len(out)
        out.append(tt)
    return out, buffers, index


def _tensor_ids(names: Sequence[str], index: dict[str, int], allow_absent: bool) -> list[int]:
    ids = []
    for name in names:
        if name == "" and allow_absent:
            ids.append(-1)  # optional input left out (e.g. a conv without bias)
        elif name not in index:
            raise ValueError(f"unknown tensor name {name!r}")
        else:
            ids.append(index[name])
    return ids


def _make_operators(ops: Sequence[TfliteOp], index: dict[str, int]):
    """Returns (OperatorT list, OperatorCodeT list); opcodes in first-use order."""
    codes: list[fb.OperatorCodeT] = []
    code_index: dict[str, int] = {}
    operators = []
    for op in ops:
        builtin = _builtin_code(op.opcode)
        if op.opcode not in code_index:
            code = fb.OperatorCodeT()
            code.builtinCode = builtin
            # Builtins below 127 must also be in the deprecated int8 field, which older
            # readers (and TFLM's fallback) look at.
            code.deprecatedBuiltinCode = min(builtin, 127)
            code.version = _INT8_VERSIONS[op.opcode]
            code_index[op.opcode] = len(codes)
            codes.append(code)
        o = fb.OperatorT()
        o.opcodeIndex = code_index[op.opcode]
        o.inputs = _tensor_ids(op.inputs, index, allow_absent=True)
        o.outputs = _tensor_ids(op.outputs, index, allow_absent=False)
        o.builtinOptionsType, o.builtinOptions = _make_options(op)
        operators.append(o)
    return operators, codes


def build_tflite(
    tensors: Sequence[TfliteTensor],
    ops: Sequence[TfliteOp],
    inputs: Sequence[str],
    outputs: Sequence[str],
    description: str = "edgeconv",
) -> bytes:
    """Serialize one subgraph into TFLite flatbuffer bytes (file identifier TFL3)."""
    tensor_list, buffers, index = _make_tensors(tensors)
    operators, codes = _make_operators(ops, index)

    subgraph = fb.SubGraphT()
    subgraph.name = "main"
    subgraph.tensors = tensor_list
    subgraph.inputs = _tensor_ids(inputs, index, allow_absent=False)
    subgraph.outputs = _tensor_ids(outputs, index, allow_absent=False)
    subgraph.operators = operators

    model = fb.ModelT()
    model.version = 3  # schema version 3 is the only one current runtimes read
    model.description = description
    model.operatorCodes = codes
    model.subgraphs = [subgraph]
    model.buffers = buffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
