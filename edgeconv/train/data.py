"""Labelled data for `edgeconv train` and `parity --labels`: .npz arrays or a folder of images.

- `.npz` with `x` (N×H×W×C float32, NHWC of the W×H×C model input) and `y` (N integer labels
  in [0, classes)); `y` may also come from a separate `.npy` (parity's `--labels y.npy`).
- a folder with one sub-folder per class (sorted names are the classes 0, 1, …), each holding
  images that Pillow reads; they are converted to the model's channels (1: grayscale "L",
  3: "RGB"), resized to W×H (bilinear) and scaled to [0, 1].

Pure numpy (+ Pillow for folders); no torch, so parity can use it without the train extra.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeconv.core.errors import InputError
from edgeconv.core.graph import Analysis

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Labelled:
    x: np.ndarray  # (N, H, W, C) float32
    y: np.ndarray  # (N,) int64
    source: str
    classes: tuple[str, ...] = ()  # class names of an image folder


def n_classes(analysis: Analysis) -> int:
    w, h, c = analysis.output_shape
    return w * h * c


def check_labels(y, n: int, classes: int, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise InputError(f"{what}: expected labels y of shape ({n},), one per sample, got {tuple(y.shape)}")
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.all(y == np.rint(y)):
            raise InputError(f"{what}: expected integer labels, got non-integer floats ({y.dtype})")
    elif not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"{what}: expected integer labels, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if len(y) and (y.min() < 0 or y.max() >= classes):
        bad = int(np.flatnonzero((y < 0) | (y >= classes))[0])
        raise InputError(
            f"{what}: labels must be in [0, {classes - 1}] (the model has {classes} outputs), "
            f"got {int(y[bad])} at sample {bad}"
        )
    return y


def check_inputs(x, analysis: Analysis, what: str) -> np.ndarray:
    m = analysis.model.input
    want = (m.height, m.width, m.channels)
    x = np.asarray(x)
    if x.ndim != 4 or tuple(x.shape[1:]) != want:
        raise InputError(
            f"{what}: expected x of shape (N, {', '.join(map(str, want))}) (NHWC of the "
            f"{m.width}x{m.height}x{m.channels} model input), got {tuple(x.shape)}"
        )
    if len(x) == 0:
        raise InputError(f"{what}: expected at least one sample, got 0")
    if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
        raise InputError(f"{what}: expected float32 inputs, got dtype {x.dtype}")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        bad = int(np.flatnonzero(~np.isfinite(x).reshape(len(x), -1).all(axis=1))[0])
        raise InputError(f"{what}: sample {bad} holds NaN or Inf")
    return x


def load_npz(path: Path, analysis: Analysis, labels: str | Path | None = None, what: str = "data") -> Labelled:
    what = f"{what} {path}"
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise InputError(f"{what}: could not read it as .npz ({err})") from None
    if "x" not in arrays and len(arrays) == 1:
        arrays = {"x": next(iter(arrays.values()))}
    if "x" not in arrays:
        raise InputError(f"{what}: expected arrays 'x' (inputs) and 'y' (labels), got {', '.join(arrays) or 'none'}")
    x = check_inputs(arrays["x"], analysis, what)
    if labels is not None:
        y = load_label_file(Path(labels))
        what_y = f"labels {labels}"
    elif "y" in arrays:
        y, what_y = arrays["y"], what
    else:
        raise InputError(f"{what}: expected labels 'y' next to 'x' (or give a labels .npy), got {', '.join(arrays)}")
    return Labelled(x, check_labels(y, len(x), n_classes(analysis), what_y), str(path))


def load_label_file(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"labels {path}: file not found")
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as data:
                if "y" not in data.files:
                    raise InputError(f"labels {path}: expected an array 'y', got {', '.join(data.files) or 'none'}")
                return data["y"]
        return np.load(path, allow_pickle=False)
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise InputError(f"labels {path}: could not read it as .npy or .npz ({err})") from None


def load_image_folder(path: Path, analysis: Analysis, what: str = "data") -> Labelled:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as err:
        raise InputError(f"{what} {path}: reading image folders needs Pillow ({err}); pip install pillow") from None
    m = analysis.model.input
    if m.channels not in (1, 3):
        raise InputError(f"{what} {path}: images give 1 or 3 channels, the model input has {m.channels}; use a .npz")
    class_dirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes = n_classes(analysis)
    if not class_dirs:
        raise InputError(f"{what} {path}: expected one sub-folder of images per class, found no sub-folder")
    if len(class_dirs) > classes:
        raise InputError(
            f"{what} {path}: {len(class_dirs)} class folders, but the model has {classes} outputs "
            f"({', '.join(p.name for p in class_dirs[:12])})"
        )
    xs, ys = [], []
    mode = "L" if m.channels == 1 else "RGB"
    for label, folder in enumerate(class_dirs):
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        for file in files:
            try:
                with Image.open(file) as img:
                    resized = img.convert(mode).resize((m.width, m.height), Image.Resampling.BILINEAR)
                    arr = np.asarray(resized, dtype=np.float32) / 255.0
            except (OSError, UnidentifiedImageError, ValueError) as err:
                raise InputError(f"{what} {file}: not an image Pillow can read ({err})") from None
            xs.append(arr.reshape(m.height, m.width, m.channels))
            ys.append(label)
    if not xs:
        raise InputError(f"{what} {path}: no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders")
    return Labelled(
        np.stack(xs).astype(np.float32), np.asarray(ys, np.int64), str(path), tuple(p.name for p in class_dirs)
    )


def load_labelled(path: str | Path, analysis: Analysis, labels: str | Path | None = None, what: str = "data"):
    """A .npz (x, y) or a folder of class sub-folders, checked against the model."""
    path = Path(path)
    if path.is_dir():
        return load_image_folder(path, analysis, what)
    if not path.is_file():
        raise InputError(f"{what} {path}: not found (expected a .npz with x and y, or a folder of class folders)")
    if path.suffix.lower() != ".npz":
        raise InputError(f"{what} {path}: expected a .npz with x and y, or a folder of class folders, got {path.name}")
    return load_npz(path, analysis, labels, what)


def accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of (N, …) scores against N labels."""
    scores = np.asarray(scores).reshape(len(y), -1)
    return float((scores.argmax(axis=1) == y).mean()) if len(y) else 0.0
