"""The arm backend: LiteRT (ai-edge-litert) `Interpreter` on the int8 model model.int8.tflite.

The profile's [options]:
  kernels      "xnnpack"   the default op resolver: XNNPACK takes the ops it supports (fp32
                           requantization family), LiteRT's builtin kernels the rest
               "builtin"   OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES: LiteRT's optimized
                           builtin kernels, no delegate (tflite rounding family)
               "reference" OpResolverType.BUILTIN_REF: LiteRT's reference kernels (tflite family)
  num_threads  integer (default 1)

Inputs are int8 NHWC (quantize_input(..., "int8")), one sample per invoke (the graph's batch
is 1); outputs are int8 NHWC, (N, 1, 1, units) for a dense or softmax output.

run_layers. With "builtin" and "reference" the interpreter keeps every tensor
(experimental_preserve_all_tensors=True) and a layer's output is read from the tensor named
after the layer (export/tflite.py names them so). XNNPACK's delegate reuses its memory, so its
intermediate tensors cannot be read back; for "xnnpack" each requested layer is computed by a
prefix model instead (edgeconv.core.prefix.prefix_model: the layers that layer needs, exported with
build_int8_tflite and the build's QuantParams) run with the same resolver, so the per-layer
values come from the same kernels as run(). Interpreters are cached per (model file, mtime)
and per in-memory prefix model.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeconv.artifacts.folder import BuiltModel
from edgeconv.backends import check_input, first_line, import_problem, layer_outputs
from edgeconv.backends.quiet import quiet_stderr
from edgeconv.core.errors import InputError, UsageError
from edgeconv.plan.targets import Target

RESOLVERS = {"xnnpack": "AUTO", "builtin": "BUILTIN_WITHOUT_DEFAULT_DELEGATES", "reference": "BUILTIN_REF"}


def _to_nhwc(value: np.ndarray) -> np.ndarray:
    """One sample's output as NHWC: a (1, units) dense/softmax output as (1, 1, 1, units)."""
    return value if value.ndim == 4 else value.reshape(value.shape[0], 1, 1, -1)


class ArmBackend:
    def __init__(self, target: Target):
        self.target = target
        self.kernels = str(target.option("kernels", "xnnpack"))
        if self.kernels not in RESOLVERS:
            raise InputError(
                f"{target.source}, field 'options.kernels': expected one of {', '.join(RESOLVERS)}, "
                f"got {self.kernels!r}"
            )
        threads = target.option("num_threads", 1)
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise InputError(f"{target.source}, field 'options.num_threads': expected an integer >= 1, got {threads!r}")
        self.num_threads = threads
        self._interpreters: dict[tuple, Any] = {}

    def unavailable(self) -> str | None:
        return import_problem(self.target, "ai_edge_litert.interpreter")

    # -- interpreters --------------------------------------------------------------------------

    def _new_interpreter(self, what: str, preserve: bool, path: str | None = None, content: bytes | None = None):
        try:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType
        except ImportError as err:
            raise InputError(
                f"target {self.target.name}: ai-edge-litert does not import ({first_line(err)}); "
                f"install it with: pip install 'edgeconv[{self.target.extra}]'"
            ) from None
        resolver = getattr(OpResolverType, RESOLVERS[self.kernels])
        try:
            # quiet_stderr: LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate" goes to fd 2 (--verbose
            # shows it); and LiteRT warns that preserve_all_tensors costs memory: intended here
            with warnings.catch_warnings(), quiet_stderr():
                warnings.simplefilter("ignore", UserWarning)
                it = Interpreter(
                    model_path=path,
                    model_content=content,
                    num_threads=self.num_threads,
                    experimental_op_resolver_type=resolver,
                    experimental_preserve_all_tensors=preserve,
                )
        except Exception as err:  # ValueError for a file that is not a TFLite flatbuffer
            raise InputError(f"{what}: LiteRT cannot load it ({first_line(err)})") from None
        try:
            with quiet_stderr():
                it.allocate_tensors()
        except Exception as err:  # RuntimeError naming the op a kernel rejected
            raise InputError(f"{what}: LiteRT ({self.kernels} kernels) cannot prepare it ({first_line(err)})") from None
        return it

    def interpreter_for_file(self, path: Path, preserve: bool = False):
        path = Path(path)
        try:
            key = ("file", str(path.resolve()), preserve, path.stat().st_mtime_ns)
        except OSError as err:
            raise InputError(f"{path}: unreadable ({first_line(err)})") from None
        if key not in self._interpreters:
            self._interpreters = {k: v for k, v in self._interpreters.items() if k[:3] != key[:3]}
            self._interpreters[key] = self._new_interpreter(str(path), preserve, path=str(path))
        return self._interpreters[key]

    def interpreter_for_bytes(self, content: bytes, what: str):
        key = ("bytes", hashlib.sha256(content).hexdigest())
        if key not in self._interpreters:
            self._interpreters[key] = self._new_interpreter(what, False, content=content)
        return self._interpreters[key]

    # -- running -------------------------------------------------------------------------------

    @staticmethod
    def _input_index(it, what: Any, shape: tuple[int, ...], dtype: np.dtype) -> int:
        inputs = it.get_input_details()
        if len(inputs) != 1:
            raise InputError(f"{what}: expected one input tensor, got {len(inputs)}")
        got_shape, got_dtype = tuple(int(v) for v in inputs[0]["shape"]), np.dtype(inputs[0]["dtype"])
        # an imported vector model keeps its [1, N] input: the IR's 1 x 1 x N map
        vector = len(got_shape) == 2 and len(shape) == 4 and shape[1:3] == (1, 1) and got_shape == (1, shape[3])
        if (got_shape != shape and not vector) or got_dtype != dtype:
            raise InputError(
                f"{what}: input tensor is {got_dtype} {list(got_shape)}, expected {dtype} "
                f"{list(shape)} for this build (files from different builds?)"
            )
        return inputs[0]["index"]

    def _run(self, it, what: Any, x: np.ndarray, tensors: list[str] | None = None) -> list[np.ndarray]:
        """The model output (tensors=None) or the named tensors for every sample of x, NHWC."""
        index = self._input_index(it, what, (1, *x.shape[1:]), x.dtype)
        if tensors is None:
            reads = [it.get_output_details()[0]["index"]]
        else:
            by_name = {d["name"]: d["index"] for d in it.get_tensor_details()}
            missing = [t for t in tensors if t not in by_name]
            if missing:
                raise InputError(f"{what}: has no tensor named {missing[0]!r} (not an edgeconv export?)")
            reads = [by_name[t] for t in tensors]
        outs: list[list[np.ndarray]] = [[] for _ in reads]
        for i in range(x.shape[0]):
            try:
                sample = np.ascontiguousarray(x[i : i + 1])
                it.set_tensor(index, sample.reshape(it.get_input_details()[0]["shape"]))  # [1, N] vector input
                it.invoke()
                for slot, read in zip(outs, reads):
                    slot.append(_to_nhwc(np.array(it.get_tensor(read))))
            except (RuntimeError, ValueError) as err:
                raise InputError(f"{what}: LiteRT failed to run it ({first_line(err)})") from None
        return [np.concatenate(slot) for slot in outs]

    def run(self, build: BuiltModel, x_q: np.ndarray) -> np.ndarray:
        x_q = check_input(build, x_q, "int8")
        path = build.artifact("int8_tflite")
        return self._run(self.interpreter_for_file(path), path, x_q)[0]

    def run_layers(self, build: BuiltModel, x_q: np.ndarray, layers: Sequence[str]) -> dict[str, np.ndarray]:
        x_q = check_input(build, x_q, "int8")
        path = build.artifact("int8_tflite")

        def run_exposed(names: list[str]) -> dict[str, np.ndarray]:
            if self.kernels != "xnnpack":  # builtin kernels keep every tensor on request
                return dict(zip(names, self._run(self.interpreter_for_file(path, preserve=True), path, x_q, names)))
            # XNNPACK reuses intermediate buffers: the tensors must be graph outputs
            from edgeconv.export.expose import tflite_with_outputs

            what = f"{path} with {len(names)} layer outputs"
            it = self.interpreter_for_bytes(tflite_with_outputs(path.read_bytes(), names), what)
            return dict(zip(names, self._run(it, what, x_q, names)))

        return layer_outputs(build, x_q, layers, run_exposed, artifact="int8_tflite")

    def run_float(self, build: BuiltModel, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            raise UsageError(f"input: expected float values for the float model, got {x.dtype}")
        x = check_input(build, x.astype(np.float32, copy=False), "float32")
        path = build.artifact("float_tflite")
        return self._run(self.interpreter_for_file(path), path, x)[0]


def create(target: Target) -> ArmBackend:
    return ArmBackend(target)
