"""IR -> torch.nn.Module with exactly the IR's semantics, and trained weights back to the IR.

The module takes NHWC float32 input (N, H, W, C), as the numpy reference does, and returns the
model output in NHWC too (a dense output is (N, 1, 1, units)). Inside, tensors are NCHW (what
torch's conv kernels want); every op follows core/reference.py:

- padding is applied per side from the shape analysis (graph.LayerInfo.pads = top, left,
  bottom, right), so TFLite SAME's odd pixel lands at the bottom/right as in every exporter;
- max pooling pads with −inf, average pooling does not count padded pixels;
- a dense layer after a spatial tensor flattens in H, W, C order (the weights.py layout);
- ReLU6 is clamp(0, 6); softmax runs over channels.

Each conv (and depthwise conv) is followed by a BatchNorm during training, before its fused
activation. `weights_from_module` folds it into the conv weight and bias:
    w' = w · γ/√(σ² + ε),  b' = (b − μ) · γ/√(σ² + ε) + β
with the running statistics, so the IR's weights.npz computes what the module computes in
eval mode (test: ≤ 1e-5 relative on the numpy reference).

Ops dispatch through one table (`TORCH_MODULES`, the "torch module" pass); an IR op without a
handler is an `UnsupportedOp` error naming the layer and the ops that are handled.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeconv.core.graph import Analysis, LayerInfo, analyze
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
    Model,
    Pad,
    Softmax,
)
from edgeconv.core.optable import OpTable
from edgeconv.core.weights import Weights, init_weights

BN_EPS = 1e-3  # Keras' default; larger than torch's 1e-5, which keeps the fold well-conditioned
BN_MOMENTUM = 0.1


def _activate(x: torch.Tensor, kind: Activation) -> torch.Tensor:
    if kind is Activation.RELU:
        return F.relu(x)
    if kind is Activation.RELU6:
        return torch.clamp(x, 0.0, 6.0)
    return x


def _buffer(t: torch.Tensor | None) -> torch.Tensor:
    """An optional tensor torch types as `Tensor | None` that this module always creates."""
    assert t is not None
    return t


def _torch_pads(pads: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """IR (top, left, bottom, right) -> F.pad's (left, right, top, bottom) for NCHW."""
    top, left, bottom, right = pads
    return (left, right, top, bottom)


class LayerModule(nn.Module):
    """One IR layer. `quant` (set by QAT, see qat.py) fake-quantizes the output when present."""

    def __init__(self, layer, info: LayerInfo) -> None:
        super().__init__()
        self.layer_name = layer.name
        self.op = layer.op
        self.fake_quant: Any = None  # callable(tensor) -> tensor, installed by QAT (qat.FakeQuant)


class ConvBlock(LayerModule):
    """Conv2d or depthwise conv (groups = channels), then BatchNorm, then the fused activation."""

    def __init__(self, layer, info: LayerInfo, weights: Weights, depthwise: bool, batchnorm: bool) -> None:
        super().__init__(layer, info)
        c_in = info.in_shape[2]
        c_out = info.out_shape[2]
        kw, kh = layer.kernel
        self.depthwise = depthwise
        self.conv = nn.Conv2d(
            c_in,
            c_out,
            (kh, kw),
            stride=(layer.stride[1], layer.stride[0]),
            padding=0,
            groups=c_in if depthwise else 1,
            bias=True,
        )
        self.pads = _torch_pads(info.pads)
        self.activation = layer.activation
        self.bn = nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM) if batchnorm else None
        if self.bn is not None:
            with torch.no_grad():  # running variance 1 − ε: in eval mode a fresh BN is exactly the identity
                _buffer(self.bn.running_var).fill_(1.0 - BN_EPS)
        w = weights[f"{layer.name}.weight"]
        with torch.no_grad():
            # IR layouts: conv (K, KH, KW, C) -> (K, C, KH, KW); depthwise (1, KH, KW, C) -> (C, 1, KH, KW)
            tw = np.transpose(w[0], (2, 0, 1))[:, None] if depthwise else np.transpose(w, (0, 3, 1, 2))
            self.conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(tw, dtype=np.float32)))
            _buffer(self.conv.bias).copy_(torch.from_numpy(np.asarray(weights[f"{layer.name}.bias"], np.float32)))
        self.qat: Any = None  # QAT state (qat.LayerQuant) when fine-tuning with fake quantization

    def folded(self, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) in torch layout with the BatchNorm's running statistics folded in
        (computed in `dtype`, e.g. float64 when writing weights back)."""
        bias = _buffer(self.conv.bias)
        w, b = self.conv.weight.to(dtype or self.conv.weight.dtype), bias.to(dtype or bias.dtype)
        if self.bn is None:
            return w, b
        bn = self.bn
        var, mean = _buffer(bn.running_var).to(w.dtype), _buffer(bn.running_mean).to(w.dtype)
        scale = bn.weight.to(w.dtype) / torch.sqrt(var + bn.eps)
        return w * scale.reshape(-1, 1, 1, 1), (b - mean) * scale + bn.bias.to(w.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, self.pads) if any(self.pads) else x
        if self.qat is not None:
            y = self.qat.conv(self, x)
        else:
            y = self.conv(x)
            if self.bn is not None:
                y = self.bn(y)
        y = _activate(y, self.activation)
        return self.fake_quant(y) if self.fake_quant is not None else y


class DenseBlock(LayerModule):
    """Flatten in H, W, C order (NCHW -> NHWC first), then Linear, then the fused activation."""

    def __init__(self, layer: Dense, info: LayerInfo, weights: Weights) -> None:
        super().__init__(layer, info)
        w1, h1, d1 = info.in_shape
        self.linear = nn.Linear(w1 * h1 * d1, layer.units)
        self.activation = layer.activation
        with torch.no_grad():
            self.linear.weight.copy_(torch.from_numpy(np.asarray(weights[f"{layer.name}.weight"], np.float32)))
            self.linear.bias.copy_(torch.from_numpy(np.asarray(weights[f"{layer.name}.bias"], np.float32)))
        self.qat: Any = None

    def folded(self, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.linear.weight.to(dtype or self.linear.weight.dtype), self.linear.bias.to(
            dtype or self.linear.bias.dtype
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        y = self.qat.dense(self, flat) if self.qat is not None else self.linear(flat)
        y = _activate(y, self.activation).reshape(x.shape[0], -1, 1, 1)
        return self.fake_quant(y) if self.fake_quant is not None else y


class PoolBlock(LayerModule):
    def __init__(self, layer: MaxPool | AvgPool, info: LayerInfo) -> None:
        super().__init__(layer, info)
        self.kernel = (layer.pool[1], layer.pool[0])
        self.stride = (layer.stride[1], layer.stride[0])
        self.pads = _torch_pads(info.pads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.op == "max_pool":
            padded = F.pad(x, self.pads, value=float("-inf")) if any(self.pads) else x
            y = F.max_pool2d(padded, self.kernel, self.stride)
        else:
            # the mean over the pixels inside the image: padded sum / padded count of ones
            padded = F.pad(x, self.pads) if any(self.pads) else x
            y = F.avg_pool2d(padded, self.kernel, self.stride)
            if any(self.pads):
                ones = F.pad(torch.ones_like(x[:1, :1]), self.pads)
                y = y / F.avg_pool2d(ones, self.kernel, self.stride)
        return self.fake_quant(y) if self.fake_quant is not None else y


class GlobalPoolBlock(LayerModule):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean(dim=(2, 3), keepdim=True)
        return self.fake_quant(y) if self.fake_quant is not None else y


class AddBlock(LayerModule):
    def __init__(self, layer: Add, info: LayerInfo) -> None:
        super().__init__(layer, info)
        self.activation = layer.activation

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        y = _activate(a + b, self.activation)
        return self.fake_quant(y) if self.fake_quant is not None else y


class SoftmaxBlock(LayerModule):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=1)


class ConcatBlock(LayerModule):
    """Channels of every input in order (the module runs NCHW: dim 1)."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=1)


class PadBlock(LayerModule):
    """Zero padding of H and W (the module runs NCHW)."""

    def __init__(self, layer: Pad, info: LayerInfo) -> None:
        super().__init__(layer, info)
        self.pads = _torch_pads(info.pads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pads)


TORCH_MODULES: OpTable = OpTable("torch module")


@TORCH_MODULES.register(Conv2d)
def _conv(layer: Conv2d, info: LayerInfo, weights: Weights, batchnorm: bool) -> LayerModule:
    return ConvBlock(layer, info, weights, depthwise=False, batchnorm=batchnorm)


@TORCH_MODULES.register(DepthwiseConv2d)
def _depthwise(layer: DepthwiseConv2d, info: LayerInfo, weights: Weights, batchnorm: bool) -> LayerModule:
    return ConvBlock(layer, info, weights, depthwise=True, batchnorm=batchnorm)


@TORCH_MODULES.register(Dense)
def _dense(layer: Dense, info: LayerInfo, weights: Weights, batchnorm: bool) -> LayerModule:
    return DenseBlock(layer, info, weights)


@TORCH_MODULES.register(MaxPool, AvgPool)
def _pool(layer, info: LayerInfo, weights: Weights, batchnorm: bool) -> LayerModule:
    return PoolBlock(layer, info)


@TORCH_MODULES.register(GlobalAvgPool)
def _global_pool(layer: GlobalAvgPool, info: LayerInfo, weights: Weights, batchnorm: bool) -> LayerModule:
    return GlobalPoolBlock(layer, info)


@TORCH_MODULES.register(Add)
def _add(layer: Add, info: LayerInfo, weights: Weights, batchnorm: bool) -> LayerModule:
    return AddBlock(layer, info)


@TORCH_MODULES.register(Concat)
def _concat(layer: Concat, info: LayerInfo, weights: Weights, batchnorm: bool) -> LayerModule:
    return ConcatBlock(layer, info)


@TORCH_MODULES.register(Pad)
def _pad(layer: Pad, info: LayerInfo, weights: Weights, batchnorm: bool) -> LayerModule:
    return PadBlock(layer, info)


@TORCH_MODULES.register(Softmax)
def _softmax(layer: Softmax, info: LayerInfo, weights: Weights, batchnorm: bool) -> LayerModule:
    return SoftmaxBlock(layer, info)


class IRModule(nn.Module):
    """The whole IR graph. `forward(x)` returns the model output (NHWC); `logits(x)` the input
    of a final softmax (or the output when the model has none), flattened to (N, classes),
    which is what a cross-entropy loss wants."""

    def __init__(self, analysis: Analysis, weights: Weights, batchnorm: bool = True) -> None:
        super().__init__()
        self.analysis = analysis
        model = analysis.model
        # layer names may hold characters nn.ModuleDict refuses ('.'), so modules are indexed
        self.blocks = nn.ModuleList(
            TORCH_MODULES.handler(layer)(layer, info, weights, batchnorm)
            for layer, info in zip(model.layers, analysis.layers)
        )
        self.input_fake_quant: Any = None  # installed by QAT
        last = model.layers[-1]
        self._logits_layer = last.inputs[0] if isinstance(last, Softmax) else last.name

    @property
    def model(self) -> Model:
        return self.analysis.model

    def run(self, x: torch.Tensor, until: str | None = None, keep_all: bool = False) -> dict[str, torch.Tensor]:
        """NCHW values of every layer up to `until` (default: all)."""
        h, w, c = self.model.input.height, self.model.input.width, self.model.input.channels
        if x.ndim != 4 or tuple(x.shape[1:]) != (h, w, c):
            raise ValueError(f"{self.model.name}: expected input (N, {h}, {w}, {c}) NHWC, got {tuple(x.shape)}")
        x = x.permute(0, 3, 1, 2)
        if self.input_fake_quant is not None:
            x = self.input_fake_quant(x)
        values = {INPUT: x}
        consumers: dict[str, int] = {}
        for layer in self.model.layers:
            for src in layer.inputs:
                consumers[src] = consumers.get(src, 0) + 1
        for layer, block in zip(self.model.layers, self.blocks):
            values[layer.name] = block(*(values[src] for src in layer.inputs))
            if not keep_all:  # free what no later layer reads
                for src in layer.inputs:
                    consumers[src] -= 1
                    if consumers[src] == 0 and src != until:
                        values.pop(src, None)
            if layer.name == until:
                break
        return values

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)[self.model.output].permute(0, 2, 3, 1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        y = self.run(x, until=self._logits_layer)[self._logits_layer]
        return y.permute(0, 2, 3, 1).reshape(y.shape[0], -1)

    def layer_blocks(self) -> list[LayerModule]:
        return [b for b in self.blocks if isinstance(b, LayerModule)]

    def weighted_blocks(self):
        return [b for b in self.blocks if isinstance(b, (ConvBlock, DenseBlock))]


def _analysis_of(plan_or_model) -> Analysis:
    """A planner Plan, a BuildResult / BuiltModel (anything with .analysis), a Model or an Analysis."""
    if isinstance(plan_or_model, Analysis):
        return plan_or_model
    if isinstance(plan_or_model, Model):
        return analyze(plan_or_model)
    analysis = getattr(plan_or_model, "analysis", None)
    if isinstance(analysis, Analysis):
        return analysis
    raise TypeError(
        f"to_module: expected a Plan, a Model, an Analysis or a build (with .analysis), got {type(plan_or_model).__name__}"
    )


def to_module(plan_or_model, weights: Weights | None = None, *, batchnorm: bool = True, seed: int = 0) -> IRModule:
    """An nn.Module computing the IR model. Weights: `weights` if given, else the build's
    (`.weights` of a BuildResult / BuiltModel), else edgeconv's seeded He-normal init."""
    analysis = _analysis_of(plan_or_model)
    if weights is None:
        weights = getattr(plan_or_model, "weights", None) or init_weights(analysis, seed)
    return IRModule(analysis, weights, batchnorm=batchnorm)


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy()


def weights_from_module(module: IRModule, plan_or_model=None) -> Weights:
    """The IR's weights (weights.py layouts, float32) with every BatchNorm folded in."""
    analysis = module.analysis if plan_or_model is None else _analysis_of(plan_or_model)
    if analysis.model != module.model:
        raise ValueError(f"weights_from_module: the module computes {module.model.name}, not {analysis.model.name}")
    out: Weights = {}
    for layer, block in zip(analysis.model.layers, module.blocks):
        if isinstance(block, ConvBlock):
            w, b = (_to_numpy(t) for t in block.folded(torch.float64))
            # (K, C, KH, KW) -> (K, KH, KW, C); depthwise (C, 1, KH, KW) -> (1, KH, KW, C)
            w_ir = np.transpose(w[:, 0], (1, 2, 0))[None] if block.depthwise else np.transpose(w, (0, 2, 3, 1))
        elif isinstance(block, DenseBlock):
            w_ir, b = (_to_numpy(t) for t in block.folded(torch.float64))
        else:
            continue
        out[f"{layer.name}.weight"] = np.ascontiguousarray(w_ir, dtype=np.float32)
        out[f"{layer.name}.bias"] = np.asarray(b, dtype=np.float32)
    return out
