"""The TFLite writer: valid flatbuffers that LiteRT and TFLM load, deterministic bytes."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flatbuffers")
pytest.importorskip("ai_edge_litert")

from ai_edge_litert import schema_py_generated as fb

from edgeconv.export.tflite_writer import TfliteOp, TfliteTensor, build_tflite


def _float_conv_model(seed=0, with_bias=True, padding="VALID", stride=1, activation="NONE"):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    out_hw = 3 if padding == "VALID" else 5
    tensors = [
        TfliteTensor("x", (1, 5, 5, 2), "float32"),
        TfliteTensor("w", w.shape, "float32", w),
        TfliteTensor("b", (4,), "float32", b),
        TfliteTensor("y", (1, out_hw, out_hw, 4), "float32"),
    ]
    ops = [
        TfliteOp(
            "CONV_2D",
            ("x", "w", "b" if with_bias else ""),
            ("y",),
            (("padding", padding), ("stride_w", stride), ("stride_h", stride), ("fused_activation", activation)),
        )
    ]
    return tensors, ops, w, b


def _numpy_conv_valid(x, w, b):
    """Direct float64 valid convolution, NHWC input, (Cout, KH, KW, Cin) weights."""
    _, h, wd, _ = x.shape
    cout, kh, kw, _ = w.shape
    out = np.zeros((1, h - kh + 1, wd - kw + 1, cout))
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            out[0, i, j] = np.einsum("hwc,ohwc->o", x[0, i : i + kh, j : j + kw].astype(np.float64), w)
    return out + (0.0 if b is None else b)


def _run_litert(model, x):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(
        model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def _parse(model: bytes) -> fb.ModelT:
    return fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(model, 0))


@pytest.mark.parametrize("activation", ["NONE", "RELU"])
def test_float_conv_runs_on_litert_and_matches_numpy(activation):
    tensors, ops, w, b = _float_conv_model(activation=activation)
    model = build_tflite(tensors, ops, ["x"], ["y"])
    x = np.random.default_rng(1).standard_normal((1, 5, 5, 2)).astype(np.float32)
    expected = _numpy_conv_valid(x, w, b)
    if activation == "RELU":
        expected = np.maximum(expected, 0.0)
    np.testing.assert_allclose(_run_litert(model, x), expected, atol=1e-5, rtol=0)


def test_litert_conv_requires_a_bias():
    """An absent bias is written as −1, but LiteRT 2.3's CONV_2D refuses it at prepare:
    exporters must always emit a (zero) bias."""
    tensors, ops, _, _ = _float_conv_model(with_bias=False)
    model = build_tflite(tensors, ops, ["x"], ["y"])
    with pytest.raises(RuntimeError):
        _run_litert(model, np.zeros((1, 5, 5, 2), np.float32))


def test_float_conv_runs_on_tflm():
    pytest.importorskip("tflite_micro")
    from tflite_micro.python.tflite_micro import runtime

    tensors, ops, w, b = _float_conv_model()
    model = build_tflite(tensors, ops, ["x"], ["y"])
    x = np.random.default_rng(2).standard_normal((1, 5, 5, 2)).astype(np.float32)
    it = runtime.Interpreter.from_bytes(model, arena_size=16 * 1024)
    it.set_input(x, 0)
    it.invoke()
    np.testing.assert_allclose(it.get_output(0), _numpy_conv_valid(x, w, b), atol=1e-5, rtol=0)


def test_reexport_is_byte_identical():
    first = build_tflite(*_float_conv_model()[:2], ["x"], ["y"])
    second = build_tflite(*_float_conv_model()[:2], ["x"], ["y"])
    assert first == second
    assert first[4:8] == b"TFL3"


def test_model_structure():
    tensors, ops, w, _ = _float_conv_model(with_bias=False)
    model = _parse(build_tflite(tensors, ops, ["x"], ["y"], description="unit"))
    assert model.version == 3 and model.description == b"unit"
    assert model.buffers[0].data is None  # empty sentinel
    graph = model.subgraphs[0]
    assert [graph.tensors[i].name for i in graph.inputs] == [b"x"]
    assert list(graph.operators[0].inputs) == [0, 1, -1]  # absent bias
    assert graph.tensors[0].buffer == 0 and graph.tensors[1].buffer == 1
    np.testing.assert_array_equal(np.frombuffer(bytes(model.buffers[1].data), np.float32).reshape(w.shape), w)
    code = model.operatorCodes[0]
    assert code.builtinCode == fb.BuiltinOperator.CONV_2D and code.version == 3


def test_constant_buffers_are_16_byte_aligned():
    rng = np.random.default_rng(3)
    tensors = [TfliteTensor("x", (1, 7), "int8", scale=(0.1,), zero_point=(0,))]
    for i, n in enumerate((1, 3, 7, 13)):  # odd sizes would misalign an unaligned layout
        tensors.append(TfliteTensor(f"c{i}", (n,), "int8", rng.integers(-5, 5, n).astype(np.int8)))
    model = build_tflite(tensors, [], ["x"], ["x"])
    parsed = fb.Model.GetRootAsModel(model, 0)
    for i in range(1, parsed.BuffersLength()):
        buf = parsed.Buffers(i)
        start = buf._tab.Vector(buf._tab.Offset(4))  # field "data"
        assert start % 16 == 0, (i, start)


def test_quantization_is_written_per_channel():
    w = np.ones((2, 1, 1, 3), np.int8)
    tensors = [TfliteTensor("w", w.shape, "int8", w, (0.5, 0.25), (0, 0), 0)]
    q = _parse(build_tflite(tensors, [], ["w"], ["w"])).subgraphs[0].tensors[0].quantization
    assert list(q.scale) == [0.5, 0.25] and list(q.zeroPoint) == [0, 0]
    assert q.quantizedDimension == 0


def test_unknown_opcode_and_option_are_named():
    tensors = [TfliteTensor("x", (1, 4), "float32"), TfliteTensor("y", (1, 4), "float32")]
    with pytest.raises(ValueError, match="LOGISTIC"):
        build_tflite(tensors, [TfliteOp("LOGISTIC", ("x",), ("y",))], ["x"], ["y"])
    with pytest.raises(ValueError, match="stride_w"):
        build_tflite(tensors, [TfliteOp("SOFTMAX", ("x",), ("y",), (("stride_w", 2),))], ["x"], ["y"])
    with pytest.raises(ValueError, match="bogus"):
        build_tflite(tensors, [TfliteOp("ADD", ("x", "x"), ("y",), (("bogus", 1),))], ["x"], ["y"])
    with pytest.raises(ValueError, match="nope"):
        build_tflite(tensors, [TfliteOp("ADD", ("x", "nope"), ("y",))], ["x"], ["y"])
