"""Importers: a user's model file (ONNX, TFLite; float or already int8) becomes the IR.

Every importer returns an `ImportedModel`; `edgeconv import` turns it into a normal build
folder. For an int8 file the quantization is read from the file (never recalibrated) and the
file itself is the artifact under test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeconv.core.ir import Model
from edgeconv.core.weights import Weights
from edgeconv.quant.params import QuantParams


@dataclass(frozen=True)
class ImportedModel:
    model: Model  # the IR, input W x H x C, every layer named
    weights: Weights  # float32, layouts as in edgeconv/core/weights.py
    quant: QuantParams | None  # from the file for int8 sources, else None (calibrate later)
    source: Path  # the user's file
    source_format: str  # "onnx" | "onnx-qdq" | "tflite" | "tflite-int8"
    # the user's file bytes when it is itself a deployable artifact (an int8 .tflite or QDQ
    # .onnx): the build folder holds it byte for byte instead of a re-export
    original_artifact: bytes | None = None
    notes: tuple[str, ...] = ()  # what canonicalization did (BN folded, transposes removed, ...)
    # IR layer name -> the tensor holding that layer's output in the user's file (the file's
    # names are kept there; IR names are short and clean): how per-layer checks find a layer
    # in `original_artifact`. Empty when the names are the same.
    tensor_names: dict[str, str] = field(default_factory=dict)
    # the layout of the source file's input: "NHWC" (TFLite, tf2onnx), "NCHW" (PyTorch ONNX) or
    # "vector" ([1, N], taken as a 1x1xN map). edgeconv's own inputs are always NHWC; data made
    # for the source file must be transposed (NCHW) or reshaped (vector) to feed the build.
    input_layout: str = "NHWC"
