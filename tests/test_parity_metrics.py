"""Metrics on hand-made arrays with known values, and the tolerance policy at its thresholds."""

import math

import numpy as np
import pytest

from edgeconv.core.graph import analyze
from edgeconv.parity import metrics
from edgeconv.parity.policy import allowed_lsb, golden_runtime, lsb_check, requantizing_layers, sqnr_check, top1_check
from edgeconv.plan.recipes import load_recipe


def test_sqnr_known_value():
    ref = np.array([3.0, 4.0])  # power 25
    test = ref + np.array([0.3, -0.4])  # noise power 0.25 -> ratio 100 -> 20 dB
    assert metrics.sqnr_db(ref, test) == pytest.approx(20.0)
    assert metrics.sqnr_db(ref, ref) == math.inf


def test_cosine_rmse_max_abs_known_values():
    a, b = np.array([1.0, 0.0]), np.array([1.0, 1.0])
    assert metrics.cosine_similarity(a, b) == pytest.approx(1 / math.sqrt(2))
    assert metrics.rmse(a, b) == pytest.approx(math.sqrt(0.5))
    assert metrics.max_abs_error(a, b) == 1.0
    assert metrics.cosine_similarity(np.zeros(3), np.zeros(3)) == 1.0


def test_top1_agreement():
    ref = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    test = np.array([[0.2, 0.8], [0.1, 0.9], [0.4, 0.6], [0.7, 0.3]])
    assert metrics.top1_agreement(ref, test) == 0.75


def test_lsb_stats_known_values():
    golden = np.array([[0, 10, -128, 127]], np.int8)
    test = np.array([[0, 12, -127, 127]], np.int8)
    stats = metrics.lsb_stats(golden, test)
    assert stats == {"max_lsb": 2, "share_differing": 0.5, "mean_diff": 0.75}
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.lsb_stats(golden, test[:, :2])


def test_requantizing_layers_counts_ops_that_rescale():
    a = analyze(load_recipe("vgg_small"))  # 5 convs, 3 max pools, fc, softmax
    assert requantizing_layers(a) == 7
    assert requantizing_layers(a, upto="pool1") == 2


@pytest.mark.parametrize(
    "policy,n,expected",
    [("exact", 9, 0), ("cross_family", 1, 1), ("cross_family", 2, 2), ("cross_family", 3, 3), ("cross_family", 12, 3)],
)
def test_allowed_lsb(policy, n, expected):
    assert allowed_lsb(policy, 3, n) == expected


def test_lsb_check_at_and_just_past_the_threshold():
    assert lsb_check("t", 0, 0, "g").passed
    assert not lsb_check("t", 1, 0, "g").passed
    assert lsb_check("t", 3, 3, "g").passed
    assert not lsb_check("t", 4, 3, "g").passed


def test_sqnr_and_top1_floors_at_and_just_past():
    assert sqnr_check("t", 25.0, 25.0).passed
    assert not sqnr_check("t", 24.99, 25.0).passed
    assert top1_check("t", 0.9, 0.9).passed
    assert not top1_check("t", 0.8999, 0.9).passed


def test_golden_per_target():
    assert golden_runtime("cpu", "fp32") == "ort_cpu"
    assert golden_runtime("npu", "htp") == "qnn_htp"
    assert golden_runtime("mcu", "tflite") == "tflm"
    assert golden_runtime("arm", "fp32", "xnnpack") == "litert_xnnpack"
    assert golden_runtime("arm", "tflite", "reference") == "litert_ref"


def test_softmax_head_checks_bound_the_logits_and_the_head_separately():
    from edgeconv.parity.policy import softmax_head_checks
    from edgeconv.quant.golden import ort_softmax
    from edgeconv.quant.params import TensorQuant

    rng = np.random.default_rng(0)
    want_logits = rng.integers(-100, 100, (4, 1, 1, 10)).astype(np.int8)
    got_logits = (want_logits.astype(int) + rng.integers(-2, 3, want_logits.shape)).astype(np.int8)
    tq = TensorQuant((0.08,), (-3,))
    head = ort_softmax(got_logits.reshape(4, 10), 0.08).reshape(4, 1, 1, 10)

    lsb, soft = softmax_head_checks("npu", "ort_cpu", "fc", want_logits, got_logits, tq, head, "softmax", 3, 1, 9)
    assert (lsb.name, lsb.value, lsb.passed) == ("lsb_vs_golden", 2, True)
    assert (soft.name, soft.value, soft.passed) == ("softmax_head", 0, True)

    off_by_two = (head.astype(int) + 2).clip(-128, 127).astype(np.int8)
    _, soft = softmax_head_checks("npu", "ort_cpu", "fc", want_logits, got_logits, tq, off_by_two, "softmax", 3, 1, 9)
    assert soft.value == 2 and not soft.passed
    lsb, _ = softmax_head_checks("npu", "ort_cpu", "fc", want_logits, got_logits, tq, head, "softmax", 1, 1, 9)
    assert not lsb.passed
