"""The cpu backend: ONNX Runtime, CPUExecutionProvider, on the QDQ model model.int8.onnx.

Inputs are quantized outside the graph in the build's QDQ activation dtype (build.qdq_dtype,
uint8 unless the build chose int8), NHWC; the backend transposes them to the graph's NCHW and
runs one sample per session.run (the graph's batch is 1). Outputs come back NHWC in the
graph's dtype: (N, H, W, C), and (N, 1, 1, units) for a dense or softmax output.

Session options are pinned from the target profile's [options]:
  graph_optimization_level  "all" | "extended" | "basic" | "disabled"  (default "all")
  intra_op_num_threads      integer (default 1; 0 lets ORT choose)
  x64quantprecision         0 | 1 -> session config "session.x64quantprecision" (exact u8 x s8
                            products on x86 CPUs without VNNI; measured on an AVX2 CPU without
                            VNNI, ORT 1.32: with 0 the recipes' first conv is off by up to 93 LSB)
Levels below "all"/"extended" leave the QDQ graph unfused (float Conv between Q/DQ), which is
not the ort_cpu golden's arithmetic (1-2 LSB off on the recipes).
Sessions are cached per (model file, its mtime) and, for run_layers, per in-memory model.

run_layers and fusion. The per-layer outputs come from an in-memory QDQ model built from the
same QuantParams with those layers' quantized tensors as extra graph outputs
(build_qdq_onnx(..., outputs=layers)). A QuantizeLinear output that is also a graph output
does not stop ORT's QDQ fusions: DQ -> Conv [-> Relu] -> Q still becomes one QLinearConv
(which writes the exposed tensor), Add / AveragePool / GlobalAveragePool / Softmax become their
QLinear* ops and Gemm QGemm, as in model.int8.onnx (tests/test_backends_cpu_arm.py checks every
layer against the golden and the last layer against run()).
What does change (measured, ORT 1.32 x86-64, level "all"): ORT's NHWC transformer runs the
fused uint8 ops channels-last (com.microsoft QLinearConv channels_last=1, NhwcMaxPool) with one
Transpose in and one out; every exposed spatial tensor adds a Transpose back to NCHW for its
graph output (resnet8: 2 Transposes in model.int8.onnx, 12 with every layer exposed), and an op
between exposed tensors may stay in NCHW (resnet8's QLinearAveragePool: channels_last=1 in the
file, 0 with every layer exposed). The integer results were identical in every case measured.
Compare optimized graphs with SessionOptions.optimized_model_filepath when in doubt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeconv.artifacts.folder import BuiltModel
from edgeconv.backends import check_input, first_line, import_problem, layer_outputs
from edgeconv.backends.quiet import quiet_stderr
from edgeconv.core.errors import InputError, UsageError
from edgeconv.core.ir import INPUT
from edgeconv.plan.targets import Target

OPTIMIZATION_LEVELS = {
    "all": "ORT_ENABLE_ALL",
    "extended": "ORT_ENABLE_EXTENDED",
    "basic": "ORT_ENABLE_BASIC",
    "disabled": "ORT_DISABLE_ALL",
}
_ONNX_DTYPES = {"tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(float)": "float32"}


def _to_nhwc(value: np.ndarray) -> np.ndarray:
    """One sample's ONNX output as NHWC: NCHW transposed, (1, units) as (1, 1, 1, units)."""
    if value.ndim == 4:
        return value.transpose(0, 2, 3, 1)
    return value.reshape(value.shape[0], 1, 1, -1)


class CpuBackend:
    def __init__(self, target: Target):
        self.target = target
        self._sessions: dict[tuple, Any] = {}

    # -- availability and options -------------------------------------------------------------

    def unavailable(self) -> str | None:
        return import_problem(self.target, "onnxruntime")

    def _ort(self):
        try:
            import onnxruntime
        except ImportError as err:
            raise InputError(
                f"target {self.target.name}: onnxruntime does not import ({first_line(err)}); "
                f"install it with: pip install 'edgeconv[{self.target.extra}]'"
            ) from None
        return onnxruntime

    def session_options(self):
        """SessionOptions pinned from the profile (see the module docstring)."""
        ort = self._ort()
        so = ort.SessionOptions()
        so.log_severity_level = 3
        level = str(self.target.option("graph_optimization_level", "all"))
        if level not in OPTIMIZATION_LEVELS:
            raise InputError(
                f"{self.target.source}, field 'options.graph_optimization_level': expected one of "
                f"{', '.join(OPTIMIZATION_LEVELS)}, got {level!r}"
            )
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[level])
        threads = self.target.option("intra_op_num_threads", 1)
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 0:
            raise InputError(
                f"{self.target.source}, field 'options.intra_op_num_threads': expected an integer >= 0, got {threads!r}"
            )
        so.intra_op_num_threads = threads
        precision = self.target.option("x64quantprecision")
        if precision is not None:
            if precision not in (0, 1) or isinstance(precision, bool):
                raise InputError(
                    f"{self.target.source}, field 'options.x64quantprecision': expected 0 or 1, got {precision!r}"
                )
            so.add_session_config_entry("session.x64quantprecision", str(int(precision)))
        return so

    # -- sessions ------------------------------------------------------------------------------

    def _new_session(self, model: str | bytes, what: str):
        ort = self._ort()
        so = self.session_options()
        try:
            with quiet_stderr():  # ORT's C++ warnings go to fd 2 (--verbose shows them)
                return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        except Exception as err:  # ORT raises its pybind11 exceptions (InvalidProtobuf, Fail, ...)
            raise InputError(f"{what}: ONNX Runtime cannot load it ({first_line(err)})") from None

    def session_for_file(self, path: Path):
        path = Path(path)
        try:
            key = ("file", str(path.resolve()), path.stat().st_mtime_ns)
        except OSError as err:
            raise InputError(f"{path}: unreadable ({first_line(err)})") from None
        if key not in self._sessions:
            self._sessions = {k: v for k, v in self._sessions.items() if k[:2] != key[:2]}  # drop stale mtimes
            self._sessions[key] = self._new_session(str(path), str(path))
        return self._sessions[key]

    def session_for_bytes(self, content: bytes, what: str):
        key = ("bytes", hashlib.sha256(content).hexdigest())
        if key not in self._sessions:
            self._sessions[key] = self._new_session(content, what)
        return self._sessions[key]

    # -- running -------------------------------------------------------------------------------

    @staticmethod
    def _check_graph_input(sess, path: Any, shape: tuple[int, ...], dtype: str) -> None:
        inputs = sess.get_inputs()
        if len(inputs) != 1 or inputs[0].name != INPUT:
            raise InputError(
                f"{path}: expected one graph input named {INPUT!r} (an edgeconv export), got {[i.name for i in inputs]}"
            )
        got_dtype = _ONNX_DTYPES.get(inputs[0].type, inputs[0].type)
        if got_dtype != dtype or tuple(inputs[0].shape) != shape:
            raise InputError(
                f"{path}: graph input is {got_dtype} {list(inputs[0].shape)}, expected {dtype} "
                f"{list(shape)} for this build (files from different builds?)"
            )

    def _run(self, sess, x: np.ndarray, names: list[str]) -> list[np.ndarray]:
        """names' outputs for every sample of x (NHWC), each concatenated along N, NHWC."""
        outs: list[list[np.ndarray]] = [[] for _ in names]
        for i in range(x.shape[0]):
            feed = {INPUT: np.ascontiguousarray(x[i : i + 1].transpose(0, 3, 1, 2))}
            try:
                values = sess.run(names, feed)
            except Exception as err:
                raise InputError(f"ONNX Runtime failed to run the model ({first_line(err)})") from None
            for slot, value in zip(outs, values):
                slot.append(_to_nhwc(np.asarray(value)))
        return [np.concatenate(slot) for slot in outs]

    def _nchw(self, build: BuiltModel) -> tuple[int, ...]:
        m = build.analysis.model.input
        return (1, m.channels, m.height, m.width)

    def run(self, build: BuiltModel, x_q: np.ndarray) -> np.ndarray:
        from edgeconv.backends.foreign_qdq import is_foreign

        if is_foreign(build):  # a user's own QDQ file (float I/O): its output read as integers
            output = build.analysis.model.output
            return self.run_layers(build, x_q, [output])[output]
        x_q = check_input(build, x_q, build.qdq_dtype)
        path = build.artifact("qdq_onnx")
        sess = self.session_for_file(path)
        self._check_graph_input(sess, path, self._nchw(build), build.qdq_dtype)
        return self._run(sess, x_q, [build.tensor_name("qdq_onnx", build.analysis.model.output)])[0]

    def run_layers(self, build: BuiltModel, x_q: np.ndarray, layers: Sequence[str]) -> dict[str, np.ndarray]:
        x_q = check_input(build, x_q, build.qdq_dtype)
        path = build.artifact("qdq_onnx")

        def run_exposed(names: list[str]) -> dict[str, np.ndarray]:
            from edgeconv.backends import foreign_qdq
            from edgeconv.export.expose import onnx_with_outputs  # ORT keeps the same fused kernels

            if foreign_qdq.is_foreign(build):
                data = path.read_bytes()
                ints = foreign_qdq.integer_names(data, names)
                what = f"{path} with {len(names)} layer outputs"
                sess = self.session_for_bytes(onnx_with_outputs(data, ints), what)
                return dict(zip(names, foreign_qdq.run(sess, build, x_q, build.qdq_dtype, ints)))
            sess = self.session_for_bytes(
                onnx_with_outputs(path.read_bytes(), names), f"{path} with {len(names)} layer outputs"
            )
            return dict(zip(names, self._run(sess, x_q, names)))

        return layer_outputs(build, x_q, layers, run_exposed, artifact="qdq_onnx")

    def run_float(self, build: BuiltModel, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            raise UsageError(f"input: expected float values for the float model, got {x.dtype}")
        x = check_input(build, x.astype(np.float32, copy=False), "float32")
        path = build.artifact("float_onnx")
        sess = self.session_for_file(path)
        self._check_graph_input(sess, path, self._nchw(build), "float32")
        return self._run(sess, x, [build.analysis.model.output])[0]


def create(target: Target) -> CpuBackend:
    return CpuBackend(target)
