"""Import fidelity: the user's file on its own runtime against the imported IR on edgeconv's
references, on the same seeded inputs.

- float file: LiteRT (default kernels) vs the numpy float reference; per output and per layer
  the worst relative error max|ir − file| / max|file| (relative to the tensor's magnitude, so
  near-zero elements do not blow it up).
- int8 file: LiteRT's reference kernels (OpResolverType.BUILTIN_REF) vs edgeconv's golden of
  the tflite family (quant.golden, runtime "litert_ref"), in LSB, per output and per layer.

Every layer of the IR is compared with the tensor that holds it in the file (read back with
experimental_preserve_all_tensors), so an import mistake is named at the first layer it shows.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from edgeconv.core.errors import InputError
from edgeconv.core.graph import Analysis
from edgeconv.frontends import ImportedModel

FLOAT_GOAL = 1e-5  # worst relative error a float import must reach
INT8_GOAL = 0  # LSB between the file on LiteRT reference kernels and the tflite-family golden


@dataclass
class Fidelity:
    kind: str  # "relative" (float file) or "lsb" (int8 file)
    runtime: str  # what ran the file
    reference: str  # what ran the IR
    samples: int
    input_source: str
    outputs: dict[str, float]  # output layer -> worst error
    layers: dict[str, float] = field(default_factory=dict)  # every layer -> worst error
    seconds: float = 0.0

    @property
    def worst(self) -> float:
        return max(self.outputs.values()) if self.outputs else 0.0

    @property
    def goal(self) -> float:
        return FLOAT_GOAL if self.kind == "relative" else INT8_GOAL

    @property
    def passed(self) -> bool:
        return self.worst <= self.goal

    @property
    def first_layer_over(self) -> str | None:
        for name, err in self.layers.items():
            if err > self.goal:
                return name
        return None

    def text(self) -> str:
        unit = "relative error" if self.kind == "relative" else "LSB"
        parts = [f"{name}: {_fmt(err, self.kind)} {unit}" for name, err in self.outputs.items()]
        verdict = "ok" if self.passed else f"OVER the goal {_fmt(self.goal, self.kind)}"
        line = (
            f"import fidelity ({self.runtime} vs {self.reference}, {self.samples} samples of {self.input_source}): "
            f"{'; '.join(parts)} ({verdict})"
        )
        first = self.first_layer_over
        if first:
            line += f"; first layer over the goal: {first} ({_fmt(self.layers[first], self.kind)})"
        return line

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "runtime": self.runtime,
            "reference": self.reference,
            "samples": self.samples,
            "input_source": self.input_source,
            "goal": self.goal,
            "passed": self.passed,
            "worst": self.worst,
            "outputs": self.outputs,
            "layers": self.layers,
            "first_layer_over_goal": self.first_layer_over,
            "seconds": round(self.seconds, 3),
        }


def _fmt(value: float, kind: str) -> str:
    return f"{value:.3g}" if kind == "relative" else f"{int(value)}"


def run_tflite(data: bytes, x: np.ndarray, tensors: list[str], reference_kernels: bool) -> dict[str, np.ndarray]:
    """The named tensors of a .tflite for every sample of x (batch 1 per invoke), via LiteRT."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError as err:
        raise InputError(f"import fidelity needs LiteRT: {err}; install it with: pip install 'edgeconv[arm]'") from None
    resolver = OpResolverType.BUILTIN_REF if reference_kernels else OpResolverType.AUTO
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            it = Interpreter(
                model_content=data, experimental_op_resolver_type=resolver, experimental_preserve_all_tensors=True
            )
        it.allocate_tensors()
    except Exception as err:  # ValueError / RuntimeError from the C++ side
        raise InputError(f"LiteRT cannot load the file: {str(err).strip().splitlines()[0]}") from None
    index = {d["name"]: d["index"] for d in it.get_tensor_details()}
    missing = [t for t in tensors if t not in index]
    if missing:
        raise InputError(f"LiteRT: the file has no tensor named {missing[0]!r}")
    inp = it.get_input_details()[0]
    out: dict[str, list[np.ndarray]] = {t: [] for t in tensors}
    for i in range(x.shape[0]):
        sample = np.ascontiguousarray(x[i : i + 1]).astype(inp["dtype"], copy=False)
        it.set_tensor(inp["index"], sample.reshape(inp["shape"]))  # NHWC, or [1, N] for a vector input
        it.invoke()
        for t in tensors:
            out[t].append(np.array(it.get_tensor(index[t])))
    return {t: np.concatenate(v) for t, v in out.items()}


def seeded_inputs(analysis: Analysis, n: int, seed: int) -> np.ndarray:
    m = analysis.model.input
    return np.random.default_rng([seed, 9]).standard_normal((n, m.height, m.width, m.channels)).astype(np.float32)


def check_fidelity(
    imported: ImportedModel,
    data: bytes,
    analysis: Analysis,
    x: np.ndarray,
    input_source: str,
    qparams=None,
) -> Fidelity:
    """Compare the user's file with the IR on float inputs x (N, H, W, C)."""
    start = time.perf_counter()
    names = {layer.name: imported.tensor_names.get(layer.name, layer.name) for layer in analysis.model.layers}
    output = analysis.model.output
    if imported.quant is None:
        from edgeconv.core import reference

        got = run_tflite(data, x, list(names.values()), reference_kernels=False)
        want = reference.run(analysis, imported.weights, x, keep_all=True)
        errors = {}
        for layer, tensor in names.items():
            ref = np.asarray(want[layer], np.float64).reshape(-1)
            src = np.asarray(got[tensor], np.float64).reshape(-1)
            scale = max(float(np.abs(src).max()), np.finfo(np.float32).tiny)
            errors[layer] = float(np.abs(ref - src).max() / scale)
        fid = Fidelity("relative", "LiteRT (default kernels)", "numpy float reference", len(x), input_source, {})
    else:
        from edgeconv.quant.golden import run_int8
        from edgeconv.quant.quantize import quantize_input

        qp = qparams or imported.quant
        x_q = quantize_input(x, qp.activations["input"], "int8")
        got = run_tflite(data, x_q, list(names.values()), reference_kernels=True)
        want = run_int8(analysis, qp, x_q, "litert_ref", keep_all=True)
        errors = {}
        for layer, tensor in names.items():
            a = np.asarray(want[layer], np.int64).reshape(-1)
            b = np.asarray(got[tensor], np.int64).reshape(-1)
            errors[layer] = float(np.abs(a - b).max())
        fid = Fidelity(
            "lsb", "LiteRT reference kernels", "edgeconv int8 golden (tflite family)", len(x), input_source, {}
        )
    fid.layers = errors
    fid.outputs = {output: errors[output]}
    fid.seconds = time.perf_counter() - start
    return fid


def check_onnx_fidelity(
    imported: ImportedModel, analysis: Analysis, x: np.ndarray, input_source: str
) -> Fidelity | None:
    """A float ONNX source on ONNX Runtime (backends.source: CPU EP, graph optimizations off)
    against the numpy float reference, at the output. None for what this check does not cover
    (a QDQ file: ORT without optimizations runs it in float emulation, not its int8 kernels,
    so its LSB figure is parity's cpu deployment check on the copied file; a vector input)."""
    if imported.quant is not None or getattr(imported, "input_layout", "NHWC") == "vector":
        return None
    from edgeconv.backends.source import run_source
    from edgeconv.core import reference

    start = time.perf_counter()
    # run_source reads an NCHW model's 4-D output back as N, H, W, C (the IR's order)
    got = np.asarray(run_source(imported.source, x), np.float64).reshape(len(x), -1)
    output = analysis.model.output
    want = np.asarray(reference.run(analysis, imported.weights, x)[output], np.float64).reshape(len(x), -1)
    if got.shape != want.shape:
        raise InputError(f"import fidelity: the source gives {got.shape[1]} values per sample, the IR {want.shape[1]}")
    err = float(np.abs(want - got).max() / max(float(np.abs(got).max()), np.finfo(np.float32).tiny))
    fid = Fidelity(
        "relative",
        "ONNX Runtime (CPU, no graph optimizations)",
        "numpy float reference",
        len(x),
        input_source,
        {output: err},
    )
    fid.layers = {output: err}
    fid.seconds = time.perf_counter() - start
    return fid
