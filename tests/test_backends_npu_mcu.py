"""npu (onnxruntime-qnn, HTP emulator) and mcu (TFLite Micro) backends on real build folders.

npu: against its own family's golden "qnn_htp" (quant/htp.py): each layer on the NPU's own inputs
0 LSB at exact ops, the recorded bound at bounded ones; end to end min(bounded layers, 3) LSB at
the logits, the softmax checked on the NPU's own logits. mcu: 0 LSB vs the golden "tflm".
Arena: arena.predict_arena_bytes is never below the TFLM measurement and within 10% of it.
"""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from edgeconv.artifacts.build import BuildRequest, run_build
from edgeconv.artifacts.folder import load_build, reseal_build_folder, to_int8_convention
from edgeconv.backends import get_backend
from edgeconv.core.errors import InputError
from edgeconv.core.ir import INPUT
from edgeconv.plan.planner import Budgets, InputSpec, plan
from edgeconv.plan.recipes import load_recipe, recipe_names
from edgeconv.plan.targets import load_target
from edgeconv.quant import calibrate as cal
from edgeconv.quant import golden
from edgeconv.quant.quantize import quantize_input

N_SAMPLES = 2
PLAN_BUDGET = 16_000
# the planner's pick at the MLPerf Tiny DS-CNN budgets with its MACs granted (--macs): a pooled
# plain stack ending in a global average pool, the objective's other branch
KWS_GRANTED = {"input_spec": InputSpec(49, 10, 1), "budget": 42_720, "ram": 24_304, "macs": 2_656_640}
MODEL_IDS = recipe_names() + ["kws_granted", f"plan{PLAN_BUDGET // 1000}k"]


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    root = tmp_path_factory.mktemp("builds")
    out = {}
    for model_id in MODEL_IDS:
        if model_id.startswith("plan"):
            req = BuildRequest(budget=PLAN_BUDGET, ram=256_000, out=str(root / model_id), calib_samples=8)
        elif model_id == "kws_granted":
            req = BuildRequest(**KWS_GRANTED, out=str(root / model_id), calib_samples=8)
        else:
            req = BuildRequest(recipe=model_id, out=str(root / model_id), calib_samples=8)
        run_build(req)
        out[model_id] = load_build(root / model_id)
    return out


def _inputs(build, dtype):
    x = cal.synthetic_calibration_set(build.analysis, N_SAMPLES, seed=7)
    return quantize_input(x, build.qparams.activations[INPUT], dtype)


def _available(target: str, *modules: str):
    """The target's backend, or a skip naming the missing package."""
    for module in modules:
        pytest.importorskip(module)
    backend = get_backend(load_target(target))
    reason = backend.unavailable()
    if reason:
        pytest.skip(reason)
    return backend


def lsb(a, b) -> int:
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    return int(np.max(np.abs(a.reshape(b.shape) - b), initial=0))


# ---------------------------------------------------------------------------------------------
# npu
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def npu():
    return _available("npu", "onnxruntime", "onnxruntime_qnn")


# The end-to-end cap (min(bounded layers, 3) at the logits) does not grow with depth: an
# 11-conv plan once measured 4 LSB there while every layer stayed within its op bound. The
# deployment gate is per layer (next test); this checks today's recipes and planner pick.
@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_npu_output_follows_the_end_to_end_policy(npu, builds, model_id):
    """min(bounded layers, 3) LSB at the logits vs the qnn_htp golden; the softmax on the NPU's
    own logits within head_lsb of the golden softmax (parity.policy)."""
    from edgeconv.parity.policy import end_to_end_allowance, softmax_head_checks

    build, tol = builds[model_id], npu.target.tolerance
    analysis, out = build.analysis, build.analysis.model.output
    got = npu.run(build, _inputs(build, "uint8"))
    assert got.dtype == np.uint8
    expected = golden.run_int8(analysis, build.qparams, _inputs(build, "int8"), "qnn_htp", keep_all=True)
    assert got.shape == expected[out].shape
    logits = analysis.layers[-1].inputs[0]
    layers = npu.run_layers(build, _inputs(build, "uint8"), [logits, out])
    np.testing.assert_array_equal(layers[out], got)
    allowed = end_to_end_allowance(tol.lsb_policy, tol.max_lsb_vs_golden, analysis, "qnn_htp", logits)
    checks = softmax_head_checks(
        "npu",
        "qnn_htp",
        logits,
        expected[logits],
        to_int8_convention(layers[logits]),
        build.qparams.activations[logits],
        to_int8_convention(got),
        out,
        allowed,
        tol.head_lsb,
        lsb(to_int8_convention(got), expected[out]),
    )
    print(f"npu {model_id}: " + "; ".join(c.message for c in checks))
    assert all(c.passed for c in checks), [c.message for c in checks]


@pytest.mark.parametrize("model_id", ["resnet8", MODEL_IDS[-1]])
def test_npu_every_layer_within_its_op_bound(npu, builds, model_id):
    """Each layer on the NPU's own inputs vs the qnn_htp golden op (parity.run.per_layer_rows):
    0 LSB at exact ops (max_pool, pad, concat), at most the BOUNDED_OPS bound at the others."""
    from edgeconv.parity.run import per_layer_rows

    build = builds[model_id]
    names = [layer.name for layer in build.analysis.model.layers]
    got = {k: to_int8_convention(v) for k, v in npu.run_layers(build, _inputs(build, "uint8"), names).items()}
    want = golden.run_int8(build.analysis, build.qparams, _inputs(build, "int8"), "qnn_htp", keep_all=True)
    rows, divergence = per_layer_rows(build, npu.target, got, want, "qnn_htp")
    print(f"npu {model_id} per layer: {[(r['layer'], r['max_lsb'], r['allowed']) for r in rows]}")
    assert len(rows) == len(names) and divergence is None, divergence
    for r in rows:
        assert r["allowed"] == golden.op_bound("qnn_htp", r["op"])


@pytest.mark.parametrize("op", ["gemm", "conv"])
def test_npu_bias_is_the_only_residue_of_conv_and_fc(npu, op):
    """scripts/probe_htp_bias.py: the accumulator 127a + b over 0..4,190 through a Gemm / 1x1 Conv
    with per-channel biases -100..100 next to a bias of 3,000. The htp golden's two integer steps
    match the zero-bias channel exactly; the HTP adds other biases as b or b - sign(b) (one step
    toward zero, 52 of 200 here), which costs exactly 1 LSB: why dense and conv are bounded at 1."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import probe_htp_bias as probe

    from edgeconv.quant import htp

    small = np.array([b for b in range(-100, 101) if b != 0])
    bias = np.concatenate([[0], small, [3000]])
    acc0, y = probe.run_probe(npu, op, bias)
    s_w = np.full(len(bias), probe.S_W)
    want = np.clip(htp.requantize_htp(acc0[:, None] + bias, probe.S_IN, s_w, probe.S_OUT) + probe.ZP_OUT, 0, 255)
    diff = np.abs(y - want)
    assert diff[:, 0].max() == 0, "zero bias: the two integer steps are exact"
    assert diff.max() == 1
    delta = np.array(probe.effective_biases(acc0, y)[1:-1], dtype=np.int64) - small
    assert set(np.unique(delta * np.sign(small)).tolist()) == {-1, 0}  # only ever one step toward zero
    assert int(np.count_nonzero(delta)) == 52
    assert golden.op_bound("qnn_htp", "dense") == golden.op_bound("qnn_htp", "conv2d") == 1


def test_npu_float_runs_in_fp16(npu, builds):
    from edgeconv.core import reference

    build = builds["resnet8"]
    x = cal.synthetic_calibration_set(build.analysis, N_SAMPLES, seed=7)
    got = npu.run_float(build, x)
    assert got is not None, "the npu profile pins htp_arch 73, which names a SoC for fp16"
    ref = reference.run(build.analysis, build.weights, x)[build.analysis.model.output]
    np.testing.assert_allclose(got.reshape(ref.shape), ref, atol=1e-2)


def test_npu_rejected_op_is_an_error_naming_it(npu, builds, tmp_path):
    onnx = pytest.importorskip("onnx")
    src = builds["resnet8"].folder
    folder = tmp_path / "bad"
    shutil.copytree(src, folder)
    model = onnx.load(str(folder / "model.int8.onnx"))
    for node in model.graph.node:
        if node.op_type == "Softmax":
            node.op_type = "Hardmax"  # same signature; QNN HTP has no Hardmax
    onnx.save(model, str(folder / "model.int8.onnx"))
    reseal_build_folder(folder)  # a deliberate edit: keep the folder loadable (manifest.json)
    build = load_build(folder)
    with pytest.raises(InputError, match=r"rejects node 'softmax' \(Hardmax\)") as err:
        npu.run(build, _inputs(build, "uint8"))
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------
# mcu
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mcu():
    return _available("mcu", "tflite_micro")


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_mcu_output_equals_golden(mcu, builds, model_id):
    build = builds[model_id]
    x_q = _inputs(build, "int8")
    got = mcu.run(build, x_q)
    expected = golden.run_int8(build.analysis, build.qparams, x_q, "tflm")[build.analysis.model.output]
    assert got.dtype == np.int8 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    assert mcu.run_float(build, x_q) is None


@pytest.mark.parametrize("model_id", ["resnet8", MODEL_IDS[-1]])
def test_mcu_run_layers_equal_golden(mcu, builds, model_id):
    build = builds[model_id]
    x_q = _inputs(build, "int8")
    names = [layer.name for layer in build.analysis.model.layers]
    got = mcu.run_layers(build, x_q, names)
    expected = golden.run_int8(build.analysis, build.qparams, x_q, "tflm", keep_all=True)
    for name in names:
        assert lsb(got[name], expected[name]) == 0, name


def _arena_models():
    models = {name: load_recipe(name) for name in recipe_names()}
    for budget in (8_000, 16_000, 32_000, 64_000, 128_000, 256_000):
        models[f"plan{budget // 1000}k"] = plan(InputSpec(32, 32, 3), 10, Budgets(budget, 256_000)).model
    models["kws32k"] = plan(InputSpec(49, 10, 1), 12, Budgets(32_000, 256_000)).model
    granted = Budgets(42_720, 24_304, 2_656_640, macs_granted=True)  # DS-CNN's budgets, --macs
    models["kws_granted"] = plan(InputSpec(49, 10, 1), 10, granted).model
    return models


def test_arena_prediction_bounds_measurement(mcu):
    pytest.importorskip("flatbuffers")
    from edgeconv.backends.mcu import measure_model_arena
    from edgeconv.core.graph import analyze
    from edgeconv.core.weights import init_weights
    from edgeconv.export.tflite import build_int8_tflite
    from edgeconv.plan.arena import predict_arena_bytes
    from edgeconv.quant.quantize import quantize

    lines = []
    for name, model in _arena_models().items():
        analysis = analyze(model)
        weights = init_weights(analysis, seed=0)
        result = cal.calibrate(analysis, weights, cal.synthetic_calibration_set(analysis, 8, seed=0))
        measured, _, _, _ = measure_model_arena(
            build_int8_tflite(analysis, quantize(analysis, weights, result.ranges, result.info))
        )
        predicted = predict_arena_bytes(analysis)
        lines.append(f"{name}: measured {measured} predicted {predicted} ({predicted / measured:.4f})")
        assert measured <= predicted <= 1.10 * measured, lines[-1]
    print("\n".join(lines))


def test_measure_arena_report(mcu, builds):
    report = mcu.measure_arena(builds["resnet8"])
    assert report.measured_bytes <= report.predicted_bytes <= 1.10 * report.measured_bytes
    assert report.head_bytes + report.tail_bytes == report.measured_bytes
    print(report)


def test_arena_too_small_is_an_error_with_the_size_needed(builds):
    pytest.importorskip("tflite_micro")
    target = load_target("mcu")
    backend = get_backend(dataclasses.replace(target, options=(("arena", "4KB"),)))
    build = builds["resnet8"]
    needed = get_backend(target).measure_arena(build).measured_bytes
    with pytest.raises(InputError, match=rf"4000-byte TFLM arena is too small, the model needs {needed} bytes") as err:
        backend.run(build, _inputs(build, "int8"))
    assert "\n" not in str(err.value)


def test_npu_pins_recorded_in_report_and_bundle(npu, builds):
    """What the qnn_htp golden depends on (htp_arch, soc_model, the QNN SDK) is in the JSON report
    of a parity run and in the manifest of a device bundle, next to the installed SDK."""
    import json

    from edgeconv.device.bundle import MANIFEST, bundle_files
    from edgeconv.parity.report import to_json
    from edgeconv.parity.run import parity_inputs, run_parity

    build = builds["ds_cnn"]
    x = parity_inputs(build.analysis, 2, 0)
    report = to_json(run_parity(build, [npu.target], x, "test", per_layer=False))
    manifest = json.loads(bundle_files(build, npu.target, x, "test")[MANIFEST])
    for pins in (report["targets"][0]["pins"], manifest["pins"]):
        assert (pins["htp_arch"], pins["soc_model"], pins["qnn_sdk"]) == ("73", "43", "2.51.0")
        assert pins["qnn_sdk_installed"] == pins["qnn_sdk"] and pins["rounding"] == "htp"
        assert pins["packages"]["onnxruntime-qnn"]
    assert any(c["name"] == "runtime_pins" and c["passed"] for c in report["targets"][0]["deployment"]["checks"])
