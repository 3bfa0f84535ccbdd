"""Backends: one module per runtime behind one small protocol, found by target name.

A backend module exposes `create(target) -> Backend`. Modules are imported only when a
target is used, so importing edgeconv imports no runtime. Conventions shared by every backend:

- inputs are quantized outside the graph, once, with quant.quantize.quantize_input, in the
  target's activation dtype (int8 or uint8), NHWC (N, H, W, C);
- outputs come back NHWC in the runtime's dtype: (N, H, W, C), or (N, 1, 1, units) for a
  dense/softmax output; artifacts.to_int8_convention puts uint8 on the int8 grid for comparison;
- a node or op the runtime rejects is an error naming it (MissingRuntime / InputError), never a
  silent fallback.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from edgeconv.artifacts.folder import BuiltModel
from edgeconv.core.errors import MissingRuntime, UsageError
from edgeconv.core.ir import INPUT
from edgeconv.plan.targets import Target

REGISTRY = {
    "reference": "edgeconv.backends.reference",
    "cpu": "edgeconv.backends.cpu",
    "arm": "edgeconv.backends.arm",
    "npu": "edgeconv.backends.npu",
    "mcu": "edgeconv.backends.mcu",
    "mcu_qemu": "edgeconv.backends.mcu_qemu",
}


class Backend(Protocol):
    target: Target

    def unavailable(self) -> str | None:
        """None when the runtime can run here, else the reason (with what to install)."""

    def run(self, build: BuiltModel, x_q: np.ndarray) -> np.ndarray:
        """Run the target's int8 artifact on quantized inputs; return the quantized output."""

    def run_layers(self, build: BuiltModel, x_q: np.ndarray, layers: Sequence[str]) -> dict[str, np.ndarray]:
        """Quantized outputs of the named layers (for locating the first diverging layer)."""

    def run_float(self, build: BuiltModel, x: np.ndarray) -> np.ndarray | None:
        """Run the float artifact on float inputs, or None when the target has none."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (runtimes raise multi-line C++ errors)."""
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0].strip()


def import_problem(target: Target, module: str) -> str | None:
    """None when the target's runtime is installed and `module` imports, else why not (with the
    pip hint): the availability check every backend shares."""
    reason = target.missing_runtime()
    if reason:
        return reason
    try:
        importlib.import_module(module)
    except ImportError as err:
        return (
            f"target {target.name}: {module} is installed but does not import ({first_line(err)}); "
            f"reinstall it with: pip install 'edgeconv[{target.extra}]'"
        )
    return None


def layer_outputs(
    build: BuiltModel,
    x_q: np.ndarray,
    layers: Sequence[str],
    run_exposed: Callable[[list[str]], dict[str, np.ndarray]],
    artifact: str | None = None,
) -> dict[str, np.ndarray]:
    """What every run_layers shares: check the names, pass "input" through, and get the other
    tensors from `run_exposed(names)`, which runs the artifact under test with those tensors
    made graph outputs (export.expose), so a fault in the file shows up. `artifact` (a kind of
    ARTIFACT_FILES) translates layer names to the artifact's tensor names: an imported user's
    file keeps its own (BuiltModel.tensor_name)."""
    known = [layer.name for layer in build.analysis.model.layers]
    wanted = list(dict.fromkeys(layers))
    unknown = [name for name in wanted if name != INPUT and name not in known]
    if unknown:
        raise UsageError(f"layer {unknown[0]!r}: not a layer of {build.name} (layers: {', '.join(known)})")
    result = {INPUT: x_q.copy()} if INPUT in wanted else {}
    names = [name for name in wanted if name != INPUT]
    if names:
        tensors = [build.tensor_name(artifact, n) for n in names] if artifact else names
        got = run_exposed(tensors)
        result.update({name: got[tensor] for name, tensor in zip(names, tensors)})
    return {name: result[name] for name in layers}


def get_backend(target: Target) -> Backend:
    if target.backend not in REGISTRY:
        raise UsageError(f"target {target.name}: backend {target.backend!r} unknown; backends: {', '.join(REGISTRY)}")
    module = importlib.import_module(REGISTRY[target.backend])
    return module.create(target)


def runtime_pins(target: Target) -> dict[str, str]:
    """Numerics-relevant versions the installed runtime reports beyond its package version
    (the npu's QNN SDK), from the backend module's `runtime_pins()` when it has one."""
    if target.backend not in REGISTRY:
        return {}
    module = importlib.import_module(REGISTRY[target.backend])
    pins = getattr(module, "runtime_pins", None)
    return pins() if pins is not None else {}


def require(backend: Backend) -> Backend:
    """The backend, or MissingRuntime (exit 2) saying what to install."""
    reason = backend.unavailable()
    if reason:
        raise MissingRuntime(reason)
    return backend


def check_input(build: BuiltModel, x_q: np.ndarray, dtype: str) -> np.ndarray:
    """Refuse inputs of the wrong shape or dtype with one line that says what was expected."""
    m = build.analysis.model.input
    expected = (m.height, m.width, m.channels)
    x_q = np.asarray(x_q)
    if x_q.ndim == 3:
        x_q = x_q[None]
    if x_q.ndim != 4 or tuple(x_q.shape[1:]) != expected:
        raise UsageError(
            f"input: expected shape (N, {', '.join(map(str, expected))}) (NHWC of "
            f"{m.width}x{m.height}x{m.channels}), got {tuple(x_q.shape)}"
        )
    if x_q.dtype != np.dtype(dtype):
        raise UsageError(f"input: expected quantized {dtype} values for this target, got {x_q.dtype}")
    return x_q


def check_artifact_loads(build: BuiltModel, target: Target) -> None:
    """Refuse an artifact that its runtime cannot load and run (before it is packed into a
    bundle): one zero-point sample through the target's backend. When the runtime is not
    installed here, the file's own structure is checked instead (flatbuffer / ONNX checker)."""
    from edgeconv.core.errors import InputError
    from edgeconv.quant.quantize import quantize_input

    path = build.artifact(target.artifact)  # also checks manifest.json's hash
    backend = get_backend(target)
    if backend.unavailable() is None:
        from edgeconv.parity.run import target_dtype

        m = build.analysis.model.input
        x = np.zeros((1, m.height, m.width, m.channels), np.float32)
        try:
            backend.run(build, quantize_input(x, build.qparams.activations[INPUT], target_dtype(build, target)))
        except (InputError, UsageError) as err:
            raise InputError(f"{path}: does not run on {target.name} ({first_line(err)}); rebuild it") from None
        return
    data = path.read_bytes()
    try:
        if path.suffix == ".tflite":
            from ai_edge_litert import schema_py_generated as fb

            if len(data) < 8 or data[4:8] != b"TFL3":
                raise ValueError("no TFL3 file identifier")
            fb.ModelT.InitFromObj(fb.Model.GetRootAs(data, 0))
        else:
            import onnx

            onnx.checker.check_model(onnx.load_model_from_string(data))
    except ImportError:
        return
    except Exception as err:  # a corrupt file raises anything from the parsers
        raise InputError(f"{path}: not a loadable {path.suffix} file ({first_line(err)}); rebuild it") from None
