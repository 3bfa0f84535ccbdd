"""`edgeconv firmware`: a TFLite Micro firmware project for a build folder or an int8 .tflite."""

from __future__ import annotations

import json

import click

CPUS = ("cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")


@click.command()
@click.argument("source", metavar="DIR")
@click.option("--cpu", type=click.Choice(CPUS), default="cortex-m4", show_default=True, help="Cortex-M core.")
@click.option(
    "--kernels",
    type=click.Choice(["cmsis_nn", "reference"]),
    default="cmsis_nn",
    show_default=True,
    help="TFLM kernels linked in: Arm's CMSIS-NN or TFLM's portable reference kernels.",
)
@click.option(
    "-o", "--output", "output", metavar="OUT", help="Project folder (default: firmware-<model>-<cpu>-<kernels>)."
)
@click.option("--arena", metavar="SIZE", help="Tensor arena size (default: edgeconv's arena model).")
@click.option("--compile", "do_compile", is_flag=True, help="Also build firmware.elf and report flash / RAM.")
@click.option(
    "--build-lib", is_flag=True, help="Build the TFLM library into the cache first if it is missing (~10 min)."
)
@click.option(
    "--sources",
    metavar="DIR",
    help="Pinned TFLM source archives for --build-lib (default: EDGECONV_TFLM_SOURCES or ../shared/third_party).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def firmware(source, cpu, kernels, output, arena, do_compile, build_lib, sources, as_json):
    """Write a firmware project: the model as an aligned C array (model_data.h/.cc, the xxd -i
    convention), main.cc with a MicroMutableOpResolver of exactly the model's ops and a static
    arena, a vector table, and a Makefile that links the cached TFLM library
    (scripts/build_tflm.sh). The same model and options give byte-identical files."""
    import sys
    from pathlib import Path

    from edgeconv.core.sizes import parse_size
    from edgeconv.firmware import app, library

    src = app.load_source(source)
    if build_lib:
        lib = library.build(cpu, kernels, Path(sources) if sources else None)
    else:
        lib = library.find(cpu, kernels)
    fixed = parse_size(arena, "--arena") if arena else None
    project = app.make_project(src, lib, fixed)
    name = Path(source).stem if not Path(source).is_dir() else Path(source).resolve().name
    out = Path(output) if output else Path(f"firmware-{name}-{cpu}-{kernels}")
    app.write_project(out, project)
    doc: dict = {
        "project": str(out),
        "cpu": cpu,
        "kernels": kernels,
        "ops": list(project.ops),
        "arena_bytes": project.arena_bytes,
        "arena_predicted_32bit": (app.predicted_arena(src, kernels) or (None,))[0],
        "model_bytes": len(src.data),
        "library": str(lib.folder),
        "files": sorted(project.files),
    }
    if do_compile:
        app.compile_project(out, lib)
        doc["memory"] = app.memory_figures(out)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"wrote {out}/ ({', '.join(sorted(project.files))}) for {cpu} with {kernels} kernels")
    predicted = doc["arena_predicted_32bit"]
    arena_note = f" (32-bit prediction {predicted:,} B + margin)" if predicted and not fixed else ""
    click.echo(f"  ops ({len(project.ops)}): {', '.join(project.ops)}; arena {project.arena_bytes:,} B{arena_note}")
    if do_compile:
        mem = doc["memory"]
        split = mem["flash_split"]
        click.echo(
            f"  firmware.elf: text {mem['size']['text']:,} B, data {mem['size']['data']:,} B, bss {mem['size']['bss']:,} B; "
            f"flash model {split['model']:,} / kernels {split['kernels']:,} / runtime {split['runtime']:,} B"
        )
    else:
        click.echo(f"  build: make -C {out}   (library {lib.folder})", file=sys.stdout)
