import numpy as np
import pytest
from conftest import random_input

from edgeconv.core import reference
from edgeconv.core.weights import init_weights

onnx = pytest.importorskip("onnx")
from onnx import shape_inference  # noqa: E402

from edgeconv.export.onnx_float import OPSET, build_float_onnx, serialize, tensor_onnx_shape  # noqa: E402


def test_passes_the_full_checker_and_shape_inference_gives_the_ir_shapes(analysis):
    proto = build_float_onnx(analysis, init_weights(analysis, 0))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == OPSET >= 17
    inferred = shape_inference.infer_shapes(proto, strict_mode=True)
    dims = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in list(inferred.graph.value_info) + list(inferred.graph.output)
    }
    for info in analysis.layers:
        assert dims[info.name] == tensor_onnx_shape(analysis, info.name), info.name
    assert [n.name for n in proto.graph.node if n.op_type in ("Conv", "Gemm")] == [
        i.name for i in analysis.layers if i.op in ("conv2d", "depthwise_conv2d", "dense")
    ]


def test_same_inputs_and_seed_give_identical_bytes(analysis):
    first = serialize(build_float_onnx(analysis, init_weights(analysis, 7)))
    again = serialize(build_float_onnx(analysis, init_weights(analysis, 7)))
    other = serialize(build_float_onnx(analysis, init_weights(analysis, 8)))
    assert first == again and first != other


def _nhwc(array: np.ndarray) -> np.ndarray:
    return array.transpose(0, 2, 3, 1) if array.ndim == 4 else array.reshape(array.shape[0], 1, 1, -1)


def test_onnxruntime_matches_the_numpy_reference_at_every_layer(analysis):
    ort = pytest.importorskip("onnxruntime")
    weights = init_weights(analysis, 0)
    names = [info.name for info in analysis.layers]
    proto = build_float_onnx(analysis, weights, outputs=names)
    session = ort.InferenceSession(serialize(proto), providers=["CPUExecutionProvider"])
    output_names = [o.name for o in proto.graph.output]
    x = random_input(analysis, n=2)
    expected = reference.run(analysis, weights, x, keep_all=True)
    for i in range(len(x)):
        got = dict(zip(output_names, session.run(None, {"input": x[i : i + 1].transpose(0, 3, 1, 2)})))
        for name in names:
            want = expected[name][i : i + 1]
            # relative to the tensor's magnitude: 1e-5 of its largest value
            assert np.abs(_nhwc(got[name]) - want).max() <= 1e-5 * np.abs(want).max(), name


def test_reference_layers_have_the_ir_shapes(analysis):
    out = reference.run(analysis, init_weights(analysis, 0), random_input(analysis, n=3), keep_all=True)
    for info in analysis.layers:
        w, h, c = info.out_shape
        assert out[info.name].shape == (3, h, w, c)
