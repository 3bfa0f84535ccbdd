"""The numpy float reference: the specification runtimes are checked against.

One function per IR op, NHWC float32 arrays with the batch first, written for clarity rather
than speed. Padding is taken from the shape analysis (graph.LayerInfo.pads), so the
reference, the exporters and the table agree on every pixel.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgeconv.core.graph import Analysis, LayerInfo
from edgeconv.core.ir import (
    INPUT,
    Activation,
    Add,
    AvgPool,
    Concat,
    Conv2d,
    Dense,
    DepthwiseConv2d,
    GlobalAvgPool,
    MaxPool,
    Pad,
    Softmax,
)
from edgeconv.core.optable import OpTable
from edgeconv.core.weights import Weights


def activation(x: np.ndarray, kind: Activation) -> np.ndarray:
    if kind is Activation.RELU:
        return np.maximum(x, 0.0)
    if kind is Activation.RELU6:
        return np.clip(x, 0.0, 6.0)
    return x


def pad(x: np.ndarray, pads: tuple[int, int, int, int], value: float = 0.0) -> np.ndarray:
    top, left, bottom, right = pads
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def windows(x: np.ndarray, kernel_hw: tuple[int, int], stride_hw: tuple[int, int]) -> np.ndarray:
    """(N, H2, W2, C, KH, KW) view of every window the kernel visits."""
    view = sliding_window_view(x, kernel_hw, axis=(1, 2))
    return view[:, :: stride_hw[0], :: stride_hw[1]]


def conv2d(x, weight, bias, stride_hw, pads):
    """weight (K, KH, KW, C): out[n,i,j,k] = Σ x_window · weight[k] + bias[k]."""
    win = windows(pad(x, pads), weight.shape[1:3], stride_hw)
    return np.einsum("nijchw,khwc->nijk", win, weight, optimize=True) + bias


def depthwise_conv2d(x, weight, bias, stride_hw, pads):
    """weight (1, KH, KW, C): each channel convolved with its own filter."""
    win = windows(pad(x, pads), weight.shape[1:3], stride_hw)
    return np.einsum("nijchw,hwc->nijc", win, weight[0], optimize=True) + bias


def max_pool(x, pool_hw, stride_hw, pads):
    win = windows(pad(x, pads, -np.inf), pool_hw, stride_hw)
    return win.max(axis=(4, 5))


def avg_pool(x, pool_hw, stride_hw, pads):
    """Average over the window's pixels inside the image (padding not counted)."""
    ones = np.ones(x.shape[:3] + (1,), dtype=x.dtype)
    total = windows(pad(x, pads), pool_hw, stride_hw).sum(axis=(4, 5))
    count = windows(pad(ones, pads), pool_hw, stride_hw).sum(axis=(4, 5))
    return total / count


def global_avg_pool(x):
    return x.mean(axis=(1, 2), keepdims=True)


def dense(x, weight, bias):
    """Flatten in H, W, C order, then x · weightᵀ + bias; output (N, 1, 1, units)."""
    flat = x.reshape(x.shape[0], -1)
    return (flat @ weight.T + bias).reshape(x.shape[0], 1, 1, -1)


def add(a, b):
    return a + b


def concat(args):
    """Channels of every input in order (NHWC: the last axis)."""
    return np.concatenate(args, axis=-1)


def softmax(x):
    shifted = x - x.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


REFERENCE: OpTable = OpTable("float reference")


def run_layer(layer, info: LayerInfo, args: list[np.ndarray], weights: Weights) -> np.ndarray:
    """Run one IR layer on float NHWC inputs."""
    return REFERENCE.handler(layer)(layer, info, args, weights)


def _stride_hw(layer) -> tuple[int, int]:
    return (layer.stride[1], layer.stride[0])


@REFERENCE.register(Conv2d)
def _run_conv(layer: Conv2d, info: LayerInfo, args: list[np.ndarray], weights: Weights) -> np.ndarray:
    w, b = weights[f"{layer.name}.weight"], weights[f"{layer.name}.bias"]
    return activation(conv2d(args[0], w, b, _stride_hw(layer), info.pads), layer.activation)


@REFERENCE.register(DepthwiseConv2d)
def _run_depthwise(layer: DepthwiseConv2d, info: LayerInfo, args: list[np.ndarray], weights: Weights) -> np.ndarray:
    w, b = weights[f"{layer.name}.weight"], weights[f"{layer.name}.bias"]
    return activation(depthwise_conv2d(args[0], w, b, _stride_hw(layer), info.pads), layer.activation)


@REFERENCE.register(MaxPool)
def _run_max_pool(layer: MaxPool, info: LayerInfo, args: list[np.ndarray], weights: Weights) -> np.ndarray:
    return max_pool(args[0], layer.pool[::-1], _stride_hw(layer), info.pads)


@REFERENCE.register(AvgPool)
def _run_avg_pool(layer: AvgPool, info: LayerInfo, args: list[np.ndarray], weights: Weights) -> np.ndarray:
    return avg_pool(args[0], layer.pool[::-1], _stride_hw(layer), info.pads)


@REFERENCE.register(GlobalAvgPool)
def _run_global_avg_pool(layer: GlobalAvgPool, info: LayerInfo, args: list[np.ndarray], weights: Weights) -> np.ndarray:
    return global_avg_pool(args[0])


@REFERENCE.register(Dense)
def _run_dense(layer: Dense, info: LayerInfo, args: list[np.ndarray], weights: Weights) -> np.ndarray:
    w, b = weights[f"{layer.name}.weight"], weights[f"{layer.name}.bias"]
    return activation(dense(args[0], w, b), layer.activation)


@REFERENCE.register(Add)
def _run_add(layer: Add, info: LayerInfo, args: list[np.ndarray], weights: Weights) -> np.ndarray:
    return activation(add(args[0], args[1]), layer.activation)


@REFERENCE.register(Concat)
def _run_concat(layer: Concat, info: LayerInfo, args: list[np.ndarray], weights: Weights) -> np.ndarray:
    return concat(args)


@REFERENCE.register(Pad)
def _run_pad(layer: Pad, info: LayerInfo, args: list[np.ndarray], weights: Weights) -> np.ndarray:
    return pad(args[0], info.pads)


@REFERENCE.register(Softmax)
def _run_softmax(layer: Softmax, info: LayerInfo, args: list[np.ndarray], weights: Weights) -> np.ndarray:
    return softmax(args[0])


def run(analysis: Analysis, weights: Weights, x: np.ndarray, keep_all: bool = False) -> dict[str, np.ndarray]:
    """Run the model on x (N, H, W, C) float32; return the output, or every layer's output.

    Computes in float64 so that the reference is more exact than any runtime under test,
    then returns float32 arrays.
    """
    model = analysis.model
    expected = (model.input.height, model.input.width, model.input.channels)
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
        raise ValueError(f"reference: expected input (N, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
    values = {INPUT: x.astype(np.float64)}
    weights64 = {k: v.astype(np.float64) for k, v in weights.items()}
    for layer, info in zip(model.layers, analysis.layers):
        values[layer.name] = run_layer(layer, info, [values[src] for src in layer.inputs], weights64)
    if keep_all:
        return {name: v.astype(np.float32) for name, v in values.items()}
    return {model.output: values[model.output].astype(np.float32)}
