"""Property tests: the shape math equals ONNX shape inference and what onnxruntime produces."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeconv.core.errors import ShapeError
from edgeconv.core.graph import analyze
from edgeconv.core.ir import Activation, AvgPool, Conv2d, DepthwiseConv2d, InputSpec, MaxPool, chain
from edgeconv.core.weights import init_weights

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import shape_inference  # noqa: E402

from edgeconv.export.onnx_float import build_float_onnx, serialize, tensor_onnx_shape  # noqa: E402

padding = st.one_of(st.sampled_from(["same", "valid"]), st.integers(0, 3))


@st.composite
def one_layer_models(draw):
    w, h = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    c = draw(st.integers(1, 8))
    kernel = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pad = draw(padding)
    kind = draw(st.sampled_from(["conv", "depthwise", "max", "avg"]))
    if kind == "conv":
        layer = Conv2d(
            "layer",
            filters=draw(st.integers(1, 8)),
            kernel=kernel,
            stride=stride,
            padding=pad,
            activation=Activation.RELU,
        )
    elif kind == "depthwise":
        layer = DepthwiseConv2d("layer", kernel=kernel, stride=stride, padding=pad)
    elif kind == "max":
        layer = MaxPool("layer", pool=kernel, stride=stride, padding=pad)
    else:
        layer = AvgPool("layer", pool=kernel, stride=stride, padding=pad)
    if isinstance(pad, int) and kind in ("max", "avg") and pad * 2 >= min(kernel):
        pad = 0  # ONNX pools need pads smaller than the window
        layer = type(layer)("layer", pool=kernel, stride=stride, padding=0)
    return chain("prop", InputSpec(w, h, c), [layer])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(one_layer_models())
def test_shape_math_equals_onnx_inference_and_runtime(model):
    try:
        analysis = analyze(model)
    except ShapeError:
        return  # refused layers have no ONNX counterpart to compare
    proto = build_float_onnx(analysis, init_weights(analysis, 0))
    inferred = shape_inference.infer_shapes(proto, strict_mode=True)
    dims = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in list(inferred.graph.value_info) + list(inferred.graph.output)
    }
    assert dims["layer"] == tensor_onnx_shape(analysis, "layer")
    session = ort.InferenceSession(serialize(proto), providers=["CPUExecutionProvider"])
    m = model.input
    out = session.run(None, {"input": np.zeros((1, m.channels, m.height, m.width), np.float32)})[0]
    assert list(out.shape) == tensor_onnx_shape(analysis, "layer")
