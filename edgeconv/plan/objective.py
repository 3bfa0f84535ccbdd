"""The planner's objective: a score of a candidate network, higher is better (pure function).

The planner only needs `score(summary)`; it ranks candidates by it (ties: fewer parameters,
then the plan name) and prunes its search with `score` of an optimistic summary, so the score
MUST be non-decreasing in each of `params`, `macs` and `depth` (then the optimistic bound is a
true upper bound and the search stays exact). Swapping the objective is one line: `score`.

Placeholder (until the objective issue's measurements say otherwise), from the evidence in the
repository: README "Is 'most MACs' a good objective?" (digits 8x8x1, 3 seeds, 15 epochs):
accuracy rose with parameters (Spearman +0.36 / +0.90) and fell with MACs (-0.50 / -0.60), and
the deeper plans ranked first; and issue 15's 4-epoch check on the same digits (14 candidates of
the 16KB search, 2 seeds each): full-resolution k3s1-conv-16x4 52%, the same parameters with a
stride-2 stage k3s1-conv-16x3.16x1 72%, the 11-layer 6k-parameter residual stacks 22-63%. So:
parameters count fully, depth at half weight (log2: twice the spatial layers on the main path
-- kxk convs and depthwise convs with k > 1, which widen the receptive field -- are worth
sqrt(2) times the parameters; a log so that depth saturates), and MACs not at all: among equal
scores the planner takes the fewest MACs (then the fewest parameters, then the name). On the
README table this ranks the two most accurate plans of each budget 1st and 2nd (the pick is 2nd
by accuracy, 0.47 / 0.09 points below the best), where "most MACs" picked the 3rd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

OBJECTIVE = (
    "maximize log2(params) + 0.5 log2(spatial depth) within the model-bytes, peak-RAM, MAC and latency "
    "budgets; ties: fewer MACs, then fewer parameters, then plan name"
)


@dataclass(frozen=True)
class Summary:
    """What the objective sees of a network: totals, and the main path's spatial depth."""

    params: int
    macs: int
    depth: int  # kxk (k > 1) convs and depthwise convs on the longest path
    input_pixels: int = 0  # W x H of the input
    final_pixels: int = 0  # W x H of the last feature map (before the head)


def score(s: Summary) -> float:
    return math.log2(max(s.params, 1)) + 0.5 * math.log2(max(s.depth, 1))
