"""Deliberate edits of exported artifacts, for the bug catalogue (parity/bugs.py).

Each function takes an artifact's bytes and returns the edited bytes; nothing is run. The
.tflite is edited through LiteRT's schema module (the object API), the QDQ ONNX through onnx:
both are the same libraries the exporters and expose.py use. Tensors are found by the names
edgeconv writes (layer L: activation "L", weights "L.weight", bias "L.bias"; ONNX also
"L.weight.scale", "L.zero_point", the Relu node "L.relu").

`activation_quant` reads back what an artifact says about its activations (scale, zero point
in the int8 convention), so parity compares a target's tensors on the grid its own file
declares (a zero point moved for both producer and consumer is then seen as harmless).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgeconv.core.errors import InputError

# TFLite ActivationFunctionType
TFLITE_ACTIVATIONS = {"none": 0, "relu": 1, "relu6": 3}


def _tflite_model(data: bytes):
    from ai_edge_litert import schema_py_generated as fb

    try:
        return fb.ModelT.InitFromObj(fb.Model.GetRootAs(data, 0))
    except Exception as err:  # the flatbuffer library raises assorted errors on garbage
        raise InputError(f"tflite artifact: cannot be parsed ({type(err).__name__}: {err})") from None


def _tflite_bytes(model, size: int) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(size + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _name(t) -> str:
    return t.name.decode() if isinstance(t.name, bytes) else t.name


def _tflite_tensor(model, name: str):
    sub = model.subgraphs[0]
    for i, t in enumerate(sub.tensors):
        if _name(t) == name:
            return i, t
    raise InputError(f"tflite artifact: no tensor named {name!r}")


_TFLITE_DTYPE = {9: np.int8, 2: np.int32, 3: np.uint8, 0: np.float32}


def tflite_array(data: bytes, name: str) -> np.ndarray:
    """A constant tensor's values (int8 weights, int32 biases)."""
    model = _tflite_model(data)
    _, t = _tflite_tensor(model, name)
    raw = bytes(bytearray(model.buffers[t.buffer].data))
    return np.frombuffer(raw, _TFLITE_DTYPE[t.type]).reshape(t.shape).copy()


def tflite_quant(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A tensor's (scales, zero points) as written in the file."""
    _, t = _tflite_tensor(_tflite_model(data), name)
    q = t.quantization
    return np.asarray(q.scale, np.float32), np.asarray(q.zeroPoint, np.int64)


def tflite_edit(
    data: bytes,
    name: str,
    values: np.ndarray | None = None,
    scale: Sequence[float] | None = None,
    zero_point: Sequence[int] | None = None,
) -> bytes:
    """Replace a tensor's constant values and/or its quantization scales / zero points."""
    model = _tflite_model(data)
    _, t = _tflite_tensor(model, name)
    if values is not None:
        old = np.frombuffer(bytes(bytearray(model.buffers[t.buffer].data)), _TFLITE_DTYPE[t.type])
        new = np.ascontiguousarray(values, old.dtype).reshape(-1)
        if new.size != old.size:
            raise ValueError(f"{name}: expected {old.size} values, got {new.size}")
        model.buffers[t.buffer].data = np.frombuffer(new.tobytes(), np.uint8)
    if scale is not None:
        t.quantization.scale = [float(np.float32(s)) for s in scale]
    if zero_point is not None:
        t.quantization.zeroPoint = [int(z) for z in zero_point]
    return _tflite_bytes(model, len(data))


def tflite_set_activation(data: bytes, layer: str, activation: str) -> bytes:
    """Set the fused activation of the operator that writes tensor `layer`."""
    model = _tflite_model(data)
    index, _ = _tflite_tensor(model, layer)
    for op in model.subgraphs[0].operators:
        if list(op.outputs)[:1] == [index]:
            options = op.builtinOptions
            if options is None or not hasattr(options, "fusedActivationFunction"):
                raise InputError(f"tflite artifact: the op writing {layer!r} has no fused activation")
            options.fusedActivationFunction = TFLITE_ACTIVATIONS[activation]
            return _tflite_bytes(model, len(data))
    raise InputError(f"tflite artifact: no operator writes {layer!r}")


def _onnx_model(data: bytes):
    import onnx

    try:
        return onnx.load_from_string(data)
    except Exception as err:  # protobuf's DecodeError and friends
        raise InputError(f"onnx artifact: cannot be parsed ({type(err).__name__}: {err})") from None


def onnx_array(data: bytes, name: str) -> np.ndarray:
    from onnx import numpy_helper

    for init in _onnx_model(data).graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init).copy()
    raise InputError(f"onnx artifact: no initializer named {name!r}")


def onnx_edit(data: bytes, name: str, values: np.ndarray) -> bytes:
    """Replace an initializer (same dtype and shape)."""
    from onnx import numpy_helper

    model = _onnx_model(data)
    for init in model.graph.initializer:
        if init.name == name:
            old = numpy_helper.to_array(init)
            new = np.asarray(values).astype(old.dtype).reshape(old.shape)
            init.CopyFrom(numpy_helper.from_array(new, name))
            return model.SerializeToString(deterministic=True)
    raise InputError(f"onnx artifact: no initializer named {name!r}")


def onnx_add_relu(data: bytes, layer: str) -> bytes:
    """A Relu between layer L's op and its QuantizeLinear (the QDQ form of a fused ReLU)."""
    from onnx import helper

    model = _onnx_model(data)
    nodes = list(model.graph.node)
    out = f"{layer}.float"
    for i, node in enumerate(nodes):
        if out in node.output:
            node.output[list(node.output).index(out)] = f"{layer}.injected_preact"
            relu = helper.make_node("Relu", [f"{layer}.injected_preact"], [out], name=f"{layer}.injected_relu")
            nodes.insert(i + 1, relu)
            del model.graph.node[:]
            model.graph.node.extend(nodes)
            return model.SerializeToString(deterministic=True)
    raise InputError(f"onnx artifact: no node writes {out!r}")


def onnx_drop_relu(data: bytes, layer: str) -> bytes:
    """Remove layer L's Relu: its op then writes L.float directly."""
    model = _onnx_model(data)
    nodes = list(model.graph.node)
    relu = next((n for n in nodes if n.op_type == "Relu" and n.output[0] == f"{layer}.float"), None)
    if relu is None:
        raise InputError(f"onnx artifact: layer {layer!r} has no Relu")
    for node in nodes:
        for k, name in enumerate(node.output):
            if name == relu.input[0]:
                node.output[k] = relu.output[0]
    nodes.remove(relu)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model.SerializeToString(deterministic=True)


def activation_quant(data: bytes, kind: str, names: dict[str, str]) -> dict[str, tuple[float, int]]:
    """What an artifact declares for its activations: {layer: (scale, zero point, int8
    convention)}. `names` maps each layer to its tensor in the file; a layer the file does not
    describe per tensor (or names differently) is left out."""
    found: dict[str, tuple[float, int]] = {}
    if kind == "int8_tflite":
        model = _tflite_model(data)
        by_name = {_name(t): t for t in model.subgraphs[0].tensors}
        for layer, tensor in names.items():
            t = by_name.get(tensor)
            q = t.quantization if t is not None else None
            if t is None or q is None or q.scale is None or len(q.scale) != 1 or q.zeroPoint is None:
                continue
            shift = -128 if t.type == 3 else 0  # a uint8 tensor on the int8 grid
            found[layer] = (float(np.float32(q.scale[0])), int(q.zeroPoint[0]) + shift)
        return found
    from onnx import numpy_helper

    model = _onnx_model(data)
    inits = {i.name: i for i in model.graph.initializer}
    for layer, tensor in names.items():
        scale, zp = inits.get(f"{tensor}.scale"), inits.get(f"{tensor}.zero_point")
        if scale is None or zp is None:
            continue
        s, z = numpy_helper.to_array(scale), numpy_helper.to_array(zp)
        if s.size != 1:
            continue
        shift = -128 if z.dtype == np.uint8 else 0
        found[layer] = (float(np.float32(s.reshape(-1)[0])), int(z.reshape(-1)[0]) + shift)
    return found
