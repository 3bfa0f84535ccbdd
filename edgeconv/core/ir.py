"""The model IR: frozen dataclasses for an input and the layers of a small conv net.

Shapes are W×H×C as in the lecture notes. Every layer has a stable name and names the
layers it reads (`inputs`); "input" is the model input. Weights live outside the IR
(see weights.py), keyed by layer name.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum

INPUT = "input"
# padding of a windowed layer: "same", "valid", a symmetric P that must tile the input, or an
# imported layer's (top, left, bottom, right) pads kept as its file has them (floor semantics)
PaddingSpec = str | int | tuple[int, int, int, int]


class Activation(str, Enum):
    NONE = "none"
    RELU = "relu"
    RELU6 = "relu6"


@dataclass(frozen=True)
class InputSpec:
    width: int
    height: int
    channels: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.width, self.height, self.channels)


@dataclass(frozen=True)
class Conv2d:
    name: str
    filters: int
    kernel: tuple[int, int]  # (F_w, F_h)
    stride: tuple[int, int] = (1, 1)  # (S_w, S_h)
    padding: PaddingSpec = "same"
    activation: Activation = Activation.NONE
    inputs: tuple[str, ...] = ()
    op = "conv2d"


@dataclass(frozen=True)
class DepthwiseConv2d:
    name: str
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: PaddingSpec = "same"
    activation: Activation = Activation.NONE
    inputs: tuple[str, ...] = ()
    op = "depthwise_conv2d"


@dataclass(frozen=True)
class MaxPool:
    name: str
    pool: tuple[int, int]
    stride: tuple[int, int]
    padding: PaddingSpec = "valid"
    inputs: tuple[str, ...] = ()
    op = "max_pool"


@dataclass(frozen=True)
class AvgPool:
    name: str
    pool: tuple[int, int]
    stride: tuple[int, int]
    padding: PaddingSpec = "valid"
    inputs: tuple[str, ...] = ()
    op = "avg_pool"


@dataclass(frozen=True)
class GlobalAvgPool:
    name: str
    inputs: tuple[str, ...] = ()
    op = "global_avg_pool"


@dataclass(frozen=True)
class Dense:
    """Fully connected; a spatial input is flattened in H, W, C (NHWC) order first."""

    name: str
    units: int
    activation: Activation = Activation.NONE
    inputs: tuple[str, ...] = ()
    op = "dense"


@dataclass(frozen=True)
class Add:
    """Residual join of two earlier layers, optionally followed by an activation."""

    name: str
    inputs: tuple[str, ...] = ()
    activation: Activation = Activation.NONE
    op = "add"


@dataclass(frozen=True)
class Softmax:
    name: str
    inputs: tuple[str, ...] = ()
    op = "softmax"


@dataclass(frozen=True)
class Concat:
    """Join of two or more earlier layers on the channel axis (equal W and H), in input order.
    Quantized, every input and the output share one scale and zero point (TFLite Micro's int8
    CONCATENATION requires it), so the int8 op only copies."""

    name: str
    inputs: tuple[str, ...] = ()
    op = "concat"


@dataclass(frozen=True)
class Pad:
    """Zero padding of H and W, (top, left, bottom, right): an imported file's Pad that no conv
    absorbs (before a pool that counts padding, say). Quantized, real 0 is the zero point, and
    the output keeps the input's scale and zero point."""

    name: str
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    inputs: tuple[str, ...] = ()
    op = "pad"


Layer = Conv2d | DepthwiseConv2d | MaxPool | AvgPool | GlobalAvgPool | Dense | Add | Softmax | Concat | Pad
LAYER_TYPES: dict[str, type] = {
    cls.op: cls for cls in (Conv2d, DepthwiseConv2d, MaxPool, AvgPool, GlobalAvgPool, Dense, Add, Softmax, Concat, Pad)
}
WEIGHTED_OPS = ("conv2d", "depthwise_conv2d", "dense")


@dataclass(frozen=True)
class Model:
    name: str
    input: InputSpec
    layers: tuple[Layer, ...]
    description: str = ""
    meta: tuple[tuple[str, str], ...] = field(default=())

    @property
    def output(self) -> str:
        return self.layers[-1].name

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)


def chain(name: str, input_spec: InputSpec, layers: list[Layer], description: str = "") -> Model:
    """Build a Model, filling each layer's missing `inputs` with the layer before it."""
    resolved = []
    previous = INPUT
    for layer in layers:
        if not layer.inputs:
            layer = replace(layer, inputs=(previous,))
        resolved.append(layer)
        previous = layer.name
    return Model(name=name, input=input_spec, layers=tuple(resolved), description=description)


def as_pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """A kernel or stride given as N or [W, H]."""
    if isinstance(value, (list, tuple)):
        return (int(value[0]), int(value[1]))
    return (int(value), int(value))
