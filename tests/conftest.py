"""Shared fixtures: recipes and planner outputs that the tests run over."""

from __future__ import annotations

import numpy as np
import pytest

from edgeconv.core.graph import analyze
from edgeconv.core.ir import InputSpec
from edgeconv.plan.planner import Budgets, plan
from edgeconv.plan.recipes import load_recipe, recipe_names

# Planner outputs the suites run besides the recipes: small enough to keep tests fast.
PLANNER_CASES = {
    "plan64k": (InputSpec(32, 32, 3), 10, Budgets(64_000, 256_000)),
    "plan256k": (InputSpec(32, 32, 3), 10, Budgets(256_000, 256_000)),
    "plan_kws": (InputSpec(49, 10, 1), 12, Budgets(64_000, 64_000)),
}
MODEL_CASES = [*recipe_names(), *PLANNER_CASES]


def model_for(case: str):
    if case in PLANNER_CASES:
        return plan(*PLANNER_CASES[case]).model
    return load_recipe(case)


@pytest.fixture(params=MODEL_CASES)
def analysis(request):
    return analyze(model_for(request.param))


def random_input(analysis, n: int = 2, seed: int = 1) -> np.ndarray:
    m = analysis.model.input
    return np.random.default_rng(seed).standard_normal((n, m.height, m.width, m.channels)).astype(np.float32)
