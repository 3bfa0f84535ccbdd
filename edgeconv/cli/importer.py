"""`edgeconv import MODEL`: a user's ONNX or TFLite file (float or int8) becomes a build folder."""

from __future__ import annotations

from pathlib import Path

import click

from edgeconv.cli.common import emit_json
from edgeconv.core.errors import InputError, UsageError

ONNX_HINT = "an ONNX ModelProto (protobuf) or a .tflite flatbuffer (identifier TFL3)"


def sniff_format(path: Path, head: bytes) -> str:
    """'tflite' or 'onnx' from the file's first bytes (the suffix is only a tie-breaker)."""
    if len(head) >= 8 and head[4:8] == b"TFL3":
        return "tflite"
    # a serialized ModelProto starts with field 1 (ir_version, varint: tag 0x08) or, from some
    # writers, another field of ModelProto (opset_import 0x42, graph 0x3a, producer 0x12 ...)
    if head[:1] in (b"\x08", b"\x12", b"\x1a", b"\x22", b"\x2a", b"\x32", b"\x3a", b"\x42") and (
        head[:1] == b"\x08" or path.suffix.lower() == ".onnx"
    ):
        return "onnx"
    shown = head[:8].hex(" ") if head else "an empty file"
    raise InputError(f"model {path}: not a TFLite or ONNX file (expected {ONNX_HINT}; the file starts with {shown})")


def read_model(path: Path):
    """The ImportedModel of a .tflite or .onnx file, dispatched on its magic bytes."""
    if not path.exists():
        raise InputError(f"model {path}: file not found")
    if not path.is_file():
        raise InputError(f"model {path}: not a regular file")
    with open(path, "rb") as handle:
        head = handle.read(16)
    kind = sniff_format(path, head)
    if kind == "tflite":
        from edgeconv.frontends.tflite import import_tflite

        return import_tflite(path)
    try:
        from edgeconv.frontends import onnx as onnx_frontend
    except ImportError as err:
        if getattr(err, "name", "") in ("edgeconv.frontends.onnx",):
            raise UsageError(f"model {path}: ONNX import is not available in this edgeconv yet") from None
        raise InputError(
            f"model {path}: the ONNX importer needs the onnx package ({err}); pip install 'edgeconv[cpu]'"
        ) from None
    importer = getattr(onnx_frontend, "import_onnx", None)
    if importer is None:
        raise UsageError(f"model {path}: ONNX import is not available in this edgeconv yet")
    return importer(path)


@click.command(name="import")
@click.argument("model_path", metavar="MODEL")
@click.option("--out", metavar="DIR", help="Output folder. Default: edgeconv-out/<model name>.")
@click.option(
    "--calib",
    "calib_path",
    metavar="FILE",
    help="Calibration inputs (float source) and fidelity inputs: .npy (N x H x W x C float32) or .npz. "
    "Default: a seeded synthetic set (the report says so).",
)
@click.option(
    "--calib-method",
    type=click.Choice(["minmax", "percentile", "mse"]),
    default="minmax",
    show_default=True,
    help="How activation ranges are chosen (float sources; an int8 file keeps its own).",
)
@click.option(
    "--percentile", type=float, default=99.99, show_default=True, help="Tail cut of --calib-method percentile."
)
@click.option("--calib-samples", type=int, default=64, show_default=True, help="Size of the synthetic calibration set.")
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the synthetic calibration and fidelity data."
)
@click.option("--target", help="Target name (see 'edgeconv targets') or a profile .toml: its QDQ dtype and op limits.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (summary with fidelity figures).")
def import_model(model_path, out, calib_path, calib_method, percentile, calib_samples, seed, target, as_json):
    """Import a model file (ONNX or TFLite, float or int8) into a build folder.

    A float file is calibrated and quantized by edgeconv; an int8 file keeps its own scales and
    zero points and is itself the artifact under test (copied byte for byte). The source is run
    on its own runtime against edgeconv's references and the worst error is printed.
    """
    import time

    from edgeconv.artifacts.imported import build_imported
    from edgeconv.core.errors import CheckFailed
    from edgeconv.plan.targets import load_target

    if calib_samples < 8:
        raise UsageError(f"--calib-samples: expected at least 8 samples, got {calib_samples}")
    say = (lambda message: None) if as_json else (lambda message: click.echo(message, err=True))
    start = time.perf_counter()
    path = Path(model_path)
    imported = read_model(path)
    read_s = time.perf_counter() - start
    say(f"read {path.name}: {imported.source_format}, {len(imported.model.layers)} layers")
    result = build_imported(
        imported,
        out=out,
        calib_path=calib_path,
        calib_method=calib_method,
        percentile=percentile,
        calib_samples=calib_samples,
        seed=seed,
        target=load_target(target) if target else None,
        progress=say,
    )
    result.seconds = {"read": read_s, **result.seconds, "total": time.perf_counter() - start}
    if as_json:
        emit_json(result.summary())
    else:
        click.echo(report_text(result))
    if result.failures:
        raise CheckFailed("; ".join(result.failures))


def report_text(result) -> str:
    from edgeconv.report.tables import layer_rows, text_table

    s = result.summary()
    ops = ", ".join(f"{op} x{n}" for op, n in s["ops"].items())
    lines = [
        f"model {s['model']} imported from {Path(s['source']).name} ({s['source_format']}): {s['params']:,} params, "
        f"{s['macs']:,} MACs; {ops}",
        "",
        text_table(layer_rows(result.analysis)),
        "",
    ]
    for note in s["notes"]:
        lines.append(f"note: {note}")
    if result.fidelity is not None:
        lines.append(result.fidelity.text())
    else:
        lines.append("import fidelity: not checked (no runtime for this source format here)")
    cal = s["calibration"]
    if result.imported.quant is None:
        lines.append(f"calibration: {cal.get('method')} over {cal.get('samples')} samples of {cal.get('source')}")
    else:
        lines.append("quantization: read from the file (scales, zero points, integer weights kept as they are)")
    if s["original"]:
        lines.append(f"original: {s['original']} is {Path(s['source']).name} byte for byte (the artifact under test)")
    lines.append(f"derived: {', '.join(s['derived'])}")
    lines.append(f"int8 .tflite: {s['int8_tflite_bytes']:,} B")
    lines += [f"wrote {p}" for p in s["files"]]
    return "\n".join(lines)
