"""A build folder from an imported model (`edgeconv import`).

The folder is a normal build folder (plan.json, weights.npz, quant.json, model.onnx,
model.int8.onnx, model.int8.tflite, model.float.tflite, report.md, manifest.json), so run,
bench, parity, bundle and validate take it unchanged. What differs:

- float source: calibrated and quantized by edgeconv like a recipe (every artifact derived);
- int8 source (full-integer .tflite, QDQ .onnx): quant.json holds the file's own scales and
  zero points (no recalibration), quant.npz the file's integer weights and biases as they are
  (quant.json's "integers" names it; the loader then takes them instead of re-quantizing
  weights.npz, which holds their dequantized values for the float reference); the user's file
  is copied byte for byte as model.int8.tflite (or model.int8.onnx): that copy is the artifact
  under test; the other int8 format is derived from the same QuantParams. plan.json's "import"
  section and report.md say which file is original and which derived, and map each IR layer to
  the tensor that holds it in the original file (per-layer checks find layers through it).
"""

from __future__ import annotations

import hashlib
import os
import time
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeconv import __version__
from edgeconv.core.errors import InputError
from edgeconv.core.graph import Analysis, analyze
from edgeconv.core.io import json_bytes, npz_bytes
from edgeconv.core.ir import WEIGHTED_OPS
from edgeconv.core.weights import expected_shapes
from edgeconv.frontends import ImportedModel
from edgeconv.quant.params import QuantParams, TensorQuant

if TYPE_CHECKING:
    from edgeconv.frontends.fidelity import Fidelity

INTEGERS_FILE = "quant.npz"
ORIGINAL_FILE = {"tflite-int8": "model.int8.tflite", "onnx-qdq": "model.int8.onnx"}
ALL_FILES = ("model.onnx", "model.int8.onnx", "model.int8.tflite", "model.float.tflite")
WEIGHT_AXIS = {"conv2d": 0, "depthwise_conv2d": 3, "dense": 0}


@dataclass
class ImportResult:
    imported: ImportedModel
    analysis: Analysis
    out_dir: Path
    qparams: QuantParams
    files: dict[str, bytes]
    original: str | None  # the file that is the user's, byte for byte
    fidelity: Fidelity | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    source_sha256: str = ""
    derived_notes: list[str] = field(default_factory=list)  # where a derived file cannot follow the original

    def summary(self) -> dict:
        a = self.analysis
        return {
            "model": a.model.name,
            "source": str(self.imported.source),
            "source_format": self.imported.source_format,
            "source_sha256": self.source_sha256,
            "input": list(a.model.input.shape),
            "output": list(a.output_shape),
            "layers": len(a.layers),
            "params": a.params,
            "macs": a.macs,
            "ops": op_counts(a),
            "original": self.original,
            "derived": [n for n in ALL_FILES if n != self.original],
            "int8_tflite_bytes": len(self.files["model.int8.tflite"]),
            "calibration": dict(self.qparams.calibration),
            "fidelity": None if self.fidelity is None else self.fidelity.to_json(),
            "notes": list(self.imported.notes) + self.derived_notes,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "failures": self.failures,
            "files": [str(self.out_dir / name) for name in self.files],
        }


def op_counts(analysis: Analysis) -> dict[str, int]:
    counts: dict[str, int] = {}
    for layer in analysis.model.layers:
        counts[layer.op] = counts.get(layer.op, 0) + 1
    return counts


def per_channel(qparams: QuantParams, analysis: Analysis) -> QuantParams:
    """The same quantization with per-tensor weight/bias scales repeated per output channel
    (the QDQ exporter writes per-channel DequantizeLinear; the real values are identical)."""
    w_q, b_q = dict(qparams.weights), dict(qparams.biases)
    for layer in analysis.model.layers:
        if layer.op not in WEIGHTED_OPS or layer.name not in w_q:
            continue
        channels = qparams.q_weights[layer.name].shape[WEIGHT_AXIS[layer.op]]
        wq, bq = w_q[layer.name], b_q[layer.name]
        if len(wq.scale) == 1:
            w_q[layer.name] = TensorQuant(wq.scale * channels, (0,) * channels, "int8", WEIGHT_AXIS[layer.op])
        if len(bq.scale) == 1:
            b_q[layer.name] = TensorQuant(bq.scale * channels, (0,) * channels, "int32", 0)
    return replace(qparams, weights=w_q, biases=b_q)


def _calibrate(analysis: Analysis, weights, calib_path, calib_data, method, percentile, samples, seed):
    from edgeconv.quant.calibrate import calibrate, load_calibration, synthetic_calibration_set
    from edgeconv.quant.quantize import quantize

    if calib_data is not None:
        x, source = calib_data
    elif calib_path:
        x, source = load_calibration(calib_path, analysis), f"file {Path(calib_path).name}"
    else:
        x = synthetic_calibration_set(analysis, n=samples, seed=seed)
        source = f"SYNTHETIC data (standard normal, seed {seed}); pass --calib with real inputs for meaningful scales"
    cal = calibrate(analysis, weights, x, method, percentile, source)
    return quantize(analysis, weights, cal.ranges, cal.info), x


def _write_folder(out_dir: Path, files: dict[str, bytes]) -> None:
    from edgeconv.artifacts import folder

    writer = getattr(folder, "write_build_folder", None)
    if writer is not None:
        writer(out_dir, files)
        return
    from edgeconv.core.io import write_files_atomic

    write_files_atomic(out_dir, files)


def build_imported(
    imported: ImportedModel,
    out: str | Path | None = None,
    calib_path: str | None = None,
    calib_method: str = "minmax",
    percentile: float = 99.99,
    calib_samples: int = 64,
    seed: int = 0,
    target=None,
    fidelity_samples: int = 16,
    calib_data: tuple[np.ndarray, str] | None = None,
    progress=None,
) -> ImportResult:
    """Quantize (float source) or keep the file's quantization (int8 source), export, check
    import fidelity and write the build folder."""
    from edgeconv.artifacts.build import default_out_dir, qdq_activation_dtype
    from edgeconv.export.onnx_float import build_float_onnx, serialize
    from edgeconv.export.onnx_qdq import build_qdq_onnx
    from edgeconv.export.tflite import build_float_tflite, build_int8_tflite
    from edgeconv.frontends.fidelity import check_fidelity, seeded_inputs

    say = progress or (lambda message: None)
    seconds: dict[str, float] = {}
    analysis = analyze(imported.model)
    _check_plan_round_trip(imported, analysis)
    weights = imported.weights
    source_bytes = Path(imported.source).read_bytes() if imported.original_artifact is None else None
    original = ORIGINAL_FILE.get(imported.source_format) if imported.original_artifact is not None else None
    original_bytes = imported.original_artifact if imported.original_artifact is not None else b""
    data: bytes = original_bytes if imported.original_artifact is not None else (source_bytes or b"")
    qdq_dtype = qdq_activation_dtype(target)
    files: dict[str, bytes] = {}
    start = time.perf_counter()
    calib_x = None
    if imported.quant is None:
        say(f"calibrating ({calib_method}) and quantizing {analysis.model.name}: {analysis.macs:,} MACs per sample")
        qparams, calib_x = _calibrate(
            analysis, weights, calib_path, calib_data, calib_method, percentile, calib_samples, seed
        )
    else:
        qparams = imported.quant
        if calib_path or calib_data is not None:
            say("the source is already int8: its own scales are kept, --calib is used for the fidelity check only")
    seconds["quantize"] = time.perf_counter() - start
    start = time.perf_counter()
    say(
        "exporting float ONNX, int8 QDQ ONNX, int8 and float TFLite"
        + (f" ({original} is the user's file)" if original else "")
    )
    files["model.onnx"] = serialize(build_float_onnx(analysis, weights))
    files["model.float.tflite"] = build_float_tflite(analysis, weights)
    if original == "model.int8.tflite":
        files["model.int8.tflite"] = bytes(original_bytes)
        files["model.int8.onnx"] = serialize(
            build_qdq_onnx(analysis, weights, per_channel(qparams, analysis), qdq_dtype)
        )
    elif original == "model.int8.onnx":
        files["model.int8.onnx"] = bytes(original_bytes)
        files["model.int8.tflite"] = build_int8_tflite(analysis, qparams)
        qdq_dtype = _qdq_dtype_of(imported)
    else:
        files["model.int8.onnx"] = serialize(build_qdq_onnx(analysis, weights, qparams, qdq_dtype))
        files["model.int8.tflite"] = build_int8_tflite(analysis, qparams)
    seconds["export"] = time.perf_counter() - start

    # import fidelity: the source on its own runtime vs the IR on edgeconv's reference
    if calib_path or calib_data is not None:
        if calib_x is None:
            from edgeconv.quant.calibrate import load_calibration

            calib_x = (
                calib_data[0] if calib_data is not None else load_calibration(str(calib_path), analysis, min_samples=1)
            )
        x = np.asarray(calib_x, np.float32)[:fidelity_samples]
        x_source = calib_data[1] if calib_data is not None else f"file {Path(str(calib_path)).name}"
    else:
        x = seeded_inputs(analysis, fidelity_samples, seed)
        x_source = f"seeded standard normal (seed {seed})"
    fidelity = None
    start = time.perf_counter()
    if imported.source_format.startswith("tflite"):
        say(f"checking import fidelity on {len(x)} samples")
        fidelity = check_fidelity(imported, data, analysis, x, x_source, qparams)
    else:
        fidelity = _onnx_fidelity(imported, analysis, x, x_source, qparams)
    seconds["fidelity"] = time.perf_counter() - start

    out_dir = Path(out) if out else default_out_dir(analysis.model.name)
    src = Path(imported.source)
    sha = hashlib.sha256(data).hexdigest()
    result = ImportResult(imported, analysis, out_dir, qparams, files, original, fidelity, seconds, source_sha256=sha)
    if original == "model.int8.onnx":
        from edgeconv.quant.quantize import SOFTMAX_QUANT

        for layer in analysis.model.layers:
            tq = qparams.activations[layer.name]
            if layer.op == "softmax" and (tq.scale, tq.zero_point) != (SOFTMAX_QUANT.scale, SOFTMAX_QUANT.zero_point):
                result.derived_notes.append(
                    f"model.int8.tflite is derived with the file's softmax output scale {tq.scale[0]:.6g}, zero point "
                    f"{tq.zero_point[0]} (int8 convention); TFLite's int8 SOFTMAX requires 1/256 and -128, so LiteRT "
                    f"and TFLM refuse it (the arm and mcu targets cannot check this model)"
                )
    if fidelity is not None and not fidelity.passed:
        result.failures.append(fidelity.text())
    if target is not None:
        from edgeconv.artifacts.build import _check_target_support

        result.failures += _check_target_support(analysis, target)

    quant_doc: dict = {
        "formats": {
            "model.int8.tflite": "int8",
            "model.int8.onnx": qdq_dtype,
            "note": "zero points are given for int8; a uint8 tensor uses zero point + 128 with the same scale",
        },
        **qparams.to_json(),
    }
    if imported.quant is not None:
        quant_doc["origin"] = {"file": src.name, "sha256": sha, "note": "scales and zero points read from the file"}
        quant_doc["integers"] = INTEGERS_FILE
        arrays = {}
        for layer in analysis.model.layers:
            if layer.name in qparams.q_weights:
                arrays[f"{layer.name}.weight"] = np.asarray(qparams.q_weights[layer.name], np.int8)
                arrays[f"{layer.name}.bias"] = np.asarray(qparams.q_biases[layer.name], np.int32)
        files[INTEGERS_FILE] = npz_bytes(arrays)
    files["quant.json"] = json_bytes(quant_doc)
    files["weights.npz"] = npz_bytes(weights)
    files.update({"plan.json": b"", "report.md": b""})
    files["plan.json"] = json_bytes(_plan_doc(result, target))
    files["report.md"] = report_markdown(result).encode("utf-8")
    say(f"writing {out_dir}")
    _write_folder(out_dir, files)
    return result


def _check_plan_round_trip(imported: ImportedModel, analysis: Analysis) -> None:
    """The folder must load back: plan.json's recipe form has to hold every layer as imported."""
    from edgeconv.plan.recipes import model_from_dict, model_to_dict

    try:
        back = analyze(model_from_dict(model_to_dict(analysis.model), "plan.json"))
    except InputError as err:
        raise InputError(
            f"model {Path(imported.source).name}: imported, but a build folder cannot record it yet ({err})"
        ) from None
    if back.layers != analysis.layers:
        raise InputError(f"model {Path(imported.source).name}: plan.json would not reproduce the imported layers")


def _qdq_dtype_of(imported: ImportedModel) -> str:
    """The activation dtype of a user's QDQ file (its QuantizeLinear zero points' type)."""
    from edgeconv.backends.foreign_qdq import activation_dtype

    return activation_dtype(bytes(imported.original_artifact or b""), Path(imported.source).name)


def _onnx_fidelity(imported, analysis, x, x_source, qparams):
    """ONNX sources: the ONNX frontend's own check when it has one, else the float check at the
    output (frontends.fidelity.check_onnx_fidelity)."""
    from edgeconv.frontends.fidelity import check_onnx_fidelity

    try:
        from edgeconv.frontends import onnx as onnx_frontend
    except ImportError:
        return check_onnx_fidelity(imported, analysis, x, x_source)
    check = getattr(onnx_frontend, "check_fidelity", None)
    if check is not None:
        return check(imported, analysis, x, x_source, qparams)
    return check_onnx_fidelity(imported, analysis, x, x_source)


def _plan_doc(result: ImportResult, target) -> dict:
    from edgeconv.plan.memory import estimate
    from edgeconv.plan.recipes import model_to_dict
    from edgeconv.report.tables import layer_rows

    a = result.analysis
    m = estimate(a)
    s = result.summary()
    return {
        "edgeconv_version": __version__,
        "summary": {
            "model": a.model.name,
            "source": "import",
            "objective": None,
            "input": list(a.model.input.shape),
            "output": list(a.output_shape),
            "totals": {
                "params": a.params,
                "macs": a.macs,
                "predicted_model_bytes": m.model_bytes,
                "predicted_peak_ram_bytes": m.peak_ram_bytes,
                "peak_ram_layer": m.peak_ram_layer,
                "layers": len(a.layers),
            },
            "int8_tflite_bytes": s["int8_tflite_bytes"],
            "calibration": s["calibration"],
            "weights": f"imported from {Path(result.imported.source).name}",
            "failures": result.failures,
        },
        "target": target.name if target is not None else None,
        "model": model_to_dict(a.model),
        "layers": [
            dict(zip(("name", "op", "input", "output", "window", "params", "macs", "out_bytes"), row))
            for row in layer_rows(a)[:-1]
        ],
        "plan": None,
        "import": {
            "source": Path(result.imported.source).name,
            "source_format": result.imported.source_format,
            "source_sha256": result.source_sha256,
            "original": result.original,
            "derived": s["derived"],
            "tensor_names": {result.original: dict(result.imported.tensor_names)} if result.original else {},
            "notes": list(result.imported.notes) + result.derived_notes,
            # without its run time, so the same inputs give a byte-identical plan.json
            "fidelity": None if s["fidelity"] is None else {k: v for k, v in s["fidelity"].items() if k != "seconds"},
        },
        "files": list(result.files),
    }


def report_markdown(result: ImportResult) -> str:
    from edgeconv.report.tables import layer_rows, markdown_table

    a = result.analysis
    src = Path(result.imported.source).name
    lines = [
        f"# {a.model.name}",
        "",
        a.model.description,
        "",
        f"edgeconv {__version__}; imported from `{src}` ({result.imported.source_format}, sha256 "
        f"{result.source_sha256[:16]}); {a.params:,} parameters, {a.macs:,} MACs",
        "",
        "## Files",
        "",
        "| file | bytes | origin |",
        "| --- | ---: | --- |",
    ]
    for name in ALL_FILES:
        if name == result.original:
            origin = f"**original**: `{src}` copied byte for byte (the artifact under test)"
        elif result.original and name.startswith("model.int8"):
            origin = "derived from the original's scales and zero points (same QuantParams)"
        elif result.imported.quant is not None:
            origin = "derived from the dequantized weights (float reference)"
        else:
            origin = "derived (edgeconv export of the imported IR)"
        lines.append(f"| `{name}` | {len(result.files[name]):,} | {origin} |")
    cal = result.qparams.calibration
    lines += [
        "",
        "## Quantization",
        "",
        "Read from the file (no recalibration); integer weights and biases kept in `quant.npz`."
        if result.imported.quant is not None
        else f"Calibrated by edgeconv: {cal.get('method')} over {cal.get('samples')} samples of {cal.get('source')}.",
        "",
        "## Import fidelity",
        "",
        result.fidelity.text() if result.fidelity is not None else "not checked (no runtime for this source)",
        "",
    ]
    if result.fidelity is not None:
        unit = "max relative error" if result.fidelity.kind == "relative" else "max LSB"
        lines += [f"| layer | {unit} |", "| --- | ---: |"]
        lines += [f"| {k} | {v:.3g} |" for k, v in result.fidelity.layers.items()]
        lines.append("")
    if result.imported.notes or result.derived_notes:
        notes = list(result.imported.notes) + result.derived_notes
        lines += ["## Canonicalization", ""] + [f"- {n}" for n in notes] + [""]
    if result.original:
        names = result.imported.tensor_names
        lines += ["## Layers in the original file", "", "| layer | tensor in the file |", "| --- | --- |"]
        lines += [f"| {k} | `{v}` |" for k, v in names.items()]
        lines.append("")
    lines += ["## Layers", "", markdown_table(layer_rows(a)), ""]
    if result.failures:
        lines += ["## Failed checks", ""] + [f"- {f}" for f in result.failures] + [""]
    return "\n".join(lines)


# -- loading (artifacts/folder.py calls this for a quant.json with "integers") --------------------


def integer_qparams(doc: dict, analysis: Analysis, folder: Path, manifest: dict | None = None) -> QuantParams:
    """QuantParams of an imported int8 model: quant.json's scales and zero points as written,
    the integer weights and biases from quant.npz (checked against the model's shapes)."""
    from edgeconv.artifacts import folder as folder_mod

    name = doc.get("integers")
    if name != INTEGERS_FILE:
        raise InputError(f"quant.json: 'integers' must name {INTEGERS_FILE}, got {name!r}")
    path = Path(folder) / name
    if not os.path.lexists(path) or os.path.islink(path):
        raise InputError(f"{folder}: expected {name} (the imported file's integer weights), not found")
    verify = getattr(folder_mod, "_verify_file", None)
    if manifest is not None and verify is not None:
        verify(Path(folder), name, manifest)
    acts = folder_mod._tensor_table(doc, "activations")
    w_doc = folder_mod._tensor_table(doc, "weights")
    b_doc = folder_mod._tensor_table(doc, "biases")
    for tensor in ["input", *(layer.name for layer in analysis.model.layers)]:
        if tensor not in acts:
            raise InputError(f"quant.json: activations: expected the quantization of tensor {tensor!r}, not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: np.asarray(data[key]) for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise InputError(f"{path}: unreadable ({err})") from None
    shapes = expected_shapes(analysis)
    q_w, q_b, w_q, b_q = {}, {}, {}, {}
    for layer in analysis.model.layers:
        if layer.op not in WEIGHTED_OPS:
            continue
        for key, dtype, table in ((f"{layer.name}.weight", np.int8, w_doc), (f"{layer.name}.bias", np.int32, b_doc)):
            got = arrays.get(key)
            if got is None or got.dtype != dtype or tuple(got.shape) != shapes[key]:
                what = "missing" if got is None else f"{got.dtype} {tuple(got.shape)}"
                raise InputError(f"{path}: {key}: expected {np.dtype(dtype).name} {shapes[key]}, got {what}")
            if layer.name not in table:
                raise InputError(f"quant.json: no quantization of {key}")
        axis = WEIGHT_AXIS[layer.op]
        channels = shapes[f"{layer.name}.weight"][axis]
        for section, tq in (("weights", w_doc[layer.name]), ("biases", b_doc[layer.name])):
            if len(tq.scale) not in (1, channels):
                raise InputError(
                    f"quant.json: {section}.{layer.name}: {len(tq.scale)} scales, expected 1 or {channels}"
                )
        q_w[layer.name] = arrays[f"{layer.name}.weight"]
        q_b[layer.name] = arrays[f"{layer.name}.bias"]
        w_q[layer.name], b_q[layer.name] = w_doc[layer.name], b_doc[layer.name]
    return QuantParams(acts, w_q, b_q, q_w, q_b, dict(doc.get("calibration", {})))


def artifact_tensor_names(plan: dict) -> dict[str, dict[str, str]]:
    """plan.json's import.tensor_names ({artifact file: {layer: tensor}}), checked."""
    section = plan.get("import")
    if not isinstance(section, dict):
        return {}
    table = section.get("tensor_names") or {}
    ok = isinstance(table, dict) and all(
        isinstance(f, str)
        and isinstance(m, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in m.items())
        for f, m in table.items()
    )
    if not ok:
        raise InputError("plan.json: import.tensor_names: expected {artifact file: {layer: tensor name}}")
    return {f: dict(m) for f, m in table.items()}
