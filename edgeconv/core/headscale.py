"""Head scaling of the default random weights: logits with a realistic spread.

He-normal weights keep each layer's variance for ReLU nets, but the residual adds and the
depth of the planner's plans compound it, so the logits of a default build reached a spread of
100-3,200 between classes: softmax saturates to one-hot and a 1-LSB logit difference flips a
probability from 0 to 1 (output SQNR 4-8 dB on two of the five default plans, a false quality
alarm on every target). Scaling the head (the last dense layer's weights and bias) by one
factor, measured on a few seeded N(0, 1) inputs like the calibration and parity sets, brings
the mean per-sample standard deviation of the logits across classes to LOGIT_SPREAD, what a
trained classifier's logits show (the trained ResNet-8 on photo crops: 2-4). One factor keeps
the hidden layers, their quantization and the argmax as they were. Pure numpy, deterministic.
"""

from __future__ import annotations

import numpy as np

from edgeconv.core import reference
from edgeconv.core.graph import Analysis
from edgeconv.core.ir import Dense
from edgeconv.core.weights import Weights

LOGIT_SPREAD = 3.0  # mean over samples of the std of the logits across classes
SAMPLES = 8


def scale_head(analysis: Analysis, weights: Weights, seed: int = 0) -> Weights:
    """`weights` with the last dense layer (the classifier head) scaled so the logits have
    LOGIT_SPREAD; unchanged when the model ends in no dense layer of more than one unit."""
    model = analysis.model
    heads = [layer for layer in model.layers if isinstance(layer, Dense)]
    if not heads or heads[-1].units < 2:
        return weights
    head = heads[-1].name
    h, w, c = model.input.height, model.input.width, model.input.channels
    x = np.random.default_rng([seed, 0x4EAD]).standard_normal((SAMPLES, h, w, c)).astype(np.float32)
    logits = reference.run(analysis, weights, x, keep_all=True)[head].reshape(SAMPLES, -1)
    spread = float(logits.std(axis=1).mean())
    if not np.isfinite(spread) or spread <= 0:
        return weights
    factor = np.float32(LOGIT_SPREAD / spread)
    scaled = dict(weights)
    for key in (f"{head}.weight", f"{head}.bias"):
        scaled[key] = (weights[key] * factor).astype(np.float32)
    return scaled
