"""core/datainit.py: a default build's random weights give features that depend on the input
(He-normal through a deep residual plan gave every input the same class)."""

from __future__ import annotations

import numpy as np

from edgeconv.core import reference
from edgeconv.core.datainit import LOGIT_SPREAD, data_init
from edgeconv.core.graph import analyze
from edgeconv.core.ir import InputSpec
from edgeconv.core.weights import init_weights
from edgeconv.plan.planner import Candidate, candidate_model


def _logits(analysis, weights, seed=5) -> np.ndarray:
    m = analysis.model.input
    x = np.random.default_rng(seed).standard_normal((16, m.height, m.width, m.channels)).astype(np.float32)
    head = [layer for layer in analysis.model.layers if layer.op == "dense"][-1].name
    return reference.run(analysis, weights, x, keep_all=True)[head].reshape(16, -1)


def test_data_init_makes_the_class_depend_on_the_input():
    # pinned, not whatever the planner's objective picks today: the deep residual plan (49x10x1,
    # 1MB) of the objective before "most parameters", 19 residual blocks: He-normal collapses there
    pinned = Candidate(
        (3, 3), (1, 1), "res", "pool", (32, 64, 64, 64, 64, 72), (3, 3, 3, 3, 3, 4), "flatten", 0, 0, 0, 0, 0, 0.0
    )
    analysis = analyze(candidate_model(pinned, InputSpec(49, 10, 1), 12))
    he = init_weights(analysis, 0)
    scaled = data_init(analysis, he, 0)
    before, after = _logits(analysis, he), _logits(analysis, scaled)
    # He-normal: an input-independent class (the spread between classes dwarfs the one across inputs)
    assert len(set(before.argmax(1).tolist())) <= 2 and before.std(1).mean() > 10 * before.std(0).mean()
    # rescaled: on other inputs than its own, logits spread ~LOGIT_SPREAD across inputs, centred per class
    assert len(set(after.argmax(1).tolist())) >= 6
    assert 0.5 * LOGIT_SPREAD < after.std(0).mean() < 2 * LOGIT_SPREAD
    assert np.abs(after.mean(0)).max() < LOGIT_SPREAD
    again = data_init(analysis, init_weights(analysis, 0), 0)
    assert all(np.array_equal(again[k], v) for k, v in scaled.items())  # same seed, same bytes
    assert sorted(again) == sorted(he) and all(again[k].shape == he[k].shape for k in he)
