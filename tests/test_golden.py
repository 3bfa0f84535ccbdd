"""Whole-model int8 golden (quant/golden.py) against every runtime, 0 LSB.

Models: every recipe plus two planner outputs. Each runtime gets the same int8 (or uint8 for
ONNX Runtime) inputs, quantized outside the graph by quantize_input, N_SAMPLES seeded samples.
A difference is allowed only where golden.KNOWN_MODEL_DEVIATIONS records one for that runtime
and op, at most its bound, and only at or after that op; nothing is loosened globally.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flatbuffers")
pytest.importorskip("ai_edge_litert")

from edgeconv.core.graph import analyze
from edgeconv.core.ir import INPUT
from edgeconv.core.weights import init_weights
from edgeconv.export.tflite import build_int8_tflite
from edgeconv.plan.planner import Budgets, InputSpec, plan
from edgeconv.plan.recipes import load_recipe, recipe_names
from edgeconv.quant import calibrate as cal
from edgeconv.quant import golden
from edgeconv.quant.quantize import quantize, quantize_input

N_SAMPLES = 4
TFLM_ARENA_BYTES = 512 * 1024
PLANNER_BUDGETS = (16_000, 64_000)  # model bytes; ram 256 KB, 32x32x3, 10 classes (small and fast)
LITERT_RESOLVERS = {
    "litert_ref": "BUILTIN_REF",
    "litert_builtin": "BUILTIN_WITHOUT_DEFAULT_DELEGATES",
    "litert_xnnpack": "AUTO",
}
MODEL_IDS = recipe_names() + [f"plan{b // 1000}k" for b in PLANNER_BUDGETS]


def _model(model_id: str):
    if model_id.startswith("plan"):
        budget = int(model_id[4:-1]) * 1000
        return plan(InputSpec(32, 32, 3), 10, Budgets(model_bytes=budget, ram_bytes=256_000)).model
    return load_recipe(model_id)


class Case:
    def __init__(self, model_id: str):
        self.analysis = analyze(_model(model_id))
        self.weights = init_weights(self.analysis, seed=0)
        result = cal.calibrate(self.analysis, self.weights, cal.synthetic_calibration_set(self.analysis, 8, seed=0))
        self.qp = quantize(self.analysis, self.weights, result.ranges, result.info)
        self.tflite = build_int8_tflite(self.analysis, self.qp)
        self.x = cal.synthetic_calibration_set(self.analysis, N_SAMPLES, seed=123)
        self.x_q = quantize_input(self.x, self.qp.activations[INPUT], "int8")
        self.names = [layer.name for layer in self.analysis.model.layers]
        self._golden: dict[tuple, dict] = {}
        self._qnn: dict[str, np.ndarray] | None = None

    def golden(self, runtime: str) -> dict[str, np.ndarray]:
        """All layers' golden outputs; runtimes with the same kernel variants share one run."""
        key = tuple(golden.variant(layer.op, runtime) for layer in self.analysis.model.layers) + (
            runtime in golden.PER_CHANNEL_FC,
        )
        if key not in self._golden:
            self._golden[key] = golden.run_int8(self.analysis, self.qp, self.x_q, runtime, keep_all=True)
        return self._golden[key]


@pytest.fixture(scope="module", params=MODEL_IDS)
def case(request):
    return Case(request.param)


# ---------------------------------------------------------------------------------------------
# Runtimes: {layer name: (N, ...) int8-convention outputs}; only the layers a runtime exposes
# ---------------------------------------------------------------------------------------------


def run_litert(case: Case, runtime: str) -> dict[str, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # BUILTIN_REF / BUILTIN keep every tensor, so each layer is compared; with XNNPACK the
    # delegate's intermediate tensors are not observable (arena reuse): output only.
    every = runtime != "litert_xnnpack"
    outs: dict[str, list] = {}
    it = Interpreter(
        model_content=case.tflite,
        num_threads=1,
        experimental_op_resolver_type=getattr(OpResolverType, LITERT_RESOLVERS[runtime]),
        experimental_preserve_all_tensors=every,
    )
    it.allocate_tensors()  # one interpreter, invoked once per sample
    for i in range(N_SAMPLES):
        it.set_tensor(it.get_input_details()[0]["index"], case.x_q[i : i + 1])
        it.invoke()
        index = {d["name"]: d["index"] for d in it.get_tensor_details()}
        for name in case.names if every else [case.analysis.model.output]:
            outs.setdefault(name, []).append(it.get_tensor(index[name]).copy())
    return {k: np.concatenate(v) for k, v in outs.items()}


def run_tflm(case: Case) -> dict[str, np.ndarray]:
    pytest.importorskip("tflite_micro")
    from tflite_micro.python.tflite_micro import runtime

    outs = []
    it = runtime.Interpreter.from_bytes(case.tflite, arena_size=TFLM_ARENA_BYTES)
    for i in range(N_SAMPLES):
        it.set_input(case.x_q[i : i + 1], 0)
        it.invoke()
        outs.append(np.array(it.get_output(0)))
    return {case.analysis.model.output: np.concatenate(outs)}


def run_ort(case: Case) -> dict[str, np.ndarray]:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from edgeconv.export.onnx_qdq import build_qdq_onnx

    model = build_qdq_onnx(case.analysis, case.weights, case.qp, "uint8", outputs=case.names)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.add_session_config_entry("session.x64quantprecision", "1")
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    outs: dict[str, list] = {}
    for i in range(N_SAMPLES):
        u8 = quantize_input(case.x[i : i + 1], case.qp.activations[INPUT], "uint8").transpose(0, 3, 1, 2)
        for name, value in zip(case.names, sess.run(case.names, {INPUT: np.ascontiguousarray(u8)})):
            value = value.astype(np.int64) - 128  # uint8 -> int8 convention
            outs.setdefault(name, []).append(value.transpose(0, 2, 3, 1) if value.ndim == 4 else value)
    return {k: np.concatenate(v) for k, v in outs.items()}


def run_qnn_htp(case: Case) -> dict[str, np.ndarray]:
    """The uint8 QDQ ONNX on ONNX Runtime's QNN EP (HTP emulator, the npu profile's options),
    every layer a graph output; one session per model (module-scoped case), cached."""
    pytest.importorskip("onnxruntime_qnn", reason="needs onnxruntime-qnn (pip install 'edgeconv[npu]')")
    if case._qnn is None:
        from edgeconv.backends.npu import NpuBackend
        from edgeconv.export.onnx_qdq import build_qdq_onnx
        from edgeconv.plan.targets import load_target

        backend = NpuBackend(load_target("npu"))
        if backend.unavailable():
            pytest.skip(backend.unavailable())
        model = build_qdq_onnx(case.analysis, case.weights, case.qp, "uint8", outputs=case.names)
        sess = backend._session(model.SerializeToString(), f"{case.analysis.model.name} QDQ")
        u8 = quantize_input(case.x, case.qp.activations[INPUT], "uint8")
        outs = backend._run_batches(sess, u8, case.names)
        case._qnn = {k: v.astype(np.int64) - 128 for k, v in outs.items()}  # uint8 -> int8 convention
    return {k: v[:N_SAMPLES] for k, v in case._qnn.items()}


def run_runtime(case: Case, runtime: str) -> dict[str, np.ndarray]:
    if runtime in LITERT_RESOLVERS:
        return run_litert(case, runtime)
    if runtime == "tflm":
        return run_tflm(case)
    if runtime == "qnn_htp":
        return run_qnn_htp(case)
    return run_ort(case)


# ---------------------------------------------------------------------------------------------
# Allowed differences: 0 unless KNOWN_MODEL_DEVIATIONS names (runtime, op) at or before a layer
# ---------------------------------------------------------------------------------------------


def allowed_lsb(case: Case, runtime: str) -> dict[str, int]:
    """Per layer: the largest bound recorded for this runtime at this layer or an earlier one
    it depends on (conservatively: any earlier layer in execution order)."""
    bound, allowed = 0, {}
    for layer in case.analysis.model.layers:
        entry = golden.KNOWN_MODEL_DEVIATIONS.get((runtime, golden.TFLITE_OP[layer.op]))
        if entry:
            bound = max(bound, int(entry["max_lsb"]))
        allowed[layer.name] = bound
    return allowed


def lsb(a, b) -> int:
    return int(np.max(np.abs(np.asarray(a, np.int64) - np.asarray(b, np.int64)), initial=0))


MEASURED: dict[tuple[str, str], int] = {}


def check_bounded_runtime(case: Case, runtime: str, got: dict[str, np.ndarray]) -> int:
    """A runtime whose golden bounds some ops (golden.BOUNDED_OPS: qnn_htp): each layer fed the
    runtime's own inputs to it, 0 LSB at every exact op, the recorded bound at a bounded op."""
    worst = 0
    values = {INPUT: case.x_q.astype(np.int64), **got}
    for layer, info in zip(case.analysis.model.layers, case.analysis.layers):
        args = [np.asarray(values[src]).reshape(-1, *np.shape(case.golden(runtime)[src])[1:]) for src in layer.inputs]
        want = golden.run_layer(layer, info, [a.astype(np.int8) for a in args], case.qp, runtime)
        diff = lsb(got[layer.name].reshape(want.shape), want)
        worst = max(worst, diff)
        bound = golden.op_bound(runtime, layer.op)
        assert diff <= bound, (
            f"{case.analysis.model.name} on {runtime}: layer {layer.name} ({layer.op}) on the runtime's own "
            f"inputs differs by {diff} LSB from the golden op (allowed {bound})"
        )
    return worst


@pytest.mark.parametrize("runtime", golden.RUNTIMES)
def test_golden_matches_runtime(case, runtime):
    got = run_runtime(case, runtime)
    if runtime in golden.BOUNDED_OPS:
        worst = check_bounded_runtime(case, runtime, got)
        print(f"{case.analysis.model.name} {runtime}: max {worst} LSB, each layer on its own inputs")
        return
    expected = case.golden(runtime)
    allowed = allowed_lsb(case, runtime)
    assert got, "runtime exposed no outputs"
    worst = 0
    for name in case.names:  # execution order: the first failure is reported
        if name not in got:
            continue
        diff = lsb(got[name].reshape(expected[name].shape), expected[name])
        worst = max(worst, diff)
        assert diff <= allowed[name], (
            f"{case.analysis.model.name} on {runtime}: layer {name} differs by "
            f"{diff} LSB from the golden (allowed {allowed[name]})"
        )
    MEASURED[(case.analysis.model.name, runtime)] = worst
    print(f"{case.analysis.model.name} {runtime}: max {worst} LSB over {sorted(got)}")


def test_output_shapes_and_dtypes(case):
    out = golden.run_int8(case.analysis, case.qp, case.x_q, "tflm")
    name = case.analysis.model.output
    w, h, c = case.analysis.output_shape
    assert list(out) == [name] and out[name].dtype == np.int8 and out[name].shape == (N_SAMPLES, h, w, c)


def test_families_name_their_golden(case):
    assert golden.FAMILIES == {"tflite": "litert_ref", "fp32": "litert_xnnpack", "htp": "qnn_htp"}
    for family, runtime in golden.FAMILIES.items():
        a = golden.run_family(case.analysis, case.qp, case.x_q[:1], family)
        b = golden.run_int8(case.analysis, case.qp, case.x_q[:1], runtime)
        np.testing.assert_array_equal(a[case.analysis.model.output], b[case.analysis.model.output])


def test_bad_arguments(case):
    with pytest.raises(ValueError, match="unknown runtime"):
        golden.run_int8(case.analysis, case.qp, case.x_q, "tpu")
    with pytest.raises(ValueError, match="expected int8 input"):
        golden.run_int8(case.analysis, case.qp, case.x_q.astype(np.int16), "tflm")
    with pytest.raises(ValueError, match="unknown rounding family"):
        golden.run_family(case.analysis, case.qp, case.x_q, "bf16")


def test_known_model_deviations_are_documented():
    for (runtime, op), entry in golden.KNOWN_MODEL_DEVIATIONS.items():
        assert runtime in golden.RUNTIMES and op in golden.TFLITE_OP.values()
        assert set(entry) == {"max_lsb", "reason"} and entry["reason"] and 0 < entry["max_lsb"] <= 2


# ---------------------------------------------------------------------------------------------
# Stress: more samples, inputs also ×3 (saturating activations, more ties at ADD and the
# heads), every runtime, 0 LSB at every exposed layer (except KNOWN_MODEL_DEVIATIONS).
# ---------------------------------------------------------------------------------------------

STRESS_SAMPLES = 32
STRESS_MODELS = ("resnet8", "plan16k")
STRESS_GAINS = (1.0, 3.0)


class StressCase(Case):
    """A Case with STRESS_SAMPLES samples of N(0, 1) × gain (seeded)."""

    def __init__(self, model_id: str, gain: float):
        super().__init__(model_id)
        self.x = cal.synthetic_calibration_set(self.analysis, STRESS_SAMPLES, seed=7) * np.float32(gain)
        self.x_q = quantize_input(self.x, self.qp.activations[INPUT], "int8")


@pytest.fixture(
    scope="module", params=[(m, g) for m in STRESS_MODELS for g in STRESS_GAINS], ids=lambda p: f"{p[0]}-x{p[1]:g}"
)
def stress_case(request):
    return StressCase(*request.param)


@pytest.mark.parametrize("runtime", golden.RUNTIMES)
def test_golden_stress(stress_case, runtime, monkeypatch):
    monkeypatch.setitem(globals(), "N_SAMPLES", STRESS_SAMPLES)  # the run_* helpers read it
    got = run_runtime(stress_case, runtime)
    if runtime in golden.BOUNDED_OPS:
        check_bounded_runtime(stress_case, runtime, got)
        return
    expected = stress_case.golden(runtime)
    allowed = allowed_lsb(stress_case, runtime)
    for name in stress_case.names:
        if name in got:
            diff = lsb(got[name].reshape(expected[name].shape), expected[name])
            assert diff <= allowed[name], (
                f"stress {stress_case.analysis.model.name} on {runtime}: layer {name} "
                f"differs by {diff} LSB (allowed {allowed[name]})"
            )
