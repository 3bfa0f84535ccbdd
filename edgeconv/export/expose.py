"""Expose intermediate layer tensors of an *exported artifact* as graph outputs.

Locating the first diverging layer must run the very file under test (a fault in the artifact
has to show up), so the per-layer variants are derived from the artifact bytes, not rebuilt
from the IR. Layer L's output tensor is named "L" in every edgeconv artifact.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgeconv.core.errors import InputError


def tflite_with_outputs(data: bytes, names: Sequence[str]) -> bytes:
    """The .tflite with its subgraph outputs replaced by the named tensors, in order."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    try:
        model = fb.ModelT.InitFromObj(fb.Model.GetRootAs(data, 0))
    except Exception as err:  # the flatbuffer library raises assorted errors on garbage
        raise InputError(f"tflite artifact: cannot be parsed ({type(err).__name__}: {err})") from None
    subgraph = model.subgraphs[0]
    index = {(t.name.decode() if isinstance(t.name, bytes) else t.name): i for i, t in enumerate(subgraph.tensors)}
    missing = [n for n in names if n not in index]
    if missing:
        raise InputError(f"tflite artifact: no tensor named {missing[0]!r} (is it an edgeconv export?)")
    subgraph.outputs = [index[n] for n in names]
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def onnx_with_outputs(data: bytes, names: Sequence[str]) -> bytes:
    """The ONNX model with the named tensors as (extra) graph outputs, typed by shape inference."""
    import onnx
    from onnx import shape_inference

    try:
        model = onnx.load_from_string(data)
    except Exception as err:  # protobuf's DecodeError and friends
        raise InputError(f"onnx artifact: cannot be parsed ({type(err).__name__}: {err})") from None
    inferred = shape_inference.infer_shapes(model)
    known = {
        v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)
    }
    del model.graph.output[:]
    for name in names:
        if name not in known:
            raise InputError(f"onnx artifact: no tensor named {name!r} (is it an edgeconv export?)")
        model.graph.output.append(known[name])
    return model.SerializeToString(deterministic=True)
