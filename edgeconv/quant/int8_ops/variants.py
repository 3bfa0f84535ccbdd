"""Which golden kernel (family, kernel) each runtime matches bit-exactly, and the measured
same-family differences between runtimes."""

from __future__ import annotations

# Same-family kernel differences and XNNPACK's choices, measured on LiteRT 2.3.0 (x86-64),
# tflite-micro 2026-10 and seeded random data (tests/test_int8_ops.py reproduces them).
# max_lsb is the largest difference measured between the runtimes listed; each runtime on its
# own is matched with 0 LSB by the kernel variant golden_variant() names for it.
KNOWN_DEVIATIONS: dict[str, dict] = {
    "CONV_2D": {
        "runtimes": ("litert_builtin", "litert_ref", "tflm"),
        "max_lsb": 1,
        "reason": "LiteRT's optimized int8 conv (x86) ends with a plain rounding shift, ties "
        "toward +inf; the reference kernel and TFLM round ties away from zero. "
        "kernel='optimized' reproduces the builtin kernel exactly.",
    },
    "DEPTHWISE_CONV_2D": {
        "runtimes": ("litert_builtin", "litert_ref", "tflm"),
        "max_lsb": 1,
        "reason": "as CONV_2D: builtin kernel rounds the final shift's ties toward +inf.",
    },
    "FULLY_CONNECTED": {
        "runtimes": ("litert_builtin", "litert_ref", "tflm"),
        "max_lsb": 1,
        "reason": "both LiteRT resolvers (BUILTIN_REF too) round the final shift's ties toward "
        "+inf; TFLM rounds them away from zero.",
    },
    "MEAN": {
        "runtimes": ("litert_builtin", "litert_ref", "tflm", "litert_xnnpack"),
        "max_lsb": 1,
        "reason": "three algorithms: reference/TFLM fold 1/n into the Q31 multiplier; the "
        "builtin kernel uses a float32 multiplier s_in/(n·s_out) on the raw sum plus a "
        "rounded zero-point bias, ties toward +inf; XNNPACK does the same in float32 "
        "with half-to-even rounding. Each is matched exactly by its variant.",
    },
    "AVERAGE_POOL_2D": {
        "runtimes": ("litert_xnnpack",),
        "max_lsb": 0,
        "reason": "XNNPACK declines int8 average pooling; the builtin kernel runs and matches "
        "the tflite family (which all LiteRT kernels and TFLM match exactly).",
    },
    "SOFTMAX": {
        "runtimes": ("litert_xnnpack", "litert_builtin"),
        "max_lsb": 0,
        "reason": "XNNPACK declines int8 softmax. The builtin kernel is the float32 exp "
        "table (kernel='optimized'), the reference kernel and TFLM the gemmlowp "
        "fixed-point one (kernel='reference'); both are matched exactly and they "
        "agreed on every case measured (up to 100 classes).",
    },
}

# Int8 ops that LiteRT's default XNNPACK delegate leaves to the builtin kernels.
XNNPACK_DECLINES: frozenset[str] = frozenset({"AVERAGE_POOL_2D", "SOFTMAX"})

_OPTIMIZED_ON_LITERT_REF = frozenset({"FULLY_CONNECTED"})

# Ops whose ONNX Runtime CPU kernel (QLinearConv, QGemm) is the fp32-family requantization.
# MAX_POOL_2D and PAD/RESHAPE have no arithmetic and match every runtime.
_ORT_FP32_REQUANT = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "PAD", "RESHAPE"})


# Ops whose QNN HTP kernel requantizes with the htp family's two integer steps (quant/htp.py).
_HTP_REQUANT = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"})


def golden_variant(op: str, runtime: str) -> tuple[str, str]:
    """(family, kernel) of the golden reference that a runtime matches bit-exactly.

    runtime: "litert_ref" (BUILTIN_REF), "litert_builtin" (BUILTIN_WITHOUT_DEFAULT_DELEGATES),
    "litert_xnnpack" (default resolver), "tflm", "ort_cpu" (ONNX Runtime CPU, uint8 QDQ ONNX;
    kernel "ort" = the ORT-specific kernels in quant/golden.py).
    """
    if runtime == "tflm":
        return "tflite", "reference"
    if runtime == "litert_ref":
        return "tflite", "optimized" if op in _OPTIMIZED_ON_LITERT_REF else "reference"
    if runtime == "litert_builtin":
        return "tflite", "optimized"
    if runtime == "litert_xnnpack":
        return ("tflite", "optimized") if op in XNNPACK_DECLINES else ("fp32", "optimized")
    if runtime == "ort_cpu":
        # ONNX Runtime CPU on the uint8 QDQ model: QLinearConv and QGemm requantize in float32
        # (fp32 family); the other fused ops have their own arithmetic (quant/golden.py, "ort").
        return ("fp32", "optimized") if op in _ORT_FP32_REQUANT else ("fp32", "ort")
    if runtime == "qnn_htp":
        # the QNN HTP emulator on the uint8 QDQ model: conv / depthwise / FC in the htp family
        # (quant/htp.py); the other ops as ORT's CPU kernels, within 1 LSB (KNOWN_HTP_DEVIATIONS)
        return ("htp", "optimized") if op in _HTP_REQUANT else golden_variant(op, "ort_cpu")
    raise ValueError(f"unknown runtime {runtime!r}")
