"""Bit-exact, integer-only golden reference for the int8 ops edgeconv emits.

Slow and clear on purpose: one function per op, named after the op, pure NumPy. Arrays are
NHWC int8 (batch first); results are int8 arrays. `family` picks the requantization rule of
quant/rounding.py ("tflite" = LiteRT builtin/reference kernels and TFLM, "fp32" = XNNPACK).

Runtimes of the same family do not all run the same kernel: LiteRT's optimized int8 conv,
depthwise and fully connected kernels round ties of the final shift toward +inf, and MEAN and
SOFTMAX have different algorithms per runtime. Those ops take `kernel="reference"|"optimized"`;
golden_variant(op, runtime) says which (family, kernel) matches a runtime bit-exactly, and
KNOWN_DEVIATIONS records the measured differences (tests/test_int8_ops.py checks them).
"""

from edgeconv.quant.int8_ops.add import XNNPACK_ADD_RATIO_RANGE, _add_fp32, add, xnnpack_add_params
from edgeconv.quant.int8_ops.conv import conv2d, depthwise_conv2d, fully_connected
from edgeconv.quant.int8_ops.movement import pad, reshape
from edgeconv.quant.int8_ops.pool import _pool_windows, avg_pool, max_pool, mean
from edgeconv.quant.int8_ops.softmax import softmax
from edgeconv.quant.int8_ops.variants import KNOWN_DEVIATIONS, XNNPACK_DECLINES, golden_variant

__all__ = [
    "KNOWN_DEVIATIONS",
    "XNNPACK_ADD_RATIO_RANGE",
    "XNNPACK_DECLINES",
    "_add_fp32",  # the float32 ADD the ORT golden reuses
    "_pool_windows",  # the window taps the ORT average-pool golden reuses
    "add",
    "avg_pool",
    "conv2d",
    "depthwise_conv2d",
    "fully_connected",
    "golden_variant",
    "max_pool",
    "mean",
    "pad",
    "reshape",
    "softmax",
    "xnnpack_add_params",
]
