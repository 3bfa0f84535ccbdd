"""ONNX importer on the committed fixtures (tests/data/import/, made by
scripts/make_import_fixtures.py with PyTorch, tf2onnx and ORT's quantize_static): every file
imports, the imported model's float reference equals the source framework's committed outputs
and ONNX Runtime on the source file, a QDQ file's scales and zero points are read exactly, and
each unsupported input is one line, exit 2. No torch or TensorFlow is needed here."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from edgeconv.core import reference
from edgeconv.core.errors import InputError
from edgeconv.core.graph import analyze
from edgeconv.core.ir import LAYER_TYPES, Conv2d, Dense
from edgeconv.frontends.onnx import import_onnx

ort = pytest.importorskip("onnxruntime", reason="the import fidelity checks run the source on onnxruntime")

DATA = Path(__file__).resolve().parent / "data" / "import"
MANIFEST = json.loads((DATA / "fixtures.json").read_text())
NEEDS_CONCAT = {"pad_concat"}
FLOAT = sorted(n for n in MANIFEST if not n.startswith("qdq_") and (n not in NEEDS_CONCAT or "concat" in LAYER_TYPES))
GOAL = 1e-5


@pytest.fixture(scope="module")
def imported():
    """Every fixture imported once."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = import_onnx(DATA / f"{name}.onnx")
        return cache[name]

    return get


def npz(name):
    with np.load(DATA / f"{name}.npz") as data:
        return {k: data[k] for k in data.files}


def to_nhwc(x: np.ndarray, layout: str) -> np.ndarray:
    if layout == "NCHW":
        return x.transpose(0, 2, 3, 1)
    if layout == "vector":
        return x.reshape(x.shape[0], 1, 1, -1)
    return x


def ir_output_in_source_layout(out: np.ndarray, want_shape: tuple[int, ...], layout: str) -> np.ndarray:
    if len(want_shape) == 4 and layout == "NCHW":
        out = out.transpose(0, 3, 1, 2)
    return out.reshape(want_shape)


def rel_err(got, want) -> float:
    return float(np.abs(np.asarray(got, np.float64) - want).max() / max(float(np.abs(want).max()), 1e-30))


def ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


def test_fixtures_are_small_and_listed():
    for name, entry in MANIFEST.items():
        for f in entry["files"] + [f"{name}.npz"]:
            assert (DATA / f).stat().st_size < 200_000, f
    assert {"keras_tf2onnx", "qdq_residual", "conv_bn_relu", "conv_bn_relu_legacy", "mlp"} <= set(MANIFEST)
    assert (DATA / "conv_bn_relu.onnx.data").is_file()  # the dynamo exporter's default side file


@pytest.mark.parametrize("name", FLOAT)
def test_float_import_matches_source_framework_and_ort(name, imported):
    imp = imported(name)
    layout = MANIFEST[name]["layout"]
    assert imp.source_format == "onnx" and imp.quant is None and imp.input_layout == layout
    data = npz(name)
    x, want = data["inputs"], data["outputs"]
    analysis = analyze(imp.model)
    got = reference.run(analysis, imp.weights, to_nhwc(x, layout))[imp.model.output]
    got = ir_output_in_source_layout(got, want.shape, layout)
    assert rel_err(got, want) <= GOAL, f"{name}: IR vs {MANIFEST[name]['source']}"
    assert rel_err(got, ort_run(DATA / f"{name}.onnx", x)) <= GOAL, f"{name}: IR vs ONNX Runtime"
    assert all(key.endswith((".weight", ".bias")) for key in imp.weights)
    assert "BatchNormalization" not in {layer.op for layer in imp.model.layers}


def test_ops_and_canonicalization_notes(imported):
    ops = {name: [layer.op for layer in imported(name).model.layers] for name in FLOAT}
    assert ops["keras_tf2onnx"] == ["conv2d", "depthwise_conv2d", "conv2d", "max_pool", "dense", "softmax"]
    assert ops["gap_linear"] == ops["gap_linear_legacy"] == ["conv2d", "global_avg_pool", "dense", "softmax"]
    assert ops["mlp"] == ["dense"] * 4
    assert ops["residual"].count("add") == 2
    relu6 = imported("relu6").model.layers
    assert [layer.activation.value for layer in relu6] == ["relu6", "relu6", "none"]
    assert any("BatchNormalization folded" in n for n in imported("bn_unfolded").notes)
    keras = imported("keras_tf2onnx")
    assert keras.input_layout == "NHWC" and any("dynamic batch" in n for n in keras.notes)
    assert any("folded into its weights" in n for n in keras.notes)  # tf2onnx's Mul/Add after depthwise
    assert imported("mlp").model.input.shape == (1, 1, 64)  # a vector input is a 1x1xN map
    assert [layer.name for layer in imported("stride2_pad1").model.layers] == ["c1.0", "c2.0"]  # PyTorch names


def test_pytorch_stride2_padding1_is_kept_per_side(imported):
    imp = imported("stride2_pad1")
    convs = [layer for layer in imp.model.layers if isinstance(layer, Conv2d)]
    assert [c.padding for c in convs] == [(1, 1, 1, 1), (1, 1, 1, 1)]
    analysis = analyze(imp.model)
    assert [info.out_shape for info in analysis.layers] == [(4, 5, 8), (2, 3, 8)]  # W=8 floors, H=9 tiles
    # 'same' pads [0, 0, 1, 1] on the even side: a different result, which the fidelity check sees
    same = replace(imp.model, layers=tuple(replace(c, padding="same") for c in imp.model.layers))
    data = npz("stride2_pad1")
    x = to_nhwc(data["inputs"], "NCHW")
    got = reference.run(analyze(same), imp.weights, x)[imp.model.output].transpose(0, 3, 1, 2)
    assert rel_err(got, data["outputs"]) > 1e-2


@pytest.mark.parametrize("name", ["flatten_nonsquare", "flatten_nonsquare_legacy"])
def test_flatten_of_a_non_square_map_permutes_dense_weights(name, imported):
    imp = imported(name)
    analysis = analyze(imp.model)
    dense = next(layer for layer in imp.model.layers if isinstance(layer, Dense))
    assert analysis.info(dense.name).in_shape == (4, 6, 4)  # W=4, H=6, C=4: non-square
    proto = onnx.load(str(DATA / f"{name}.onnx"))
    w_file = next(numpy_helper.to_array(t) for t in proto.graph.initializer if t.name == "fc.weight")
    w_ir = imp.weights[f"{dense.name}.weight"]
    # IR column (h, w, c) holds the file's column (c, h, w)
    assert np.array_equal(w_ir, w_file.reshape(10, 4, 6, 4).transpose(0, 2, 3, 1).reshape(10, -1))
    # without the permutation the imported model would be wrong: the test can tell
    data = npz(name)
    x = to_nhwc(data["inputs"], "NCHW")
    unpermuted = {**imp.weights, f"{dense.name}.weight": w_file}
    assert rel_err(reference.run(analysis, unpermuted, x)[dense.name].reshape(4, -1), data["outputs"]) > 1e-2


def test_external_data_is_resolved_beside_the_file_and_missing_data_refused(tmp_path, imported):
    assert imported("conv_bn_relu").weights["c1.0.weight"].shape == (8, 3, 3, 3)
    shutil.copy(DATA / "conv_bn_relu.onnx", tmp_path / "m.onnx")
    with pytest.raises(InputError, match=r"external data file 'conv_bn_relu.onnx.data' .* not found") as err:
        import_onnx(tmp_path / "m.onnx")
    assert "\n" not in str(err.value)
    (tmp_path / "conv_bn_relu.onnx.data").write_bytes((DATA / "conv_bn_relu.onnx.data").read_bytes()[:100])
    with pytest.raises(InputError, match="truncated side file"):
        import_onnx(tmp_path / "m.onnx")
    # a location outside the model's folder is refused before anything is read
    proto = onnx.load(str(DATA / "conv_bn_relu.onnx"), load_external_data=False)
    for t in proto.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = "../secret.data"
    (tmp_path / "escape.onnx").write_bytes(proto.SerializeToString())
    with pytest.raises(InputError, match="outside the model's folder"):
        import_onnx(tmp_path / "escape.onnx")


# -- QDQ ------------------------------------------------------------------------------------------


def _file_qdq(path: Path):
    """The file's own activation Q params and weight/bias DQ initializers, read directly."""
    proto = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    acts, consts = {}, {}
    for node in proto.graph.node:
        if node.op_type == "QuantizeLinear":
            acts[node.input[0]] = (float(inits[node.input[1]]), int(inits[node.input[2]]), inits[node.input[2]].dtype)
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            consts[node.output[0]] = (inits[node.input[0]], inits[node.input[1]])
    return proto, acts, consts


QDQ = sorted(n for n in MANIFEST if n.startswith("qdq_"))


@pytest.mark.parametrize("name", QDQ)
def test_qdq_quant_params_equal_the_file(name, imported):
    imp = imported(name)
    qp = imp.quant
    assert imp.source_format == "onnx-qdq" and qp is not None
    assert imp.original_artifact == (DATA / f"{name}.onnx").read_bytes()
    proto, acts, consts = _file_qdq(DATA / f"{name}.onnx")
    analysis = analyze(imp.model)
    # activations: the same scale, the uint8 zero point stored as zp - 128 (the same real grid)
    s, z, dtype = acts[proto.graph.input[0].name]
    assert dtype == np.uint8 and qp.activations["input"].scale == (float(np.float32(s)),)
    assert qp.activations["input"].zero_point == (z - 128,)
    by_output = {t: layer for layer, t in imp.tensor_names.items()}
    weighted = [n for n in proto.graph.node if n.op_type in ("Conv", "Gemm")]
    assert len(qp.q_weights) == len(weighted) > 0
    for node in weighted:
        layer = by_output[node.output[0]]
        q, scale = consts[node.input[1]]
        if node.op_type == "Conv":
            want = q.transpose(0, 2, 3, 1)  # OIHW -> (K, KH, KW, C)
        else:  # Gemm transB=1: (units, n_in), columns from C,H,W to H,W,C
            w, h, c = analysis.info(layer).in_shape
            want = q.reshape(q.shape[0], c, h, w).transpose(0, 2, 3, 1).reshape(q.shape[0], -1)
        assert np.array_equal(qp.q_weights[layer], want)
        assert qp.weights[layer].scale == tuple(float(v) for v in scale) and qp.weights[layer].axis == 0
        qb, b_scale = consts[node.input[2]]
        assert np.array_equal(qp.q_biases[layer], qb)
        assert qp.biases[layer].scale == tuple(float(v) for v in b_scale)
        assert qp.biases[layer].dtype == "int32" and set(qp.biases[layer].zero_point) == {0}
    for layer in imp.model.layers:  # every layer's output quantization is the file's
        tensors = [t for t, a in acts.items() if t == imp.tensor_names[layer.name]]
        if tensors:
            s, z, _ = acts[tensors[0]]
            assert qp.activations[layer.name].scale == (s,) and qp.activations[layer.name].zero_point == (z - 128,)


@pytest.mark.parametrize("name", QDQ)
def test_qdq_golden_equals_ort_on_the_file(name, imported):
    from edgeconv.quant.golden import run_int8
    from edgeconv.quant.quantize import quantize_input

    imp = imported(name)
    qp = imp.quant
    data = npz(name)
    x = to_nhwc(data["inputs"], MANIFEST[name]["layout"])
    out = qp.activations[imp.model.output]
    file_q = np.rint(data["outputs"] / out.scale[0]).astype(np.int64) + out.zero_point[0]  # exact: DQ of ints
    golden = run_int8(analyze(imp.model), qp, quantize_input(x, qp.activations["input"], "int8"), "ort_cpu")
    got = golden[imp.model.output].astype(np.int64)
    got = got.transpose(0, 3, 1, 2) if file_q.ndim == 4 else got.reshape(file_q.shape)
    assert np.array_equal(got, file_q)


def test_qdq_relus_dropped_by_ort_come_back_fused(imported):
    layers = imported("qdq_residual").model.layers
    assert (
        sum(getattr(layer, "activation", None) is not None and layer.activation.value == "relu" for layer in layers)
        == 4
    )


# -- refusals -------------------------------------------------------------------------------------


def _model(nodes, inits, in_shape, out_shape, opset=17):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _conv(**attrs):
    w = np.ones((4, 4 // attrs.get("group", 1), 3, 3), np.float32)
    return [helper.make_node("Conv", ["x", "w"], ["y"], name="c", kernel_shape=[3, 3], **attrs)], {"w": w}


REFUSALS = {
    "dilation": (lambda: _model(*_conv(dilations=[2, 2]), [1, 4, 9, 9], None), r"node 'c' \(Conv\) has dilations"),
    "groups": (lambda: _model(*_conv(group=2), [1, 4, 9, 9], None), r"node 'c' \(Conv\) has group 2"),
    "batch": (lambda: _model(*_conv(), [2, 4, 9, 9], None), "has batch 2, expected 1"),
    "dynamic_hw": (lambda: _model(*_conv(), [1, 4, "h", "w"], None), "dynamic dimension 2"),
    "ceil_mode": (
        lambda: _model(
            [helper.make_node("MaxPool", ["x"], ["y"], name="mp", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)],
            {},
            [1, 4, 9, 9],
            None,
        ),
        r"node 'mp' \(MaxPool\) has ceil_mode 1",
    ),
    "clip_range": (
        lambda: _model(
            [
                helper.make_node("Conv", ["x", "w"], ["c"], name="c", kernel_shape=[3, 3]),
                helper.make_node("Clip", ["c", "lo", "hi"], ["y"], name="clip"),
            ],
            {**_conv()[1], "lo": np.array(-1, np.float32), "hi": np.array(1, np.float32)},
            [1, 4, 9, 9],
            None,
        ),
        r"node 'clip' \(Clip\) clips to \[-1.0, 1.0\]",
    ),
    "int16_qdq": (
        lambda: _model(
            [
                helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
                helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"], name="dq"),
                helper.make_node("Relu", ["d"], ["y"], name="r"),
            ],
            {"s": np.array(0.1, np.float32), "z": np.array(0, np.int16)},
            [1, 4, 9, 9],
            None,
            opset=21,
        ),
        r"activations quantized as int16; only uint8 and int8",
    ),
    "unknown_op": (
        lambda: _model([helper.make_node("Sigmoid", ["x"], ["y"], name="sig")], {}, [1, 4, 9, 9], None),
        r"node 'sig' \(Sigmoid\) is not supported; supported ops: Conv, Relu",
    ),
}


def _write(tmp_path, name, proto) -> Path:
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(proto.SerializeToString())
    return path


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_are_one_line(case, tmp_path):
    make, pattern = REFUSALS[case]
    with pytest.raises(InputError, match=pattern) as err:
        import_onnx(_write(tmp_path, case, make()))
    assert "\n" not in str(err.value)


def test_corrupt_and_truncated_files_are_one_line(tmp_path):
    data = (DATA / "residual.onnx").read_bytes()
    cases = {"truncated": data[: len(data) // 2], "garbage": bytes(range(256)) * 8, "empty": b""}
    for name, blob in cases.items():
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(blob)
        with pytest.raises(InputError) as err:
            import_onnx(path)
        assert "\n" not in str(err.value) and path.name in str(err.value), name


def test_cli_import_refusals_exit_2_with_one_line(tmp_path):
    from edgeconv.cli import cli

    paths = [_write(tmp_path, case, REFUSALS[case][0]()) for case in ("groups", "unknown_op")]
    cut = tmp_path / "cut.onnx"
    cut.write_bytes((DATA / "residual.onnx").read_bytes()[:5000])
    missing = tmp_path / "nodata.onnx"
    shutil.copy(DATA / "conv_bn_relu.onnx", missing)
    for path in [*paths, cut, missing]:
        result = CliRunner().invoke(cli, ["import", str(path), "--out", str(tmp_path / "out")])
        assert result.exit_code == 2, (path.name, result.output)
        lines = result.stderr.strip().splitlines()
        assert lines and lines[-1].startswith("edgeconv: error: "), result.stderr
        assert "Traceback" not in result.output + result.stderr
        assert not (tmp_path / "out").exists()


# -- pools with windows smaller than the input, on ONNX Runtime's int8 kernels ------------------

POOL_CASES = {
    "avg2s2": ("avg", (2, 2), (2, 2), "valid"),
    "avg3s1": ("avg", (3, 3), (1, 1), "valid"),
    "avg3s2same": ("avg", (3, 3), (2, 2), "same"),
    "avg3s2pads": ("avg", (3, 3), (2, 2), (1, 1, 1, 1)),
    "max3s2pads": ("max", (3, 3), (2, 2), (1, 1, 1, 1)),
}


@pytest.mark.parametrize("case", sorted(POOL_CASES))
def test_pool_windows_golden_equals_ort(case):
    """QLinearAveragePool's sliding-window kernel (float32 over dequantized inputs) is
    reproduced bit for bit by the ort_cpu golden."""
    from edgeconv.core.ir import AvgPool, Conv2d, InputSpec, MaxPool, chain
    from edgeconv.core.weights import init_weights
    from edgeconv.export.onnx_qdq import build_qdq_onnx
    from edgeconv.quant import calibrate as cal
    from edgeconv.quant.golden import run_int8
    from edgeconv.quant.quantize import quantize, quantize_input

    kind, pool, stride, padding = POOL_CASES[case]
    cls = AvgPool if kind == "avg" else MaxPool
    model = chain(case, InputSpec(9, 7, 3), [Conv2d("c", 6, (3, 3), (1, 1), "same"), cls("p", pool, stride, padding)])
    analysis = analyze(model)
    weights = init_weights(analysis, seed=1)
    result = cal.calibrate(analysis, weights, cal.synthetic_calibration_set(analysis, 8, seed=0))
    qp = quantize(analysis, weights, result.ranges, result.info)
    x = cal.synthetic_calibration_set(analysis, 24, seed=5)
    x_q = quantize_input(x, qp.activations["input"], "int8")
    want = run_int8(analysis, qp, x_q, "ort_cpu")["p"].astype(np.int64)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(build_qdq_onnx(analysis, weights, qp, "uint8").SerializeToString(), so)
    got = []
    for i in range(len(x)):
        u8 = quantize_input(x[i : i + 1], qp.activations["input"], "uint8").transpose(0, 3, 1, 2)
        got.append(sess.run(None, {"input": np.ascontiguousarray(u8)})[0].astype(np.int64) - 128)
    assert np.array_equal(np.concatenate(got).transpose(0, 2, 3, 1), want)


@pytest.mark.parametrize("name", FLOAT)
def test_edgeconv_float_exports_of_imported_models_match_the_source(name, imported):
    """The per-side pads, permuted dense weights and concat survive edgeconv's own float
    exporters: float ONNX on ORT and float .tflite on LiteRT give the source's outputs."""
    pytest.importorskip("ai_edge_litert", reason="the float .tflite check runs LiteRT")
    from ai_edge_litert.interpreter import Interpreter

    from edgeconv.export.onnx_float import build_float_onnx, serialize
    from edgeconv.export.tflite import build_float_tflite

    imp = imported(name)
    layout = MANIFEST[name]["layout"]
    analysis = analyze(imp.model)
    data = npz(name)
    x, want = to_nhwc(data["inputs"], layout), data["outputs"]
    sess = ort.InferenceSession(serialize(build_float_onnx(analysis, imp.weights)), providers=["CPUExecutionProvider"])
    got = np.concatenate([sess.run(None, {"input": x[i : i + 1].transpose(0, 3, 1, 2)})[0] for i in range(len(x))])
    assert rel_err(got.reshape(want.shape), want) <= GOAL, f"{name}: edgeconv's float ONNX"
    it = Interpreter(model_content=build_float_tflite(analysis, imp.weights), num_threads=1)
    it.allocate_tensors()
    outs = []
    for i in range(len(x)):
        it.set_tensor(it.get_input_details()[0]["index"], np.ascontiguousarray(x[i : i + 1]))
        it.invoke()
        outs.append(it.get_tensor(it.get_output_details()[0]["index"]).copy())
    got = ir_output_in_source_layout(np.concatenate(outs), want.shape, layout)
    assert rel_err(got, want) <= GOAL, f"{name}: edgeconv's float .tflite"


def test_maxpool_with_non_same_pads_deploys_on_every_runtime(tmp_path):
    """PyTorch's ResNet stem pool (3x3, stride 2, padding 1) on an even map: the pads are not
    TFLite's SAME, so the .tflite gets a PADV2 with the lowest value; cpu, arm, mcu are 0 LSB."""
    pytest.importorskip("ai_edge_litert", reason="the arm target runs LiteRT")
    pytest.importorskip("tflite_micro", reason="the mcu target runs TFLite Micro")
    from edgeconv.cli import cli

    recipe = tmp_path / "stem.toml"
    recipe.write_text(
        'name = "stem"\ninput = [16, 16, 3]\n'
        '[[layers]]\nname = "c1"\nop = "conv2d"\nfilters = 8\nkernel = 3\nstride = 2\npadding = [1, 1, 1, 1]\n'
        'activation = "relu"\n'
        '[[layers]]\nname = "p1"\nop = "max_pool"\npool = 3\nstride = 2\npadding = [1, 1, 1, 1]\n'
        '[[layers]]\nname = "fc"\nop = "dense"\nunits = 4\n'
    )
    out = tmp_path / "b"
    built = CliRunner().invoke(cli, ["build", "--recipe", str(recipe), "--out", str(out)])
    assert built.exit_code == 0, built.output
    from edgeconv.core.graph import analyze as _analyze
    from edgeconv.plan.recipes import load_recipe

    info = _analyze(load_recipe(str(recipe))).info("p1")
    assert info.in_shape == (8, 8, 8) and info.out_shape == (4, 4, 8) and info.pads == (1, 1, 1, 1)
    parity = CliRunner().invoke(cli, ["parity", str(out), "--targets", "cpu,arm,mcu", "--json"])
    assert parity.exit_code == 0, parity.output
    doc = json.loads(parity.stdout)
    assert [t["deployment"]["vs_golden"]["max_lsb"] for t in doc["targets"]] == [0, 0, 0]


def test_concat_shares_one_quantization_and_runs_on_tflm(imported):
    """quantize() gives a concat and its inputs one scale and zero point (TFLM's int8
    CONCATENATION requires it); the int8 .tflite on TFLite Micro equals the tflm golden."""
    tflm = pytest.importorskip("tflite_micro.python.tflite_micro.runtime", reason="TFLite Micro runs the int8 file")
    from edgeconv.export.tflite import build_int8_tflite
    from edgeconv.quant import calibrate as cal
    from edgeconv.quant.golden import run_int8
    from edgeconv.quant.quantize import quantize, quantize_input

    imp = imported("pad_concat")
    analysis = analyze(imp.model)
    concat = next(layer for layer in imp.model.layers if layer.op == "concat")
    result = cal.calibrate(analysis, imp.weights, cal.synthetic_calibration_set(analysis, 8, seed=0))
    qp = quantize(analysis, imp.weights, result.ranges, result.info)
    assert len({qp.activations[n] for n in (concat.name, *concat.inputs)}) == 1
    x_q = quantize_input(cal.synthetic_calibration_set(analysis, 8, seed=3), qp.activations["input"], "int8")
    it = tflm.Interpreter.from_bytes(build_int8_tflite(analysis, qp), arena_size=1 << 20)
    got = []
    for i in range(len(x_q)):
        it.set_input(x_q[i : i + 1], 0)
        it.invoke()
        got.append(np.array(it.get_output(0)))
    assert np.array_equal(np.concatenate(got), run_int8(analysis, qp, x_q, "tflm")[imp.model.output])


@pytest.mark.parametrize("name", ["pad_concat", "flatten_nonsquare"])
def test_cli_import_then_parity_on_cpu_arm_mcu(name, tmp_path):
    """`edgeconv import` of a float ONNX file (explicit Pad + Concat; a C,H,W flatten) writes a
    build folder whose fidelity is within the goal and that passes parity with 0 LSB."""
    pytest.importorskip("ai_edge_litert", reason="the arm target runs LiteRT")
    pytest.importorskip("tflite_micro", reason="the mcu target runs TFLite Micro")
    from edgeconv.cli import cli

    out = tmp_path / name
    result = CliRunner().invoke(cli, ["import", str(DATA / f"{name}.onnx"), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["source_format"] == "onnx" and summary["fidelity"]["worst"] <= GOAL
    parity = CliRunner().invoke(cli, ["parity", str(out), "--targets", "cpu,arm,mcu", "--json"])
    assert parity.exit_code == 0, parity.output
    assert [t["deployment"]["vs_golden"]["max_lsb"] for t in json.loads(parity.stdout)["targets"]] == [0, 0, 0]


def test_mutated_files_import_or_refuse_in_one_line(tmp_path):
    """Random byte flips in the fixtures: each file imports or is one InputError line, never
    another exception (400 mutations were run by hand with no escape; 40 here)."""
    rng = np.random.default_rng(11)
    files = sorted(p for p in DATA.glob("*.onnx") if p.name != "conv_bn_relu.onnx")
    for k in range(40):
        blob = bytearray(files[k % len(files)].read_bytes())
        for _ in range(int(rng.integers(1, 6))):
            blob[int(rng.integers(len(blob)))] = int(rng.integers(256))
        path = tmp_path / f"m{k}.onnx"
        path.write_bytes(bytes(blob))
        try:
            import_onnx(path)
        except InputError as err:
            assert "\n" not in str(err) and str(err).startswith(f"model {path.name}"), str(err)


def test_pads_no_conv_absorbs_become_pad_layers(tmp_path):
    """A zero Pad read by a MaxPool (zeros are not a max pool's padding) and PyTorch's default
    AveragePool(count_include_pad=1) with pads both become an IR pad layer + a valid pool; the
    imported model equals ONNX Runtime on the file, and edgeconv's float exports equal it too."""
    from edgeconv.export.onnx_float import build_float_onnx, serialize

    pads = np.array([0, 0, 1, 0, 0, 0, 2, 1], np.int64)
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["p"], name="pad", mode="constant"),
        helper.make_node("MaxPool", ["p"], ["m"], name="mp", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node(
            "AveragePool", ["m"], ["y"], name="ap", kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1
        ),
    ]
    path = _write(tmp_path, "pads", _model(nodes, {"pads": pads}, [1, 3, 9, 8], None))
    imp = import_onnx(path)
    assert [layer.op for layer in imp.model.layers] == ["pad", "max_pool", "pad", "avg_pool"]
    assert [getattr(layer, "pads", None) for layer in imp.model.layers[::2]] == [(1, 0, 2, 1), (1, 1, 1, 1)]
    x = np.random.default_rng(2).standard_normal((4, 3, 9, 8)).astype(np.float32) - 1.0  # negatives: -inf != 0
    want = ort_run(path, x)
    analysis = analyze(imp.model)
    got = reference.run(analysis, imp.weights, x.transpose(0, 2, 3, 1))[imp.model.output].transpose(0, 3, 1, 2)
    assert rel_err(got, want) <= GOAL
    sess = ort.InferenceSession(serialize(build_float_onnx(analysis, imp.weights)), providers=["CPUExecutionProvider"])
    exported = np.concatenate([sess.run(None, {"input": x[i : i + 1]})[0] for i in range(len(x))])
    assert rel_err(exported, want) <= GOAL


def test_pad_layer_deploys_on_every_runtime(tmp_path):
    """An IR pad layer (asymmetric, before a valid average pool) in a recipe: plan.json round
    trip, then 0 LSB on cpu, arm and mcu."""
    pytest.importorskip("ai_edge_litert", reason="the arm target runs LiteRT")
    pytest.importorskip("tflite_micro", reason="the mcu target runs TFLite Micro")
    from edgeconv.cli import cli

    recipe = tmp_path / "pad.toml"
    recipe.write_text(
        'name = "pad_pool"\ninput = [9, 8, 3]\n'
        '[[layers]]\nname = "c1"\nop = "conv2d"\nfilters = 8\nkernel = 3\nactivation = "relu"\n'
        '[[layers]]\nname = "pad1"\nop = "pad"\npads = [1, 0, 2, 1]\n'
        '[[layers]]\nname = "p1"\nop = "avg_pool"\npool = 3\nstride = 2\n'
        '[[layers]]\nname = "fc"\nop = "dense"\nunits = 5\n'
    )
    out = tmp_path / "b"
    built = CliRunner().invoke(cli, ["build", "--recipe", str(recipe), "--out", str(out)])
    assert built.exit_code == 0, built.output
    parity = CliRunner().invoke(cli, ["parity", str(out), "--targets", "cpu,arm,mcu", "--json"])
    assert parity.exit_code == 0, parity.output
    assert [t["deployment"]["vs_golden"]["max_lsb"] for t in json.loads(parity.stdout)["targets"]] == [0, 0, 0]
