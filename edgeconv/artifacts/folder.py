"""A build folder read back: the model, its weights, its quantization and its artifacts.

`edgeconv run / bench / parity / bundle` take the folder `edgeconv build` wrote. Everything is
checked on load, so a missing, corrupt or mismatched file is a one-line error (exit 2).

A build folder is written whole by `write_build_folder` (every producer calls it: the
planner/recipe build, an imported model, a re-export after training): a temporary sibling
folder replaced in one rename, with manifest.json listing the SHA-256 of every file. Readers
check the manifest: plan.json, quant.json and weights.npz on load, an artifact when it is
first used, so a mixed or half-written folder is named as such instead of blaming a layer.
Files are read without following symbolic links (a link out of the folder is refused).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeconv.core.errors import InputError
from edgeconv.core.graph import Analysis, analyze
from edgeconv.core.io import read_regular_file, write_folder_atomic
from edgeconv.core.weights import Weights, load_weights
from edgeconv.plan.recipes import model_from_dict
from edgeconv.quant.params import QuantParams, TensorQuant
from edgeconv.quant.quantize import WEIGHT_AXIS, bias_quant, weight_quant

MANIFEST = "manifest.json"
MANIFEST_KIND = "edgeconv-build"
MANIFEST_FORMAT = 1
MAX_JSON_BYTES = 64 * 2**20
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

    files: dict | None = None  # manifest.json's name -> SHA-256
    # an imported model: {artifact file: {layer: tensor name}} for an artifact that is the
    # user's file (it keeps its own tensor names); see tensor_name()
    tensor_names: dict = field(default_factory=dict)
    # artifact name -> the file's stat signature when its hash was last checked: the hash is
    # checked when the artifact is first used and again only when the file changed (hashing the
    # 3.9 MB float model of the 1MB plan on every call was 2.4 of the 2.8 ms `bench` measured)
    _verified: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def artifact(self, kind: str) -> Path:
        """The artifact's path, checked: a regular file (not a link) whose hash the manifest lists."""
        name = ARTIFACT_FILES[kind]
        path = self.folder / name
        if not os.path.lexists(path):
            raise InputError(f"{self.folder}: expected {name} (written by edgeconv build), not found")
        if self.files is not None:
            st = os.lstat(path)
            signature = (self.files.get(name), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            if self._verified.get(name) != signature:
                _verify_file(self.folder, name, self.files)
                self._verified[name] = signature
        return path

    def tensor_name(self, kind: str, layer: str) -> str:
        """The name of `layer`'s output tensor in artifact `kind` (the layer name, except in an
        imported user's file, which keeps its own names)."""
        return self.tensor_names.get(ARTIFACT_FILES[kind], {}).get(layer, layer)

    @property
    def name(self) -> str:
        return self.analysis.model.name


def _read_json(path: Path, data: bytes | None = None) -> dict:
    if data is None:
        if not os.path.lexists(path):
            raise InputError(
                f"{path.parent}: expected {path.name} from 'edgeconv build', not found (is {path.parent} a build folder?)"
            )
        data = read_regular_file(path, MAX_JSON_BYTES, "build file")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise InputError(f"{path}: not valid JSON ({' '.join(str(err).split())[:200]})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    return doc


def _sha256_file(path: Path, what: str) -> str:
    """SHA-256 of a regular file, read without following a symbolic link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise InputError(f"{what} {path}: not found") from None
    except OSError as err:
        if os.path.islink(path):
            raise InputError(f"{what} {path}: is a symbolic link; a build folder holds regular files only") from None
        raise InputError(f"{what} {path}: unreadable ({err.strerror})") from None
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise InputError(f"{what} {path}: not a regular file")
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify_file(folder: Path, name: str, files: dict) -> None:
    if name not in files:
        raise InputError(
            f"{folder}: {name} is not listed in {MANIFEST}: the build folder is mixed (a file from "
            f"elsewhere); rebuild it with 'edgeconv build --out {folder}'"
        )
    got = _sha256_file(folder / name, "build file")
    if got != files[name]:
        raise InputError(
            f"{folder}: {name} does not match {MANIFEST} (SHA-256 {got[:12]}..., listed "
            f"{str(files[name])[:12]}...): the build folder is mixed, half-written or edited; rebuild "
            f"it with 'edgeconv build --out {folder}'"
        )


def build_manifest(files: dict[str, bytes]) -> bytes:
    doc = {
        "kind": MANIFEST_KIND,
        "format": MANIFEST_FORMAT,
        "files": {name: hashlib.sha256(files[name]).hexdigest() for name in sorted(files) if name != MANIFEST},
    }
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _may_replace(folder: Path) -> str | None:
    """An existing folder may be replaced when it is empty or an edgeconv build folder."""
    try:
        entries = os.listdir(folder)
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    if not entries or MANIFEST in entries or "plan.json" in entries:
        return None
    return (
        "exists and is not an edgeconv build folder (no manifest.json or plan.json); "
        "it is left alone: choose another --out or remove it"
    )


def write_build_folder(folder: str | Path, files: dict[str, bytes]) -> Path:
    """Write a whole build folder atomically: `files` (name -> bytes) plus manifest.json.

    Every producer of build folders calls this (build, import, re-export after training). The
    folder replaces the old one in one rename, so an interrupted build leaves the old folder
    intact (or, on a first build, nothing); refuses to replace a folder that is not a build.
    """
    folder = Path(folder)
    content = {name: data for name, data in files.items() if name != MANIFEST}
    content[MANIFEST] = build_manifest(content)
    write_folder_atomic(folder, content, _may_replace, "build folder")
    return folder


def reseal_build_folder(folder: str | Path) -> None:
    """Rewrite manifest.json from the folder's current files: for deliberate edits only (the
    fault-injection tests break an artifact on purpose and still want it loaded)."""
    folder = Path(folder)
    files = {
        p.name: p.read_bytes()
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.is_symlink() and p.name != MANIFEST
    }
    (folder / MANIFEST).write_bytes(build_manifest(files))


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not os.path.lexists(path) and not os.path.lexists(folder / "plan.json"):
        raise InputError(
            f"{folder}: expected plan.json and {MANIFEST} from 'edgeconv build', not found (is {folder} a build folder?)"
        )
    if not os.path.lexists(path):
        raise InputError(
            f"{folder}: no {MANIFEST}: not a complete build folder (half-written, or written by an "
            f"older edgeconv); rebuild it with 'edgeconv build --out {folder}'"
        )
    doc = _read_json(path)
    files = doc.get("files")
    if (
        doc.get("kind") != MANIFEST_KIND
        or doc.get("format") != MANIFEST_FORMAT
        or not isinstance(files, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
    ):
        raise InputError(
            f"{path}: expected an {MANIFEST_KIND} manifest of format {MANIFEST_FORMAT} with a 'files' table "
            f"of SHA-256 hashes, got kind {doc.get('kind')!r} format {doc.get('format')!r}"
        )
    for name in files:
        if "/" in name or "\\" in name or name in ("", ".", ".."):
            raise InputError(f"{path}: lists {name!r}, not a plain file name")
    return files


def qparams_from_json(doc: dict, analysis: Analysis, weights: Weights) -> QuantParams:
    """QuantParams from quant.json; the integer weights are re-derived from weights.npz with
    the same rules, and their scales must equal the recorded ones (a mismatch means the
    folder's files do not belong together)."""
    acts = _tensor_table(doc, "activations")
    w_doc = _tensor_table(doc, "weights")
    for name in ["input", *(layer.name for layer in analysis.model.layers)]:
        if name not in acts:
            raise InputError(f"quant.json: activations: expected the quantization of tensor {name!r}, not found")
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


def _tensor_table(doc: dict, section: str) -> dict[str, TensorQuant]:
    table = doc.get(section)
    if not isinstance(table, dict):
        raise InputError(
            f"quant.json: expected a table '{section}' of tensor quantizations, got {type(table).__name__}"
        )
    out = {}
    for key, value in table.items():
        try:
            out[key] = TensorQuant.from_json(value)
        except ValueError as err:
            raise InputError(f"quant.json: {section}.{key}: {err}") from None
    return out


def load_build(folder: str | Path) -> BuiltModel:
    folder = Path(folder)
    if os.path.islink(folder):
        raise InputError(f"build folder {folder}: is a symbolic link; give the folder itself")
    if folder.exists() and not folder.is_dir():
        raise InputError(f"build folder {folder}: is a file, expected a folder written by 'edgeconv build --out DIR'")
    if not folder.is_dir():
        raise InputError(f"build folder {folder}: not found (create it with 'edgeconv build --out {folder}')")
    files = read_manifest(folder)
    for name in ("plan.json", "quant.json", "weights.npz"):
        if not os.path.lexists(folder / name):
            raise InputError(
                f"{folder}: expected {name} from 'edgeconv build', not found (is {folder} a build folder?)"
            )
        _verify_file(folder, name, files)
    plan = _read_json(folder / "plan.json")
    if not isinstance(plan.get("model"), dict):
        raise InputError(f"{folder / 'plan.json'}: has no 'model' section")
    model = model_from_dict(plan["model"], str(folder / "plan.json"))
    analysis = analyze(model)
    try:
        weights = load_weights(folder / "weights.npz", analysis)
    except (zipfile.BadZipFile, OSError) as err:
        raise InputError(f"{folder / 'weights.npz'}: unreadable ({err})") from None
    quant = _read_json(folder / "quant.json")
    if quant.get("integers") is not None:  # an imported int8 model: the file's own integers, kept
        from edgeconv.artifacts.imported import integer_qparams

        qparams = integer_qparams(quant, analysis, folder, files)
    else:
        qparams = qparams_from_json(quant, analysis, weights)
    formats = quant.get("formats")
    qdq_dtype = formats.get("model.int8.onnx", "uint8") if isinstance(formats, dict) else "uint8"
    if qdq_dtype not in ("uint8", "int8"):
        raise InputError(f"{folder / 'quant.json'}: formats.model.int8.onnx: expected uint8 or int8, got {qdq_dtype!r}")
    from edgeconv.artifacts.imported import artifact_tensor_names

    return BuiltModel(folder, analysis, weights, qparams, qdq_dtype, files, artifact_tensor_names(plan))


def to_int8_convention(q: np.ndarray) -> np.ndarray:
    """uint8 tensors (zero point + 128) on the int8 grid, so every target compares in LSB."""
    q = np.asarray(q)
    if q.dtype == np.uint8:
        return (q.astype(np.int16) - 128).astype(np.int8)
    return q
