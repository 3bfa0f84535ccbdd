"""core/headscale.py: a default build's random head is scaled so its logits have a realistic
spread (He-normal through a deep plan gave 100-3,200 between classes: a saturated softmax)."""

from __future__ import annotations

import numpy as np

from edgeconv.core import reference
from edgeconv.core.headscale import LOGIT_SPREAD, scale_head
from edgeconv.core.ir import InputSpec
from edgeconv.core.weights import init_weights
from edgeconv.plan.planner import Budgets, plan


def _logit_spread(analysis, weights, seed=5) -> tuple[float, np.ndarray]:
    m = analysis.model.input
    x = np.random.default_rng(seed).standard_normal((16, m.height, m.width, m.channels)).astype(np.float32)
    head = [layer for layer in analysis.model.layers if layer.op == "dense"][-1].name
    logits = reference.run(analysis, weights, x, keep_all=True)[head].reshape(16, -1)
    return float(logits.std(axis=1).mean()), logits.argmax(axis=1)


def test_head_scaled_to_the_logit_spread_and_nothing_else_changes():
    p = plan(InputSpec(49, 10, 1), 12, Budgets(1_000_000, 256_000))
    he = init_weights(p.analysis, 0)
    scaled = scale_head(p.analysis, he, 0)
    before, argmax_before = _logit_spread(p.analysis, he)
    after, argmax_after = _logit_spread(p.analysis, scaled)
    assert before > 10 * LOGIT_SPREAD, f"He-normal logits of a deep plan spread {before:.1f}"
    assert abs(after - LOGIT_SPREAD) < 0.5 * LOGIT_SPREAD, after  # other inputs than the scaling's
    np.testing.assert_array_equal(argmax_before, argmax_after)  # one factor: the same classes
    changed = [k for k in he if not np.array_equal(he[k], scaled[k])]
    head = [layer for layer in p.analysis.model.layers if layer.op == "dense"][-1].name
    assert sorted(changed) == [f"{head}.bias", f"{head}.weight"]
    again = scale_head(p.analysis, init_weights(p.analysis, 0), 0)
    assert all(np.array_equal(again[k], scaled[k]) for k in scaled)  # same seed, same bytes
