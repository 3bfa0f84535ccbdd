"""The command line. Thin: parse, call the core, print. Heavy imports happen inside commands
so that `edgeconv --help` starts fast."""
from __future__ import annotations

import json
import os
import sys

import click

from . import __version__
from .errors import EdgeconvError, UsageError


class _Cli(click.Group):
    """Maps every error to a one-line message and an exit code (0 ok, 1 check failed, 2 bad
    usage, bad input or missing runtime), never a traceback."""

    def main(self, args=None, prog_name=None, **extra):
        args = list(sys.argv[1:] if args is None else args)
        if not args:
            args = ["--help"]
        try:
            super().main(args=args, prog_name=prog_name or "edgeconv", standalone_mode=False, **extra)
        except EdgeconvError as err:
            _fail(str(err), err.exit_code)
        except click.exceptions.NoArgsIsHelpError as err:
            click.echo(err.ctx.get_help() if err.ctx else "", err=False)
            sys.exit(0)
        except click.UsageError as err:
            hint = f" (see '{err.ctx.command_path} --help')" if err.ctx else ""
            _fail(err.format_message().replace("\n", " ") + hint, 2)
        except click.exceptions.Abort:
            _fail("interrupted", 130)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except click.exceptions.Exit as err:
            sys.exit(err.exit_code)
        except Exception as err:  # a bug: one line by default, the traceback on request
            if os.environ.get("EDGECONV_DEBUG"):
                raise
            _fail(f"internal error: {type(err).__name__}: {err} (set EDGECONV_DEBUG=1 for the traceback)", 3)
        sys.exit(0)


def _fail(message: str, code: int) -> None:
    click.echo(f"edgeconv: error: {message}", err=True)
    sys.exit(code)


def _emit_json(document: object) -> None:
    click.echo(json.dumps(document, indent=2))


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeconv")
def cli() -> None:
    """Plan small conv nets for embedded targets, export them from one IR to ONNX and TFLite,
    and check that every runtime computes the same numbers.

    Shapes are W x H x C (for example 32x32x3). Sizes take B, KB, MB (powers of ten) and
    KiB, MiB (powers of two).
    """


def _pair(text: str, what: str) -> tuple[int, int]:
    parts = str(text).lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise UsageError(f"{what}: expected a positive integer N or WxH like 3 or 5x3, got {text!r}")
    return values[0], values[1]


def _padding(text: str) -> str | int:
    if text in ("same", "valid"):
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise UsageError(f"--pad: expected same, valid or an integer P >= 0, got {text!r}")
    return value


@cli.command()
@click.option("--input", "input_shape", required=True, metavar="WxHxC", help="Input volume, e.g. 32x32x3.")
@click.option("--op", type=click.Choice(["conv2d", "depthwise_conv2d", "max_pool", "avg_pool"]), default="conv2d",
              show_default=True, help="Layer type.")
@click.option("--filters", type=int, help="Number of filters K (conv2d).")
@click.option("--kernel", default="3", show_default=True, metavar="F|FwxFh", help="Filter (or pool window) size.")
@click.option("--stride", default="1", show_default=True, metavar="S|SwxSh", help="Stride.")
@click.option("--pad", default="0", show_default=True, metavar="same|valid|P", help="Zero padding.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def layer(input_shape, op, filters, kernel, stride, pad, as_json):
    """Output shape, parameters and MACs of one layer, with the lecture's formulas filled in."""
    from .calculator import explain_layer
    from .sizes import parse_shape

    shape = parse_shape(input_shape)
    if op == "conv2d" and (filters is None or filters < 1):
        raise UsageError(f"--filters: expected a number of filters K >= 1 for conv2d, got {filters}")
    result = explain_layer(shape, op, filters, _pair(kernel, "--kernel"), _pair(stride, "--stride"), _padding(pad))
    if as_json:
        _emit_json(result)
        return
    w, h, c = result["output"]
    click.echo(f"input  {input_shape}  ->  output {w}x{h}x{c}")
    for line in result["formulas"]:
        click.echo(f"  {line}")
    click.echo(f"  output bytes: {result['output_bytes']['int8']:,} (int8), "
               f"{result['output_bytes']['float32']:,} (float32)")


@cli.command()
@click.option("--budget", metavar="SIZE", help="Model-size budget (int8 model bytes), e.g. 1MB. "
              "Default: the target's flash, else 1MB.")
@click.option("--ram", metavar="SIZE", help="Peak activation RAM budget. Default: the target's RAM, else 256KB.")
@click.option("--macs", type=int, help="Limit on multiply-accumulates per inference. Default: the target's, else none.")
@click.option("--input", "input_shape", default="32x32x3", show_default=True, metavar="WxHxC", help="Input volume.")
@click.option("--classes", type=int, default=10, show_default=True, help="Number of classes.")
@click.option("--target", help="Target name (see 'edgeconv targets') or a profile .toml.")
@click.option("--recipe", help="Build a fixed topology from models/ (name or .toml path) instead of planning.")
@click.option("--weights", "weights_path", metavar="FILE.npz", help="Weights keyed '<layer>.weight' / '<layer>.bias'.")
@click.option("--calib", "calib_path", metavar="FILE", help="Calibration inputs: .npy (N x H x W x C float32) or "
              ".npz. Default: a seeded synthetic set (the report says so).")
@click.option("--calib-method", type=click.Choice(["minmax", "percentile", "mse"]), default="minmax",
              show_default=True, help="How activation ranges are chosen from the calibration outputs.")
@click.option("--percentile", type=float, default=99.99, show_default=True, help="Tail cut of --calib-method percentile.")
@click.option("--calib-samples", type=int, default=64, show_default=True, help="Size of the synthetic calibration set.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the weights and synthetic data.")
@click.option("--out", metavar="DIR", help="Output folder. Default: edgeconv-out/<model name>.")
@click.option("--top", type=int, default=0, show_default=True, help="Also show the N runners-up of the plan.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (the plan summary).")
def build(budget, ram, macs, input_shape, classes, target, recipe, weights_path, calib_path, calib_method,
          percentile, calib_samples, seed, out, top, as_json):
    """Plan a conv net under a budget (or load a recipe), export it and report every number."""
    from .build import BuildRequest, raise_on_failures, report_text, run_build
    from .ir import InputSpec
    from .sizes import parse_shape, parse_size
    from .targets import load_target

    if classes < 1:
        raise UsageError(f"--classes: expected at least 1 class, got {classes}")
    if macs is not None and macs < 1:
        raise UsageError(f"--macs: expected a positive MAC count, got {macs}")
    if top < 0:
        raise UsageError(f"--top: expected N >= 0, got {top}")
    if calib_samples < 8:
        raise UsageError(f"--calib-samples: expected at least 8 samples, got {calib_samples}")
    if recipe and (input_shape != "32x32x3" or classes != 10):
        raise UsageError("--recipe fixes the input and classes; drop --input/--classes or drop --recipe")
    req = BuildRequest(
        budget=parse_size(budget, "--budget") if budget else None,
        ram=parse_size(ram, "--ram") if ram else None,
        macs=macs,
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
        _emit_json(result.summary())
    else:
        click.echo(report_text(result))
    raise_on_failures(result)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def targets(as_json):
    """List the target profiles and whether each runtime is installed."""
    from .targets import all_targets

    rows = []
    for t in all_targets():
        missing = t.missing_runtime()
        rows.append({"name": t.name, "description": t.description, "runtime": ", ".join(t.packages),
                     "artifact": t.artifact, "activations": t.activation_dtype, "rounding": t.rounding,
                     "flash_bytes": t.flash_bytes, "ram_bytes": t.ram_bytes,
                     "installed": missing is None, "install_hint": None if missing is None
                     else f"pip install 'edgeconv[{t.extra}]'", "profile": t.source})
    if as_json:
        _emit_json(rows)
        return
    for r in rows:
        state = "installed" if r["installed"] else f"missing: {r['install_hint']}"
        click.echo(f"{r['name']:<5} {r['runtime']:<28} {r['artifact']:<12} {r['activations']:<6} "
                   f"{r['rounding']:<7} {state}")
        click.echo(f"      {r['description']}")


def _targets_option(text: str):
    from .targets import load_target

    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise UsageError(f"--targets: expected a comma-separated list like cpu,arm,npu,mcu, got {text!r}")
    return [load_target(n) for n in names]


def _float_inputs(path: str, build, what: str, min_samples: int = 1):
    from .quant.calibrate import load_calibration

    return load_calibration(path, build.analysis, min_samples=min_samples, what=what)


@cli.command()
@click.argument("folder", metavar="DIR")
@click.option("--target", required=True, help="Target name or profile .toml.")
@click.option("--input", "input_path", required=True, metavar="X.npy",
              help="Float32 inputs, N x H x W x C (NHWC of the W x H x C model input), .npy or .npz.")
@click.option("--output", "output_path", metavar="Y.npy", help="Save the dequantized outputs (float32).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def run(folder, target, input_path, output_path, as_json):
    """Run a built model on one target's runtime.

    Inputs are quantized once, outside the graph: q = clamp(round_half_even(x / scale) + zp),
    in the target's activation dtype. Outputs are dequantized for display and --output.
    """
    from pathlib import Path

    import numpy as np

    from .artifacts import load_build, to_int8_convention
    from .backends import get_backend, require
    from .io import write_bytes_atomic
    from .parity.run import target_dtype
    from .quant.quantize import dequantize, quantize_input
    from .targets import load_target

    build = load_build(folder)
    tgt = load_target(target)
    backend = require(get_backend(tgt))
    x = np.asarray(_float_inputs(input_path, build, "input"))
    x_q = quantize_input(x, build.qparams.activations["input"], target_dtype(build, tgt))
    out_q = to_int8_convention(backend.run(build, x_q))
    y = dequantize(out_q, build.qparams.activations[build.analysis.model.output], "int8")
    y = y.reshape(len(x), -1) if build.analysis.output_shape[:2] == (1, 1) else y
    if output_path:
        import io as _io

        buffer = _io.BytesIO()
        np.save(buffer, y.astype(np.float32))
        write_bytes_atomic(Path(output_path), buffer.getvalue())
    doc = {"target": tgt.name, "samples": int(len(x)), "output_shape": list(y.shape),
           "top1": y.reshape(len(x), -1).argmax(axis=1).tolist(), "output": output_path}
    if as_json:
        _emit_json(doc)
        return
    click.echo(f"{build.name} on {tgt.name}: {len(x)} sample(s), output {tuple(y.shape)}")
    for i, row in enumerate(y.reshape(len(x), -1)[:8]):
        top = int(row.argmax())
        click.echo(f"  sample {i}: class {top} ({row[top]:.4f})  " + " ".join(f"{v:.3f}" for v in row[:12]))
    if output_path:
        click.echo(f"wrote {output_path}")


@cli.command()
@click.argument("folder", metavar="DIR")
@click.option("--targets", "target_list", default="cpu,arm,npu,mcu", show_default=True, help="Comma-separated targets.")
@click.option("--inputs", "inputs_path", metavar="X.npz", help="Float32 inputs (N x H x W x C). "
              "Default: a seeded synthetic set, distinct from the calibration samples.")
@click.option("--samples", type=int, default=32, show_default=True, help="Size of the synthetic input set.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the synthetic inputs.")
@click.option("--per-layer", is_flag=True, help="Compare every layer, not only when a target fails.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--md", "md_path", metavar="FILE", help="Write a Markdown summary.")
@click.option("--junit", "junit_path", metavar="FILE", help="Write JUnit XML (one test case per target x check).")
def parity(folder, target_list, inputs_path, samples, seed, per_layer, as_json, md_path, junit_path):
    """Check every target against the float and int8 golden references and each other.

    Exit 0 when every check passes, 1 when one fails, 2 for bad usage or a missing runtime.
    """
    from pathlib import Path

    from .artifacts import load_build
    from .errors import CheckFailed
    from .io import write_bytes_atomic
    from .parity.report import to_json, to_junit, to_markdown, to_text
    from .parity.run import comparison_inputs, run_parity

    build = load_build(folder)
    targets_ = _targets_option(target_list)
    x, source = comparison_inputs(build, inputs_path, samples, seed)
    report = run_parity(build, targets_, x, source, per_layer,
                        progress=None if as_json else lambda msg: click.echo(msg, err=True))
    if md_path:
        write_bytes_atomic(Path(md_path), to_markdown(report).encode("utf-8"))
    if junit_path:
        write_bytes_atomic(Path(junit_path), to_junit(report))
    if as_json:
        _emit_json(to_json(report))
    else:
        click.echo(to_text(report))
    if not report.passed:
        failed = [f"{c.target} {c.name}" for r in report.results for c in r.checks if not c.passed]
        raise CheckFailed(f"parity failed: {', '.join(failed)}")


@cli.command()
@click.argument("folder", metavar="DIR")
@click.option("--targets", "target_list", default="cpu,arm,npu,mcu", show_default=True, help="Comma-separated targets.")
@click.option("--repeat", type=int, default=50, show_default=True, help="Timed runs per model and target.")
@click.option("--warmup", type=int, default=5, show_default=True, help="Untimed runs first.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def bench(folder, target_list, repeat, warmup, as_json):
    """Latency (median, p90) per target, int8 vs float, model bytes, RAM and MAC/s."""
    from tqdm import tqdm

    from .artifacts import load_build
    from .bench import bench_target

    if repeat < 1 or warmup < 0:
        raise UsageError(f"--repeat/--warmup: expected repeat >= 1 and warmup >= 0, got {repeat}/{warmup}")
    build = load_build(folder)
    targets_ = _targets_option(target_list)
    rows = []
    for t in targets_:
        with tqdm(total=2 * repeat, desc=f"bench {t.name}", unit="run", file=sys.stderr, disable=as_json or None,
                  leave=False) as bar:
            rows.append(bench_target(build, t, warmup, repeat, bar.update))
    if as_json:
        _emit_json({"model": build.name, "repeat": repeat, "warmup": warmup, "targets": [r.to_json() for r in rows]})
        return
    click.echo(f"bench {build.name}: {build.analysis.macs:,} MACs, batch 1, median/p90 of {repeat} runs "
               f"after {warmup} warm-up")
    header = f"{'target':<6} {'int8 ms':>9} {'p90':>8} {'float ms':>9} {'p90':>8} {'speedup':>7} "              f"{'model B':>9} {'RAM pred':>9} {'RAM meas':>9} {'GMAC/s':>7}"
    click.echo(header)
    for r in rows:
        f_med = f"{r.float.median_ms:9.3f}" if r.float else f"{'-':>9}"
        f_p90 = f"{r.float.p90_ms:8.3f}" if r.float else f"{'-':>8}"
        speed = f"{r.float.median_ms / r.int8.median_ms:6.2f}x" if r.float else f"{'-':>7}"
        meas = f"{r.ram_measured:9,}" if r.ram_measured else f"{'-':>9}"
        click.echo(f"{r.target:<6} {r.int8.median_ms:9.3f} {r.int8.p90_ms:8.3f} {f_med} {f_p90} {speed} "
                   f"{r.model_bytes:9,} {r.ram_predicted:9,} {meas} {r.macs_per_second / 1e9:7.2f}")


def _register_bundle_commands() -> None:
    from .bundle_cli import bundle, validate  # click-only at import time

    cli.add_command(bundle)
    cli.add_command(validate)


_register_bundle_commands()


def main() -> None:
    cli.main()
