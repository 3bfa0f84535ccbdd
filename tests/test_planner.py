import pytest

from edgeconv.core.errors import InfeasibleError
from edgeconv.core.graph import analyze
from edgeconv.core.ir import InputSpec
from edgeconv.plan.memory import estimate
from edgeconv.plan.planner import Budgets, TargetLimits, candidate_model, plan, search

INPUT = InputSpec(32, 32, 3)
BUDGETS = [32_000, 64_000, 128_000, 256_000, 512_000, 1_000_000]


@pytest.mark.parametrize("budget", BUDGETS)
def test_every_plan_meets_every_budget(budget):
    p = plan(INPUT, 10, Budgets(budget, 128_000, 200_000_000))
    assert p.memory.model_bytes <= budget
    assert p.memory.peak_ram_bytes <= 128_000
    assert p.analysis.macs <= 200_000_000


def test_search_predictions_equal_the_analysis_of_the_built_model():
    # the planner's fast running totals must agree with shape propagation + the memory model
    candidates = sorted(search(INPUT, 10, Budgets(300_000, 256_000)), key=lambda c: c.name)[::97]
    assert len(candidates) > 20
    for c in candidates:
        a = analyze(candidate_model(c, INPUT, 10))
        m = estimate(a)
        assert (c.params, c.macs, c.model_bytes, c.peak_ram) == (a.params, a.macs, m.model_bytes, m.peak_ram_bytes), (
            c.name
        )


def test_larger_budget_never_lowers_the_objective():
    macs = [plan(INPUT, 10, Budgets(b, 256_000)).analysis.macs for b in BUDGETS]
    assert macs == sorted(macs)
    assert macs[0] < macs[-1]


def test_same_arguments_same_plan():
    a = plan(INPUT, 10, Budgets(500_000, 200_000), top=5)
    b = plan(INPUT, 10, Budgets(500_000, 200_000), top=5)
    assert a.model == b.model and a.runners_up == b.runners_up


def test_runners_up_are_ordered_by_the_objective():
    p = plan(INPUT, 10, Budgets(256_000, 256_000), top=5)
    ranked = [p.candidate, *p.runners_up]
    assert len(ranked) == 6
    assert [c.sort_key() for c in ranked] == sorted(c.sort_key() for c in ranked)


def test_plan_follows_design_rules():
    p = plan(INPUT, 10, Budgets(1_000_000, 256_000))
    for layer in p.model.layers:
        if layer.op == "conv2d":
            assert layer.filters in (8, 16, 32, 64, 128, 256, 512)
            assert layer.kernel[0] in (3, 5, 7) and layer.stride[0] in (1, 2) and layer.padding == "same"


def test_infeasible_budget_says_the_smallest_that_fits():
    with pytest.raises(InfeasibleError) as err:
        plan(INPUT, 10, Budgets(1_000, 256_000))
    message = str(err.value)
    assert "smallest plan needs" in message
    smallest = min(c.model_bytes for c in search(INPUT, 10, None))
    assert f"--budget {smallest}B" in message
    assert plan(INPUT, 10, Budgets(smallest, 256_000)).memory.model_bytes == smallest


def test_infeasible_ram_says_the_least_ram():
    with pytest.raises(InfeasibleError, match="use --ram"):
        plan(INPUT, 10, Budgets(1_000_000, 1_000))


def test_target_limits_restrict_kernels():
    p = plan(INPUT, 10, Budgets(256_000, 256_000), TargetLimits(kernels=(3,)))
    assert all(layer.kernel == (3, 3) for layer in p.model.layers if layer.op == "conv2d")
