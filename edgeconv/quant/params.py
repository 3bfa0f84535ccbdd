"""One set of quantization parameters that every exporter reads.

Scales are float32 values (stored as Python floats that are exactly float32). Zero points
are kept in the int8 convention; a uint8 target (ONNX Runtime CPU) uses zero point + 128
with the same scale, which represents exactly the same real values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TensorQuant:
    """Affine quantization real = scale · (q − zero_point) of one tensor."""

    scale: tuple[float, ...]  # one value, or one per channel
    zero_point: tuple[int, ...]  # same length as scale; int8 convention for activations
    dtype: str = "int8"  # "int8" | "int32" (biases)
    axis: int | None = None  # channel axis of a per-channel tensor

    @property
    def per_channel(self) -> bool:
        return len(self.scale) > 1 or self.axis is not None

    def scale_array(self) -> np.ndarray:
        return np.asarray(self.scale, dtype=np.float32)

    def as_uint8(self) -> TensorQuant:
        """The same real values on a uint8 grid (zero point shifted by 128)."""
        assert self.dtype == "int8", self.dtype
        return TensorQuant(self.scale, tuple(z + 128 for z in self.zero_point), "uint8", self.axis)

    def to_json(self) -> dict:
        return {"scale": list(self.scale), "zero_point": list(self.zero_point), "dtype": self.dtype, "axis": self.axis}

    @classmethod
    def from_json(cls, doc: dict) -> TensorQuant:
        return cls(
            tuple(float(v) for v in doc["scale"]),
            tuple(int(v) for v in doc["zero_point"]),
            str(doc.get("dtype", "int8")),
            doc.get("axis"),
        )


@dataclass(frozen=True)
class QuantParams:
    """Quantization of a whole model.

    activations: "input" and every layer name -> the quantization of that layer's output
    weights:     layer name -> int8 per-output-channel symmetric quantization (zero point 0)
    biases:      layer name -> int32 quantization with scale s_in · s_w[c], zero point 0
    q_weights / q_biases: the quantized integer arrays (layouts as in weights.py)
    """

    activations: dict[str, TensorQuant]
    weights: dict[str, TensorQuant] = field(default_factory=dict)
    biases: dict[str, TensorQuant] = field(default_factory=dict)
    q_weights: dict[str, np.ndarray] = field(default_factory=dict)
    q_biases: dict[str, np.ndarray] = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)  # method, data source, sample count

    def to_json(self) -> dict:
        return {
            "calibration": self.calibration,
            "activations": {k: v.to_json() for k, v in self.activations.items()},
            "weights": {k: v.to_json() for k, v in self.weights.items()},
            "biases": {k: v.to_json() for k, v in self.biases.items()},
        }
