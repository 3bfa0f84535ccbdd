"""Quantization-aware fine-tuning: fake quantization with edgeconv's own QuantParams rules.

At the start of every QAT epoch the module's weights are folded (BatchNorm into the convs),
calibrated with edgeconv's calibrate() on the calibration inputs and quantized with
quantize(): the activation scales and zero points are then exactly those an export would
write (ranges widened to include 0, fused ReLU/ReLU6 folded into the range, pools keeping
their input's parameters, global average pool its own). During the epoch:

- the input and every layer output are fake-quantized with their QuantParams entry:
  q = clamp(round_half_even(float32(x) / float32(s)) + zp, −128, 127), x̂ = (q − zp)·s;
- weights are fake-quantized per output channel, symmetric, as quantize.weight_quant does:
  s_w[c] = float32(max|w_c| / 127), q = clamp(round_half_even(w / s_w[c]), −127, 127) in float64;
- biases on the int32 grid with s_b[c] = float32(s_in) × float32(s_w[c]) (quantize.bias_quant);
- BatchNorm uses its running statistics (frozen) and is folded into the conv before the
  weights are fake-quantized, as the export folds it.

Gradients pass straight through every rounding (the straight-through estimator), and are
zeroed where an activation was clipped to the int8 range. Softmax outputs are not
fake-quantized: the loss is computed on the logits.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from edgeconv.core.ir import INPUT
from edgeconv.quant.params import QuantParams, TensorQuant
from edgeconv.train.module import ConvBlock, DenseBlock, IRModule, SoftmaxBlock, weights_from_module

INT8_MIN, INT8_MAX = -128, 127
WEIGHT_QMAX = 127
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


class FakeQuant:
    """Per-tensor int8 fake quantization with one TensorQuant (int8 convention)."""

    def __init__(self, tq: TensorQuant) -> None:
        self.scale = float(np.float32(tq.scale[0]))
        self.zero_point = int(tq.zero_point[0])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.tensor(self.scale, dtype=torch.float32)
        q = torch.round(x.to(torch.float32) / s) + self.zero_point  # torch.round: half to even
        inside = (q >= INT8_MIN) & (q <= INT8_MAX)
        xq = (torch.clamp(q, INT8_MIN, INT8_MAX) - self.zero_point) * s
        # straight-through inside the range, no gradient where the value was clipped
        return torch.where(inside, x + (xq - x).detach(), xq.detach())


def _ste(x: torch.Tensor, xq: torch.Tensor) -> torch.Tensor:
    return x + (xq - x).detach()


def fake_quant_weight(w: torch.Tensor, axis: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(fake-quantized w, float32 per-channel scales) with quantize.weight_quant's rule."""
    w64 = w.detach().to(torch.float32).to(torch.float64)
    dims = tuple(i for i in range(w.ndim) if i != axis)
    amax = w64.abs().amax(dim=dims)
    scales = torch.where(amax > 0, (amax / WEIGHT_QMAX).to(torch.float32), torch.ones_like(amax, dtype=torch.float32))
    shape = [1] * w.ndim
    shape[axis] = -1
    q = torch.clamp(torch.round(w64 / scales.to(torch.float64).reshape(shape)), -WEIGHT_QMAX, WEIGHT_QMAX)
    wq = (q * scales.to(torch.float64).reshape(shape)).to(w.dtype)
    return _ste(w, wq), scales


def fake_quant_bias(b: torch.Tensor, s_in: float, w_scales: torch.Tensor) -> torch.Tensor:
    """Bias on the int32 grid of scale float32(s_in) × float32(s_w[c]) (quantize.bias_quant)."""
    s_b = (torch.tensor(np.float32(s_in), dtype=torch.float32) * w_scales).to(torch.float64)
    q = torch.clamp(torch.round(b.detach().to(torch.float64) / s_b), INT32_MIN, INT32_MAX)
    return _ste(b, (q * s_b).to(b.dtype))


class LayerQuant:
    """The weighted-layer half of QAT: folded, fake-quantized weight and bias of one block."""

    def __init__(self, s_in: float) -> None:
        self.s_in = s_in

    def conv(self, block: ConvBlock, x: torch.Tensor) -> torch.Tensor:
        w, b = block.folded()
        wq, scales = fake_quant_weight(w, 0)
        bq = fake_quant_bias(b, self.s_in, scales)
        c = block.conv
        return F.conv2d(x, wq, bq, stride=c.stride, padding=0, groups=c.groups)

    def dense(self, block: DenseBlock, flat: torch.Tensor) -> torch.Tensor:
        w, b = block.folded()
        wq, scales = fake_quant_weight(w, 0)
        return F.linear(flat, wq, fake_quant_bias(b, self.s_in, scales))


def install(module: IRModule, qparams: QuantParams) -> None:
    """Fake quantization of every tensor with `qparams` (from quantize() on the folded weights)."""
    module.input_fake_quant = FakeQuant(qparams.activations[INPUT])
    for layer, block in zip(module.model.layers, module.layer_blocks()):
        block.fake_quant = None if isinstance(block, SoftmaxBlock) else FakeQuant(qparams.activations[layer.name])
        if isinstance(block, (ConvBlock, DenseBlock)):
            block.qat = LayerQuant(qparams.activations[layer.inputs[0]].scale[0])


def remove(module: IRModule) -> None:
    module.input_fake_quant = None
    for block in module.layer_blocks():
        block.fake_quant = None
        if isinstance(block, (ConvBlock, DenseBlock)):
            block.qat = None


def qparams_for(module: IRModule, calib: np.ndarray, method: str = "minmax", percentile: float = 99.99) -> QuantParams:
    """What the export would write for the module's current weights and this calibration set."""
    from edgeconv.backends.float_layers import float_layer_runner
    from edgeconv.quant.calibrate import calibrate
    from edgeconv.quant.quantize import quantize

    weights = weights_from_module(module)
    # the float engine the build calibrates with (ORT when installed, else the numpy reference),
    # so the ranges are bit for bit those the export will write
    runner = float_layer_runner(module.analysis, weights)
    cal = calibrate(module.analysis, weights, calib, method, percentile, "qat calibration", runner=runner)
    return quantize(module.analysis, weights, cal.ranges, cal.info)


def setup(calib: np.ndarray, method: str = "minmax", percentile: float = 99.99):
    """The `qat_setup` callback of loop.train: refresh the QuantParams, install fake quant."""

    def refresh(module: IRModule) -> None:
        remove(module)  # calibrate the float (folded) model, as the export will
        install(module, qparams_for(module, calib, method, percentile))

    return refresh
