"""QuantParams from calibrated ranges: the int8 rules (README: "Quantization: once, for every format"), for every recipe."""

from __future__ import annotations

import numpy as np
import pytest

from edgeconv.core.errors import InputError
from edgeconv.core.graph import analyze
from edgeconv.core.ir import INPUT, Activation
from edgeconv.core.weights import init_weights
from edgeconv.plan.recipes import load_recipe, recipe_names
from edgeconv.quant import calibrate as cal
from edgeconv.quant.params import TensorQuant
from edgeconv.quant.quantize import (
    activation_quant,
    dequantize,
    fold_activation,
    quantize,
    quantize_input,
    weight_quant,
)


@pytest.fixture(scope="module", params=recipe_names())
def quantized(request):
    analysis = analyze(load_recipe(request.param))
    weights = init_weights(analysis, seed=0)
    result = cal.calibrate(analysis, weights, cal.synthetic_calibration_set(analysis, 8, seed=0))
    return analysis, weights, result, quantize(analysis, weights, result.ranges, result.info)


def is_f32(value: float) -> bool:
    return isinstance(value, float) and float(np.float32(value)) == value


def test_every_tensor_has_int8_params_with_float32_scales(quantized):
    analysis, _, result, qp = quantized
    assert list(qp.activations) == [INPUT] + [layer.name for layer in analysis.model.layers]
    assert qp.calibration == result.info
    for name, tq in qp.activations.items():
        assert tq.dtype == "int8" and len(tq.scale) == 1 and tq.axis is None, name
        assert is_f32(tq.scale[0]) and tq.scale[0] > 0, name
        assert -128 <= tq.zero_point[0] <= 127 and isinstance(tq.zero_point[0], int), name
    for tq in list(qp.weights.values()) + list(qp.biases.values()):
        assert all(is_f32(s) and s > 0 for s in tq.scale)


def test_activation_ranges_follow_the_op(quantized):
    analysis, _, result, qp = quantized
    for layer in analysis.model.layers:
        tq = qp.activations[layer.name]
        kind = getattr(layer, "activation", Activation.NONE)
        if layer.op in ("max_pool", "avg_pool"):
            assert tq == qp.activations[layer.inputs[0]], layer.name  # TFLite's pooling kernels require it
        elif layer.op == "softmax":
            assert tq == TensorQuant((1.0 / 256.0,), (-128,))
        else:
            lo, hi = fold_activation(*result.ranges[layer.name], kind)
            assert tq == activation_quant(lo, hi)
            if kind is not Activation.NONE:
                assert tq.zero_point == (-128,), layer.name  # the fused activation clamps at qmin
            if kind is Activation.RELU6:
                assert tq.scale[0] * 255 <= 6.0 * (1 + 1e-6)


def test_weights_are_symmetric_per_output_channel(quantized):
    analysis, weights, _, qp = quantized
    axes = {"conv2d": 0, "depthwise_conv2d": 3, "dense": 0}
    weighted = [layer for layer in analysis.model.layers if layer.op in axes]
    assert (
        set(qp.weights) == set(qp.biases) == set(qp.q_weights) == set(qp.q_biases) == {layer.name for layer in weighted}
    )
    for layer in weighted:
        w, q, tq = weights[f"{layer.name}.weight"], qp.q_weights[layer.name], qp.weights[layer.name]
        axis = axes[layer.op]
        assert tq.axis == axis and q.dtype == np.int8 and q.shape == w.shape
        assert len(tq.scale) == w.shape[axis] and set(tq.zero_point) == {0}
        assert q.min() >= -127 and q.max() <= 127
        shape = [1] * w.ndim
        shape[axis] = -1
        s = tq.scale_array().reshape(shape)
        assert np.all(np.abs(w - q * s) <= s / 2 * (1 + 1e-6))
        others = tuple(i for i in range(w.ndim) if i != axis)
        assert np.all(np.abs(q).max(axis=others) == 127)  # every channel uses its full range


def test_bias_scale_is_the_float32_product_and_q_bias_matches(quantized):
    analysis, weights, _, qp = quantized
    for name, tq in qp.biases.items():
        s_in = qp.activations[analysis.info(name).inputs[0]].scale[0]
        expected = np.float32(s_in) * qp.weights[name].scale_array()
        assert expected.dtype == np.float32
        np.testing.assert_array_equal(tq.scale_array(), expected)
        assert tq.dtype == "int32" and tq.axis == 0 and set(tq.zero_point) == {0}
        q = qp.q_biases[name]
        assert q.dtype == np.int32
        np.testing.assert_array_equal(
            q, np.rint(weights[f"{name}.bias"].astype(np.float64) / expected.astype(np.float64))
        )


def test_quantize_is_deterministic(quantized):
    analysis, weights, result, qp = quantized
    again = quantize(analysis, weights, dict(result.ranges), dict(result.info))
    assert again.to_json() == qp.to_json()
    for key in qp.q_weights:
        np.testing.assert_array_equal(again.q_weights[key], qp.q_weights[key])
        np.testing.assert_array_equal(again.q_biases[key], qp.q_biases[key])


def test_missing_range_names_the_tensor(quantized):
    analysis, weights, result, _ = quantized
    ranges = dict(result.ranges)
    victim = analysis.model.layers[0].name
    del ranges[victim]
    with pytest.raises(InputError, match=f"no calibrated range for tensor {victim!r}"):
        quantize(analysis, weights, ranges)


# ---- the arithmetic rules -----------------------------------------------------------------


def test_activation_range_is_widened_to_include_zero():
    assert activation_quant(1.0, 3.0) == activation_quant(0.0, 3.0)
    assert activation_quant(0.0, 3.0).zero_point == (-128,)
    assert activation_quant(-3.0, -1.0).zero_point == (127,)
    tq = activation_quant(-1.0, 3.0)
    assert tq.scale == (float(np.float32(4.0 / 255.0)),)
    assert tq.zero_point == (int(np.rint(-128 + 1.0 / tq.scale[0])),)
    assert activation_quant(0.0, 0.0) == TensorQuant((1.0,), (-128,))


def test_fold_activation():
    assert fold_activation(-2.0, 9.0, Activation.RELU) == (0.0, 9.0)
    assert fold_activation(-2.0, 9.0, Activation.RELU6) == (0.0, 6.0)
    assert fold_activation(-2.0, 4.0, Activation.RELU6) == (0.0, 4.0)
    assert fold_activation(-2.0, 4.0, Activation.NONE) == (-2.0, 4.0)


def test_all_zero_weight_channel():
    w = np.zeros((2, 1, 1, 3), np.float32)
    w[1] = 0.5
    tq, q = weight_quant(w, 0)
    assert tq.scale[0] == 1.0 and np.all(q[0] == 0) and np.all(q[1] == 127)


def test_quantize_input_rounds_half_to_even_then_clamps():
    tq = TensorQuant((0.5,), (-3,))
    x = np.array([0.25, 0.75, -0.25, -0.75, 1.25, 100.0, -100.0], np.float32)  # x/s = .5, 1.5, -.5, -1.5, 2.5
    q = quantize_input(x, tq, "int8")
    assert q.dtype == np.int8
    np.testing.assert_array_equal(q, [-3, -1, -3, -5, -1, 127, -128])
    u = quantize_input(x, tq, "uint8")
    assert u.dtype == np.uint8
    np.testing.assert_array_equal(u, [125, 127, 125, 123, 127, 255, 0])
    np.testing.assert_array_equal(dequantize(q, tq), dequantize(u, tq))
    with pytest.raises(ValueError, match="expected 'int8' or 'uint8'"):
        quantize_input(x, tq, "int16")


def test_quantize_input_keeps_the_layout(quantized):
    analysis, _, _, qp = quantized
    x = cal.synthetic_calibration_set(analysis, 1, seed=5)
    q = quantize_input(x, qp.activations[INPUT], "uint8")
    assert q.shape == x.shape
    err = np.abs(dequantize(q, qp.activations[INPUT]) - x)
    assert err.max() <= qp.activations[INPUT].scale[0] / 2 * (1 + 1e-5)  # calibrated on the same distribution


def test_global_average_pool_gets_its_own_range():
    """MEAN requantizes, so its output uses its own (narrower) calibrated range."""
    from edgeconv.core.graph import analyze
    from edgeconv.core.ir import InputSpec
    from edgeconv.core.weights import init_weights
    from edgeconv.plan.planner import Budgets, candidate_model, search
    from edgeconv.quant.calibrate import calibrate, synthetic_calibration_set
    from edgeconv.quant.quantize import quantize

    found, _ = search(InputSpec(32, 32, 3), 10, Budgets(16_000, 256_000), keep=10)
    with_gap = next(c for c in found if c.head == "gap")  # the best 16KB plan with a GAP head
    analysis = analyze(candidate_model(with_gap, InputSpec(32, 32, 3), 10))
    gap = next(layer for layer in analysis.model.layers if layer.op == "global_avg_pool")
    weights = init_weights(analysis, 0)
    cal = calibrate(analysis, weights, synthetic_calibration_set(analysis, 8, 0))
    qp = quantize(analysis, weights, cal.ranges, cal.info)
    assert qp.activations[gap.name] == activation_quant(*cal.ranges[gap.name])
    assert qp.activations[gap.name].scale[0] < qp.activations[gap.inputs[0]].scale[0]
