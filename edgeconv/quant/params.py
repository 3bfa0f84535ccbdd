"""One set of quantization parameters that every exporter reads.

Scales are float32 values (stored as Python floats that are exactly float32). Zero points
are kept in the int8 convention; a uint8 target (ONNX Runtime CPU) uses zero point + 128
with the same scale, which represents exactly the same real values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# zero points in the int8 convention (activations, weights) or the int32 bias grid
ZERO_POINT_RANGE = {"int8": (-128, 127), "uint8": (0, 255), "int32": (0, 0)}
MAX_CHANNELS = 1 << 16


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
        """Read and validate one tensor's parameters; ValueError says what is wrong."""
        if not isinstance(doc, dict):
            raise ValueError(f"expected a table with scale and zero_point, got {type(doc).__name__}")
        scale, zero_point = doc.get("scale"), doc.get("zero_point")
        dtype, axis = doc.get("dtype", "int8"), doc.get("axis")
        if not isinstance(dtype, str) or dtype not in ZERO_POINT_RANGE:
            raise ValueError(f"dtype: expected one of {', '.join(ZERO_POINT_RANGE)}, got {dtype!r}")
        if not isinstance(scale, list) or not 1 <= len(scale) <= MAX_CHANNELS:
            raise ValueError(f"scale: expected a list of 1 to {MAX_CHANNELS} numbers, got {_short(scale)}")
        if not isinstance(zero_point, list) or len(zero_point) != len(scale):
            raise ValueError(
                f"zero_point: expected a list of {len(scale)} integers (one per scale), got {_short(zero_point)}"
            )
        for v in scale:
            # a scale is a float32: finite, above zero and representable (not flushed to 0)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not v > 0:
                raise ValueError(f"scale: expected finite numbers above zero, got {_short(v)}")
            if not np.isfinite(np.float32(v)) or np.float32(v) < np.finfo(np.float32).tiny:
                raise ValueError(f"scale: {v!r} is outside the float32 range of a quantization scale")
        lo, hi = ZERO_POINT_RANGE[dtype]
        for v in zero_point:
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"zero_point: expected integers in [{lo}, {hi}] for {dtype}, got {_short(v)}")
        if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int) or not 0 <= axis <= 3):
            raise ValueError(f"axis: expected null or an integer 0-3, got {_short(axis)}")
        return cls(tuple(float(v) for v in scale), tuple(int(v) for v in zero_point), str(dtype), axis)


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
