"""Running a user's own QDQ ONNX file (an `edgeconv import` of ONNX Runtime's quantize_static
output) as the artifact under test.

edgeconv's QDQ export takes the quantized input "input" (uint8/int8, NCHW) and returns the
quantized output. A foreign QDQ file keeps float input and output: a QuantizeLinear right after
its input and a DequantizeLinear before its output. Both ends are exact on the quantization grid:

- in:  the quantized sample x_q is fed as its real values s·(x_q − zp) (float32); the file's own
       QuantizeLinear, round(x / s) + zp, gives x_q back exactly;
- out: every tensor is read where it is an integer: a layer's tensor named by the importer (the
       float value a QuantizeLinear quantizes, or a DequantizeLinear's output) is replaced by that
       QuantizeLinear's output (resp. the DequantizeLinear's input), so the values compared are
       the integers ONNX Runtime's fused kernels wrote.

The input layout is the file's own: [1, C, H, W] (PyTorch), [1, H, W, C] (tf2onnx) or [1, N].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgeconv.artifacts.folder import BuiltModel
from edgeconv.core.errors import InputError

ARTIFACT = "model.int8.onnx"


def is_foreign(build: BuiltModel) -> bool:
    """Whether the build's model.int8.onnx is a user's own file (it keeps its own tensor names)."""
    return bool(build.tensor_names.get(ARTIFACT))


def activation_dtype(data: bytes, where: str) -> str:
    """ "uint8" or "int8": the type of the file's QuantizeLinear zero points (uint8 if it has none)."""
    import onnx

    model = onnx.load_from_string(data)
    inits = {t.name: t.data_type for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) > 2 and node.input[2] in inits:
            kinds = {onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.INT8: "int8"}
            if inits[node.input[2]] not in kinds:
                name = onnx.TensorProto.DataType.Name(inits[node.input[2]])
                raise InputError(f"model {where}: QuantizeLinear to {name}; expected uint8 or int8 activations")
            return kinds[inits[node.input[2]]]
    return "uint8"


def integer_names(data: bytes, names: Sequence[str]) -> list[str]:
    """Each tensor's integer form in the QDQ graph (see the module docstring)."""
    import onnx

    graph = onnx.load_from_string(data).graph
    quantized = {n.input[0]: n.output[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    dequantized = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    # data movement the quantizer leaves in float (a Reshape after an unquantized ReduceMean): the
    # values are quantized after it, with the same element order
    moves = {n.input[0]: n.output[0] for n in graph.node if n.op_type in ("Reshape", "Flatten", "Squeeze", "Unsqueeze")}
    out = []
    for name in names:
        hops = 0
        while name not in quantized and name not in dequantized and name in moves and hops < 4:
            name, hops = moves[name], hops + 1
        if name in quantized:
            out.append(quantized[name])
        elif name in dequantized:
            out.append(dequantized[name])
        else:
            raise InputError(
                f"{ARTIFACT}: tensor {name!r} is neither quantized by a QuantizeLinear nor the output of "
                f"a DequantizeLinear; its integer values cannot be read"
            )
    return out


def feed(sess, build: BuiltModel, x_q: np.ndarray, dtype: str) -> tuple[str, list[np.ndarray]]:
    """(input name, one float32 feed per sample) of the file's own input."""
    from edgeconv.quant.quantize import dequantize

    inputs = sess.get_inputs()
    if len(inputs) != 1 or inputs[0].type != "tensor(float)":
        raise InputError(f"{ARTIFACT}: expected one float input (an ONNX Runtime QDQ file), got {len(inputs)} inputs")
    shape = [d if isinstance(d, int) else 1 for d in inputs[0].shape]
    m = build.analysis.model.input
    x = dequantize(x_q, build.qparams.activations["input"], dtype)  # (N, H, W, C) real values
    if shape == [1, m.channels, m.height, m.width]:
        x = x.transpose(0, 3, 1, 2)
    elif shape == [1, m.height * m.width * m.channels]:
        x = x.reshape(len(x), -1)
    elif shape != [1, m.height, m.width, m.channels]:
        raise InputError(
            f"{ARTIFACT}: input {inputs[0].name!r} has shape {shape}, which is not {m.width}x{m.height}x{m.channels}"
        )
    return inputs[0].name, [np.ascontiguousarray(x[i : i + 1], np.float32) for i in range(len(x))]


def to_nhwc(value: np.ndarray) -> np.ndarray:
    value = np.asarray(value)
    if value.ndim == 4:
        return value.transpose(0, 2, 3, 1)
    return value.reshape(value.shape[0], 1, 1, -1)


def run(sess, build: BuiltModel, x_q: np.ndarray, dtype: str, names: Sequence[str]) -> list[np.ndarray]:
    """The integer tensors `names` (already integer_names) for every sample, NHWC."""
    input_name, feeds = feed(sess, build, x_q, dtype)
    outs: list[list[np.ndarray]] = [[] for _ in names]
    for sample in feeds:
        try:
            values = sess.run(list(names), {input_name: sample})
        except Exception as err:  # ORT's own exception types
            raise InputError(f"ONNX Runtime failed to run {ARTIFACT} ({str(err).strip().splitlines()[0]})") from None
        for slot, value in zip(outs, values):
            slot.append(to_nhwc(value))
    return [np.concatenate(slot) for slot in outs]
