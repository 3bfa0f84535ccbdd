"""A build folder read back: the model, its weights, its quantization and its artifacts.

`edgeconv run / bench / parity / bundle` take the folder `edgeconv build` wrote. Everything is
checked on load, so a missing, corrupt or mismatched file is a one-line error (exit 2).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeconv.core.errors import InputError
from edgeconv.core.graph import Analysis, analyze
from edgeconv.core.weights import Weights, load_weights
from edgeconv.plan.recipes import model_from_dict
from edgeconv.quant.params import QuantParams, TensorQuant
from edgeconv.quant.quantize import WEIGHT_AXIS, bias_quant, weight_quant

ARTIFACT_FILES = {
    "float_onnx": "model.onnx",
    "qdq_onnx": "model.int8.onnx",
    "int8_tflite": "model.int8.tflite",
    "float_tflite": "model.float.tflite",
}


@dataclass(frozen=True)
class BuiltModel:
    folder: Path
    analysis: Analysis
    weights: Weights
    qparams: QuantParams
    qdq_dtype: str  # activation dtype of model.int8.onnx: "uint8" or "int8"

    def artifact(self, kind: str) -> Path:
        path = self.folder / ARTIFACT_FILES[kind]
        if not path.is_file():
            raise InputError(f"{self.folder}: expected {ARTIFACT_FILES[kind]} (written by edgeconv build), not found")
        return path

    @property
    def name(self) -> str:
        return self.analysis.model.name


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise InputError(
            f"{path.parent}: expected {path.name} from 'edgeconv build', not found (is {path.parent} a build folder?)"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None


def qparams_from_json(doc: dict, analysis: Analysis, weights: Weights) -> QuantParams:
    """QuantParams from quant.json; the integer weights are re-derived from weights.npz with
    the same rules, and their scales must equal the recorded ones (a mismatch means the
    folder's files do not belong together)."""
    try:
        acts = {k: TensorQuant.from_json(v) for k, v in doc["activations"].items()}
        w_doc = {k: TensorQuant.from_json(v) for k, v in doc["weights"].items()}
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"quant.json: malformed ({type(err).__name__}: {err})") from None
    w_q, b_q, q_w, q_b = {}, {}, {}, {}
    for layer in analysis.model.layers:
        if layer.op not in WEIGHT_AXIS:
            continue
        w_q[layer.name], q_w[layer.name] = weight_quant(weights[f"{layer.name}.weight"], WEIGHT_AXIS[layer.op])
        if w_doc.get(layer.name) != w_q[layer.name]:
            raise InputError(
                f"quant.json: weight scales of {layer.name} do not match weights.npz (files from different builds?)"
            )
        b_q[layer.name], q_b[layer.name] = bias_quant(
            weights[f"{layer.name}.bias"], acts[layer.inputs[0]].scale[0], w_q[layer.name]
        )
    return QuantParams(acts, w_q, b_q, q_w, q_b, dict(doc.get("calibration", {})))


def load_build(folder: str | Path) -> BuiltModel:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"build folder {folder}: not found (create it with 'edgeconv build --out {folder}')")
    plan = _read_json(folder / "plan.json")
    try:
        model = model_from_dict(plan["model"], str(folder / "plan.json"))
    except KeyError:
        raise InputError(f"{folder / 'plan.json'}: has no 'model' section") from None
    analysis = analyze(model)
    try:
        weights = load_weights(folder / "weights.npz", analysis)
    except (zipfile.BadZipFile, OSError) as err:
        raise InputError(f"{folder / 'weights.npz'}: unreadable ({err})") from None
    quant = _read_json(folder / "quant.json")
    qparams = qparams_from_json(quant, analysis, weights)
    qdq_dtype = quant.get("formats", {}).get("model.int8.onnx", "uint8")
    return BuiltModel(folder, analysis, weights, qparams, qdq_dtype)


def to_int8_convention(q: np.ndarray) -> np.ndarray:
    """uint8 tensors (zero point + 128) on the int8 grid, so every target compares in LSB."""
    q = np.asarray(q)
    if q.dtype == np.uint8:
        return (q.astype(np.int16) - 128).astype(np.int8)
    return q
