"""The cpu (ONNX Runtime) and arm (LiteRT) backends on real build folders, against the golden.

Build folders for every recipe and one small planner output are made once per module with
edgeconv.artifacts.build.run_build. Each backend must equal the int8 golden of the runtime it runs
(cpu: "ort_cpu"; arm: the golden of its kernels setting) within the profile tolerance
max_lsb_vs_golden (0), for the model output and for every layer (run_layers); run_float must
match the float reference. Bad inputs are UsageError, corrupt model files InputError, and
importing edgeconv.backends imports no runtime. prefix_model (pure) is tested here too.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edgeconv.core import reference
from edgeconv.core.errors import InputError, UsageError
from edgeconv.core.graph import analyze
from edgeconv.core.ir import INPUT, InputSpec
from edgeconv.core.prefix import needed_layers, prefix_model
from edgeconv.plan.planner import Budgets, plan
from edgeconv.plan.recipes import load_recipe, recipe_names
from edgeconv.plan.targets import Target, load_target

N_SAMPLES = 4
N_BIG = 8
PLANNER = (InputSpec(32, 32, 3), 10, Budgets(16_000, 256_000))
MODEL_IDS = [*recipe_names(), "plan16k"]
ARM_GOLDEN = {"xnnpack": "litert_xnnpack", "builtin": "litert_builtin", "reference": "litert_ref"}
MEASURED: dict[tuple[str, str], tuple[int, int]] = {}  # (model, backend) -> (output LSB, worst layer LSB)


def lsb(a, b) -> int:
    return int(np.max(np.abs(np.asarray(a, np.int64) - np.asarray(b, np.int64)), initial=0))


def arm_target(kernels: str) -> Target:
    base = load_target("arm")
    return dataclasses.replace(base, options=tuple(sorted({**dict(base.options), "kernels": kernels}.items())))


class Built:
    """One build folder with seeded float inputs, their int8/uint8 quantizations and goldens."""

    def __init__(self, model_id: str, out):
        from edgeconv.artifacts.build import BuildRequest, run_build
        from edgeconv.artifacts.folder import load_build
        from edgeconv.quant.calibrate import synthetic_calibration_set
        from edgeconv.quant.quantize import quantize_input

        if model_id == "plan16k":
            req = BuildRequest(
                budget=PLANNER[2].model_bytes,
                ram=PLANNER[2].ram_bytes,
                input_spec=PLANNER[0],
                classes=PLANNER[1],
                out=str(out),
                calib_samples=8,
            )
        else:
            req = BuildRequest(recipe=model_id, out=str(out), calib_samples=8)
        result = run_build(req)
        if model_id == "plan16k":
            assert result.model == plan(*PLANNER).model
        self.build = load_build(out)
        self.names = [layer.name for layer in self.build.analysis.model.layers]
        self.x = synthetic_calibration_set(self.build.analysis, N_SAMPLES, seed=123)
        tq = self.build.qparams.activations[INPUT]
        self.x_q = quantize_input(self.x, tq, "int8")
        self.x_qdq = quantize_input(self.x, tq, self.build.qdq_dtype)
        # larger inputs (3x a standard normal): activations clamp, wider accumulators
        self.x_big = synthetic_calibration_set(self.build.analysis, N_BIG, seed=7) * 3.0
        self.x_big_q = quantize_input(self.x_big, tq, "int8")
        self.x_big_qdq = quantize_input(self.x_big, tq, self.build.qdq_dtype)
        self._golden: dict[tuple, dict] = {}

    def golden(self, runtime: str, big: bool = False) -> dict[str, np.ndarray]:
        from edgeconv.quant import golden

        if (runtime, big) not in self._golden:
            self._golden[runtime, big] = golden.run_int8(
                self.build.analysis, self.build.qparams, self.x_big_q if big else self.x_q, runtime, keep_all=True
            )
        return self._golden[runtime, big]


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """Build folders made on first use, shared by the tests of this module."""
    pytest.importorskip("onnx")
    pytest.importorskip("flatbuffers")
    cache: dict[str, Built] = {}

    def get(model_id: str) -> Built:
        if model_id not in cache:
            cache[model_id] = Built(model_id, tmp_path_factory.mktemp(model_id) / "build")
        return cache[model_id]

    return get


@pytest.fixture(scope="module", params=MODEL_IDS)
def built(request, builds):
    return builds(request.param)


@pytest.fixture(scope="module")
def resnet8(builds):
    return builds("resnet8")


_BACKENDS: dict[str, object] = {}


def backend(which: str):
    """ "cpu", or an arm kernels setting ("xnnpack", "builtin", "reference"); skipped without its runtime."""
    pytest.importorskip("onnxruntime" if which == "cpu" else "ai_edge_litert")
    if which not in _BACKENDS:
        from edgeconv.backends import get_backend, require

        _BACKENDS[which] = require(get_backend(load_target("cpu") if which == "cpu" else arm_target(which)))
    return _BACKENDS[which]


@pytest.fixture(scope="module")
def cpu():
    return backend("cpu")


@pytest.fixture(scope="module", params=list(ARM_GOLDEN))
def arm(request):
    return backend(request.param)


def check_against_golden(built: Built, backend, out, layers, runtime: str, key: str) -> None:
    from edgeconv.artifacts.folder import to_int8_convention

    expected = built.golden(runtime)
    allowed = backend.target.tolerance.max_lsb_vs_golden
    output = built.build.analysis.model.output
    assert out.shape == expected[output].shape, (out.shape, expected[output].shape)
    worst = 0
    for name in built.names:  # execution order: the first divergence is reported
        got = to_int8_convention(layers[name])
        assert got.shape == expected[name].shape, (name, got.shape, expected[name].shape)
        diff = lsb(got, expected[name])
        worst = max(worst, diff)
        assert diff <= allowed, f"{built.build.name} on {key}: layer {name} differs by {diff} LSB from {runtime}"
    diff = lsb(to_int8_convention(out), expected[output])
    assert diff <= allowed, f"{built.build.name} on {key}: output differs by {diff} LSB from {runtime}"
    # the last layer of run_layers is the same computation as run()
    assert lsb(layers[output], out) == 0
    MEASURED[(built.build.name, key)] = (diff, worst)
    print(f"{built.build.name} {key} vs {runtime}: output {diff} LSB, worst layer {worst} LSB")


def test_cpu_matches_ort_golden(built, cpu):
    out = cpu.run(built.build, built.x_qdq)
    assert out.dtype == np.dtype(built.build.qdq_dtype)
    layers = cpu.run_layers(built.build, built.x_qdq, built.names)
    check_against_golden(built, cpu, out, layers, "ort_cpu", "cpu")


def test_arm_matches_its_kernels_golden(built, arm):
    out = arm.run(built.build, built.x_q)
    assert out.dtype == np.int8
    layers = arm.run_layers(built.build, built.x_q, built.names)
    check_against_golden(built, arm, out, layers, ARM_GOLDEN[arm.kernels], f"arm/{arm.kernels}")


@pytest.mark.parametrize("which", ["cpu", *ARM_GOLDEN])
def test_larger_inputs_first_divergence(built, which):
    """3x inputs on every layer. Where a backend leaves its golden, the first diverging layer must
    be an add: the golden's fp32-family ADD (int8_ops._add_fp32, ort_add: float32 ratios, round
    half to even) is not what XNNPACK's qs8 add and MLAS's QLinearAdd compute (integer
    multipliers and a rounding shift, measured); 1 LSB near ties, then carried downstream."""
    from edgeconv.artifacts.folder import to_int8_convention

    runtime = "ort_cpu" if which == "cpu" else ARM_GOLDEN[which]
    x = built.x_big_qdq if which == "cpu" else built.x_big_q
    layers = backend(which).run_layers(built.build, x, built.names)
    expected = built.golden(runtime, big=True)
    diffs = {name: lsb(to_int8_convention(layers[name]), expected[name]) for name in built.names}
    first = next((name for name in built.names if diffs[name]), None)
    if first is None:
        return
    op = built.build.analysis.model.layer(first).op
    assert op == "add" and diffs[first] == 1, (
        f"{built.build.name} on {which}: first divergence at {first} ({op}), {diffs}"
    )
    pytest.xfail(
        f"known golden gap: {built.build.name} on {which}/{runtime} leaves the golden first at ADD "
        f"{first} (1 LSB); worst {max(diffs.values())} LSB downstream"
    )


def test_run_layers_subset_and_input(built, cpu, arm):
    a, b = built.names[0], built.names[-1]
    got = arm.run_layers(built.build, built.x_q[:1], [b, INPUT, a])
    assert list(got) == [b, INPUT, a]
    np.testing.assert_array_equal(got[INPUT], built.x_q[:1])
    np.testing.assert_array_equal(got[a], built.golden(ARM_GOLDEN[arm.kernels])[a][:1])
    got = cpu.run_layers(built.build, built.x_qdq[:1], [a])
    assert list(got) == [a]
    with pytest.raises(UsageError, match="nosuch"):
        arm.run_layers(built.build, built.x_q, ["nosuch"])
    with pytest.raises(UsageError, match="nosuch"):
        cpu.run_layers(built.build, built.x_qdq, ["nosuch"])


@pytest.mark.parametrize("which", ["cpu", *ARM_GOLDEN])
def test_run_float_matches_reference(built, which):
    expected = reference.run(built.build.analysis, built.build.weights, built.x)[built.build.analysis.model.output]
    got = backend(which).run_float(built.build, built.x)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.max(np.abs(got - expected)) <= 1e-4 * np.max(np.abs(expected))


def test_bad_inputs_are_usage_errors(resnet8, cpu, arm):
    built = resnet8
    b = built.build
    for backend, x_q in ((cpu, built.x_qdq), (arm, built.x_q)):
        with pytest.raises(UsageError, match="expected shape"):
            backend.run(b, x_q[:, :16])
        with pytest.raises(UsageError, match="expected shape"):
            backend.run_layers(b, x_q.transpose(0, 3, 1, 2), built.names)
        with pytest.raises(UsageError, match="expected quantized"):
            backend.run(b, x_q.astype(np.int16))
        with pytest.raises(UsageError, match="expected"):
            backend.run_float(b, x_q)  # integers into the float model
    with pytest.raises(UsageError, match="expected quantized int8"):
        arm.run(b, built.x_qdq.view(np.uint8) if built.x_qdq.dtype == np.uint8 else built.x_q.view(np.uint8))
    with pytest.raises(UsageError, match=f"expected quantized {b.qdq_dtype}"):
        cpu.run(b, built.x_q if b.qdq_dtype == "uint8" else built.x_q.view(np.uint8))
    out = arm.run(b, built.x_q[0])  # a single HWC sample is accepted as N = 1
    assert out.shape[0] == 1


def test_corrupt_model_files_are_input_errors(resnet8, cpu, arm, tmp_path):
    built = resnet8
    from edgeconv.artifacts.folder import load_build

    folder = tmp_path / "corrupt"
    shutil.copytree(built.build.folder, folder)
    for name in ("model.int8.onnx", "model.int8.tflite"):  # truncated
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])
    for name in ("model.onnx", "model.float.tflite"):  # garbage
        (folder / name).write_bytes(b"not a model\x00\xff" * 64)
    b = load_build(folder)
    cases = [
        (cpu.run, built.x_qdq, "model.int8.onnx"),
        (cpu.run_float, built.x, "model.onnx"),
        (arm.run, built.x_q, "model.int8.tflite"),
        (arm.run_float, built.x, "model.float.tflite"),
    ]
    if arm.kernels != "xnnpack":  # xnnpack's run_layers exports prefix models and never reads the file
        cases.append((lambda bb, x: arm.run_layers(bb, x, built.names), built.x_q, "model.int8.tflite"))
    for fn, x, name in cases:
        with pytest.raises(InputError, match=name) as info:
            fn(b, x)
        assert "\n" not in str(info.value)
    (folder / "model.int8.onnx").unlink()
    with pytest.raises(InputError, match=r"model\.int8\.onnx"):
        cpu.run(b, built.x_qdq)


def test_cache_follows_the_file(resnet8, tmp_path):
    """A rewritten model file (new mtime) gets a new interpreter instead of the cached one."""
    import os

    built, arm = resnet8, backend("reference")

    from edgeconv.artifacts.folder import load_build

    folder = tmp_path / "copy"
    shutil.copytree(built.build.folder, folder)
    b = load_build(folder)
    first = arm.run(b, built.x_q[:1])
    path = folder / "model.int8.tflite"
    path.write_bytes(b"garbage" * 16)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(InputError, match=r"model\.int8\.tflite"):
        arm.run(b, built.x_q[:1])
    shutil.copy(built.build.folder / "model.int8.tflite", path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    np.testing.assert_array_equal(arm.run(b, built.x_q[:1]), first)


# ---------------------------------------------------------------------------------------------
# Availability, options, lazy imports
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cpu", "arm"])
def test_unavailable_names_what_to_install(name, monkeypatch):
    from edgeconv.backends import get_backend

    target = load_target(name)
    missing = dataclasses.replace(target, modules=("edgeconv_no_such_runtime",))
    reason = get_backend(missing).unavailable()
    assert reason and "pip install" in reason and "\n" not in reason
    # installed (find_spec succeeds) but the import fails
    module = {"cpu": "onnxruntime", "arm": "ai_edge_litert.interpreter"}[name]
    monkeypatch.setitem(sys.modules, module, None)
    reason = get_backend(dataclasses.replace(target, modules=())).unavailable()
    assert reason and "does not import" in reason and "pip install" in reason and "\n" not in reason


def test_profile_options_are_checked():
    pytest.importorskip("onnxruntime")
    from edgeconv.backends import get_backend

    cpu_t = load_target("cpu")
    bad = dataclasses.replace(cpu_t, options=(("graph_optimization_level", "max"),))
    with pytest.raises(InputError, match="graph_optimization_level"):
        get_backend(bad).session_options()
    for level in ("all", "extended", "basic", "disabled"):
        so = get_backend(dataclasses.replace(cpu_t, options=(("graph_optimization_level", level),))).session_options()
        assert so.intra_op_num_threads == 1
    so = get_backend(cpu_t).session_options()
    assert so.get_session_config_entry("session.x64quantprecision") == "1"
    with pytest.raises(InputError, match=r"options\.kernels"):
        get_backend(arm_target("gpu"))


def test_importing_backends_imports_no_runtime():
    code = (
        "import sys, edgeconv.backends as b; from edgeconv.plan.targets import load_target; "
        "[b.get_backend(load_target(t)) for t in ('cpu', 'arm')]; "
        "import edgeconv.backends.cpu, edgeconv.backends.arm, edgeconv.core.prefix; "
        "bad = [m for m in ('onnxruntime', 'ai_edge_litert', 'onnx', 'tflite_micro') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------
# prefix_model (pure)
# ---------------------------------------------------------------------------------------------


def test_prefix_model_keeps_only_what_the_layer_needs():
    model = load_recipe("resnet8")
    # s2_proj reads s1_add, not s2_conv1 / s2_conv2
    sub = prefix_model(model, "s2_proj")
    assert [layer.name for layer in sub.layers] == ["conv1", "s1_conv1", "s1_conv2", "s1_add", "s2_proj"]
    assert sub.output == "s2_proj" and sub.input == model.input
    assert all(layer is model.layer(layer.name) for layer in sub.layers)
    analyze(sub)  # a valid model on its own
    assert needed_layers(model, "s2_add")[-3:] == ["s2_conv2", "s2_proj", "s2_add"]
    assert prefix_model(model, model.output).layers == model.layers
    assert [layer.name for layer in prefix_model(model, "conv1").layers] == ["conv1"]
    with pytest.raises(UsageError, match="nosuch"):
        prefix_model(model, "nosuch")
    with pytest.raises(UsageError):
        prefix_model(model, INPUT)
