"""Data-dependent initialization of a default build's random weights (planner outputs).

Why: He-normal weights keep each layer's variance for a plain ReLU net, but through the
planner's deep residual plans (up to 7 stages, 60 convs) every add stacks another positive ReLU
mean onto the skip path. The features end up dominated by an input-independent constant:
logits spread 100-3,200 between classes and vary by 0.1-4 across inputs, so every input gets
the same class (1-2 distinct classes over 16 samples) and a saturated softmax turns 1 LSB at
the logits into a flipped probability (output SQNR 4.3 dB). Centring every layer instead
(LSUV) makes the random net chaotic: quantization noise grows ~1 dB per layer to 5-9 dB at the
logits.

What, one float pass over SAMPLES seeded N(0, 1) inputs (the kind `build` calibrates on and
`parity` checks with), layer by layer on the already rescaled upstream:
- a conv / depthwise / hidden dense: per channel, weights divided by the pre-activation's std
  and the bias set to minus its mean (zero mean, unit std: ReLU features vary with the input);
- the last conv of a residual branch (linear, read by an add): std BRANCH_STD, so each block
  adds a small input-dependent change to the skip path instead of a new random map;
- a projection on the skip path (linear, read by an add, fed by the block input): unit std,
  mean SKIP_SHIFT, so the add's ReLU stays nearly linear on the skip path;
- the classifier head (last dense, 2+ units): per class minus the mean logit and one factor
  for a spread of LOGIT_SPREAD across inputs, so the argmax depends on the input.
Measured on the five default plans (`python scripts/bug_catalogue.py --correct` and README
"Planner outputs and top-1"). Pure numpy, deterministic for the same seed.
"""

from __future__ import annotations

import numpy as np

from edgeconv.core import reference
from edgeconv.core.graph import Analysis
from edgeconv.core.ir import INPUT, Activation, Add, Conv2d, Dense, DepthwiseConv2d
from edgeconv.core.weights import Weights

SAMPLES = 16
LOGIT_SPREAD = 2.0  # std of each logit across inputs (a trained classifier's: 2-4)
BRANCH_STD = 0.1  # residual branch output: small against the skip path (unit std)
SKIP_SHIFT = 2.0  # projection mean in stds: the add's ReLU rarely clips the skip path

_WEIGHTED = (Conv2d, DepthwiseConv2d, Dense)


def _pre_activation(layer, info, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    zero = np.zeros(w.shape[-1] if isinstance(layer, DepthwiseConv2d) else w.shape[0])
    if isinstance(layer, Dense):
        return reference.dense(x, w, zero)
    op = reference.conv2d if isinstance(layer, Conv2d) else reference.depthwise_conv2d
    return op(x, w, zero, (layer.stride[1], layer.stride[0]), info.pads)


def _roles(analysis: Analysis) -> dict[str, str]:
    """'branch' / 'skip' for linear weighted layers read only by adds; 'head' for the classifier."""
    layers = {layer.name: layer for layer in analysis.model.layers}
    order = {name: i for i, name in enumerate([INPUT, *layers])}
    readers: dict[str, list[str]] = {}
    for layer in analysis.model.layers:
        for src in layer.inputs:
            readers.setdefault(src, []).append(layer.name)
    roles: dict[str, str] = {}
    for layer in analysis.model.layers:
        if not isinstance(layer, Add):
            continue
        linear = [
            src
            for src in layer.inputs
            if isinstance(layers.get(src), _WEIGHTED)
            and getattr(layers[src], "activation", None) == Activation.NONE
            and readers[src] == [layer.name]
        ]
        if len(linear) == 2:  # a projection shortcut: the one fed from earlier is the skip
            skip = min(linear, key=lambda src: order[layers[src].inputs[0]])
            roles[skip] = "skip"
            linear.remove(skip)
        for src in linear:
            roles[src] = "branch"
    weighted = [layer for layer in analysis.model.layers if isinstance(layer, _WEIGHTED)]
    if weighted and isinstance(weighted[-1], Dense) and weighted[-1].units > 1:
        roles[weighted[-1].name] = "head"
    return roles


def data_init(analysis: Analysis, weights: Weights, seed: int = 0) -> Weights:
    """`weights` rescaled layer by layer as the module docstring says (same keys and shapes)."""
    model = analysis.model
    h, w_, c = model.input.height, model.input.width, model.input.channels
    x = np.random.default_rng([seed, 0x1417]).standard_normal((SAMPLES, h, w_, c))
    out = {k: v.astype(np.float64) for k, v in weights.items()}
    roles = _roles(analysis)
    values = {INPUT: x}
    for layer, info in zip(model.layers, analysis.layers):
        args = [values[src] for src in layer.inputs]
        if not isinstance(layer, _WEIGHTED):
            values[layer.name] = reference.run_layer(layer, info, args, out)
            continue
        kw, kb = f"{layer.name}.weight", f"{layer.name}.bias"
        pre = _pre_activation(layer, info, args[0], out[kw])
        role = roles.get(layer.name)
        if role == "head":
            per_sample = pre.reshape(SAMPLES, -1)
            spread = float(per_sample.std(axis=0).mean())
            scale = np.full(per_sample.shape[1], LOGIT_SPREAD / spread if spread > 0 else 1.0)
            shift = -per_sample.mean(axis=0) * scale
        else:
            flat = pre.reshape(-1, pre.shape[-1])
            std = flat.std(axis=0)
            std = np.where(std > 0, std, 1.0)  # a dead channel keeps its weights
            scale = (BRANCH_STD if role == "branch" else 1.0) / std
            shift = -flat.mean(axis=0) * scale + (SKIP_SHIFT if role == "skip" else 0.0)
        if isinstance(layer, DepthwiseConv2d):  # (1, KH, KW, C): channels last
            out[kw] = out[kw] * scale
        else:  # conv (K, KH, KW, D) and dense (units, n_in): channels first
            out[kw] = out[kw] * scale.reshape(-1, *([1] * (out[kw].ndim - 1)))
        out[kb] = shift
        values[layer.name] = reference.activation(pre * scale + shift, layer.activation)
    return {k: v.astype(np.float32) for k, v in out.items()}
