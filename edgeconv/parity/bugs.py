"""The bug catalogue: real deployment bugs injected into the artifacts under test, and the
verdicts that catch them (README "Bug catalogue"; `python scripts/bug_catalogue.py`).

Each `Bug` edits the files a target runs (the int8 .tflite for arm / mcu, the QDQ .onnx for
cpu / npu) the way the bug would have written them, or what the application feeds them, or
(a `SourceBug`) the IR an importer would have produced from a source model. The edit is
computed here in numpy from the build's own QuantParams; the files are rewritten by
export/tamper.py. Every bug names the layer it touches: the deployment verdict must name that
layer as the first diverging one. Harmless edits (marked `harmless`) must pass every verdict,
and the reason they are harmless is part of the row.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgeconv.artifacts.folder import BuiltModel, load_build, reseal_build_folder
from edgeconv.core.ir import Model
from edgeconv.export import tamper

# A small model with every op the bugs need: a stride-2 conv, a depthwise conv, a conv whose
# output goes below zero (no activation), ReLU convs, a flatten of an 8x8 map into the FC.
CATALOGUE_MODEL = {
    "name": "bugcat",
    "description": "bug catalogue model: stride-2 conv, depthwise, linear 1x1, flatten into FC, softmax",
    "input": [16, 16, 3],
    "layers": [
        {"name": "conv1", "op": "conv2d", "filters": 8, "kernel": 3, "stride": 2, "activation": "relu"},
        {"name": "dw1", "op": "depthwise_conv2d", "kernel": 3, "activation": "relu"},
        {"name": "pw1", "op": "conv2d", "filters": 8, "kernel": 1},
        {"name": "pw2", "op": "conv2d", "filters": 8, "kernel": 1, "activation": "relu"},
        {"name": "fc", "op": "dense", "units": 10},
        {"name": "softmax", "op": "softmax"},
    ],
}

Edit = Callable[[BuiltModel, bytes], bytes]


@dataclass(frozen=True)
class Bug:
    name: str
    injected: str  # what was written into the artifact, one line
    layer: str  # the layer edited: the first diverging layer expected (a comma list: any of them)
    reason: str  # why it is caught, or why it is harmless
    tflite: Edit | None = None  # edit of model.int8.tflite (arm, mcu)
    onnx: Edit | None = None  # edit of model.int8.onnx (cpu, npu)
    feed: Callable[[np.ndarray], np.ndarray] | None = None  # what the app does to the input bytes
    harmless: bool = False


@dataclass(frozen=True)
class SourceBug:
    """An import mistake: the IR (and every artifact derived from it) differs from the source
    model; the goldens are computed from the same wrong IR, only the source verdict can see it."""

    name: str
    injected: str
    source: str  # the source model file (tests/data/import/...)
    layer: str  # the layer the importer got wrong
    reason: str
    mutate: Callable[[Model, dict], tuple[Model, dict]] = field(repr=False, default=lambda m, w: (m, w))


# -- numpy edits of the build's integer arrays --------------------------------------------------


def prev_scale(build: BuiltModel, layer: str) -> float:
    layer_ir = next(ly for ly in build.analysis.model.layers if ly.name == layer)
    return float(build.qparams.activations[layer_ir.inputs[0]].scale[0])


def flatten_chw(build: BuiltModel, layer: str) -> np.ndarray:
    """FC weights laid out for a C, H, W flatten (PyTorch's) while the runtime flattens H, W, C."""
    q = build.qparams.q_weights[layer]
    w, h, c = build.analysis.info(layer).in_shape
    return q.reshape(q.shape[0], h, w, c).transpose(0, 3, 1, 2).reshape(q.shape)


def multiplier_16bit_scales(build: BuiltModel, layer: str) -> np.ndarray:
    """Weight scales for which s_in·s_w/s_out is the requantization multiplier rounded to 16
    significant bits: the multiplier the runtime derives is the 16-bit one."""
    s_in, s_out = prev_scale(build, layer), float(build.qparams.activations[layer].scale[0])
    m = s_in * build.qparams.weights[layer].scale_array().astype(np.float64) / s_out
    mant, exp = np.frexp(m)
    m16 = np.ldexp(np.round(mant * 2.0**16) / 2.0**16, exp)
    return (m16 * s_out / s_in).astype(np.float32)


def bias_half_precision(build: BuiltModel, layer: str) -> np.ndarray:
    """The int32 bias quantized with its scale s_in·s_w computed in float16."""
    s = np.float16(prev_scale(build, layer)) * build.qparams.weights[layer].scale_array().astype(np.float16)
    b = build.weights[f"{layer}.bias"].astype(np.float64)
    return np.round(b / s.astype(np.float64)).astype(np.int32)


def corrupt_bias(build: BuiltModel, layer: str) -> np.ndarray:
    q = build.qparams.q_biases[layer].copy()
    q[0] ^= 1 << 12  # one bit of one channel flipped
    return q


def roll_scales(build: BuiltModel, layer: str) -> np.ndarray:
    return np.roll(build.qparams.weights[layer].scale_array(), 1)


def negate_channels(q: np.ndarray, axis: int = 0) -> np.ndarray:
    q = np.moveaxis(q.copy(), axis, 0)
    q[:4] = -q[:4]
    return np.moveaxis(q, 0, axis)


def uint8_feed(x_q: np.ndarray) -> np.ndarray:
    """int8 bytes fed as uint8 (or the reverse): every value off by 128, wrapped."""
    x_q = np.asarray(x_q)
    return (x_q.view(np.uint8) ^ 0x80).view(x_q.dtype)


def shifted_zero_point(build: BuiltModel, layer: str, shift: int) -> int:
    return int(build.qparams.activations[layer].zero_point[0]) + shift


def _qdq_stored_zero_point(build: BuiltModel, layer: str, zp_int8: int) -> np.ndarray:
    return np.asarray(zp_int8 + (128 if build.qdq_dtype == "uint8" else 0))


WEIGHTED = ("conv1", "dw1", "pw1", "pw2", "fc")


def _each(layers: Sequence[str], make: Callable[[str], Edit]) -> Edit:
    """One edit per layer, applied in turn."""

    def edit(build: BuiltModel, data: bytes) -> bytes:
        for name in layers:
            data = make(name)(build, data)
        return data

    return edit


def catalogue(zp_shift: int = 3) -> list[Bug | SourceBug]:
    """Every row of the catalogue (on CATALOGUE_MODEL and two imported fixtures)."""

    def onnx_set(name: str, fn: Callable[[BuiltModel], np.ndarray]) -> Edit:
        return lambda b, d: tamper.onnx_edit(d, name, fn(b))

    def tfl_set(name: str, **fns) -> Edit:
        return lambda b, d: tamper.tflite_edit(d, name, **{k: f(b) for k, f in fns.items()})

    def onnx_dw(b: BuiltModel) -> np.ndarray:  # ONNX depthwise layout (C, 1, KH, KW)
        q = b.qparams.q_weights["dw1"]  # (1, KH, KW, C)
        return np.swapaxes(q, 1, 2).transpose(3, 0, 1, 2)

    return [
        Bug(
            "weight sign flip",
            "4 output channels of conv1's int8 weights negated",
            "conv1",
            "the file's weights differ from the IR's",
            tflite=tfl_set("conv1.weight", values=lambda b: negate_channels(b.qparams.q_weights["conv1"])),
            onnx=onnx_set(
                "conv1.weight", lambda b: negate_channels(b.qparams.q_weights["conv1"].transpose(0, 3, 1, 2))
            ),
        ),
        Bug(
            "flatten order NCHW vs NHWC",
            "fc weights laid out for a C,H,W flatten; the runtime flattens H,W,C",
            "fc",
            "every FC input is paired with the wrong weight",
            tflite=tfl_set("fc.weight", values=lambda b: flatten_chw(b, "fc")),
            onnx=onnx_set("fc.weight", lambda b: flatten_chw(b, "fc")),
        ),
        Bug(
            "per-channel scales shuffled",
            "pw2's weight scales rolled by one channel (values untouched)",
            "pw2",
            "each channel requantized with its neighbour's multiplier",
            tflite=tfl_set("pw2.weight", scale=lambda b: roll_scales(b, "pw2")),
            onnx=onnx_set("pw2.weight.scale", lambda b: roll_scales(b, "pw2")),
        ),
        Bug(
            "corrupted int32 bias",
            "bit 12 of pw1's channel-0 bias flipped (±4096 on the accumulator)",
            "pw1",
            "one channel offset by 4096·s_in·s_w",
            tflite=tfl_set("pw1.bias", values=lambda b: corrupt_bias(b, "pw1")),
            onnx=onnx_set("pw1.bias", lambda b: corrupt_bias(b, "pw1")),
        ),
        Bug(
            "fused ReLU added",
            "a ReLU fused into pw1, whose output range goes below zero",
            "pw1",
            "negative outputs clamped to the zero point",
            tflite=lambda b, d: tamper.tflite_set_activation(d, "pw1", "relu"),
            onnx=lambda b, d: tamper.onnx_add_relu(d, "pw1"),
        ),
        Bug(
            "uint8 inputs into an int8 file",
            "the application feeds x_q + 128 (wrapped): zero point off by 128",
            "conv1",
            "the first layer reads every input off by 128",
            feed=uint8_feed,
        ),
        Bug(
            "bias scale in float16",
            "dw1's int32 bias quantized with s_in·s_w computed in float16",
            "dw1",
            "bias off by up to 2^-11 relative: some outputs round the other way",
            tflite=tfl_set("dw1.bias", values=lambda b: bias_half_precision(b, "dw1")),
            onnx=onnx_set("dw1.bias", lambda b: bias_half_precision(b, "dw1")),
        ),
        Bug(
            "depthwise kernel transposed",
            "dw1's 3x3 kernels stored transposed (KH and KW swapped)",
            "dw1",
            "every window weighted by the transposed kernel",
            tflite=tfl_set("dw1.weight", values=lambda b: np.swapaxes(b.qparams.q_weights["dw1"], 1, 2)),
            onnx=onnx_set("dw1.weight", onnx_dw),
        ),
        Bug(
            "multiplier rounded to 16 bits",
            "every layer's weight scales set so that s_in·s_w/s_out is the multiplier held to 16 bits",
            ",".join(WEIGHTED),
            "relative error up to 2^-17: outputs near a rounding tie move by 1 LSB",
            tflite=_each(
                WEIGHTED, lambda name: tfl_set(f"{name}.weight", scale=lambda b: multiplier_16bit_scales(b, name))
            ),
            onnx=_each(
                WEIGHTED, lambda name: onnx_set(f"{name}.weight.scale", lambda b: multiplier_16bit_scales(b, name))
            ),
        ),
        SourceBug(
            "padding convention (stride 2)",
            "stride2_pad1's first 3x3/2 conv imported with TF SAME (0 before, 1 after) instead of PyTorch's pad 1",
            "stride2_pad1.onnx",
            "c1.0",
            "every output column is shifted by one input pixel; the goldens share the wrong IR",
            mutate=_same_padding,
        ),
        SourceBug(
            "flatten order (import)",
            "flatten_nonsquare's Linear weights taken in C,H,W order into the IR's H,W,C flatten",
            "flatten_nonsquare.onnx",
            "fc",
            "the FC pairs inputs with the wrong weights; the goldens share the wrong IR",
            mutate=_chw_dense,
        ),
        Bug(
            "zero point moved for producer and consumer",
            f"pw1's output zero point +{zp_shift} in the file (written and read with it)",
            "pw1",
            "the same real values on a shifted grid; parity compares on the file's declared grid, no value clamps",
            tflite=lambda b, d: tamper.tflite_edit(d, "pw1", zero_point=[shifted_zero_point(b, "pw1", zp_shift)]),
            onnx=lambda b, d: tamper.onnx_edit(
                d, "pw1.zero_point", _qdq_stored_zero_point(b, "pw1", shifted_zero_point(b, "pw1", zp_shift))
            ),
            harmless=True,
        ),
        Bug(
            "fused ReLU dropped (range starts at 0)",
            "conv1's fused ReLU removed; its output zero point is -128 (range [0, max])",
            "conv1",
            "the int8 clamp at -128 = real 0 does what the ReLU did",
            tflite=lambda b, d: tamper.tflite_set_activation(d, "conv1", "none"),
            onnx=lambda b, d: tamper.onnx_drop_relu(d, "conv1"),
            harmless=True,
        ),
    ]


def _same_padding(model, weights):
    """TF SAME on the first stride-2 conv: on an even axis 0 before, 1 after (pad 1 is 1, 1)."""
    layers = list(model.layers)
    i = next(i for i, ly in enumerate(layers) if ly.op == "conv2d" and ly.stride == (2, 2))
    layers[i] = replace(layers[i], padding="same")
    return replace(model, layers=tuple(layers)), weights


def _chw_dense(model, weights):
    from edgeconv.core.graph import analyze

    analysis = analyze(model)
    dense = next(ly for ly in model.layers if ly.op == "dense")
    w, h, c = analysis.info(dense.name).in_shape
    key = f"{dense.name}.weight"
    q = weights[key]
    weights = dict(weights)
    weights[key] = q.reshape(q.shape[0], c, h, w).transpose(0, 2, 3, 1).reshape(q.shape).copy()
    return model, weights


# -- running the catalogue ---------------------------------------------------------------------


@dataclass
class Cell:
    """One bug on one target: each verdict, and where the deployment check diverged."""

    target: str
    verdicts: dict[str, bool | None]
    layer: str | None = None  # first diverging layer (deployment)
    max_lsb: int | None = None
    error: str | None = None

    @property
    def flagged(self) -> bool:
        return any(v is False for v in self.verdicts.values()) or self.error is not None

    def text(self) -> str:
        if self.error:
            return f"error ({self.error})"
        failed = [k for k, v in self.verdicts.items() if v is False]
        if not failed:
            return "pass"
        parts = []
        for kind in failed:
            if kind == "deployment" and self.layer:
                parts.append(f"deploy @{self.layer} {self.max_lsb} LSB")
            else:
                parts.append({"deployment": "deploy", "quality": "quality", "source": "source"}[kind])
        return ", ".join(parts)


@dataclass
class Row:
    bug: Bug | SourceBug
    cells: list[Cell]
    source_sqnr: float | None = None

    @property
    def harmless(self) -> bool:
        return isinstance(self.bug, Bug) and self.bug.harmless

    @property
    def as_expected(self) -> bool:
        """Caught on every target (a bug) or flagged nowhere (a harmless edit); a caught bug
        must name the edited layer wherever the deployment verdict caught it."""
        if self.harmless:
            return not any(c.flagged for c in self.cells)
        ok = all(c.flagged for c in self.cells)
        return ok and all(c.layer is None or c.layer in self.bug.layer.split(",") for c in self.cells)


def build_catalogue_model(out: Path, calib_samples: int = 32, seed: int = 0) -> BuiltModel:
    from edgeconv.artifacts.build import BuildRequest, run_build
    from edgeconv.plan.recipes import model_from_dict

    model = model_from_dict(CATALOGUE_MODEL, "bug catalogue model")
    run_build(BuildRequest(model=model, out=str(out), calib_samples=calib_samples, seed=seed))
    return load_build(out)


def inject(build: BuiltModel, bug: Bug, out: Path) -> BuiltModel:
    """A copy of the build folder with the bug written into its artifacts (manifest resealed)."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(build.folder, out)
    for kind, edit in (("int8_tflite", bug.tflite), ("qdq_onnx", bug.onnx)):
        if edit is not None:
            path = out / build.artifact(kind).name
            path.write_bytes(edit(build, path.read_bytes()))
    reseal_build_folder(out)
    return load_build(out)


def _cell(result) -> Cell:
    div = result.divergence
    return Cell(
        result.target,
        {k: result.verdict(k) for k in ("deployment", "quality")},
        div.layer if div is not None else None,
        div.max_lsb if div is not None else None,
    )


def run_bug(build: BuiltModel, bug: Bug, targets: Sequence, x: np.ndarray, work: Path) -> Row:
    from edgeconv.core import reference
    from edgeconv.parity.run import check_target

    broken = inject(build, bug, work / bug.name.replace(" ", "_"))
    float_all = reference.run(build.analysis, build.weights, x, keep_all=True)
    cells = []
    for target in targets:
        try:
            cells.append(_cell(check_target(broken, target, x, float_all, feed=bug.feed)))
        except Exception as err:  # a runtime refusing the broken file is also "caught", but named apart
            cells.append(Cell(target.name, {}, error=str(err).splitlines()[0][:90]))
    return Row(bug, cells)


def run_source_bug(bug: SourceBug, source_dir: Path, targets: Sequence, samples: int, work: Path) -> Row:
    """Import the source, let `mutate` make the importer's mistake, build from the wrong IR,
    then parity with --source: the deployment verdicts pass, the source verdict must fail."""
    from edgeconv.artifacts.build import BuildRequest, run_build
    from edgeconv.frontends.onnx import import_onnx
    from edgeconv.parity.run import parity_inputs, run_parity

    source = source_dir / bug.source
    imported = import_onnx(source)
    model, weights = bug.mutate(imported.model, dict(imported.weights))
    out = work / bug.name.replace(" ", "_").replace("(", "").replace(")", "")
    run_build(BuildRequest(model=model, weights=weights, weights_source="wrong import", out=str(out)))
    wrong = load_build(out)
    x = parity_inputs(wrong.analysis, samples, 0)
    report = run_parity(wrong, targets, x, "synthetic", source=str(source))
    cells = []
    for r in report.results:
        cell = _cell(r)
        cell.verdicts["source"] = report.verdict("source")
        cells.append(cell)
    sqnr = report.source_stats["sqnr_db"] if report.source_stats else None
    return Row(bug, cells, sqnr)


def control_rows(build: BuiltModel, targets: Sequence, x: np.ndarray) -> list[Cell]:
    """The unedited build on every target: the catalogue's baseline (must pass)."""
    from edgeconv.core import reference
    from edgeconv.parity.run import check_target

    float_all = reference.run(build.analysis, build.weights, x, keep_all=True)
    return [_cell(check_target(build, t, x, float_all)) for t in targets]


def run_catalogue(
    targets: Sequence,
    samples: int = 16,
    source_dir: Path | None = None,
    bugs: Sequence[Bug | SourceBug] | None = None,
    work: Path | None = None,
) -> tuple[list[Cell], list[Row]]:
    from edgeconv.parity.run import parity_inputs

    with tempfile.TemporaryDirectory(prefix="edgeconv-bugs-") as tmp:
        work = work or Path(tmp)
        build = build_catalogue_model(work / "bugcat")
        x = parity_inputs(build.analysis, samples, 0)
        rows = []
        for bug in bugs if bugs is not None else catalogue():
            if isinstance(bug, SourceBug):
                if source_dir is not None:
                    rows.append(run_source_bug(bug, source_dir, targets, samples, work))
            else:
                rows.append(run_bug(build, bug, targets, x, work))
        return control_rows(build, targets, x), rows
