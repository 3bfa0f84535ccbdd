"""The npu backend: ONNX Runtime with the QNN execution provider (HTP backend) as a plugin EP.

onnxruntime-qnn 2.x is not a built-in provider: its shared library is registered once per
process with `onnxruntime.register_execution_provider_library("QNNExecutionProvider", path)`,
which adds a QNN `OrtEpDevice` to `onnxruntime.get_ep_devices()`; a session then selects it with
`SessionOptions.add_provider_for_devices([device], provider_options)`. On x86_64 Linux the wheel
carries the HTP emulator (libQnnHtp.so runs the Hexagon kernels on the host CPU; the device is
reported as a CPU device), so "htp" works without a phone.

The profile's [options] are passed to the EP as provider options, except
`disable_cpu_ep_fallback`, which is always on (`session.disable_cpu_ep_fallback` = "1"): a node
the HTP rejects must never run on ORT's CPU EP. When session creation fails for that reason,
ORT's message does not name the node, so a second session is *created* (never run) with
fallback allowed and `session.record_ep_graph_assignment_info` = "1" to read which nodes ORT
would have put on the CPU; the error names them.

Numerics-relevant provider options pinned here unless the profile sets them:
- `htp_arch` (from the profile; results depend on it);
- `offload_graph_io_quantization` = "0": the input DequantizeLinear / output QuantizeLinear stay
  on the HTP instead of being moved to the CPU EP (which fallback-off would refuse anyway);
- `htp_graph_finalization_optimization_mode` = "0".

run_float: the HTP takes float32 models in fp16 (`enable_htp_fp16_precision` = "1"), which the
QNN EP accepts only together with `soc_model`; the SoC is derived from the pinned `htp_arch`
(SOC_FOR_HTP_ARCH) or taken from a `soc_model` option. Without either, run_float returns None.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from collections.abc import Sequence

import numpy as np

from edgeconv.artifacts.folder import BuiltModel
from edgeconv.backends import check_input, layer_outputs
from edgeconv.core.errors import InputError
from edgeconv.core.ir import INPUT
from edgeconv.plan.targets import Target

EP_NAME = "QNNExecutionProvider"
# QNN SoC model ids of a reference SoC per HTP architecture (SM8350, SM8450, SM8550, SM8650, SM8750)
SOC_FOR_HTP_ARCH = {"68": "30", "69": "36", "73": "43", "75": "57", "79": "69"}
PINNED_DEFAULTS = {"offload_graph_io_quantization": "0", "htp_graph_finalization_optimization_mode": "0"}
# profile options that are no QNN provider option: a session config entry, or a pin checked
# against the installed wheel (qnn_sdk: the QNN SDK version the qnn_htp golden was measured on)
SESSION_ONLY_OPTIONS = ("disable_cpu_ep_fallback", "qnn_sdk")
_REGISTERED = False


def _register():
    """Register the QNN plugin EP library once per process; return (onnxruntime, qnn device)."""
    global _REGISTERED
    import onnxruntime as ort
    import onnxruntime_qnn

    if not _REGISTERED:
        if not any(d.ep_name == EP_NAME for d in ort.get_ep_devices()):
            ort.register_execution_provider_library(EP_NAME, onnxruntime_qnn.get_library_path())
        _REGISTERED = True
    devices = [d for d in ort.get_ep_devices() if d.ep_name == EP_NAME]
    if not devices:
        raise InputError(f"npu: {EP_NAME} registered from {onnxruntime_qnn.get_library_path()} but it offers no device")
    return ort, devices[:1]


@contextlib.contextmanager
def _quiet_native_output():
    """QNN's native libraries print banners on fd 1 (e.g. '# LIBNATIVE: ...') and ORT logs
    errors on fd 2 that this backend rephrases: silence both while a session is created."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _one_line(err: Exception) -> str:
    text = " ".join(str(err).split())
    return text.replace("[ONNXRuntimeError] : 1 : FAIL : ", "")


class NpuBackend:
    def __init__(self, target: Target):
        self.target = target
        self._sessions: dict = {}

    # -- availability ------------------------------------------------------------------------

    def unavailable(self) -> str | None:
        missing = self.target.missing_runtime()
        if missing:
            return missing
        if sys.platform.startswith("linux") and platform.machine() not in ("x86_64", "AMD64"):
            return (
                f"target {self.target.name}: the onnxruntime-qnn wheel for {platform.machine()} Linux "
                "carries no HTP emulator; it runs on x86_64 Linux/Windows (emulated) or on a "
                "Snapdragon device"
            )
        import onnxruntime_qnn

        if not os.path.isfile(onnxruntime_qnn.get_library_path()):
            return (
                f"target {self.target.name}: onnxruntime-qnn has no {os.path.basename(onnxruntime_qnn.get_library_path())} "
                "for this platform; install it with: pip install 'edgeconv[npu]'"
            )
        htp = onnxruntime_qnn.get_qnn_htp_path()
        if self.target.option("backend_type", "htp") == "htp" and not os.path.isfile(htp):
            return (
                f"target {self.target.name}: onnxruntime-qnn on this platform has no HTP backend "
                f"({os.path.basename(htp)} not found; no emulator in this wheel)"
            )
        return None

    # -- sessions ----------------------------------------------------------------------------

    def provider_options(self, float_model: bool = False) -> dict[str, str]:
        opts = {k: str(v) for k, v in self.target.options if k not in SESSION_ONLY_OPTIONS}
        opts.setdefault("backend_type", "htp")
        for key, value in PINNED_DEFAULTS.items():
            opts.setdefault(key, value)
        if float_model:
            opts["enable_htp_fp16_precision"] = "1"
            soc = opts.get("soc_model") or SOC_FOR_HTP_ARCH.get(opts.get("htp_arch", ""))
            if soc is None:
                return {}
            opts["soc_model"] = soc
        return opts

    def _session(self, model_bytes: bytes, label: str, float_model: bool = False):
        ort, devices = _register()
        opts = self.provider_options(float_model)
        so = ort.SessionOptions()
        so.log_severity_level = 4
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        so.add_provider_for_devices(devices, opts)
        try:
            with _quiet_native_output():
                return ort.InferenceSession(model_bytes, so)
        except Exception as err:
            raise InputError(self._explain(ort, devices, opts, model_bytes, label, err)) from None

    def _explain(self, ort, devices, opts, model_bytes: bytes, label: str, err: Exception) -> str:
        """One line naming the nodes the HTP rejected (from a diagnostic session that is created,
        with CPU fallback allowed, but never run)."""
        rejected: list[tuple[str, str]] = []
        try:
            so = ort.SessionOptions()
            so.log_severity_level = 4
            so.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
            so.add_provider_for_devices(devices, opts)
            with _quiet_native_output():
                diag = ort.InferenceSession(model_bytes, so)
            for sub in diag.get_provider_graph_assignment_info():
                if sub.ep_name != EP_NAME:
                    rejected += [(n.name, n.op_type) for n in sub.get_nodes()]
            del diag
        except Exception:
            pass
        where = f"npu ({opts.get('backend_type', 'htp')}, htp_arch {opts.get('htp_arch', '?')}): {label}"
        if rejected:
            # Q/DQ nodes next to a rejected op are rejected with it: name the compute ops first
            rejected.sort(key=lambda n: n[1] in ("QuantizeLinear", "DequantizeLinear"))
            names = ", ".join(f"node {n!r} ({op})" for n, op in rejected[:4])
            more = f" and {len(rejected) - 4} more" if len(rejected) > 4 else ""
            return (
                f"{where}: QNN HTP rejects {names}{more}; CPU fallback is disabled for this target "
                f"(use ops the target supports: {', '.join(self.target.ops or ())})"
            )
        return f"{where}: QNN EP could not create the session: {_one_line(err)}"

    def _cached(self, key, make):
        if key not in self._sessions:
            self._sessions[key] = make()
        return self._sessions[key]

    # -- running -----------------------------------------------------------------------------

    def _dtype(self, build: BuiltModel) -> str:
        if build.qdq_dtype != self.target.activation_dtype:
            raise InputError(
                f"{build.folder}: model.int8.onnx has {build.qdq_dtype} activations, target "
                f"{self.target.name} takes {self.target.activation_dtype} (rebuild with --target "
                f"{self.target.name})"
            )
        return build.qdq_dtype

    @staticmethod
    def _run_batches(sess, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        """Batch 1 per call (the QDQ graph has a fixed batch of 1); NHWC in and out."""
        outs: dict[str, list] = {n: [] for n in names}
        for i in range(x.shape[0]):
            nchw = np.ascontiguousarray(x[i : i + 1].transpose(0, 3, 1, 2))
            for name, value in zip(names, sess.run(names, {INPUT: nchw})):
                if value.ndim == 4:
                    value = value.transpose(0, 2, 3, 1)
                elif value.ndim == 2:  # dense/softmax (1, units) -> (1, 1, 1, units)
                    value = value.reshape(value.shape[0], 1, 1, value.shape[1])
                outs[name].append(value)
        return {n: np.concatenate(v) for n, v in outs.items()}

    def run(self, build: BuiltModel, x_q: np.ndarray) -> np.ndarray:
        from edgeconv.backends.foreign_qdq import is_foreign

        if is_foreign(build):  # a user's own QDQ file (float I/O): its output read as integers
            output = build.analysis.model.output
            return self.run_layers(build, x_q, [output])[output]
        x_q = check_input(build, x_q, self._dtype(build))
        path = build.artifact("qdq_onnx")
        sess = self._cached(
            ("int8", str(path.resolve()), path.stat().st_mtime_ns), lambda: self._session(path.read_bytes(), path.name)
        )
        out = build.tensor_name("qdq_onnx", build.analysis.model.output)
        return self._run_batches(sess, x_q, [out])[out]

    def run_layers(self, build: BuiltModel, x_q: np.ndarray, layers: Sequence[str]) -> dict[str, np.ndarray]:
        """The named layers' outputs from the artifact itself with those tensors made graph
        outputs (export.expose): the EP compiles the graph into one opaque HTP block, so an
        intermediate tensor is observable only as a graph output, and a fault in the file
        under test must show up here."""
        from edgeconv.export.expose import onnx_with_outputs

        x_q = check_input(build, x_q, self._dtype(build))
        path = build.artifact("qdq_onnx")

        def run_exposed(names: list[str]) -> dict[str, np.ndarray]:
            from edgeconv.backends import foreign_qdq

            if foreign_qdq.is_foreign(build):  # a user's own QDQ file: float I/O, integers read inside
                data = path.read_bytes()
                ints = foreign_qdq.integer_names(data, names)
                key = ("foreign", str(path.resolve()), path.stat().st_mtime_ns, tuple(ints))
                label = f"{path.name} with {len(names)} layer outputs"
                sess = self._cached(key, lambda: self._session(onnx_with_outputs(data, ints), label))
                return dict(zip(names, foreign_qdq.run(sess, build, x_q, build.qdq_dtype, ints)))
            key = ("layers", str(path.resolve()), path.stat().st_mtime_ns, tuple(names))
            sess = self._cached(
                key,
                lambda: self._session(
                    onnx_with_outputs(path.read_bytes(), names), f"{path.name} with {len(names)} layer outputs"
                ),
            )
            return self._run_batches(sess, x_q, names)

        return layer_outputs(build, x_q, layers, run_exposed, artifact="qdq_onnx")

    def run_float(self, build: BuiltModel, x: np.ndarray) -> np.ndarray | None:
        """The float model on the HTP in fp16 precision, or None when no SoC can be pinned."""
        if not self.provider_options(float_model=True):
            return None
        x = check_input(build, np.asarray(x, np.float32), "float32")
        path = build.artifact("float_onnx")
        sess = self._cached(
            ("float", str(path.resolve()), path.stat().st_mtime_ns),
            lambda: self._session(path.read_bytes(), path.name, float_model=True),
        )
        out = build.analysis.model.output
        return self._run_batches(sess, x, [out])[out]


def runtime_pins() -> dict[str, str]:
    """What the installed onnxruntime-qnn wheel carries: the QNN SDK version its libQnnHtp.so
    was built from (build_and_package_info.qnn_version, e.g. 2.51.0 in onnxruntime-qnn 2.7.0)."""
    try:
        from onnxruntime_qnn import build_and_package_info as info
    except ImportError:
        return {}
    version = getattr(info, "qnn_version", None)
    return {"qnn_sdk": str(version)} if version else {}


def create(target: Target) -> NpuBackend:
    return NpuBackend(target)
