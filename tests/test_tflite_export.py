"""TFLite export (export/tflite.py): both files load and run on LiteRT and TFLM, the float
file matches the numpy reference, the int8 file has the layout the golden assumes, and
re-export is byte-identical. (Int8 LSB parity per runtime: tests/test_golden.py.)"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flatbuffers")
pytest.importorskip("ai_edge_litert")

from ai_edge_litert import schema_py_generated as fb

from edgeconv.core import reference
from edgeconv.core.graph import analyze
from edgeconv.core.ir import INPUT, Activation, AvgPool, Conv2d, Dense, InputSpec, MaxPool, Softmax, chain
from edgeconv.core.weights import init_weights
from edgeconv.export.tflite import build_float_tflite, build_int8_tflite, tflite_padding
from edgeconv.plan.planner import Budgets, plan
from edgeconv.plan.recipes import load_recipe, recipe_names
from edgeconv.quant import calibrate as cal
from edgeconv.quant import golden
from edgeconv.quant.quantize import quantize, quantize_input

PLANNER_BUDGETS = (16_000, 64_000)
MODEL_IDS = recipe_names() + [f"plan{b // 1000}k" for b in PLANNER_BUDGETS] + ["pad_mix"]
FLOAT_RTOL = 1e-4


def _pad_mix():
    """Explicit padding that is not TFLite SAME (PAD + VALID), a max pool and a spatial dense."""
    return chain(
        "pad_mix",
        InputSpec(8, 8, 3),
        [
            Conv2d("c1", filters=8, kernel=(3, 3), padding=2, activation=Activation.RELU6),  # 10x10: PAD
            Conv2d("c2", filters=8, kernel=(3, 3), padding="valid"),  # 10x10 -> 8x8
            MaxPool("mp", pool=(2, 2), stride=(1, 1), padding="same"),
            Dense("fc", units=6, activation=Activation.RELU),
            Dense("fc2", units=4),
            Softmax("sm"),
        ],
    )


def _model(model_id: str):
    if model_id == "pad_mix":
        return _pad_mix()
    if model_id.startswith("plan"):
        budget = int(model_id[4:-1]) * 1000
        return plan(InputSpec(32, 32, 3), 10, Budgets(model_bytes=budget, ram_bytes=256_000)).model
    return load_recipe(model_id)


def _quantized(analysis, weights):
    result = cal.calibrate(analysis, weights, cal.synthetic_calibration_set(analysis, 8, seed=0))
    return quantize(analysis, weights, result.ranges, result.info)


@pytest.fixture(scope="module", params=MODEL_IDS)
def case(request):
    analysis = analyze(_model(request.param))
    weights = init_weights(analysis, seed=0)
    qp = _quantized(analysis, weights)
    return analysis, weights, qp, build_int8_tflite(analysis, qp), build_float_tflite(analysis, weights)


def _interpreter(model: bytes, resolver: str = "BUILTIN_WITHOUT_DEFAULT_DELEGATES", keep=False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(
        model_content=model,
        num_threads=1,
        experimental_preserve_all_tensors=keep,
        experimental_op_resolver_type=getattr(OpResolverType, resolver),
    )
    it.allocate_tensors()
    return it


def _run(it, x):
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def _parse(model: bytes) -> fb.ModelT:
    return fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(model, 0))


def _opnames(m: fb.ModelT) -> list[str]:
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    return [names[m.operatorCodes[op.opcodeIndex].builtinCode] for op in m.subgraphs[0].operators]


def test_float_tflite_matches_the_numpy_reference(case):
    analysis, weights, _, _, model = case
    x = cal.synthetic_calibration_set(analysis, 2, seed=7)
    ref = reference.run(analysis, weights, x)[analysis.model.output]
    for resolver in ("BUILTIN_REF", "BUILTIN_WITHOUT_DEFAULT_DELEGATES", "AUTO"):
        it = _interpreter(model, resolver)
        got = np.concatenate([_run(it, x[i : i + 1]) for i in range(x.shape[0])]).reshape(ref.shape)
        scale = float(np.max(np.abs(ref)))
        assert np.max(np.abs(got - ref)) <= FLOAT_RTOL * scale, resolver


def test_float_layer_outputs_match_the_reference(case):
    """Tensor names are layer names: every layer's float output can be located and checked."""
    analysis, weights, _, _, model = case
    x = cal.synthetic_calibration_set(analysis, 1, seed=8)
    ref = reference.run(analysis, weights, x, keep_all=True)
    it = _interpreter(model, "BUILTIN_REF", keep=True)
    _run(it, x)
    index = {d["name"]: d["index"] for d in it.get_tensor_details()}
    for layer in analysis.model.layers:
        got = it.get_tensor(index[layer.name]).reshape(ref[layer.name].shape)
        assert np.max(np.abs(got - ref[layer.name])) <= FLOAT_RTOL * max(float(np.max(np.abs(ref[layer.name]))), 1e-6)


def test_int8_tflite_io_and_tensors(case):
    analysis, _, qp, model, _ = case
    it = _interpreter(model)
    spec = analysis.model.input
    (inp,), (out,) = it.get_input_details(), it.get_output_details()
    assert (
        inp["name"] == INPUT
        and inp["dtype"] == np.int8
        and list(inp["shape"]) == [1, spec.height, spec.width, spec.channels]
    )
    assert inp["quantization"] == (np.float32(qp.activations[INPUT].scale[0]), qp.activations[INPUT].zero_point[0])
    assert out["name"] == analysis.model.output and out["dtype"] == np.int8
    m = _parse(model)
    ops = _opnames(m)
    assert "QUANTIZE" not in ops and "DEQUANTIZE" not in ops
    tensors = {t.name.decode(): t for t in m.subgraphs[0].tensors}
    for layer in analysis.model.layers:
        t = tensors[layer.name]
        tq = qp.activations[layer.name]
        assert t.type == fb.TensorType.INT8
        assert list(t.quantization.scale) == [tq.scale[0]] and list(t.quantization.zeroPoint) == [tq.zero_point[0]]
        if layer.name in qp.weights:
            w, b = tensors[f"{layer.name}.weight"], tensors[f"{layer.name}.bias"]
            assert w.type == fb.TensorType.INT8 and b.type == fb.TensorType.INT32
            assert w.quantization.quantizedDimension == (3 if layer.op == "depthwise_conv2d" else 0)
            assert list(w.quantization.scale) == list(qp.weights[layer.name].scale)
            assert list(b.quantization.scale) == list(qp.biases[layer.name].scale)
            data = np.frombuffer(bytes(m.buffers[w.buffer].data), np.int8).reshape(qp.q_weights[layer.name].shape)
            np.testing.assert_array_equal(data, qp.q_weights[layer.name])
    # runs on LiteRT and TFLM
    x_q = quantize_input(cal.synthetic_calibration_set(analysis, 1, seed=9), qp.activations[INPUT])
    y = _run(it, x_q)
    assert y.dtype == np.int8
    pytest.importorskip("tflite_micro")
    from tflite_micro.python.tflite_micro import runtime

    micro = runtime.Interpreter.from_bytes(model, arena_size=512 * 1024)
    micro.set_input(x_q, 0)
    micro.invoke()
    assert micro.get_output(0).shape == y.shape


def test_ops_and_padding_choice(case):
    analysis, _, _, model, float_model = case
    expected = []
    for layer, info in zip(analysis.model.layers, analysis.layers):
        if layer.op in ("conv2d", "depthwise_conv2d") and tflite_padding(info, layer.kernel, layer.stride) == "PAD":
            expected.append("PAD")
        if layer.op == "dense" and info.in_shape[0] * info.in_shape[1] > 1:
            expected.append("RESHAPE")
        expected.append(golden.TFLITE_OP[layer.op])
    assert _opnames(_parse(model)) == expected
    assert _opnames(_parse(float_model)) == expected


def test_pad_mix_uses_pad_then_valid():
    analysis = analyze(_pad_mix())
    assert tflite_padding(analysis.info("c1"), (3, 3), (1, 1)) == "PAD"
    ops = _opnames(_parse(build_float_tflite(analysis, init_weights(analysis, 0))))
    assert ops[:2] == ["PAD", "CONV_2D"] and "RESHAPE" in ops


def test_vgg_explicit_padding_one_is_same():
    analysis = analyze(load_recipe("vgg_small"))
    assert tflite_padding(analysis.info("conv1"), (3, 3), (1, 1)) == "SAME"


def test_reexport_is_byte_identical(case):
    analysis, _weights, _, model, float_model = case
    qp2 = _quantized(analysis, init_weights(analysis, seed=0))
    assert build_int8_tflite(analysis, qp2) == model
    assert build_float_tflite(analysis, init_weights(analysis, seed=0)) == float_model


def test_pad_mix_int8_matches_golden_on_litert_ref():
    """PAD (zero point fill), SAME max pool and RESHAPE -> FULLY_CONNECTED, 0 LSB."""
    analysis = analyze(_pad_mix())
    qp = _quantized(analysis, init_weights(analysis, 0))
    model = build_int8_tflite(analysis, qp)
    x_q = quantize_input(cal.synthetic_calibration_set(analysis, 4, seed=3), qp.activations[INPUT])
    for runtime, resolver in (
        ("litert_ref", "BUILTIN_REF"),
        ("litert_builtin", "BUILTIN_WITHOUT_DEFAULT_DELEGATES"),
        ("litert_xnnpack", "AUTO"),
    ):
        it = _interpreter(model, resolver)
        got = np.concatenate([_run(it, x_q[i : i + 1]) for i in range(4)])
        want = golden.run_int8(analysis, qp, x_q, runtime)[analysis.model.output]
        assert np.array_equal(got.reshape(want.shape), want), runtime


def test_bad_inputs():
    analysis = analyze(load_recipe("vgg_small"))
    weights = init_weights(analysis, 0)
    qp = _quantized(analysis, weights)
    with pytest.raises(ValueError, match="no activation parameters"):
        build_int8_tflite(analysis, type(qp)(activations={INPUT: qp.activations[INPUT]}))
    with pytest.raises(ValueError, match="no weights"):
        build_float_tflite(analysis, {})
    # an average pool whose padding is not SAME (a max pool gets a PADV2 with the lowest value)
    bad = analyze(chain("bad", InputSpec(8, 8, 1), [AvgPool("p", pool=(3, 3), stride=(1, 1), padding=2)]))
    with pytest.raises(ValueError, match="neither SAME nor VALID"):
        build_float_tflite(bad, {})
