"""`edgeconv layer`, `build` and `targets`: describe and build models."""

from __future__ import annotations

import click

from edgeconv.cli.common import FLOAT, INT, check_sample_count, check_seed, emit_json, padding_option, pair_option
from edgeconv.core.errors import UsageError


@click.command()
@click.option("--input", "input_shape", required=True, metavar="WxHxC", help="Input volume, e.g. 32x32x3.")
@click.option(
    "--op",
    type=click.Choice(["conv2d", "depthwise_conv2d", "max_pool", "avg_pool"]),
    default="conv2d",
    show_default=True,
    help="Layer type.",
)
@click.option("--filters", type=INT, help="Number of filters K (conv2d).")
@click.option("--kernel", default="3", show_default=True, metavar="F|FwxFh", help="Filter (or pool window) size.")
@click.option("--stride", default="1", show_default=True, metavar="S|SwxSh", help="Stride.")
@click.option("--pad", default="0", show_default=True, metavar="same|valid|P", help="Zero padding.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def layer(input_shape, op, filters, kernel, stride, pad, as_json):
    """Output shape, parameters and MACs of one layer, with the lecture's formulas filled in."""
    from edgeconv.core.sizes import parse_shape
    from edgeconv.plan.calculator import explain_layer

    shape = parse_shape(input_shape)
    if op == "conv2d" and (filters is None or filters < 1):
        raise UsageError(f"--filters: expected a number of filters K >= 1 for conv2d, got {filters}")
    result = explain_layer(
        shape, op, filters, pair_option(kernel, "--kernel"), pair_option(stride, "--stride"), padding_option(pad)
    )
    if as_json:
        emit_json(result)
        return
    w, h, c = result["output"]
    click.echo(f"input  {input_shape}  ->  output {w}x{h}x{c}")
    for line in result["formulas"]:
        click.echo(f"  {line}")
    click.echo(
        f"  output bytes: {result['output_bytes']['int8']:,} (int8), {result['output_bytes']['float32']:,} (float32)"
    )


@click.command()
@click.option(
    "--budget",
    metavar="SIZE",
    help="Model-size budget (int8 model bytes), e.g. 1MB. Default: the target's flash, else 1MB.",
)
@click.option("--ram", metavar="SIZE", help="Peak activation RAM budget. Default: the target's RAM, else 256KB.")
@click.option(
    "--macs",
    type=INT,
    help="Multiply-accumulates per inference you grant: a limit the planner also spends (README, the objective). "
    "Default: the target's cap (a limit only), else none.",
)
@click.option(
    "--latency",
    metavar="TIME",
    help="Latency budget, e.g. 100ms or 0.1s, predicted by the target's latency model (mcu, mcu-m4); "
    "granted like --macs.",
)
@click.option("--input", "input_shape", default="32x32x3", show_default=True, metavar="WxHxC", help="Input volume.")
@click.option("--classes", type=INT, default=10, show_default=True, help="Number of classes.")
@click.option("--target", help="Target name (see 'edgeconv targets') or a profile .toml.")
@click.option("--recipe", help="Build a fixed topology from models/ (name or .toml path) instead of planning.")
@click.option("--weights", "weights_path", metavar="FILE.npz", help="Weights keyed '<layer>.weight' / '<layer>.bias'.")
@click.option(
    "--calib",
    "calib_path",
    metavar="FILE",
    help="Calibration inputs: .npy (N x H x W x C float32) or "
    ".npz. Default: a seeded synthetic set (the report says so).",
)
@click.option(
    "--calib-method",
    type=click.Choice(["minmax", "percentile", "mse"]),
    default="minmax",
    show_default=True,
    help="How activation ranges are chosen from the calibration outputs.",
)
@click.option(
    "--percentile", type=FLOAT, default=99.99, show_default=True, help="Tail cut of --calib-method percentile."
)
@click.option("--calib-samples", type=INT, default=64, show_default=True, help="Size of the synthetic calibration set.")
@click.option("--seed", type=INT, default=0, show_default=True, help="Seed of the weights and synthetic data.")
@click.option("--out", metavar="DIR", help="Output folder. Default: edgeconv-out/<model name>.")
@click.option("--top", type=INT, default=0, show_default=True, help="Also show the N runners-up of the plan.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (the plan summary).")
def build(
    budget,
    ram,
    macs,
    latency,
    input_shape,
    classes,
    target,
    recipe,
    weights_path,
    calib_path,
    calib_method,
    percentile,
    calib_samples,
    seed,
    out,
    top,
    as_json,
):
    """Plan a conv net under a budget (or load a recipe), export it and report every number."""
    from edgeconv.artifacts.build import BuildRequest, raise_on_failures, report_text, run_build
    from edgeconv.core.ir import InputSpec
    from edgeconv.core.sizes import parse_duration_ms, parse_shape, parse_size
    from edgeconv.plan.targets import load_target

    if classes < 1:
        raise UsageError(f"--classes: expected at least 1 class, got {classes}")
    if macs is not None and macs < 1:
        raise UsageError(f"--macs: expected a positive MAC count, got {macs}")
    if top < 0:
        raise UsageError(f"--top: expected N >= 0, got {top}")
    check_sample_count(calib_samples, "--calib-samples", minimum=8)
    check_seed(seed)
    if not 0 < percentile <= 100:
        raise UsageError(f"--percentile: expected a number above 0 and at most 100, got {percentile}")
    if budget is not None and not budget.strip():
        raise UsageError("--budget: expected a size like 1MB, 256KB, 64KiB or 4096B, got ''")
    if ram is not None and not ram.strip():
        raise UsageError("--ram: expected a size like 256KB, 64KiB or 4096B, got ''")
    if recipe and (input_shape != "32x32x3" or classes != 10):
        raise UsageError("--recipe fixes the input and classes; drop --input/--classes or drop --recipe")
    req = BuildRequest(
        budget=parse_size(budget, "--budget") if budget is not None else None,
        ram=parse_size(ram, "--ram") if ram is not None else None,
        macs=macs,
        latency_ms=parse_duration_ms(latency, "--latency") if latency is not None else None,
        input_spec=InputSpec(*parse_shape(input_shape)),
        classes=classes,
        target=load_target(target) if target else None,
        recipe=recipe,
        weights_path=weights_path,
        calib_path=calib_path,
        calib_method=calib_method,
        percentile=percentile,
        calib_samples=calib_samples,
        seed=seed,
        out=out,
        top=top,
    )
    if not as_json:
        parts = []
        if budget:
            parts.append(f"budget {budget} = {req.budget:,} B")
        if ram:
            parts.append(f"RAM {ram} = {req.ram:,} B")
        if parts:
            click.echo("; ".join(parts))
    result = run_build(req, progress=None if as_json else lambda message: click.echo(message, err=True))
    if as_json:
        emit_json(result.summary())
    else:
        click.echo(report_text(result))
    raise_on_failures(result)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def targets(as_json):
    """List the target profiles and whether each runtime is installed."""
    from edgeconv.plan.targets import all_targets

    rows = []
    for t in all_targets():
        missing = t.missing_runtime()
        rows.append(
            {
                "name": t.name,
                "description": t.description,
                "runtime": ", ".join(t.packages),
                "artifact": t.artifact,
                "activations": t.activation_dtype,
                "rounding": t.rounding,
                "flash_bytes": t.flash_bytes,
                "ram_bytes": t.ram_bytes,
                "installed": missing is None,
                "install_hint": None if missing is None else f"pip install 'edgeconv[{t.extra}]'",
                "profile": t.source,
            }
        )
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        state = "installed" if r["installed"] else f"missing: {r['install_hint']}"
        click.echo(
            f"{r['name']:<5} {r['runtime']:<28} {r['artifact']:<12} {r['activations']:<6} {r['rounding']:<7} {state}"
        )
        click.echo(f"      {r['description']}")
