"""Layer weights: seeded He-normal initialization or a user's .npz file, shapes checked.

Layouts (the TFLite ones, so the int8 exporter writes them as they are):
  conv2d            <layer>.weight (K, F_h, F_w, D1)   <layer>.bias (K,)
  depthwise_conv2d  <layer>.weight (1, F_h, F_w, C)    <layer>.bias (C,)
  dense             <layer>.weight (units, n_in)       <layer>.bias (units,)
where a dense layer's n_in runs over its input flattened in H, W, C order.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from edgeconv.core.errors import InputError
from edgeconv.core.graph import Analysis, LayerInfo
from edgeconv.core.ir import Add, AvgPool, Concat, Conv2d, Dense, DepthwiseConv2d, GlobalAvgPool, MaxPool, Pad, Softmax
from edgeconv.core.optable import OpTable
from edgeconv.core.tensors import check_array_file

Weights = dict[str, np.ndarray]  # "<layer>.weight" / "<layer>.bias" -> float32 array


WEIGHT_SHAPES: OpTable = OpTable("weights layout")


def expected_shapes(analysis: Analysis) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in analysis.model.layers:
        shapes.update(WEIGHT_SHAPES.handler(layer)(layer, analysis.info(layer.name)))
    return shapes


@WEIGHT_SHAPES.register(Conv2d)
def _conv_shapes(layer: Conv2d, info: LayerInfo) -> dict[str, tuple[int, ...]]:
    d1 = info.in_shape[2]
    return {
        f"{layer.name}.weight": (layer.filters, layer.kernel[1], layer.kernel[0], d1),
        f"{layer.name}.bias": (layer.filters,),
    }


@WEIGHT_SHAPES.register(DepthwiseConv2d)
def _depthwise_shapes(layer: DepthwiseConv2d, info: LayerInfo) -> dict[str, tuple[int, ...]]:
    d1 = info.in_shape[2]
    return {f"{layer.name}.weight": (1, layer.kernel[1], layer.kernel[0], d1), f"{layer.name}.bias": (d1,)}


@WEIGHT_SHAPES.register(Dense)
def _dense_shapes(layer: Dense, info: LayerInfo) -> dict[str, tuple[int, ...]]:
    w1, h1, d1 = info.in_shape
    return {f"{layer.name}.weight": (layer.units, w1 * h1 * d1), f"{layer.name}.bias": (layer.units,)}


@WEIGHT_SHAPES.register(MaxPool, AvgPool, GlobalAvgPool, Add, Softmax, Concat, Pad)
def _no_weights(layer, info: LayerInfo) -> dict[str, tuple[int, ...]]:
    return {}


def init_weights(analysis: Analysis, seed: int = 0) -> Weights:
    """He-normal weights (std = sqrt(2 / fan_in), right for ReLU nets) and small uniform
    biases in ±0.1, so that int8 bias handling is exercised. One generator in layer order,
    so the same seed gives the same weights."""
    rng = np.random.default_rng(seed)
    weights: Weights = {}
    for key, shape in expected_shapes(analysis).items():
        if key.endswith(".weight"):
            fan_in = int(np.prod(shape[1:]))
            weights[key] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        else:
            weights[key] = rng.uniform(-0.1, 0.1, size=shape).astype(np.float32)
    return weights


def load_weights(path: str | Path, analysis: Analysis) -> Weights:
    """Read a .npz keyed '<layer>.weight' / '<layer>.bias' and check names and shapes."""
    path = Path(path)
    check_array_file(path, f"weights {path}")  # declared sizes and headers before inflating (zip bombs)
    try:
        with np.load(path, allow_pickle=False) as data:
            given = {key: np.asarray(data[key]) for key in data.files}
    except FileNotFoundError:
        raise InputError(f"weights {path}: file not found") from None
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise InputError(f"weights {path}: expected a .npz archive, could not read it ({err})") from None
    expected = expected_shapes(analysis)
    for key, array in given.items():
        if key not in expected:
            raise InputError(
                f"weights {path}: key {key!r} names no weight of model {analysis.model.name} "
                f"(expected keys: {', '.join(expected)})"
            )
        if tuple(array.shape) != expected[key]:
            raise InputError(f"weights {path}: {key} has shape {tuple(array.shape)}, expected {expected[key]}")
        if not np.issubdtype(array.dtype, np.floating) or not np.all(np.isfinite(array)):
            raise InputError(
                f"weights {path}: {key} must be finite floats, got dtype {array.dtype}"
                + ("" if not np.issubdtype(array.dtype, np.floating) else " with NaN or Inf")
            )
    missing = [key for key in expected if key not in given]
    if missing:
        raise InputError(f"weights {path}: missing {missing[0]!r} (expected {len(expected)} keys, got {len(given)})")
    return {key: given[key].astype(np.float32) for key in expected}
