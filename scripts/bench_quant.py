"""Int8 quantization quality and speed: edgeconv's QDQ ONNX and int8 TFLite against ORT's quantizer.

Usage: python scripts/bench_quant.py [--repeat N] [--samples N] [--calib-samples N] [--warmup N]
                                     [--out DIR]

For every recipe in models/ and the 1MB planner output (input 32x32x3, 10 classes, RAM 256 KB):

- SQNR (dB) = 10·log10(Σ ref² / Σ (ref − int8)²) of the int8 models' dequantized outputs against
  the numpy float reference (edgeconv.core.reference, float64) on held-out inputs (other seeds than the
  calibration set), pooled over all samples and elements, measured at the pre-softmax logits (the
  tensor the softmax reads, "fc") and at the softmax output, for
    ec-QDQ      edgeconv's model.int8.onnx (uint8) on onnxruntime CPU;
    ec-TFLite   edgeconv's model.int8.tflite on LiteRT;
    ORT-tool    onnxruntime.quantization.quantize_static on edgeconv's float model.onnx (QDQ,
                per_channel=True, activations QUInt8, weights QInt8, MinMax), same calibration data.
  ONNX Runtime sessions: 1 thread, ORT_ENABLE_ALL, session.x64quantprecision = "1" (u8u8 kernels);
  the "u8s8" columns repeat the two ONNX models with the default "0" (u8s8 kernels) for information.
  Two input sets, each used for calibration and (with another seed) for evaluation:
    normal      i.i.d. N(0, 1) (what `edgeconv build` calibrates on without --calib);
    smooth      smooth random images: low-pass (Gaussian, random σ) filtered noise with correlated
                channels, scaled per image to a random sub-range of [0, 1], then normalized
                (x − 0.5) / 0.25.
  How the logits are read: the quantized ONNX models get that tensor added as a graph output (for
  edgeconv's the uint8 QuantizeLinear output "fc", for ORT's the DequantizeLinear output that
  feeds the Softmax); the TFLite logits come from a LiteRT interpreter with
  experimental_preserve_all_tensors (which runs the builtin kernels, not XNNPACK). Softmax
  outputs come from the unmodified artifacts; the script checks that the tapped models give
  the same softmax as the untapped ones.
- Latency (batch 1, ms): float vs int8 on onnxruntime CPU (1 thread, ORT_ENABLE_ALL) and on LiteRT
  (default delegates = XNNPACK, 1 thread); median and p90 of --repeat runs after --warmup runs,
  the variants interleaved run by run. Speed-up = float median / int8 median.
- Export: `edgeconv build` wall time, the calibration and each exporter timed alone (and checked
  byte-identical to the build's files), and the sizes of the four artifacts.

Goals (from the issue): edgeconv SQNR >= ORT-tool's on every model, >= 30 dB on realistic (smooth)
inputs; int8 >= 3x faster than float on onnxruntime CPU. Nothing is downloaded; seeds are fixed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from onnx import helper
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

from edgeconv.artifacts.build import BuildRequest, run_build
from edgeconv.core import reference
from edgeconv.core.graph import Analysis
from edgeconv.core.ir import INPUT, Conv2d, Dense, DepthwiseConv2d, GlobalAvgPool, Softmax
from edgeconv.export.onnx_float import build_float_onnx, serialize, tensor_onnx_shape
from edgeconv.export.onnx_qdq import build_qdq_onnx
from edgeconv.export.tflite import build_float_tflite, build_int8_tflite
from edgeconv.plan.recipes import recipe_names
from edgeconv.quant.calibrate import calibrate, synthetic_calibration_set
from edgeconv.quant.params import TensorQuant
from edgeconv.quant.quantize import activation_quant, bias_quant, dequantize, quantize, quantize_input

PLAN_LABEL = "plan_1MB"
PLAN_BUDGET, PLAN_RAM = 1_000_000, 256_000
ARTIFACTS = ("model.onnx", "model.int8.onnx", "model.int8.tflite", "model.float.tflite")
SQNR_GOAL_DB = 30.0
SPEEDUP_GOAL = 3.0
TIE_DB = 0.1  # SQNR differences smaller than this are reported as ties
# seeds: (calibration, evaluation) per input set; evaluation seeds differ from calibration seeds
SEEDS = {"normal": (0, 1001), "smooth": (2000, 3001)}
SETS = tuple(SEEDS)
WEIGHT_SEED = 0


# ----------------------------------------------------------------------------- input sets


def smooth_images(n: int, shape_hwc: tuple[int, int, int], seed: int) -> np.ndarray:
    """n smooth random images (N, H, W, C) float32, normalized as (x − 0.5) / 0.25 from [0, 1].

    Each image: a luminance field shared by the channels (weight 0.75) plus per-channel fields
    (0.25), all white noise low-pass filtered with a Gaussian of σ ∈ [1, 3] pixels (applied in
    the frequency domain, periodic boundary), then mapped linearly onto [lo, hi] with
    lo ∈ [0, 0.3], hi ∈ [0.7, 1] (contrast varies between images).
    """
    h, w, c = shape_hwc
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal((n, h, w, 1))
    own = rng.standard_normal((n, h, w, c))
    field_ = 0.75 * shared + 0.25 * own
    sigma = rng.uniform(1.0, 3.0, size=(n, 1, 1, 1))
    fy = np.fft.fftfreq(h)[None, :, None, None]
    fx = np.fft.rfftfreq(w)[None, None, :, None]
    transfer = np.exp(-2.0 * np.pi**2 * sigma**2 * (fx**2 + fy**2))
    low = np.fft.irfft2(np.fft.rfft2(field_, axes=(1, 2)) * transfer, s=(h, w), axes=(1, 2))
    mn = low.min(axis=(1, 2, 3), keepdims=True)
    mx = low.max(axis=(1, 2, 3), keepdims=True)
    unit = (low - mn) / np.maximum(mx - mn, 1e-12)
    lo = rng.uniform(0.0, 0.3, size=(n, 1, 1, 1))
    hi = rng.uniform(0.7, 1.0, size=(n, 1, 1, 1))
    img = lo + (hi - lo) * unit
    return ((img - 0.5) / 0.25).astype(np.float32)


def input_set(kind: str, analysis: Analysis, n: int, seed: int) -> np.ndarray:
    if kind == "normal":
        return synthetic_calibration_set(analysis, n=n, seed=seed)  # what `edgeconv build` draws
    spec = analysis.model.input
    return smooth_images(n, (spec.height, spec.width, spec.channels), seed)


# ----------------------------------------------------------------------------- runtimes


def session(model: bytes | str, precise: bool = True) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    so.add_session_config_entry("session.x64quantprecision", "1" if precise else "0")
    return ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])


def optimized_ops(model: bytes, precise: bool, path: Path) -> Counter:
    """Operator counts of the graph ORT actually runs (ORT_ENABLE_ALL, saved to `path`)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    so.add_session_config_entry("session.x64quantprecision", "1" if precise else "0")
    so.optimized_model_filepath = str(path)
    ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def litert(model: bytes, preserve: bool = False, builtin_only: bool = False) -> Interpreter:
    kwargs = {}
    if builtin_only:
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = Interpreter(model_content=model, num_threads=1, experimental_preserve_all_tensors=preserve, **kwargs)
    interp.allocate_tensors()
    return interp


def with_output(proto_bytes: bytes, name: str, elem_type: int, shape: list[int]) -> bytes:
    """The ONNX model with tensor `name` added as a graph output."""
    proto = onnx.load_from_string(proto_bytes)
    proto.graph.output.append(helper.make_tensor_value_info(name, elem_type, shape))
    return proto.SerializeToString()


class _Reader(CalibrationDataReader):
    """Feeds NHWC samples to ORT's calibrator one by one, as NCHW [1, C, H, W] float32."""

    def __init__(self, x_nhwc: np.ndarray):
        self.x = np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))
        self.i = 0

    def get_next(self):
        if self.i >= self.x.shape[0]:
            return None
        self.i += 1
        return {INPUT: self.x[self.i - 1 : self.i]}

    def rewind(self):
        self.i = 0


def ort_quantize(float_model: bytes, calib: np.ndarray, tmp: Path, tag: str) -> bytes:
    src, dst = tmp / f"{tag}.float.onnx", tmp / f"{tag}.ortq.onnx"
    src.write_bytes(float_model)
    quantize_static(
        str(src),
        str(dst),
        _Reader(calib),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    return dst.read_bytes()


# ----------------------------------------------------------------------------- measurements


def sqnr_db(ref: np.ndarray, test: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64).reshape(-1)
    err = ref - np.asarray(test, np.float64).reshape(-1)
    noise = float(np.sum(err**2))
    if noise == 0.0:
        return float("inf")
    return 10.0 * np.log10(float(np.sum(ref**2)) / noise)


def timed_runs(runners: dict[str, callable], repeat: int, warmup: int) -> dict[str, tuple[float, float]]:
    """(median, p90) in ms per runner; the runners take turns so drift hits all of them alike."""
    for fn in runners.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeat):
        for name, fn in runners.items():
            start = time.perf_counter_ns()
            fn()
            times[name].append((time.perf_counter_ns() - start) / 1e6)
    return {name: (statistics.median(t), float(np.percentile(t, 90))) for name, t in times.items()}


@dataclass
class ModelResult:
    label: str
    name: str
    macs: int
    params: int
    build_s: float = 0.0
    calib_s: float = 0.0
    export_s: dict[str, float] = field(default_factory=dict)
    identical: bool = True
    sizes: dict[str, int] = field(default_factory=dict)
    sqnr: dict[tuple[str, str, str], float] = field(default_factory=dict)  # (set, tap, method) -> dB
    whatif: dict[tuple[str, str, str], float] = field(default_factory=dict)  # same, for the what-if variant
    checks: list[str] = field(default_factory=list)
    latency: dict[str, tuple[float, float]] = field(default_factory=dict)
    ops: dict[str, Counter] = field(default_factory=dict)
    param_diff: list[str] = field(default_factory=list)  # edgeconv vs ORT-tool quantization parameters


METHODS = ("ec-QDQ", "ec-TFLite", "ORT-tool", "ec-QDQ u8s8", "ORT-tool u8s8")


def evaluate(
    res: ModelResult,
    kind: str,
    analysis,
    weights,
    files: dict[str, bytes],
    quant_doc: dict,
    ortq_plain: bytes,
    ortq_tapped: bytes,
    x: np.ndarray,
) -> None:
    """SQNR of every int8 variant at the logits and at the softmax output on inputs x (N, H, W, C)."""
    model = analysis.model
    last = model.layers[-1]
    assert isinstance(last, Softmax), f"{model.name}: the last layer is not a softmax"
    logits, probs = last.inputs[0], last.name
    tq = {k: TensorQuant.from_json(v) for k, v in quant_doc["activations"].items()}
    ref = reference.run(analysis, weights, x, keep_all=True)
    ref_logits = ref[logits].reshape(x.shape[0], -1)
    ref_probs = ref[probs].reshape(x.shape[0], -1)

    logits_shape = tensor_onnx_shape(analysis, logits)
    ec_q = files["model.int8.onnx"]
    ec_q_tapped = with_output(ec_q, logits, onnx.TensorProto.UINT8, logits_shape)

    out: dict[str, dict[str, list[np.ndarray]]] = {m: {"logits": [], "probs": [], "probs_tapped": []} for m in METHODS}
    for precise, suffix in ((True, ""), (False, " u8s8")):
        s_plain, s_tap = session(ec_q, precise), session(ec_q_tapped, precise)
        o_plain, o_tap = session(ortq_plain, precise), session(ortq_tapped, precise)
        o_out = [o.name for o in o_tap.get_outputs()]
        for i in range(x.shape[0]):
            xq = quantize_input(x[i : i + 1], tq[INPUT], "uint8").transpose(0, 3, 1, 2)
            p = s_plain.run([probs], {INPUT: xq})[0]
            lg, pt = s_tap.run([logits, probs], {INPUT: xq})
            d = out["ec-QDQ" + suffix]
            d["probs"].append(dequantize(p, tq[probs], "uint8"))
            d["probs_tapped"].append(dequantize(pt, tq[probs], "uint8"))
            d["logits"].append(dequantize(lg, tq[logits], "uint8"))
            xf = np.ascontiguousarray(x[i : i + 1].transpose(0, 3, 1, 2))
            d = out["ORT-tool" + suffix]
            d["probs"].append(o_plain.run([probs], {INPUT: xf})[0])
            tapped = dict(zip(o_out, o_tap.run(None, {INPUT: xf})))
            d["logits"].append(tapped[logits])
            d["probs_tapped"].append(tapped[probs])

    # TFLite: softmax from the default interpreter (XNNPACK), logits from a preserve-all one (builtin kernels)
    t_default = litert(files["model.int8.tflite"])
    t_all = litert(files["model.int8.tflite"], preserve=True)
    idx = {d["name"]: d["index"] for d in t_all.get_tensor_details()}
    in_d, out_d = t_default.get_input_details()[0]["index"], t_default.get_output_details()[0]["index"]
    in_a, out_a = t_all.get_input_details()[0]["index"], t_all.get_output_details()[0]["index"]
    d = out["ec-TFLite"]
    for i in range(x.shape[0]):
        xq = quantize_input(x[i : i + 1], tq[INPUT], "int8")
        t_default.set_tensor(in_d, xq)
        t_default.invoke()
        d["probs"].append(dequantize(t_default.get_tensor(out_d), tq[probs], "int8"))
        t_all.set_tensor(in_a, xq)
        t_all.invoke()
        d["probs_tapped"].append(dequantize(t_all.get_tensor(out_a), tq[probs], "int8"))
        d["logits"].append(dequantize(t_all.get_tensor(idx[logits]), tq[logits], "int8"))

    for method, d in out.items():
        lg = np.concatenate([a.reshape(1, -1) for a in d["logits"]])
        pr = np.concatenate([a.reshape(1, -1) for a in d["probs"]])
        pt = np.concatenate([a.reshape(1, -1) for a in d["probs_tapped"]])
        res.sqnr[(kind, "logits", method)] = sqnr_db(ref_logits, lg)
        res.sqnr[(kind, "softmax", method)] = sqnr_db(ref_probs, pr)
        diff = float(np.abs(pr - pt).max())
        if diff > 0:
            res.checks.append(
                f"{kind}/{method}: softmax of the logits-tapped model differs from the "
                f"artifact's by up to {diff:.4g} (the tap changed ORT's fusions or the kernels)"
            )


def compare_params(ec_qdq: bytes, ortq: bytes) -> list[str]:
    """Where edgeconv's QDQ model and ORT's quantize_static output quantize differently.

    Activations: the scale / zero point of each QuantizeLinear, keyed by the float tensor it
    quantizes (ORT names a graph output's tensor "<name>_QuantizeLinear_Input"); scales within
    1e-4 relative count as equal (ORT calibrates on its float32 run, edgeconv on the float64
    reference, so the ranges differ in the last bits). Weights and
    biases: the integer arrays (ORT: "<name>_quantized"). Returns one line per difference.
    """

    def inits(model: onnx.ModelProto) -> dict[str, np.ndarray]:
        return {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}

    ec, oq = onnx.load_from_string(ec_qdq), onnx.load_from_string(ortq)
    ec_i, oq_i = inits(ec), inits(oq)
    ec_act = {}
    for node in ec.graph.node:
        if node.op_type == "QuantizeLinear":
            # edgeconv quantizes "<L>.float" into "<L>"; key by the layer name
            ec_act[node.output[0]] = (float(ec_i[node.input[1]]), int(ec_i[node.input[2]]))
    lines, same, close = [], 0, 0
    for node in oq.graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        tensor = node.input[0].removesuffix("_QuantizeLinear_Input")
        theirs = (float(oq_i[node.input[1]]), int(oq_i[node.input[2]]))
        if tensor == INPUT:
            ours = (float(ec_i[f"{INPUT}.scale"]), int(ec_i[f"{INPUT}.zero_point"]))
        elif tensor in ec_act:
            ours = ec_act[tensor]
        else:
            continue  # e.g. ORT's re-quantization after Flatten / Transpose (same parameters as the input)
        if ours == theirs:
            same += 1
        elif ours[1] == theirs[1] and abs(theirs[0] / ours[0] - 1.0) < 1e-4:
            close += 1  # ranges from ORT's float32 run vs edgeconv's float64 reference: last-bit differences
        else:
            lines.append(
                f"activation {tensor}: edgeconv scale {ours[0]:.6g} zp {ours[1]}, "
                f"ORT scale {theirs[0]:.6g} zp {theirs[1]} (ORT/edgeconv scale {theirs[0] / ours[0]:.3f})"
            )
    for name, ours in ec_i.items():
        if not (name.endswith(".weight") or name.endswith(".bias")):
            continue
        theirs = oq_i.get(f"{name}_quantized")
        if theirs is None:
            lines.append(f"{name}: not found in ORT's model")
            continue
        diff = np.abs(theirs.reshape(ours.shape).astype(np.int64) - ours.astype(np.int64))
        if diff.any():
            lines.append(f"{name}: {int((diff > 0).sum())} of {diff.size} integers differ, by up to {int(diff.max())}")
    return [
        f"{same} activation tensors with identical scale and zero point, {close} equal but for float32 "
        f"rounding of the scale (< 1e-4 relative)"
    ] + lines


def gap_own_range(analysis: Analysis, weights, qparams, ranges):
    """What-if: qparams with every global_avg_pool output on its own calibrated range (edgeconv's rule
    gives it the input's scale), and the biases of the layers reading it re-quantized to match.
    None when the model has no global_avg_pool. Used only to test the explanation of an SQNR gap."""
    gaps = [layer.name for layer in analysis.model.layers if isinstance(layer, GlobalAvgPool)]
    if not gaps:
        return None
    acts, biases, q_biases = dict(qparams.activations), dict(qparams.biases), dict(qparams.q_biases)
    for name in gaps:
        acts[name] = activation_quant(*ranges[name])
    for layer in analysis.model.layers:
        if isinstance(layer, (Conv2d, DepthwiseConv2d, Dense)) and layer.inputs[0] in gaps:
            biases[layer.name], q_biases[layer.name] = bias_quant(
                weights[f"{layer.name}.bias"], acts[layer.inputs[0]].scale[0], qparams.weights[layer.name]
            )
    return replace(qparams, activations=acts, biases=biases, q_biases=q_biases)


def whatif_sqnr(res: ModelResult, kind: str, analysis: Analysis, weights, qparams, x: np.ndarray) -> None:
    """SQNR of edgeconv's exporters fed `qparams` (QDQ on ORT with x64quantprecision=1, int8 TFLite)."""
    last = analysis.model.layers[-1]
    logits, probs = last.inputs[0], last.name
    ref = reference.run(analysis, weights, x, keep_all=True)
    tq = qparams.activations
    qdq = serialize(build_qdq_onnx(analysis, weights, qparams, "uint8", outputs=[logits, probs]))
    s = session(qdq)
    tfl = litert(build_int8_tflite(analysis, qparams), preserve=True)
    idx = {d["name"]: d["index"] for d in tfl.get_tensor_details()}
    got = {
        ("logits", "ec-QDQ"): [],
        ("softmax", "ec-QDQ"): [],
        ("logits", "ec-TFLite"): [],
        ("softmax", "ec-TFLite"): [],
    }
    for i in range(x.shape[0]):
        lg, pr = s.run([logits, probs], {INPUT: quantize_input(x[i : i + 1], tq[INPUT], "uint8").transpose(0, 3, 1, 2)})
        got[("logits", "ec-QDQ")].append(dequantize(lg, tq[logits], "uint8"))
        got[("softmax", "ec-QDQ")].append(dequantize(pr, tq[probs], "uint8"))
        tfl.set_tensor(idx[INPUT], quantize_input(x[i : i + 1], tq[INPUT], "int8"))
        tfl.invoke()
        got[("logits", "ec-TFLite")].append(dequantize(tfl.get_tensor(idx[logits]), tq[logits], "int8"))
        got[("softmax", "ec-TFLite")].append(dequantize(tfl.get_tensor(idx[probs]), tq[probs], "int8"))
    for (tap, method), values in got.items():
        name = logits if tap == "logits" else probs
        res.whatif[(kind, tap, method)] = sqnr_db(
            ref[name].reshape(x.shape[0], -1), np.concatenate([v.reshape(1, -1) for v in values])
        )


def bench_model(label: str, req: BuildRequest, args, tmp: Path) -> ModelResult:
    # 1. the default build (standard-normal calibration, seed 0): export time and artifacts
    start = time.perf_counter()
    built = run_build(req)
    build_s = time.perf_counter() - start
    analysis, weights, files = built.analysis, built.weights, dict(built.files)
    res = ModelResult(label, analysis.model.name, analysis.macs, analysis.params, build_s=build_s)
    res.sizes = {name: len(files[name]) for name in ARTIFACTS}

    # 2. calibration and each exporter alone, checked byte-identical to the build's files
    calib = {kind: input_set(kind, analysis, args.calib_samples, SEEDS[kind][0]) for kind in SETS}
    assert np.array_equal(calib["normal"], synthetic_calibration_set(analysis, args.calib_samples, req.seed))
    start = time.perf_counter()
    cal = calibrate(analysis, weights, calib["normal"])
    qparams = quantize(analysis, weights, cal.ranges, cal.info)
    res.calib_s = time.perf_counter() - start
    exporters = {
        "model.onnx": lambda: serialize(build_float_onnx(analysis, weights)),
        "model.int8.onnx": lambda: serialize(build_qdq_onnx(analysis, weights, qparams, "uint8")),
        "model.int8.tflite": lambda: build_int8_tflite(analysis, qparams),
        "model.float.tflite": lambda: build_float_tflite(analysis, weights),
    }
    for name, fn in exporters.items():
        start = time.perf_counter()
        data = fn()
        res.export_s[name] = time.perf_counter() - start
        if data != files[name]:
            res.identical = False
            res.checks.append(f"{name}: the exporter alone did not reproduce the build's bytes")

    # 3. per input set: artifacts calibrated on that set (edgeconv build --calib, ORT quantize_static)
    float_onnx = files["model.onnx"]
    logits = analysis.model.layers[-1].inputs[0]
    float_tapped = serialize(build_float_onnx(analysis, weights, outputs=[logits]))
    ortq_for_latency = None
    for kind in SETS:
        if kind == "normal":
            kfiles = files
        else:
            path = tmp / f"{label}.{kind}.calib.npy"
            np.save(path, calib[kind])
            kreq = BuildRequest(**{**req.__dict__, "calib_path": str(path), "out": str(tmp / f"{label}.{kind}")})
            kfiles = dict(run_build(kreq).files)
            assert kfiles["model.onnx"] == float_onnx
        quant_doc = json.loads(kfiles["quant.json"])
        ortq_plain = ort_quantize(float_onnx, calib[kind], tmp, f"{label}.{kind}")
        ortq_tapped = ort_quantize(float_tapped, calib[kind], tmp, f"{label}.{kind}.tapped")
        if kind == "normal":
            ortq_for_latency = ortq_plain
            res.sizes["ORT-tool int8 .onnx"] = len(ortq_plain)
            res.param_diff = compare_params(kfiles["model.int8.onnx"], ortq_plain)
        x_eval = input_set(kind, analysis, args.samples, SEEDS[kind][1])
        evaluate(res, kind, analysis, weights, kfiles, quant_doc, ortq_plain, ortq_tapped, x_eval)
        if any(isinstance(layer, GlobalAvgPool) for layer in analysis.model.layers):
            kcal = cal if kind == "normal" else calibrate(analysis, weights, calib[kind])
            base = qparams if kind == "normal" else quantize(analysis, weights, kcal.ranges, kcal.info)
            whatif_sqnr(res, kind, analysis, weights, gap_own_range(analysis, weights, base, kcal.ranges), x_eval)

    # 4. latency, batch 1, on one held-out normal sample
    quant_doc = json.loads(files["quant.json"])
    tq_in = TensorQuant.from_json(quant_doc["activations"][INPUT])
    x = input_set("normal", analysis, 1, SEEDS["normal"][1])
    x_f_nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    x_u8_nchw = np.ascontiguousarray(quantize_input(x, tq_in, "uint8").transpose(0, 3, 1, 2))
    x_i8_nhwc = quantize_input(x, tq_in, "int8")

    def ort_runner(model: bytes, feed: np.ndarray, precise: bool = True):
        s = session(model, precise)
        return lambda: s.run(None, {INPUT: feed})

    def litert_runner(model: bytes, feed: np.ndarray, builtin_only: bool = False):
        it = litert(model, builtin_only=builtin_only)
        i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

        def run():
            it.set_tensor(i, feed)
            it.invoke()
            return it.get_tensor(o)

        return run

    runners = {
        "ORT float": ort_runner(float_onnx, x_f_nchw),
        "ORT ec-int8": ort_runner(files["model.int8.onnx"], x_u8_nchw),
        "ORT ORT-tool-int8": ort_runner(ortq_for_latency, x_f_nchw),
        "ORT ec-int8 u8s8": ort_runner(files["model.int8.onnx"], x_u8_nchw, precise=False),
        "ORT ORT-tool-int8 u8s8": ort_runner(ortq_for_latency, x_f_nchw, precise=False),
        "LiteRT float": litert_runner(files["model.float.tflite"], x),
        "LiteRT int8": litert_runner(files["model.int8.tflite"], x_i8_nhwc),
        "LiteRT int8 builtin": litert_runner(files["model.int8.tflite"], x_i8_nhwc, builtin_only=True),
    }
    res.latency = timed_runs(runners, args.repeat, args.warmup)
    res.ops["ec-int8"] = optimized_ops(files["model.int8.onnx"], True, tmp / f"{label}.ec.opt.onnx")
    res.ops["ORT-tool-int8"] = optimized_ops(ortq_for_latency, True, tmp / f"{label}.ortq.opt.onnx")
    res.ops["float"] = optimized_ops(float_onnx, True, tmp / f"{label}.float.opt.onnx")
    return res


# ----------------------------------------------------------------------------- printing


def table(header: list[str], rows: list[list[str]], align: str) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]

    def fmt(row):
        return "  ".join(str(c).ljust(w) if a == "l" else str(c).rjust(w) for c, w, a in zip(row, widths, align))

    return "\n".join([fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows])


def cpu_info() -> str:
    model, flags = "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8"]
    have = " ".join(f"{f}={'yes' if f in flags else 'no'}" for f in wanted)
    return f"{model}, {os.cpu_count()} logical CPUs; {have}"


def fmt_db(v: float) -> str:
    return "inf" if v == float("inf") else f"{v:.1f}"


def report(results: list[ModelResult], args, total_s: float) -> None:
    print()
    print(
        "== SQNR (dB) vs the numpy float reference, held-out inputs "
        f"({args.samples} per set; calibration: {args.calib_samples} samples, MinMax) =="
    )
    print("ORT sessions: 1 thread, ORT_ENABLE_ALL, session.x64quantprecision=1 (u8u8 kernels) unless marked u8s8")
    for tap in ("logits", "softmax"):
        print()
        what = (
            "pre-softmax logits (tensor 'fc', tapped as described in the header)"
            if tap == "logits"
            else "softmax output (unmodified artifacts)"
        )
        print(f"-- at the {what}")
        rows = []
        for r in results:
            for kind in SETS:
                vals = [r.sqnr[(kind, tap, m)] for m in METHODS]
                best_ec = min(vals[0], vals[1])
                margin = best_ec - vals[2]
                rows.append([r.label, kind] + [fmt_db(v) for v in vals] + [f"{margin:+.2f}"])
        print(table(["model", "inputs"] + list(METHODS) + ["min(ec)-ORT"], rows, "ll" + "r" * (len(METHODS) + 1)))

    whatifs = [r for r in results if r.whatif]
    if whatifs:
        print()
        print(
            "-- what-if (not edgeconv's current rule): global_avg_pool output on its own calibrated range, "
            "biases after it re-quantized; edgeconv's exporters otherwise unchanged"
        )
        rows = []
        for r in whatifs:
            for kind in SETS:
                row = [r.label, kind]
                for tap in ("logits", "softmax"):
                    row += [fmt_db(r.whatif[(kind, tap, m)]) for m in ("ec-QDQ", "ec-TFLite")]
                    row.append(fmt_db(r.sqnr[(kind, tap, "ORT-tool")]))
                rows.append(row)
        print(
            table(
                [
                    "model",
                    "inputs",
                    "logits ec-QDQ'",
                    "ec-TFLite'",
                    "ORT-tool",
                    "softmax ec-QDQ'",
                    "ec-TFLite'",
                    "ORT-tool",
                ],
                rows,
                "ll" + "r" * 6,
            )
        )

    print()
    print(f"== Latency, batch 1, ms (median / p90 of {args.repeat} runs after {args.warmup} warm-up; 1 thread) ==")
    names = list(results[0].latency)
    rows = [[r.label] + [f"{r.latency[n][0]:.2f} / {r.latency[n][1]:.2f}" for n in names] for r in results]
    print(table(["model"] + names, rows, "l" + "r" * len(names)))
    print()
    print("speed-up = float median / int8 median")
    sp_names = [
        ("ORT ec-int8", "ORT float"),
        ("ORT ORT-tool-int8", "ORT float"),
        ("ORT ec-int8 u8s8", "ORT float"),
        ("ORT ORT-tool-int8 u8s8", "ORT float"),
        ("LiteRT int8", "LiteRT float"),
        ("LiteRT int8 builtin", "LiteRT float"),
    ]
    rows = [
        [r.label, f"{r.macs / 1e6:.1f}"] + [f"{r.latency[f][0] / r.latency[i][0]:.2f}x" for i, f in sp_names]
        for r in results
    ]
    print(
        table(
            ["model", "MMACs"] + [i.replace("ORT ", "ORT ").replace(" ", " ") for i, _ in sp_names],
            rows,
            "lr" + "r" * len(sp_names),
        )
    )
    print()
    print("effective throughput, GMAC/s = model MACs / median latency")
    gm_names = ["ORT float", "ORT ec-int8", "ORT ec-int8 u8s8", "LiteRT float", "LiteRT int8"]
    rows = [[r.label] + [f"{r.macs / (r.latency[n][0] / 1e3) / 1e9:.1f}" for n in gm_names] for r in results]
    print(table(["model"] + gm_names, rows, "l" + "r" * len(gm_names)))
    print()
    print("ORT-optimized graphs (x64quantprecision=1), operator counts:")
    for r in results:
        for key in ("ec-int8", "ORT-tool-int8", "float"):
            ops = ", ".join(f"{op}×{n}" for op, n in sorted(r.ops[key].items()))
            print(f"  {r.label:<10} {key:<14} {ops}")

    print()
    print("== Export and sizes ==")
    rows = []
    for r in results:
        rows.append(
            [r.label, r.name, f"{r.params:,}", f"{r.build_s:.2f}", f"{r.calib_s:.2f}"]
            + [f"{1000 * r.export_s[a]:.0f}" for a in ARTIFACTS]
            + ["yes" if r.identical else "NO"]
        )
    print(
        table(
            ["model", "name", "params", "build s", "calib s"] + [f"{a} ms" for a in ARTIFACTS] + ["same bytes"],
            rows,
            "llrrr" + "r" * len(ARTIFACTS) + "r",
        )
    )
    print(
        "(build s = run_build wall time incl. planning, standard-normal calibration over "
        f"{args.calib_samples} samples, all exports, atomic writes; calib s = calibrate + quantize alone)"
    )
    print()
    size_names = list(ARTIFACTS) + ["ORT-tool int8 .onnx"]
    rows = [
        [r.label]
        + [f"{r.sizes[n]:,}" for n in size_names]
        + [f"{r.sizes['model.onnx'] / r.sizes['model.int8.tflite']:.2f}x"]
        for r in results
    ]
    print(
        table(
            ["model"] + [f"{n} B" for n in size_names] + ["float/int8 tflite"], rows, "l" + "r" * (len(size_names) + 1)
        )
    )

    checks = [f"{r.label}: {c}" for r in results for c in r.checks]
    print()
    print("== Quantization parameters: edgeconv QDQ vs ORT-tool (normal calibration) ==")
    for r in results:
        print(f"{r.label}: " + "; ".join(r.param_diff))
    print()
    print("== Checks ==")
    print(
        "\n".join(checks)
        if checks
        else "all tapped models give the same softmax as the artifacts; exporters reproduce the build's bytes"
    )

    print()
    print("== Goals ==")
    for tap in ("logits", "softmax"):
        short = [
            (f"{r.label}/{kind}/{m}", r.sqnr[(kind, tap, m)] - r.sqnr[(kind, tap, "ORT-tool")])
            for r in results
            for kind in SETS
            for m in ("ec-QDQ", "ec-TFLite")
            if r.sqnr[(kind, tap, m)] < r.sqnr[(kind, tap, "ORT-tool")]
        ]
        ties = [f"{k} {d:+.2f}" for k, d in short if d > -TIE_DB]
        real = [f"{k} {d:+.2f}" for k, d in short if d <= -TIE_DB]
        verdict = (
            "MET"
            if not short
            else (
                "MISSED"
                + (f" by >= {TIE_DB} dB for {', '.join(real)}" if real else "")
                + (";" if real and ties else "")
                + (f" by < {TIE_DB} dB (a tie) for {', '.join(ties)}" if ties else "")
            )
        )
        print(f"edgeconv SQNR >= ORT-tool on every model ({tap}, dB difference): {verdict}")
        low = [
            f"{r.label}/{m} {fmt_db(r.sqnr[('smooth', tap, m)])} dB"
            for r in results
            for m in ("ec-QDQ", "ec-TFLite")
            if r.sqnr[("smooth", tap, m)] < SQNR_GOAL_DB
        ]
        print(
            f"edgeconv SQNR >= {SQNR_GOAL_DB:.0f} dB on realistic (smooth) inputs ({tap}): "
            + ("MET" if not low else f"MISSED for {', '.join(low)}")
        )
    slow = [
        f"{r.label} {r.latency['ORT float'][0] / r.latency['ORT ec-int8'][0]:.2f}x"
        for r in results
        if r.latency["ORT float"][0] / r.latency["ORT ec-int8"][0] < SPEEDUP_GOAL
    ]
    print(
        f"int8 >= {SPEEDUP_GOAL:.0f}x faster than float on onnxruntime CPU (ec-int8, x64quantprecision=1): "
        + ("MET" if not slow else f"MISSED for {', '.join(slow)}")
    )
    slow0 = [
        f"{r.label} {r.latency['ORT float'][0] / r.latency['ORT ec-int8 u8s8'][0]:.2f}x"
        for r in results
        if r.latency["ORT float"][0] / r.latency["ORT ec-int8 u8s8"][0] < SPEEDUP_GOAL
    ]
    print("  (same with the default u8s8 kernels: " + ("MET" if not slow0 else f"MISSED for {', '.join(slow0)}") + ")")
    print()
    print(f"total time {total_s:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200, help="timed runs per latency variant (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs before timing (default 10)")
    parser.add_argument("--samples", type=int, default=128, help="held-out evaluation inputs per set (default 128)")
    parser.add_argument("--calib-samples", type=int, default=64, help="calibration inputs per set (default 64)")
    parser.add_argument("--out", help="keep the artifacts in this folder (default: a temporary folder)")
    args = parser.parse_args()
    if min(args.repeat, args.samples) < 1 or args.calib_samples < 8 or args.warmup < 0:
        parser.error("expected --repeat, --samples >= 1, --calib-samples >= 8, --warmup >= 0")

    logging.getLogger().setLevel(logging.ERROR)  # quantize_static logs its pre-processing advice
    warnings.filterwarnings("ignore")
    ort.set_default_logger_severity(3)
    print(
        f"bench_quant: python {platform.python_version()}, numpy {np.__version__}, onnx {onnx.__version__}, "
        f"onnxruntime {ort.__version__}, ai-edge-litert (LiteRT)"
    )
    print(f"CPU: {cpu_info()}")
    print(
        f"weights: He-normal, seed {WEIGHT_SEED} (no trained weights); seeds (calibration, evaluation): "
        + ", ".join(f"{k} {v}" for k, v in SEEDS.items())
    )

    start_all = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_quant_") as tmpdir:
        tmp = Path(args.out) if args.out else Path(tmpdir)
        tmp.mkdir(parents=True, exist_ok=True)
        todo = [(name, BuildRequest(recipe=name)) for name in recipe_names()]
        todo.append((PLAN_LABEL, BuildRequest(budget=PLAN_BUDGET, ram=PLAN_RAM)))
        for label, req in todo:
            req = BuildRequest(
                **{**req.__dict__, "seed": WEIGHT_SEED, "calib_samples": args.calib_samples, "out": str(tmp / label)}
            )
            t0 = time.perf_counter()
            results.append(bench_model(label, req, args, tmp))
            r = results[-1]
            print(
                f"  {label:<10} {r.name:<32} {r.macs:>13,} MACs  done in {time.perf_counter() - t0:.1f} s", flush=True
            )
    report(results, args, time.perf_counter() - start_all)


if __name__ == "__main__":
    sys.exit(main())
