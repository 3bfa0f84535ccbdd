"""The planner's model-size prediction against the real int8 .tflite files."""

import pytest

from edgeconv.core.graph import analyze
from edgeconv.core.ir import InputSpec
from edgeconv.core.weights import init_weights
from edgeconv.plan.memory import predict_model_bytes
from edgeconv.plan.planner import Budgets, plan
from edgeconv.plan.recipes import load_recipe, recipe_names
from edgeconv.quant.calibrate import calibrate, synthetic_calibration_set
from edgeconv.quant.quantize import quantize

pytest.importorskip("ai_edge_litert", reason="the .tflite writer needs ai-edge-litert's schema module")
from edgeconv.export.tflite import build_int8_tflite

CASES = [
    *recipe_names(),
    *[("32x32x3", b) for b in (8_000, 32_000, 128_000, 1_000_000)],
    *[("49x10x1", b) for b in (16_000, 64_000)],
    ("96x96x3", 256_000),
]


def _model(case):
    if isinstance(case, str):
        return load_recipe(case)
    shape, budget = case
    spec = InputSpec(*map(int, shape.split("x")))
    return plan(spec, 10, Budgets(budget, 256_000)).model


@pytest.mark.parametrize("case", CASES, ids=str)
def test_prediction_is_never_below_the_real_file_and_within_5_percent(case):
    analysis = analyze(_model(case))
    weights = init_weights(analysis, 0)
    cal = calibrate(analysis, weights, synthetic_calibration_set(analysis, 8, 0))
    real = len(build_int8_tflite(analysis, quantize(analysis, weights, cal.ranges, cal.info)))
    predicted = predict_model_bytes(analysis)
    assert real <= predicted <= 1.05 * real, (real, predicted)
