"""`edgeconv firmware`: the project for a build folder (or an int8 .tflite), compiled against the
cached TFLM library, and its flash / RAM figures read from the ELF and the linker map.

Arena: plan/arena.py's prediction for the 32-bit part: the head (TFLM's greedy planner replayed
over the activations and the kernels' scratch buffers) plus the persistent tail with 32-bit
struct sizes, plus ARENA_MARGIN_BYTES. The firmware reports `arena_used_bytes()` measured on
the part.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeconv.core.errors import InputError
from edgeconv.firmware import library
from edgeconv.firmware.project import ARENA_MARGIN_BYTES, Project, project_files

ELF = "firmware.elf"
MAP = "firmware.map"


@dataclass(frozen=True)
class ModelSource:
    data: bytes  # the int8 .tflite
    where: str
    analysis: Any  # core.graph.Analysis when the IR is known, else None
    ops: list[str]
    exposed: bool = False  # layer outputs made graph outputs: they all stay live (arena bound)
    n_operators: int = 0  # operators in the graph (the firmware times each one)


def source_from_bytes(data: bytes, where: str, analysis=None, exposed: bool = False) -> ModelSource:
    """The model's bytes, its ops, and its IR analysis (imported from the bytes when not given;
    None when the file is outside the IR, then the arena must be given)."""
    from edgeconv.frontends.tflite import op_counts

    if analysis is None and not exposed:
        try:
            from edgeconv.core.graph import analyze
            from edgeconv.frontends.tflite import import_tflite

            analysis = analyze(import_tflite(Path(where).name or "model.tflite", data).model)
        except InputError:
            analysis = None
    counts = op_counts(data)
    return ModelSource(data, where, analysis, sorted(counts), exposed, sum(counts.values()))


def load_source(path: str | Path) -> ModelSource:
    """A build folder (its model.int8.tflite) or an int8 .tflite file."""
    from edgeconv.frontends.tflite import read_file

    path = Path(path)
    if path.is_dir():
        from edgeconv.artifacts.folder import load_build

        build = load_build(path)
        artifact = build.artifact("int8_tflite")
        return source_from_bytes(artifact.read_bytes(), str(artifact), build.analysis)
    if path.suffix == ".tflite" and path.is_file():
        return source_from_bytes(read_file(path), str(path))
    raise InputError(f"firmware: {path}: expected a build folder or an int8 .tflite file")


def predicted_arena(source: ModelSource, kernels: str) -> tuple[int, int, int] | None:
    """plan/arena.py's arena for the 32-bit part: (total, head, tail), the head with the
    kernels' scratch buffers, the total with the 32-bit model's margin; None outside the IR."""
    if source.analysis is None:
        return None
    from edgeconv.plan.arena import predict_head_bytes, predict_tail_bytes, tail_model

    head = predict_head_bytes(source.analysis, kernels, outputs_live=source.exposed)
    tail = predict_tail_bytes(source.analysis, 4, kernels)
    return -(-(head + tail + tail_model(4, kernels).margin) // 16) * 16, head, tail


def arena_bytes(source: ModelSource, kernels: str, fixed: int | None = None) -> tuple[int, str]:
    """The arena compiled into the firmware: the 32-bit prediction + ARENA_MARGIN_BYTES."""
    if fixed is not None:
        return fixed, f"{fixed} B given with --arena"
    predicted = predicted_arena(source, kernels)
    if predicted is None:
        raise InputError(
            f"firmware: {source.where}: the model is outside edgeconv's IR, so its arena cannot be "
            "predicted; expected --arena SIZE"
        )
    total, head, tail = predicted
    note = f"32-bit prediction {total} (head {head} incl. {kernels} scratch, tail {tail}) + margin {ARENA_MARGIN_BYTES}"
    return total + ARENA_MARGIN_BYTES, note


def make_project(source: ModelSource, lib: library.Library, arena: int | None = None) -> Project:
    size, note = arena_bytes(source, lib.kernels, arena)
    return project_files(
        source.data,
        source.ops,
        size,
        note,
        lib.cpu,
        lib.kernels,
        lib.cxxflags + ["-Os"],
        lib.ccflags + ["-Os"],
        lib.includes,
        list(json_make_args(lib)),
        n_operators=source.n_operators,
    )


def json_make_args(lib: library.Library) -> list[str]:
    import json

    return json.loads((lib.folder / "flags.json").read_text()).get("make", [])


def compile_project(folder: Path, lib: library.Library, timeout: float = 600) -> Path:
    """`make` in the project folder against `lib`; the ELF's path."""
    if shutil.which("arm-none-eabi-g++") is None:
        raise InputError(
            f"arm-none-eabi-g++: not on PATH; expected Debian's toolchain (apt-get install {library.APT_PACKAGES})"
        )
    jobs = str(min(3, os.cpu_count() or 1))
    proc = subprocess.run(
        ["make", "-s", f"-j{jobs}", f"TFLM_DIR={lib.folder}"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
        raise InputError(f"firmware: make failed in {folder} (exit {proc.returncode}):\n" + "\n".join(tail))
    return folder / ELF


# -- flash and RAM ---------------------------------------------------------------------------


def section_sizes(elf: Path) -> dict[str, int]:
    """{section: bytes} from `arm-none-eabi-size -A`."""
    out = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = int(parts[1])
    return sizes


def berkeley_sizes(elf: Path) -> dict[str, int]:
    """text / data / bss from `arm-none-eabi-size` (Berkeley format: text includes .rodata)."""
    out = subprocess.run(["arm-none-eabi-size", str(elf)], capture_output=True, text=True, check=True).stdout
    text, data, bss = (int(v) for v in out.splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss}


_MAP_ENTRY = re.compile(r"^\s*(\.[\w.$]+)?\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S+)$")
FLASH_SECTIONS = (
    ".isr_vector",
    ".text",
    ".rodata",
    ".ARM.exidx",
    ".ARM.extab",
    ".init",
    ".fini",
    ".init_array",
    ".fini_array",
    ".eh_frame",
)


def _kind(obj: str) -> str:
    name = os.path.basename(obj)
    if name.startswith("model_data.o"):
        return "model"
    if "libtensorflow-microlite.a" in obj:
        member = name.split("(")[-1].rstrip(")")
        if member.startswith("arm_") or "/kernels/" in obj:
            return "kernels"
        return "kernels" if _KERNEL_MEMBERS.match(member) else "runtime"
    return "runtime"  # main.o, startup.o, newlib, libstdc++, libgcc


# TFLM's kernel objects (kernels/*.o, cmsis_nn/*.o in the archive) and CMSIS-NN functions
_KERNEL_MEMBERS = re.compile(
    r"^(arm_.*|add(_common)?|conv(_common)?|depthwise_conv(_common)?|fully_connected(_common)?|"
    r"pooling(_common)?|softmax(_common)?|reshape(_common)?|pad|reduce(_common)?|concatenation|"
    r"quantize(_common)?|dequantize(_common)?|mul(_common)?|sub(_common)?|logistic(_common)?|"
    r"activations(_common)?|hard_swish(_common)?|leaky_relu(_common)?|kernel_util|strided_slice(_common)?|"
    r"transpose|tanh(_common)?|squeeze|shape|maximum_minimum|arg_min_max|.*_common)\.o$"
)


def flash_split(map_file: Path) -> dict[str, int]:
    """Flash bytes (code + read-only data, every input section placed in a flash output section)
    by origin: the model array, TFLM's kernels (TFLM kernel objects + CMSIS-NN), and the runtime
    (TFLM's interpreter/allocator, main, startup, newlib, libstdc++, libgcc); plus `.data` init
    values, which also live in flash."""
    text = map_file.read_text(errors="replace")
    start = text.find("Linker script and memory map")
    if start < 0:
        raise InputError(f"{map_file}: not a GNU ld map file (no 'Linker script and memory map')")
    split = {"model": 0, "kernels": 0, "runtime": 0, "data_init": 0}
    out_section = None
    pending: str | None = None
    for raw in text[start:].splitlines():
        if raw and not raw.startswith(" "):
            out_section = raw.split()[0]
            pending = None
            continue
        line = raw.rstrip()
        if pending is not None:  # an input section name on its own line; its figures follow
            line = f" {pending} {line.strip()}"
            pending = None
        stripped = line.strip()
        if stripped.startswith(".") and len(stripped.split()) == 1:
            pending = stripped
            continue
        m = _MAP_ENTRY.match(line)
        if not m or m.group(1) is None:
            continue
        size = int(m.group(3), 16)
        if size == 0 or out_section is None:
            continue
        if out_section == ".data":
            split["data_init"] += size
        elif out_section in FLASH_SECTIONS:
            split[_kind(m.group(4))] += size
    return split


def memory_figures(folder: Path) -> dict[str, object]:
    """Flash and static RAM of the built firmware. Flash = Berkeley text (code + .rodata +
    vector table) + .data init values; its split: the model array and the kernels from the
    map file, the runtime the rest (so the three add up to the ELF's text exactly: the map
    lists merged string sections before merging and leaves out alignment fill)."""
    elf = folder / ELF
    sizes = berkeley_sizes(elf)
    mapped = flash_split(folder / MAP)
    split = {
        "model": mapped["model"],
        "kernels": mapped["kernels"],
        "runtime": sizes["text"] - mapped["model"] - mapped["kernels"],
    }
    return {
        "size": sizes,
        "flash_bytes": sizes["text"] + sizes["data"],
        "static_ram_bytes": sizes["data"] + sizes["bss"],
        "sections": section_sizes(elf),
        "flash_split": split,
    }


def _may_replace(folder: Path) -> str | None:
    entries = [p.name for p in folder.iterdir()]
    if not entries:
        return None
    makefile = folder / "Makefile"
    if makefile.is_file() and makefile.read_bytes().startswith(b"# Generated by edgeconv firmware"):
        return None
    return "exists and is not an edgeconv firmware project; expected a new or empty folder"


def write_project(folder: Path, project: Project) -> None:
    from edgeconv.core.io import write_folder_atomic

    write_folder_atomic(folder, project.files, _may_replace, "-o/--output")


def layer_rows(source: ModelSource, layer_instructions: list[tuple[str, int]]) -> list[dict[str, object]]:
    """Per operator of a firmware run: its op, the layer it computes and that layer's MACs
    (when the op sequence is the one export/tflite.py writes for the IR), instructions per invoke."""
    names: list[str | None] = [None] * len(layer_instructions)
    macs: dict[str, int] = {}
    if source.analysis is not None:
        from edgeconv.plan.arena import tflite_graph

        ops = tflite_graph(source.analysis).ops
        if [op for op, *_ in ops] == [op for op, _ in layer_instructions]:
            names = [out for _, _, out, _ in ops]
            macs = {info.name: info.macs for info in source.analysis.layers}
    rows: list[dict[str, object]] = []
    for (op, n), name in zip(layer_instructions, names):
        m = macs.get(name or "", 0)
        rows.append({"op": op, "layer": name, "macs": m, "instructions": n, "per_mac": round(n / m, 2) if m else None})
    return rows
