"""`edgeconv build`: plan (or load a recipe), initialize or load weights, export, report.

Everything is produced in memory first and written atomically at the end, so a failed run
leaves no half-written output.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeconv import __version__
from edgeconv.artifacts.folder import write_build_folder
from edgeconv.core.errors import CheckFailed, UsageError
from edgeconv.core.graph import Analysis, analyze
from edgeconv.core.io import json_bytes, npz_bytes
from edgeconv.core.ir import InputSpec, Model
from edgeconv.core.tensors import check_analysis_memory, check_samples_memory, check_tensor
from edgeconv.core.weights import Weights, init_weights, load_weights
from edgeconv.plan.memory import MemoryEstimate, estimate
from edgeconv.plan.planner import OBJECTIVE, Budgets, Plan, TargetLimits, plan
from edgeconv.plan.recipes import load_recipe, model_to_dict
from edgeconv.plan.targets import Target
from edgeconv.report.tables import layer_rows, markdown_table, text_table, utilization

DEFAULT_BUDGET = 1_000_000  # 1 MB of flash: the reference Cortex-M device (targets/mcu.toml)
DEFAULT_RAM = 256_000  # 256 KB of SRAM on the same device
DEFAULT_INPUT = InputSpec(32, 32, 3)
DEFAULT_CLASSES = 10


@dataclass(frozen=True)
class BuildRequest:
    budget: int | None = None
    ram: int | None = None
    macs: int | None = None
    latency_ms: float | None = None  # needs the target's latency model
    input_spec: InputSpec = DEFAULT_INPUT
    classes: int = DEFAULT_CLASSES
    target: Target | None = None
    recipe: str | None = None
    weights_path: str | None = None
    calib_path: str | None = None
    calib_method: str = "minmax"
    percentile: float = 99.99
    calib_samples: int = 64
    seed: int = 0
    out: str | None = None
    top: int = 0
    # a re-export of an IR already in hand (`edgeconv train` after training): the model, its
    # weights and calibration samples given directly instead of a recipe/plan, --weights, --calib
    model: Model | None = None
    weights: Weights | None = None
    weights_source: str | None = None
    calib_data: Any = None  # (N, H, W, C) float32 array
    calib_source: str | None = None
    plan_extra: dict | None = None  # top-level entries added to plan.json (e.g. "plan", "training")


@dataclass
class BuildResult:
    model: Model
    analysis: Analysis
    memory: MemoryEstimate
    budgets: Budgets
    out_dir: Path
    weights: Weights
    weights_source: str
    plan: Plan | None = None
    calibration: dict = field(default_factory=dict)
    int8_tflite_bytes: int | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        a, m, b = self.analysis, self.memory, self.budgets
        return {
            "model": self.model.name,
            "source": "planner" if self.plan else "recipe",
            "objective": OBJECTIVE if self.plan else None,
            "input": list(self.model.input.shape),
            "output": list(a.output_shape),
            "totals": {
                "params": a.params,
                "macs": a.macs,
                "predicted_model_bytes": m.model_bytes,
                "predicted_peak_ram_bytes": m.peak_ram_bytes,
                "peak_ram_layer": m.peak_ram_layer,
                "weight_bytes": m.weight_bytes,
                "bias_bytes": m.bias_bytes,
                "layers": len(a.layers),
            },
            "budgets": {"model_bytes": b.model_bytes, "ram_bytes": b.ram_bytes, "macs": b.macs}
            | ({"latency_ms": b.latency_ms} if b.latency_ms is not None else {}),
            **(
                {
                    "predicted_latency_ms": round(a.macs / b.macs_per_ms, 3),
                    "latency_model": "MACs / (MACs per cycle x clock)",
                }
                if b.macs_per_ms
                else {}
            ),
            "utilization": {
                "model_bytes": _ratio(self.int8_tflite_bytes or m.model_bytes, b.model_bytes),
                "ram_bytes": _ratio(m.peak_ram_bytes, b.ram_bytes),
                "macs": _ratio(a.macs, b.macs),
            },
            "int8_tflite_bytes": self.int8_tflite_bytes,
            "calibration": self.calibration,
            "weights": self.weights_source,
            "failures": self.failures,
            "files": [str(self.out_dir / name) for name in self.files],
        }


def _ratio(used: int, limit: int | None) -> float | None:
    return None if not limit else round(used / limit, 4)


def default_out_dir(model_name: str) -> Path:
    """edgeconv-out/<model name>, the name reduced to letters, digits, '.', '_' and '-' (so
    an absolute name or '../..' in a recipe cannot leave edgeconv-out/)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(model_name)).strip("._-")[:64] or "model"
    return Path("edgeconv-out") / safe


def resolve_budgets(req: BuildRequest) -> Budgets:
    target = req.target
    if req.latency_ms is not None and (target is None or target.latency is None):
        raise UsageError(
            f"--latency: expected a --target with a latency model ([latency] in its profile: {', '.join(_timed())}), "
            f"got {'no --target' if target is None else 'target ' + target.name + ' without one'}"
        )
    return Budgets(
        model_bytes=req.budget or (target.flash_bytes if target and target.flash_bytes else DEFAULT_BUDGET),
        ram_bytes=req.ram or (target.ram_bytes if target and target.ram_bytes else DEFAULT_RAM),
        macs=req.macs or (target.max_macs if target else None),
        latency_ms=req.latency_ms,
        macs_per_ms=target.latency.macs_per_ms if target and target.latency and req.latency_ms is not None else None,
        macs_granted=req.macs is not None or req.latency_ms is not None,
    )


def _timed() -> list[str]:
    from edgeconv.plan.targets import all_targets

    return [t.name for t in all_targets() if t.latency is not None]


def ram_model(target: Target | None):
    """The mcu targets' RAM is the TFLM arena (arena.py): on the x86-64 host for mcu, on the
    32-bit part with the profile's kernels for the firmware targets (mcu-m4); elsewhere the
    activation liveness peak."""
    if target is not None and target.backend in ("mcu", "mcu_qemu"):
        from edgeconv.plan.arena import predict_arena_bytes

        if target.backend == "mcu_qemu":
            kernels = str(target.option("kernels", "cmsis_nn"))
            return functools.partial(predict_arena_bytes, word_bytes=4, kernels=kernels)
        return predict_arena_bytes
    return None


def target_limits(target: Target | None) -> TargetLimits:
    if target is None:
        return TargetLimits()
    return TargetLimits(
        kernels=target.kernels, strides=target.strides, ops=target.ops, channel_multiple=target.channel_multiple
    )


def _check_target_support(analysis: Analysis, target: Target | None) -> list[str]:
    if target is None:
        return []
    limits, problems = target_limits(target), []
    for layer in analysis.model.layers:
        if not limits.allows_op(layer.op):
            problems.append(f"{layer.name}: op {layer.op} is not supported by target {target.name}")
        for attr in ("kernel", "pool"):
            if hasattr(layer, attr) and not all(limits.allows_kernel(k) for k in getattr(layer, attr)):
                problems.append(f"{layer.name}: {attr} {getattr(layer, attr)} not supported by target {target.name}")
        if hasattr(layer, "stride") and not all(limits.allows_stride(s) for s in layer.stride):
            problems.append(f"{layer.name}: stride {layer.stride} not supported by target {target.name}")
    return problems


def report_markdown(result: BuildResult) -> str:
    s = result.summary()
    lines = [
        f"# {result.model.name}",
        "",
        result.model.description or "",
        "",
        f"edgeconv {__version__}; weights: {result.weights_source}",
        "",
        "## Budgets",
        "",
        "| budget | predicted | limit | utilization |",
        "| --- | ---: | ---: | ---: |",
    ]
    if result.int8_tflite_bytes is not None:
        lines.append(
            f"| int8 .tflite (real) | {result.int8_tflite_bytes:,} | {s['budgets']['model_bytes']:,} | "
            f"{100 * result.int8_tflite_bytes / s['budgets']['model_bytes']:.1f}% |"
        )
    for key, used in (
        ("model_bytes", s["totals"]["predicted_model_bytes"]),
        ("ram_bytes", s["totals"]["predicted_peak_ram_bytes"]),
        ("macs", s["totals"]["macs"]),
    ):
        limit = s["budgets"][key]
        pct = f"{100 * used / limit:.1f}%" if limit else "no limit"
        lines.append(f"| {key} | {used:,} | {'none' if limit is None else format(limit, ',')} | {pct} |")
    lines += ["", "## Layers", "", markdown_table(layer_rows(result.analysis)), ""]
    if result.plan:
        lines += ["## Plan", "", f"Objective: {OBJECTIVE}.", "", f"Chosen: `{result.plan.candidate.name}`.", ""]
        if result.plan.runners_up:
            lines += ["| runner-up | MACs | params | model bytes | peak RAM |", "| --- | ---: | ---: | ---: | ---: |"]
            lines += [
                f"| `{c.name}` | {c.macs:,} | {c.params:,} | {c.model_bytes:,} | {c.peak_ram:,} |"
                for c in result.plan.runners_up
            ]
            lines.append("")
    if result.failures:
        lines += ["## Failed checks", ""] + [f"- {f}" for f in result.failures] + [""]
    return "\n".join(lines)


def report_text(result: BuildResult) -> str:
    s, t = result.summary(), result.summary()["totals"]
    lines = [
        f"model {result.model.name} ({s['source']}): {result.model.description}",
        "",
        text_table(layer_rows(result.analysis)),
        "",
        f"int8 .tflite (real file):      {utilization(result.int8_tflite_bytes, s['budgets']['model_bytes'])}"
        if result.int8_tflite_bytes is not None
        else "",
        f"model bytes (int8, predicted): {utilization(t['predicted_model_bytes'], s['budgets']['model_bytes'])}",
        f"peak RAM (int8 activations):   {utilization(t['predicted_peak_ram_bytes'], s['budgets']['ram_bytes'])}"
        f" during {t['peak_ram_layer']}",
        f"MACs:                          {utilization(t['macs'], s['budgets']['macs'])}",
    ]
    if "predicted_latency_ms" in s:
        limit = s["budgets"].get("latency_ms")
        lines.append(
            f"latency (predicted):           {s['predicted_latency_ms']:.1f} ms"
            + (f" of {limit:g} ms ({100 * s['predicted_latency_ms'] / limit:.1f}%)" if limit else "")
        )
    if result.plan:
        lines += ["", f"objective: {OBJECTIVE}", f"chosen: {result.plan.candidate.name}"]
        for i, c in enumerate(result.plan.runners_up, 2):
            lines.append(
                f"  #{i} {c.name}: {c.macs:,} MACs, {c.params:,} params, {c.model_bytes:,} B, RAM {c.peak_ram:,} B"
            )
    lines += ["", f"weights: {result.weights_source}", f"calibration: {_calibration_text(result.calibration)}"]
    lines += [f"wrote {path}" for path in s["files"]]
    return "\n".join(lines)


def _calibration_text(info: dict) -> str:
    if not info:
        return "none"
    method = info.get("method", "?")
    if method == "percentile":
        method += f" {info.get('percentile')}"
    return f"{method} over {info.get('samples')} samples of {info.get('source')}"


def _quantize(req: BuildRequest, analysis: Analysis, weights: Weights, progress: bool = False):
    """Calibrate on the user's data (or a seeded synthetic set, said plainly) and quantize once."""
    from edgeconv.quant.calibrate import calibrate, load_calibration, synthetic_calibration_set
    from edgeconv.quant.quantize import quantize

    if req.calib_data is not None:
        samples = req.calib_data
        source = req.calib_source or "calibration samples given with the request"
    elif req.calib_path:
        samples = load_calibration(req.calib_path, analysis)
        source = f"file {Path(req.calib_path).name}"
    else:
        check_samples_memory(req.calib_samples, analysis, "--calib-samples")
        samples = synthetic_calibration_set(analysis, n=req.calib_samples, seed=req.seed)
        source = (
            f"SYNTHETIC data (standard normal, seed {req.seed}); pass --calib with real inputs for meaningful scales"
        )
    # ONNX Runtime's float model when onnxruntime is installed (~25x faster than the float64
    # numpy reference on the 1MB plan; backends/float_layers.py), else the reference
    from edgeconv.backends.float_layers import ENGINE, float_layer_runner
    from edgeconv.core.progress import progress_step

    runner = float_layer_runner(analysis, weights)
    engine = ENGINE if runner is not None else "numpy float64 reference (onnxruntime not installed)"
    with progress_step("calibrating", total=len(samples), unit="sample", enabled=progress, line=False) as update:
        calibration = calibrate(
            analysis,
            weights,
            samples,
            req.calib_method,
            req.percentile,
            source,
            runner=runner,
            progress=update,
            engine=engine,
        )
    return quantize(analysis, weights, calibration.ranges, calibration.info)


def qdq_activation_dtype(target: Target | None) -> str:
    """uint8 unless the target asks otherwise: ORT fuses uint8 QDQ convs into QLinearConv on x86."""
    if target is not None and target.artifact == "qdq_onnx":
        return target.activation_dtype
    return "uint8"


def run_build(req: BuildRequest, progress=None) -> BuildResult:
    """Plan or load, quantize, export and write; `progress(message)` hears about each stage."""
    say = progress or (lambda message: None)
    budgets = resolve_budgets(req)
    the_plan = None
    if req.model is not None:
        model = req.model
        analysis = analyze(model)
    elif req.recipe:
        model = load_recipe(req.recipe)
        analysis = analyze(model)
    else:
        w, h, c = req.input_spec.shape
        check_tensor((h, w, c), 4, "--input", f"a {w}x{h}x{c} float32 input")
        say(
            f"planning under {budgets.model_bytes:,} B model, {budgets.ram_bytes:,} B RAM"
            if budgets.ram_bytes
            else f"planning under {budgets.model_bytes:,} B"
        )
        the_plan = plan(
            req.input_spec,
            req.classes,
            budgets,
            target_limits(req.target),
            top=req.top,
            ram_model=ram_model(req.target),
        )
        model, analysis = the_plan.model, the_plan.analysis
    check_analysis_memory(analysis, f"model {model.name}")
    memory = estimate(analysis, ram_model(req.target))
    if req.weights is not None:
        weights = dict(req.weights)
        weights_source = req.weights_source or "weights given with the request"
    elif req.weights_path:
        weights = load_weights(req.weights_path, analysis)
        digest = hashlib.sha256(Path(req.weights_path).read_bytes()).hexdigest()
        weights_source = f"file {Path(req.weights_path).name} (sha256 {digest[:16]})"
    else:
        weights = init_weights(analysis, req.seed)
        weights_source = f"He-normal initialization, seed {req.seed}"
        if the_plan is not None:  # deep random plans: input-independent features without it (core/datainit.py)
            from edgeconv.core.datainit import data_init

            weights = data_init(analysis, weights, req.seed)
            weights_source += ", rescaled on seeded N(0, 1) inputs (core/datainit.py)"

    out_dir = Path(req.out) if req.out else default_out_dir(model.name)
    result = BuildResult(model, analysis, memory, budgets, out_dir, weights, weights_source, the_plan)
    result.failures += _check_target_support(analysis, req.target)
    if memory.model_bytes > budgets.model_bytes:
        result.failures.append(
            f"predicted model bytes {memory.model_bytes:,} exceed the budget {budgets.model_bytes:,}"
        )
    if budgets.ram_bytes and memory.peak_ram_bytes > budgets.ram_bytes:
        result.failures.append(f"peak RAM {memory.peak_ram_bytes:,} B exceeds the budget {budgets.ram_bytes:,} B")
    if budgets.macs and analysis.macs > budgets.macs:
        result.failures.append(f"MACs {analysis.macs:,} exceed the budget {budgets.macs:,}")
    if budgets.latency_macs is not None and analysis.macs > budgets.latency_macs:
        result.failures.append(
            f"predicted latency {analysis.macs / (budgets.macs_per_ms or 1):.1f} ms exceeds the budget {budgets.latency_ms:g} ms"
        )

    # serializers are imported only when exporting: importing edgeconv stays light
    from edgeconv.export.onnx_float import build_float_onnx, serialize
    from edgeconv.export.onnx_qdq import build_qdq_onnx
    from edgeconv.export.tflite import build_float_tflite, build_int8_tflite

    say(f"calibrating ({req.calib_method}) and quantizing {model.name}: {analysis.macs:,} MACs per sample")
    qparams = _quantize(req, analysis, weights, progress=progress is not None)
    say("exporting float ONNX, int8 QDQ ONNX, int8 and float TFLite")
    result.calibration = dict(qparams.calibration)
    qdq_dtype = qdq_activation_dtype(req.target)
    result.files["model.onnx"] = serialize(build_float_onnx(analysis, weights))
    result.files["model.int8.onnx"] = serialize(build_qdq_onnx(analysis, weights, qparams, qdq_dtype))
    result.files["model.int8.tflite"] = build_int8_tflite(analysis, qparams)
    result.files["model.float.tflite"] = build_float_tflite(analysis, weights)
    result.int8_tflite_bytes = len(result.files["model.int8.tflite"])
    if result.int8_tflite_bytes > budgets.model_bytes:
        result.failures.append(
            f"the int8 .tflite has {result.int8_tflite_bytes:,} B, over the budget {budgets.model_bytes:,} B"
        )
    quant_doc = {
        "formats": {
            "model.int8.tflite": "int8",
            "model.int8.onnx": qdq_dtype,
            "note": "zero points are given for int8; a uint8 tensor uses zero point + 128 with the same scale",
        },
        **qparams.to_json(),
    }
    result.files["quant.json"] = json_bytes(quant_doc)
    result.files["weights.npz"] = npz_bytes(weights)
    # plan.json and report.md list every file written, themselves included
    result.files.update({"plan.json": b"", "report.md": b""})
    plan_doc = {
        "edgeconv_version": __version__,
        "summary": {k: v for k, v in result.summary().items() if k != "files"},
        "target": req.target.name if req.target else None,
        "model": model_to_dict(model),
        "layers": [
            # the text columns as the report shows them, the counts as numbers (not "9,472")
            {
                **dict(zip(("name", "op", "input", "output", "window"), row[:5])),
                "params": info.params,
                "macs": info.macs,
                "out_bytes": info.out_elements,
            }
            for row, info in zip(layer_rows(analysis)[:-1], analysis.layers)
        ],
        "plan": None
        if the_plan is None
        else {
            "objective": OBJECTIVE,
            "chosen": the_plan.candidate.name,
            "runners_up": [
                {
                    "name": c.name,
                    "macs": c.macs,
                    "params": c.params,
                    "model_bytes": c.model_bytes,
                    "peak_ram": c.peak_ram,
                }
                for c in the_plan.runners_up
            ],
        },
        "files": list(result.files),
    }
    plan_doc.update(req.plan_extra or {})
    result.files["plan.json"] = json_bytes(plan_doc)
    result.files["report.md"] = report_markdown(result).encode("utf-8")
    write_build_folder(out_dir, result.files)
    return result


def raise_on_failures(result: BuildResult) -> None:
    if result.failures:
        raise CheckFailed("; ".join(result.failures))
