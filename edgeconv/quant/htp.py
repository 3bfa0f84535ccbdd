"""The "htp" rounding family: how the QNN HTP emulator (onnxruntime-qnn 2.7.0, libQnnHtp for
htp_arch 73, QDQ ONNX with uint8 activations and int8 per-channel weights) requantizes.

Measured with single-op probe models (scripts/probe_htp.py writes them and prints the table in
the README section "QNN HTP golden"): a 1x1 conv with weights (127, 1) over a 256x256 input
that makes the int32 accumulator take every value 0..32,640, swept over 8 multipliers from
3.3e-5 to 0.9, then random conv / depthwise / FC layers over channel counts 3..64, kernel
1/3/5, strides 1/2, input/output zero points 0..200 and scale ratios 0.0003..0.9.

Conv, depthwise (stride 1) and FC requantize in two integer steps, per output channel c:

  1. k[c] = ceil(log2(1 / (16 · m[c]))), m[c] = s_in · s_w[c] / s_out (double from float32
     scales): the accumulator is shifted right by k, *truncating* (floor):  v = acc >> k.
     The step thresholds of the dense sweep sit exactly at multiples of 2^k (gcd of the
     thresholds: 2, 32, 64, 256, 1024 for m = 1/30, 1/300, 1/1000, 1/3000, 1/10000), so the
     low bits are dropped before the multiply; k makes M = m·2^k fall in [1/16, 1/8).
  2. M is held with 12 significant bits (a Q15 multiplier below 2^12 / 2^15; rounding to
     nearest), and the output is rint((v + 1/2) · M) + zp: the half bucket restores the
     truncation's mean, ties to even. k may be negative for m >= 1/16 (a left shift).

  Fit: 0 mismatches over 8 x 65,536 accumulator values of the dense sweep; 0 on 3x3 convs
  with 16..64 input channels at strides 1 and 2; 1-3 in ~1,000 outputs (1 LSB) on convs with
  3..8 input channels (a first layer), where the HTP evidently runs another kernel.
Depthwise with stride 2 is not bucketed: it matches float32 requantization (fp32 family) with
0 mismatches on 4 probes; stride 1 follows the two-step rule above.
Add, average pool, global average pool and softmax are matched by ORT's CPU kernels (fp32
family) within 1 LSB; the differences are near-ties (real value within 1e-6 of k + 1/2) that
HTP resolves with multipliers of a precision not identified (12-, 14-, 15-, 16-bit and
float16/float32 multiplier models all leave 0.4-5% of the near-ties wrong). KNOWN_HTP_DEVIATIONS
records what is bounded rather than exact.

On the trained MLPerf ResNet-8 (16 photo crops, each layer fed the HTP's own inputs): the fp32
family misses 401-5,927 outputs per conv layer (1 LSB), this model 0-82 of 262,144 (1 LSB);
the remaining misses have acc an exact multiple of 2^k, where the HTP's result is the one
without the +1/2 (an open lead for an exact rule). FC: 0 misses (fp32: 3).
Status: requantize(..., family="htp") and int8_ops.golden_variant(op, "qnn_htp") exist; the
"qnn_htp" runtime is not yet in quant.golden.RUNTIMES (that also needs tests/test_golden.py's
per-runtime cases), so the npu is still judged against the fp32 golden, layer by layer.
"""

from __future__ import annotations

import numpy as np

MULTIPLIER_BITS = 12  # significant bits of the per-channel multiplier M in [1/16, 1/8)
DEPTHWISE_STRIDED_FAMILY = "fp32"  # depthwise with stride > 1: float32 requantization (0 misses on 4 probes)
BUCKET_TARGET = 16  # k makes 2^k · m fall in [1/16, 1/8): the truncated accumulator has 1/16..1/8 LSB steps

# op -> (max LSB measured against the golden op fed with the HTP's own inputs, reason); an op not
# listed (dense, max_pool, pad, concat) is bit-exact: dense 0 misses on every recipe and the trained ResNet-8
KNOWN_HTP_DEVIATIONS: dict[str, tuple[int, str]] = {
    "conv2d": (
        1,
        "0-354 of 262,144-524,288 outputs per layer (recipes, trained ResNet-8): acc an exact multiple of 2^k",
    ),
    "depthwise_conv2d": (1, "stride 1: 6-360 of 256,000 outputs per layer (ds_cnn), as conv2d"),
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
