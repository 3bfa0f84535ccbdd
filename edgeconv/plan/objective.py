"""The planner's objective: a score of a candidate network, higher is better (pure function).

The planner only needs `score(summary)`; it ranks candidates by it (ties: fewer parameters,
then the plan name) and prunes its search with `score` of an optimistic summary, so the score
MUST be non-decreasing in each of `params`, `macs` and `depth` (then the optimistic bound is a
true upper bound and the search stays exact). Swapping the objective is one line: `score`.

Placeholder (until the objective issue's measurements say otherwise), from the one piece of
evidence in the repository (README "Is 'most MACs' a good objective?", digits 8x8x1, 3 seeds):
accuracy rose with parameters (Spearman +0.36 / +0.90) and fell with MACs alone (-0.50 /
-0.60); the deeper plans with fewer MACs ranked first. So the score counts parameters fully,
compute at half weight (log scale: a 2x MAC gain is worth half a 2x parameter gain) and depth
as much as parameters (twice the spatial layers on the main path, kxk convs and depthwise convs
with k > 1 that each widen the receptive field, are worth twice the parameters; a log, so that
depth saturates instead of pushing every plan to the deepest stack of the space). On that table it puts the two most accurate plans of each budget
first and second (its pick is 2nd by accuracy, 0.47 / 0.09 points below the best), where "most
MACs" picked the 3rd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

OBJECTIVE = (
    "maximize log2(params) + 0.5 log2(MACs) + log2(spatial depth) within the model-bytes, peak-RAM, "
    "MAC and latency budgets; ties: fewer parameters, then plan name"
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
    return math.log2(max(s.params, 1)) + 0.5 * math.log2(max(s.macs, 1)) + math.log2(max(s.depth, 1))
