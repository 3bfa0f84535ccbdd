"""`edgeconv run`, `parity` and `bench`: run built models on targets and check them."""

from __future__ import annotations

import click

from edgeconv.cli.common import FLOAT, INT, check_sample_count, check_seed, emit_json, float_inputs, targets_option
from edgeconv.core.errors import UsageError


@click.command()
@click.argument("folder", metavar="DIR")
@click.option("--target", required=True, help="Target name or profile .toml.")
@click.option(
    "--input",
    "input_path",
    required=True,
    metavar="X.npy",
    help="Float32 inputs, N x H x W x C (NHWC of the W x H x C model input), .npy or .npz.",
)
@click.option("--output", "output_path", metavar="Y.npy", help="Save the dequantized outputs (float32).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def run(folder, target, input_path, output_path, as_json):
    """Run a built model on one target's runtime.

    Inputs are quantized once, outside the graph: q = clamp(round_half_even(x / scale) + zp),
    in the target's activation dtype. Outputs are dequantized for display and --output.
    """
    from pathlib import Path

    import numpy as np

    from edgeconv.artifacts.folder import load_build, to_int8_convention
    from edgeconv.backends import get_backend, require
    from edgeconv.core.io import check_output_path, write_bytes_atomic
    from edgeconv.parity.run import target_dtype
    from edgeconv.plan.targets import load_target
    from edgeconv.quant.quantize import dequantize, quantize_input

    if output_path:
        check_output_path(Path(output_path), "--output")
    build = load_build(folder)
    tgt = load_target(target)
    backend = require(get_backend(tgt))
    x = np.asarray(float_inputs(input_path, build, "input"))
    x_q = quantize_input(x, build.qparams.activations["input"], target_dtype(build, tgt))
    out_q = to_int8_convention(backend.run(build, x_q))
    y = dequantize(out_q, build.qparams.activations[build.analysis.model.output], "int8")
    y = y.reshape(len(x), -1) if build.analysis.output_shape[:2] == (1, 1) else y
    if output_path:
        import io as _io

        buffer = _io.BytesIO()
        np.save(buffer, y.astype(np.float32))
        write_bytes_atomic(Path(output_path), buffer.getvalue(), "--output")
    doc = {
        "target": tgt.name,
        "samples": len(x),
        "output_shape": list(y.shape),
        "top1": y.reshape(len(x), -1).argmax(axis=1).tolist(),
        "output": output_path,
    }
    if as_json:
        emit_json(doc)
        return
    click.echo(f"{build.name} on {tgt.name}: {len(x)} sample(s), output {tuple(y.shape)}")
    for i, row in enumerate(y.reshape(len(x), -1)[:8]):
        top = int(row.argmax())
        click.echo(f"  sample {i}: class {top} ({row[top]:.4f})  " + " ".join(f"{v:.3f}" for v in row[:12]))
    if output_path:
        click.echo(f"wrote {output_path}")


@click.command()
@click.argument("folder", metavar="DIR")
@click.option("--targets", "target_list", default="cpu,arm,npu,mcu", show_default=True, help="Comma-separated targets.")
@click.option(
    "--inputs",
    "inputs_path",
    metavar="X.npz",
    help="Float32 inputs (N x H x W x C). Default: a seeded synthetic set, distinct from the calibration samples.",
)
@click.option("--samples", type=INT, default=32, show_default=True, help="Size of the synthetic input set.")
@click.option("--seed", type=INT, default=0, show_default=True, help="Seed of the synthetic inputs.")
@click.option(
    "--layers",
    type=click.Choice(["all", "output"]),
    default="all",
    show_default=True,
    help="Deployment check at every layer the artifact exposes, or at the output only.",
)
@click.option("--per-layer", is_flag=True, hidden=True, help="Kept for old scripts: every layer is the default.")
@click.option(
    "--min-sqnr", type=FLOAT, metavar="DB", help="Quality floor: SQNR at the logits (default: the profile's)."
)
@click.option(
    "--min-sqnr-output", type=FLOAT, metavar="DB", help="Quality floor: SQNR at the output (default: the profile's)."
)
@click.option("--min-top1", type=FLOAT, metavar="SHARE", help="Quality floor: top-1 agreement with float, 0..1.")
@click.option(
    "--source",
    "source_path",
    metavar="MODEL",
    help="Source model (.tflite/.onnx) the IR came from: checks the float reference against it on its own runtime.",
)
@click.option(
    "--labels",
    "labels_path",
    is_flag=False,
    flag_value="-",
    default=None,
    metavar="[Y.npy]",
    help="Class labels of --inputs: a .npy (or .npz with y), or bare --labels for y inside the --inputs .npz; "
    "adds the accuracy of the float reference and of every target.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--md", "md_path", metavar="FILE", help="Write a Markdown summary.")
@click.option("--junit", "junit_path", metavar="FILE", help="Write JUnit XML (a test suite per verdict kind).")
@click.option(
    "--model-explorer",
    "explorer_dir",
    metavar="OUTDIR",
    help="Write Model Explorer node data per target (OUTDIR/<target>.lsb.json, .sqnr.json) for "
    "'model-explorer DIR/model.int8.tflite --node_data_paths=...' (the explorer extra).",
)
def parity(
    folder,
    target_list,
    inputs_path,
    samples,
    seed,
    layers,
    per_layer,
    min_sqnr,
    min_sqnr_output,
    min_top1,
    source_path,
    labels_path,
    as_json,
    md_path,
    junit_path,
    explorer_dir,
):
    """Check every target against its int8 golden (deployment) and the float reference (quality).

    Deployment: LSB vs the target's rounding-family golden at the output and at every layer.
    Quality: SQNR at the logits and the output, top-1 agreement. Source (--source): the IR vs
    the source model. Exit 0 when every check passes; else the OR of 1 (deployment failed),
    4 (quality failed), 8 (source failed); 2 for bad usage or a missing runtime.
    """
    from pathlib import Path

    from edgeconv.artifacts.folder import load_build
    from edgeconv.core.errors import CheckFailed
    from edgeconv.core.io import check_output_path, write_bytes_atomic
    from edgeconv.parity.report import to_json, to_junit, to_markdown, to_text
    from edgeconv.parity.run import Floors, comparison_inputs, run_parity

    check_seed(seed)
    if not inputs_path:
        check_sample_count(samples, "--samples", minimum=1)
    if min_top1 is not None and not 0 <= min_top1 <= 1:
        raise UsageError(f"--min-top1: expected a share in [0, 1], got {min_top1}")
    for path, what in ((md_path, "--md"), (junit_path, "--junit")):
        if path:
            check_output_path(Path(path), what)  # before the run, not after it
    if explorer_dir:
        from edgeconv.report.explorer import node_data_builder

        node_data_builder()  # a missing package is named before the run, not after it
        if Path(explorer_dir).exists() and not Path(explorer_dir).is_dir():
            raise UsageError(f"--model-explorer: expected a folder (or a new path), got the file {explorer_dir}")
    build = load_build(folder)
    targets_ = targets_option(target_list)
    labels = None
    if labels_path is not None:
        from edgeconv.train.data import load_labelled

        if not inputs_path:
            raise UsageError("--labels: expected --inputs X.npz (the labelled inputs), got no --inputs")
        labelled = load_labelled(inputs_path, build.analysis, None if labels_path == "-" else labels_path, "--inputs")
        x, source, labels = labelled.x, f"file {Path(inputs_path).name}", labelled.y
    else:
        x, source = comparison_inputs(build, inputs_path, samples, seed)
    from edgeconv.core.progress import step_lines

    # a bar over the targets on a terminal, one line per target on a pipe
    with step_lines(len(targets_) + bool(source_path), enabled=not as_json, unit="target") as say:
        report = run_parity(
            build,
            targets_,
            x,
            source,
            per_layer=layers == "all" or per_layer,
            progress=say,
            floors=Floors(min_sqnr, min_sqnr_output, min_top1),
            source=source_path,
            labels=labels,
        )
    if md_path:
        write_bytes_atomic(Path(md_path), to_markdown(report).encode("utf-8"), "--md")
    if junit_path:
        write_bytes_atomic(Path(junit_path), to_junit(report), "--junit")
    wrote = _write_overlays(build, to_json(report), Path(explorer_dir)) if explorer_dir else []
    if as_json:
        emit_json(to_json(report))
    else:
        click.echo("\n".join([to_text(report), *wrote]))
    if not report.passed:
        failed = [f"{c.target} {c.kind} {c.name}" for c in report.checks if not c.passed]
        raise CheckFailed(
            f"parity failed ({', '.join(report.failed_kinds)}; exit {report.exit_code}): {', '.join(failed)}",
            report.exit_code,
        )


def _write_overlays(build, doc: dict, out) -> list[str]:
    """Write the Model Explorer node data of a parity run; the lines that say so."""
    from edgeconv.core.io import write_files_atomic
    from edgeconv.report.explorer import overlay_files

    files, missing = overlay_files(build, doc)
    write_files_atomic(out, files)
    note = f"; layers with no tensor in model.int8.tflite: {', '.join(missing)}" if missing else ""
    tflite = build.folder / "model.int8.tflite"
    return [
        f"wrote {len(files)} Model Explorer node-data files to {out}{note}:",
        f"  model-explorer {tflite} --node_data_paths={','.join(str(out / n) for n in files)}",
    ]


@click.command()
@click.argument("folder", metavar="DIR")
@click.option("--targets", "target_list", default="cpu,arm,npu,mcu", show_default=True, help="Comma-separated targets.")
@click.option("--repeat", type=INT, default=50, show_default=True, help="Timed runs per model and target.")
@click.option("--warmup", type=INT, default=5, show_default=True, help="Untimed runs first.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def bench(folder, target_list, repeat, warmup, as_json):
    """Latency (median, p90) per target, int8 vs float, model bytes, RAM and MAC/s."""
    from edgeconv.artifacts.folder import load_build
    from edgeconv.bench.latency import bench_target
    from edgeconv.core.progress import progress_step

    if not 1 <= repeat <= 1_000_000 or not 0 <= warmup <= 1_000_000:
        raise UsageError(
            f"--repeat/--warmup: expected repeat 1 to 1,000,000 and warmup 0 to 1,000,000, got {repeat}/{warmup}"
        )
    build = load_build(folder)
    targets_ = targets_option(target_list)
    rows = []
    for t in targets_:
        # a bar per target on a terminal, one line per target on a pipe
        with progress_step(f"bench {t.name}", total=2 * repeat, unit="run", enabled=not as_json) as update:
            rows.append(bench_target(build, t, warmup, repeat, lambda: update(1)))
    if as_json:
        emit_json({"model": build.name, "repeat": repeat, "warmup": warmup, "targets": [r.to_json() for r in rows]})
        return
    click.echo(
        f"bench {build.name}: {build.analysis.macs:,} MACs, batch 1, median/p90 of {repeat} runs after {warmup} warm-up"
    )
    header = (
        f"{'target':<6} {'int8 ms':>9} {'p90':>8} {'float ms':>9} {'p90':>8} {'speedup':>7} "
        f"{'model B':>9} {'RAM pred':>9} {'RAM meas':>9} {'GMAC/s':>7}"
    )
    click.echo(header)
    for r in rows:
        f_med = f"{r.float.median_ms:9.3f}" if r.float else f"{'-':>9}"
        f_p90 = f"{r.float.p90_ms:8.3f}" if r.float else f"{'-':>8}"
        speed = f"{r.float.median_ms / r.int8.median_ms:6.2f}x" if r.float else f"{'-':>7}"
        meas = f"{r.ram_measured:9,}" if r.ram_measured else f"{'-':>9}"
        click.echo(
            f"{r.target:<6} {r.int8.median_ms:9.3f} {r.int8.p90_ms:8.3f} {f_med} {f_p90} {speed} "
            f"{r.model_bytes:9,} {r.ram_predicted:9,} {meas} {r.macs_per_second / 1e9:7.2f}"
        )
