"""Int8 quantization quality and speed of edgeconv's artifacts against ONNX Runtime's quantizer.

The measuring half of scripts/bench_quant.py (which prints the tables): SQNR of every int8
variant at the logits and the softmax output against the float64 numpy reference, what-if
variants of the quantization parameters, interleaved latency runs, and the export timings.
See the script's docstring for the method.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgeconv.artifacts.build import BuildRequest, run_build
from edgeconv.backends.float_layers import float_layer_runner
from edgeconv.backends.litert_tools import litert
from edgeconv.backends.ort_tools import compare_params, optimized_ops, ort_quantize, session, with_output
from edgeconv.bench.latency import interleaved_timings
from edgeconv.core import reference
from edgeconv.core.graph import Analysis
from edgeconv.core.ir import INPUT, Conv2d, Dense, DepthwiseConv2d, GlobalAvgPool, Softmax
from edgeconv.export.onnx_float import build_float_onnx, serialize, tensor_onnx_shape
from edgeconv.export.onnx_qdq import build_qdq_onnx
from edgeconv.export.tflite import build_float_tflite, build_int8_tflite
from edgeconv.parity.metrics import sqnr_db
from edgeconv.quant.calibrate import calibrate, synthetic_calibration_set
from edgeconv.quant.params import TensorQuant
from edgeconv.quant.quantize import activation_quant, bias_quant, dequantize, quantize, quantize_input
from edgeconv.quant.synthetic import smooth_images

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


def input_set(kind: str, analysis: Analysis, n: int, seed: int) -> np.ndarray:
    if kind == "normal":
        return synthetic_calibration_set(analysis, n=n, seed=seed)  # what `edgeconv build` draws
    spec = analysis.model.input
    return smooth_images(n, (spec.height, spec.width, spec.channels), seed)


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
    ec_q_tapped = with_output(ec_q, logits, "uint8", logits_shape)

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
    got: dict[tuple[str, str], list[np.ndarray]] = {
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
    # the float engine the build calibrates with (ORT's float model; float32 ranges round to
    # other scales than the float64 reference's, so only the same engine can reproduce the bytes)
    runner = float_layer_runner(analysis, weights)
    start = time.perf_counter()
    cal = calibrate(analysis, weights, calib["normal"], runner=runner)
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
            kcal = cal if kind == "normal" else calibrate(analysis, weights, calib[kind], runner=runner)
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

    assert ortq_for_latency is not None, "the normal input set calibrates ORT's quantizer"
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
    res.latency = interleaved_timings(runners, args.repeat, args.warmup)
    res.ops["ec-int8"] = optimized_ops(files["model.int8.onnx"], True, tmp / f"{label}.ec.opt.onnx")
    res.ops["ORT-tool-int8"] = optimized_ops(ortq_for_latency, True, tmp / f"{label}.ortq.opt.onnx")
    res.ops["float"] = optimized_ops(float_onnx, True, tmp / f"{label}.float.opt.onnx")
    return res
