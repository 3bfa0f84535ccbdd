"""The "htp" rounding family: how the QNN HTP emulator (onnxruntime-qnn 2.7.0 = QNN SDK 2.51.0,
libQnnHtp for htp_arch 73, soc_model 43; QDQ ONNX with uint8 activations and int8 per-channel
weights) computes each op. It is the npu's golden: quant.golden.RUNTIMES "qnn_htp", judged with
the exact policy (0 LSB at every exact op, the bound below at a bounded op, each layer fed the
NPU's own inputs). The pins (htp_arch, soc_model, qnn_sdk) sit in targets/npu.toml and are
recorded in every parity report and bundle (parity.run.target_pins); parity fails on another SDK.

Conv, depthwise (stride 1) and FC requantize in two integer steps, per output channel c
(single-op probes: a 1x1 conv with weights (127, 1) over a 256x256 input makes the int32
accumulator take every value 0..32,640, swept over 8 multipliers from 3.3e-5 to 0.9; then random
conv / depthwise / FC layers over channel counts 3..64, kernel 1/3/5, strides 1/2, zero points
0..200 and scale ratios 0.0003..0.9):

  1. k[c] = ceil(log2(1 / (16 · m[c]))), m[c] = s_in · s_w[c] / s_out (double from float32
     scales): the accumulator is shifted right by k, *truncating* (floor):  v = acc >> k.
     The step thresholds of the dense sweep sit exactly at multiples of 2^k, so the low bits are
     dropped before the multiply; k makes M = m·2^k fall in [1/16, 1/8).
  2. M is held with 12 significant bits (rounding to nearest), and the output is
     rint((v + 1/2) · M) + zp: the half bucket restores the truncation's mean, ties to even.
     k may be negative for m >= 1/16 (a left shift).

  Fit without a bias: 0 mismatches over 8 x 65,536 accumulator values.

The bias (scripts/probe_htp_bias.py; the one rule not reproduced): the HTP does not add the
file's int32 bias b but an integer one step toward zero for some channels, b - sign(b), and which
ones depends on the whole bias tensor (its range), not on the channel alone: with biases
-100..100 next to one bias L, 2 of 200 move for L = 300, 52-64 for L = 1,000-3,000, 92-104 for
L = 30,000-30,000,000, identically in Gemm and Conv; the striped pattern (runs of ~10 moved, ~9
kept at L = 3e7) is that of a re-encoding of the bias tensor on a grid set by its range, but no
grid (2^31 ± 5,000, 2^30, 2^32 levels; float32 / float64 steps; trunc / floor / rint) fits it.
A bias one step toward zero changes floor((acc + b) / 2^k) only where acc + b and acc + b -
sign(b) straddle a multiple of 2^k (b > 0: acc + b on the multiple), so the output is 1 LSB off
there and nowhere else (probe: max 1 LSB, every L): this is the "acc a multiple of 2^k" residue
of conv layers (0-82 of 262,144 outputs per layer on the trained ResNet-8, against 401-5,927
for float32 requantization) and the trained ResNet-8's fc (3 of 640). Conv, depthwise (stride
1) and dense are therefore bounded at 1 LSB (KNOWN_HTP_DEVIATIONS); a zero bias is exact.

Depthwise with stride 2 is not bucketed: it matches float32 requantization (fp32 family) with
0 mismatches on 4 probes. Add, average pool, global average pool and softmax are matched by
ORT's CPU kernels (fp32 family) within 1 LSB; the differences are near-ties (real value within
1e-6 of k + 1/2) that HTP resolves with multipliers of a precision not identified (12-, 14-,
15-, 16-bit and float16/float32 multiplier models all leave 0.4-5% of the near-ties wrong).
Max pool, pad and concat are exact.

Per op against the HTP on its own inputs (recipes, planner outputs, trained ResNet-8, imports):

  op                          golden                                  bound
  conv2d, depthwise stride 1  two integer steps above                 1 LSB (bias, see above)
  depthwise stride 2          float32 requantization                  1 LSB (as depthwise)
  dense                       two integer steps above                 1 LSB (bias, see above)
  add, avg / global avg pool  ORT CPU (float32)                       1 LSB (near-ties)
  softmax                     ORT CPU (uint32 exp table)              1 LSB
  max_pool, pad, concat       exact                                   0
"""

from __future__ import annotations

import numpy as np

MULTIPLIER_BITS = 12  # significant bits of the per-channel multiplier M in [1/16, 1/8)
DEPTHWISE_STRIDED_FAMILY = "fp32"  # depthwise with stride > 1: float32 requantization (0 misses on 4 probes)
BUCKET_TARGET = 16  # k makes 2^k · m fall in [1/16, 1/8): the truncated accumulator has 1/16..1/8 LSB steps

# op -> (max LSB measured against the golden op fed with the HTP's own inputs, reason); an op not
# listed (max_pool, pad, concat) is bit-exact
_BIAS = "the HTP adds some channels' int32 bias one step toward zero (rule not identified, scripts/probe_htp_bias.py)"
KNOWN_HTP_DEVIATIONS: dict[str, tuple[int, str]] = {
    "conv2d": (1, f"0-354 of 262,144-524,288 outputs per layer (acc + bias on a 2^k step): {_BIAS}"),
    "depthwise_conv2d": (1, f"stride 1: 6-360 of 256,000 outputs per layer (ds_cnn): {_BIAS}"),
    "dense": (1, f"3 of 640 outputs on the trained ResNet-8's fc (acc + bias on a 2^k step): {_BIAS}"),
    "add": (1, "near-ties of the two rescaled inputs; multiplier precision not identified"),
    "avg_pool": (1, "ORT's float32 average; HTP's divide not identified"),
    "global_avg_pool": (1, "ORT's float32 mean; HTP's divide not identified"),
    "softmax": (1, "ORT's float32 softmax on the same logits"),
}


def shifts(m: np.ndarray) -> np.ndarray:
    """k = ceil(log2(1 / (16 m))): the right shift of the accumulator (negative: left shift)."""
    return np.ceil(np.log2(1.0 / (BUCKET_TARGET * np.asarray(m, np.float64)))).astype(np.int64)


def multipliers(m: np.ndarray, k: np.ndarray) -> np.ndarray:
    """M = m · 2^k rounded to MULTIPLIER_BITS significant bits (exact in float64)."""
    scaled = np.asarray(m, np.float64) * np.exp2(k.astype(np.float64))
    e = np.floor(np.log2(scaled))
    unit = np.exp2(e - (MULTIPLIER_BITS - 1))
    return np.round(scaled / unit) * unit


def requantize_htp(acc, s_in, s_w, s_out) -> np.ndarray:
    """int32 accumulators (scale s_in·s_w[c], channels on the last axis) to the HTP's output
    integers before the zero point and clamp."""
    acc = np.asarray(acc, np.int64)
    m = np.float64(np.float32(s_in)) * np.asarray(s_w, np.float32).astype(np.float64) / np.float64(np.float32(s_out))
    k = shifts(m)
    big = np.maximum(k, 0)
    # acc >> k (arithmetic, floor) for k >= 0; acc << -k for k < 0: both exact in float64 below 2^52
    v = np.where(k >= 0, acc >> big, acc * (np.int64(1) << np.maximum(-k, 0)))
    return np.rint((v.astype(np.float64) + 0.5) * multipliers(m, k)).astype(np.int64)
