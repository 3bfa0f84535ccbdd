"""The TFLite importer: the MLPerf Tiny ResNet-8 files as published (float and int8), edgeconv's
own exports round-tripped, and one-line refusals of what it cannot take."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert", reason="the TFLite importer needs ai-edge-litert (pip install 'edgeconv[arm]')")

from edgeconv.core.errors import InputError
from edgeconv.core.graph import analyze
from edgeconv.core.weights import init_weights
from edgeconv.export.tflite import build_float_tflite, build_int8_tflite
from edgeconv.frontends.fidelity import FLOAT_GOAL, check_fidelity, seeded_inputs
from edgeconv.frontends.tflite import import_tflite
from edgeconv.plan.recipes import load_recipe

MLPERF = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "mlperf_tiny"
FLOAT_FILE = MLPERF / "ic_resnet8_float32.tflite"
INT8_FILE = MLPERF / "ic_resnet8_int8.tflite"
MLPERF_OPS = {"conv2d": 9, "add": 3, "avg_pool": 1, "dense": 1, "softmax": 1}


def photo_crops(n: int, seed: int) -> np.ndarray:
    """32x32 crops of sklearn's two sample photos at seeded positions, kept in 0..255."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng([seed, 32])
    out = np.empty((n, 32, 32, 3), np.float32)
    for i in range(n):
        photo = photos[i % len(photos)]
        y, x = rng.integers(photo.shape[0] - 32), rng.integers(photo.shape[1] - 32)
        out[i] = photo[y : y + 32, x : x + 32]
    return out


def _need_mlperf():
    if not FLOAT_FILE.is_file() or not INT8_FILE.is_file():
        pytest.skip(f"MLPerf Tiny files not found under {MLPERF} (../shared/models/mlperf_tiny)")


def _ops(model) -> dict[str, int]:
    counts: dict[str, int] = {}
    for layer in model.layers:
        counts[layer.op] = counts.get(layer.op, 0) + 1
    return counts


@pytest.fixture(scope="module")
def crops():
    return photo_crops(8, seed=3)


def test_mlperf_float_file_imports_exactly(crops):
    _need_mlperf()
    imported = import_tflite(FLOAT_FILE)
    analysis = analyze(imported.model)
    assert imported.source_format == "tflite" and imported.quant is None and imported.original_artifact is None
    assert _ops(imported.model) == MLPERF_OPS
    # MLPerf Tiny's ResNet-8: 1x1 projection shortcuts, BN folded
    assert (analysis.params, analysis.macs) == (77_706, 12_501_632)
    assert analysis.model.input.shape == (32, 32, 3) and analysis.output_shape == (1, 1, 10)
    # the stride-2 3x3 SAME convs pad (top, left, bottom, right) = (0, 0, 1, 1), as TFLite does
    strided = [
        info
        for layer, info in zip(analysis.model.layers, analysis.layers)
        if getattr(layer, "stride", (1, 1)) == (2, 2)
    ]
    assert strided and all(info.pads in ((0, 0, 1, 1), (0, 0, 0, 0)) for info in strided)
    fid = check_fidelity(imported, FLOAT_FILE.read_bytes(), analysis, crops, "photo crops")
    assert fid.kind == "relative" and set(fid.layers) == {layer.name for layer in analysis.model.layers}
    assert max(fid.layers.values()) <= FLOAT_GOAL, fid.layers


def test_mlperf_int8_file_keeps_its_quantization_and_matches_the_golden(crops):
    _need_mlperf()
    imported = import_tflite(INT8_FILE)
    analysis = analyze(imported.model)
    qp = imported.quant
    assert imported.source_format == "tflite-int8" and imported.original_artifact == INT8_FILE.read_bytes()
    assert _ops(imported.model) == MLPERF_OPS
    # the README's published parameters, read exactly
    assert (qp.activations["input"].scale, qp.activations["input"].zero_point) == ((1.0,), (-128,))
    out = analysis.model.output
    assert (qp.activations[out].scale, qp.activations[out].zero_point) == ((1.0 / 256.0,), (-128,))
    # conv weights per channel, the FC per tensor (as the converter wrote them); integers kept
    convs = [layer.name for layer in analysis.model.layers if layer.op == "conv2d"]
    assert all(len(qp.weights[name].scale) == qp.q_weights[name].shape[0] for name in convs)
    dense = next(layer.name for layer in analysis.model.layers if layer.op == "dense")
    assert len(qp.weights[dense].scale) == 1 and qp.q_weights[dense].dtype == np.int8
    assert qp.q_weights[dense].shape == (10, 64) and qp.q_biases[dense].dtype == np.int32
    # float weights are the dequantized integers
    w = imported.weights[f"{dense}.weight"]
    np.testing.assert_array_equal(w, qp.q_weights[dense].astype(np.float32) * np.float32(qp.weights[dense].scale[0]))
    # every IR layer is found in the file, under the file's own tensor names
    assert set(imported.tensor_names) == {layer.name for layer in analysis.model.layers}
    fid = check_fidelity(imported, INT8_FILE.read_bytes(), analysis, crops, "photo crops")
    assert fid.kind == "lsb" and fid.layers and max(fid.layers.values()) == 0, fid.layers


@pytest.mark.parametrize("recipe", ["ds_cnn", "resnet8"])
def test_edgeconv_float_export_round_trips(recipe, tmp_path):
    analysis = analyze(load_recipe(recipe))
    weights = init_weights(analysis, seed=4)
    path = tmp_path / "model.float.tflite"
    path.write_bytes(build_float_tflite(analysis, weights))
    imported = import_tflite(path)
    back = analyze(imported.model)
    # the same layers, shapes and pads (the IR may spell an equal padding differently: P=1 / 'same')
    assert [(i.name, i.op, i.inputs, i.in_shape, i.out_shape, i.pads, i.params, i.macs) for i in back.layers] == [
        (i.name, i.op, i.inputs, i.in_shape, i.out_shape, i.pads, i.params, i.macs) for i in analysis.layers
    ]
    assert set(imported.weights) == set(weights)
    assert all(np.array_equal(imported.weights[k], weights[k]) for k in weights)
    fid = check_fidelity(imported, path.read_bytes(), back, seeded_inputs(back, 4, 0), "seeded")
    assert fid.worst <= FLOAT_GOAL


def test_edgeconv_int8_export_round_trips(tmp_path):
    from edgeconv.quant.calibrate import calibrate, synthetic_calibration_set
    from edgeconv.quant.quantize import quantize

    analysis = analyze(load_recipe("ds_cnn"))
    weights = init_weights(analysis, seed=5)
    cal = calibrate(analysis, weights, synthetic_calibration_set(analysis, 16, 0))
    qp = quantize(analysis, weights, cal.ranges, cal.info)
    path = tmp_path / "model.int8.tflite"
    path.write_bytes(build_int8_tflite(analysis, qp))
    imported = import_tflite(path)
    got = imported.quant
    assert got.activations == qp.activations
    for name in qp.q_weights:
        assert got.weights[name].scale == qp.weights[name].scale
        np.testing.assert_array_equal(got.q_weights[name], qp.q_weights[name])
        np.testing.assert_array_equal(got.q_biases[name], qp.q_biases[name])
    fid = check_fidelity(imported, path.read_bytes(), analyze(imported.model), seeded_inputs(analysis, 4, 0), "seeded")
    assert max(fid.layers.values()) == 0


FIXTURES = Path(__file__).resolve().parent / "data" / "import"
TF_FIXTURES = ["keras_cnn", "keras_flatten", "keras_concat", "keras_autoencoder"]  # scripts/make_tflite_fixtures.py


@pytest.mark.parametrize("name", TF_FIXTURES)
def test_tf_converter_files_import_with_fidelity(name):
    """The TF converter's float and full-integer files of the same Keras model: the float IR
    matches LiteRT and Keras itself, the int8 IR's golden matches LiteRT-ref at every layer."""
    from edgeconv.core import reference
    from edgeconv.core.ir import LAYER_TYPES

    data = np.load(FIXTURES / f"{name}_tflite.npz")
    x = data["inputs"]
    if x.ndim == 2:  # a vector input [1, N] is the IR's 1 x 1 x N map
        x = x.reshape(len(x), 1, 1, -1)
    for suffix in ("", "_int8"):
        path = FIXTURES / f"{name}{suffix}.tflite"
        if name == "keras_concat" and "concat" not in LAYER_TYPES:
            with pytest.raises(InputError, match="CONCATENATION"):
                import_tflite(path)
            continue
        imported = import_tflite(path)
        analysis = analyze(imported.model)
        fid = check_fidelity(imported, path.read_bytes(), analysis, x, "fixture inputs")
        if suffix:
            assert imported.quant is not None and max(fid.layers.values()) == 0, fid.layers
        else:
            assert max(fid.layers.values()) <= FLOAT_GOAL, fid.layers
            y = reference.run(analysis, imported.weights, x)[analysis.model.output].reshape(len(x), -1)
            keras = data["outputs"].reshape(len(x), -1)
            assert np.abs(y - keras).max() <= FLOAT_GOAL * np.abs(keras).max()
    if name == "keras_cnn":  # ZeroPadding2D + VALID stride-2 conv: the PAD kept per side
        first = analyze(import_tflite(FIXTURES / "keras_cnn.tflite").model).layers[0]
        assert first.pads == (1, 1, 1, 1) and first.out_shape == (10, 8, 8)


# -- refusals --------------------------------------------------------------------------------------


def _edit(data: bytes, change) -> bytes:
    """The .tflite with its object-API model changed by `change(model_t, fb)`, repacked."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    model = fb.ModelT.InitFromObj(fb.Model.GetRootAs(data, 0))
    change(model, fb)
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _opcode(model, fb, op_index, name):
    sg = model.subgraphs[0]
    model.operatorCodes[sg.operators[op_index].opcodeIndex].builtinCode = getattr(fb.BuiltinOperator, name)
    model.operatorCodes[sg.operators[op_index].opcodeIndex].deprecatedBuiltinCode = min(
        getattr(fb.BuiltinOperator, name), 127
    )


def _set_input(model, fb, **fields):
    t = model.subgraphs[0].tensors[model.subgraphs[0].inputs[0]]
    for k, v in fields.items():
        setattr(t, k, v)


def _dilate(model, fb):
    model.subgraphs[0].operators[0].builtinOptions.dilationWFactor = 2


def _huge_tensor_count(data: bytes) -> bytes:
    """The file with its tensor vector's length set to 2^31 - 1 (a loop bomb if unchecked)."""
    from ai_edge_litert import schema_py_generated as fb

    sg = fb.Model.GetRootAs(data, 0).Subgraphs(0)
    start = sg._tab.Vector(sg._tab.Offset(4))  # field 0 (tensors): its first element
    patched = bytearray(data)
    patched[start - 4 : start] = (2**31 - 1).to_bytes(4, "little")
    return bytes(patched)


REFUSALS = {
    "not_tflite": (lambda d: b"\x08\x07\x12\x07pytorch" + bytes(64), "not a TFLite file"),
    "empty": (lambda d: b"", "not a TFLite file"),
    "truncated": (lambda d: d[: len(d) // 3], "corrupt or truncated"),
    "corrupt_vector_length": (_huge_tensor_count, "corrupt or truncated"),
    "unknown_op": (lambda d: _edit(d, lambda m, fb: _opcode(m, fb, 15, "TANH")), "TANH"),
    "int16_input": (lambda d: _edit(d, lambda m, fb: _set_input(m, fb, type=fb.TensorType.INT16)), "int16"),
    "dynamic_spatial": (lambda d: _edit(d, lambda m, fb: _set_input(m, fb, shapeSignature=[-1, -1, 32, 3])), "dynamic"),
    "batch_2": (lambda d: _edit(d, lambda m, fb: _set_input(m, fb, shape=[2, 32, 32, 3])), "batch 2"),
    "dilation": (lambda d: _edit(d, _dilate), "dilation"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_are_one_line_input_errors(case, tmp_path):
    _need_mlperf()
    make, needle = REFUSALS[case]
    path = tmp_path / f"{case}.tflite"
    path.write_bytes(make(FLOAT_FILE.read_bytes()))
    with pytest.raises(InputError) as err:
        import_tflite(path)
    message = str(err.value)
    assert needle in message and "\n" not in message and path.name in message, message
    if case == "unknown_op":  # names the op, its tensor and what is supported
        assert "Identity" in message and "CONV_2D" in message and "SOFTMAX" in message
