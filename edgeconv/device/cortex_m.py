"""Device kind qemu-cortex-m4 / qemu-cortex-m7: the model as TFLM firmware on an emulated core.

The firmware (edgeconv/firmware: the model as a C array, a MicroMutableOpResolver of exactly
its ops, CMSIS-NN or reference kernels from the cached TFLM library) runs under
`qemu-system-arm -M mps2-an386` (Cortex-M4) or `-M mps2-an500` (Cortex-M7) with semihosting:
it reads input.bin and writes output.bin and report.txt in the emulator's working folder.
Debian 12's user-mode `qemu-arm` (7.2) cannot run M-profile programs (it asserts in
page_set_flags), so the system emulator with a vector table linked at 0x0 is used.

`-icount shift=0` makes the emulator's virtual clock advance 1 ns per instruction, so the
board's 25 MHz CMSDK timer ticks once every 40 instructions: `instructions` per invoke are
timer ticks x 40 (40-instruction resolution). QEMU is not cycle-accurate; these are instruction
counts, not device time (see firmware/latency.py for predicted milliseconds).

Firmware builds are cached by the SHA-256 of the generated project (same model and options ->
same bytes) under ${EDGECONV_FIRMWARE_CACHE:-~/.cache/edgeconv/firmware}.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeconv.core.errors import InputError, MissingRuntime

QEMU_MACHINES = {"cortex-m4": "mps2-an386", "cortex-m7": "mps2-an500"}
DEVICE_KINDS = {f"qemu-{cpu}": cpu for cpu in QEMU_MACHINES}
INSTRUCTIONS_PER_TICK = 40  # 25 MHz timer, 1 ns of virtual time per instruction (-icount shift=0)
EXIT_CODES = {
    3: "model array corrupt",
    4: "arena too small",
    5: "op resolver",
    6: "invoke failed",
    7: "file I/O",
    9: "fault",
}


@dataclass(frozen=True)
class FirmwareRun:
    outputs: list[np.ndarray]  # per model output: (samples, bytes) int8
    arena_bytes: int
    arena_used_bytes: int
    instructions: list[int]  # per invoke
    stack_bytes: int  # deepest stack use below main's frame (painted, emulator build)
    seconds: float  # wall time of the emulator run
    layer_instructions: list[tuple[str, int]] = field(default_factory=list)  # per operator: (op, per invoke)
    log: str = ""  # the emulator's stdout + stderr (TFLM's MicroPrintf goes to stderr)

    @property
    def median_instructions(self) -> int:
        return int(sorted(self.instructions)[len(self.instructions) // 2]) if self.instructions else 0


def find_qemu_system() -> str:
    qemu = os.environ.get("EDGECONV_QEMU_SYSTEM_ARM") or shutil.which("qemu-system-arm")
    if not qemu:
        raise MissingRuntime(
            "device qemu-cortex-m: qemu-system-arm not found; install it with: apt-get install qemu-system-arm"
        )
    return qemu


def firmware_cache() -> Path:
    env = os.environ.get("EDGECONV_FIRMWARE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "edgeconv" / "firmware"


def build_firmware(
    model: bytes,
    cpu: str,
    kernels: str,
    where: str = "model",
    arena: int | None = None,
    analysis=None,
    exposed: bool = False,
) -> Path:
    """The compiled firmware folder for the model's int8 .tflite bytes (cached by project hash)."""
    from edgeconv.core.io import write_files_atomic
    from edgeconv.firmware import app, library

    lib = library.find(cpu, kernels)
    source = app.source_from_bytes(model, where, analysis, exposed)
    project = app.make_project(source, lib, arena)
    digest = hashlib.sha256()
    for name in sorted(project.files):
        digest.update(name.encode() + b"\0" + project.files[name] + b"\0")
    digest.update(json.dumps(library.cache_key(cpu, kernels), sort_keys=True).encode())
    folder = firmware_cache() / f"{cpu}-{kernels}-{digest.hexdigest()[:20]}"
    if (folder / app.ELF).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        write_files_atomic(work, project.files)
        app.compile_project(work, lib)
        work.chmod(0o755)
        try:
            work.rename(folder)
        except OSError:  # another process finished the same build first
            shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return folder


def _report(text: str) -> dict:
    info: dict = {"output_bytes": [], "ticks": [], "ops": []}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "output_bytes":
            info["output_bytes"].append(int(parts[1]))
        elif parts[0] == "invoke" and len(parts) == 4:
            info["ticks"].append(int(parts[3]))
        elif parts[0] == "op" and len(parts) == 4:  # op <index> <name> <ticks over all invokes>
            info["ops"].append((parts[2], int(parts[3])))
        elif parts[0] == "error":
            info["error"] = " ".join(parts[2:])
        elif len(parts) == 2 and parts[1].isdigit():
            info[parts[0]] = int(parts[1])
    return info


def run_elf(elf: Path, cpu: str, x_q: np.ndarray, timeout: float = 600) -> FirmwareRun:
    """Run the firmware on the emulated core with int8 samples x_q (N, ...)."""
    if cpu not in QEMU_MACHINES:
        raise InputError(
            f"device qemu-{cpu}: QEMU has no board for {cpu} here; expected one of {', '.join(QEMU_MACHINES)}"
        )
    qemu = find_qemu_system()
    x_q = np.ascontiguousarray(x_q)
    with tempfile.TemporaryDirectory(prefix="edgeconv-qemu-m-") as tmp:
        (Path(tmp) / "input.bin").write_bytes(x_q.tobytes())
        argv = [
            qemu,
            "-M",
            QEMU_MACHINES[cpu],
            "-cpu",
            cpu,
            "-nographic",
            "-monitor",
            "none",
            "-serial",
            "none",
            "-semihosting-config",
            "enable=on,target=native",
            "-icount",
            "shift=0",
            "-kernel",
            str(Path(elf).resolve()),
        ]
        start = time.perf_counter()
        try:
            proc = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise InputError(f"device qemu-{cpu}: the firmware did not finish within {timeout:g} s") from None
        seconds = time.perf_counter() - start
        report_path = Path(tmp) / "report.txt"
        info = _report(report_path.read_text(errors="replace")) if report_path.is_file() else {}
        if proc.returncode != 0:
            why = info.get("error") or EXIT_CODES.get(proc.returncode) or (proc.stderr or proc.stdout).strip()[-200:]
            raise InputError(f"device qemu-{cpu}: the firmware failed (exit {proc.returncode}: {why})")
        sizes = info.get("output_bytes", [])
        raw = np.fromfile(Path(tmp) / "output.bin", dtype=np.int8)
    n = x_q.shape[0]
    if not sizes or info.get("samples") != n or raw.size != n * sum(sizes):
        raise InputError(f"device qemu-{cpu}: the firmware ran {info.get('samples')} of {n} samples")
    per_sample = raw.reshape(n, sum(sizes))
    offsets = np.cumsum([0, *sizes])
    outputs = [per_sample[:, offsets[k] : offsets[k + 1]] for k in range(len(sizes))]
    return FirmwareRun(
        outputs,
        int(info["arena_bytes"]),
        int(info["arena_used_bytes"]),
        [t * INSTRUCTIONS_PER_TICK for t in info["ticks"]],
        int(info.get("stack_bytes", 0)),
        seconds,
        [(op, round(ticks * INSTRUCTIONS_PER_TICK / n)) for op, ticks in info["ops"]],
        (proc.stdout or "") + (proc.stderr or ""),
    )


# -- validate --device qemu-cortex-m4 ---------------------------------------------------------------


def note(cpu: str, kernels: str) -> str:
    return (
        f"qemu-{cpu}: TFLM firmware with {kernels} kernels on qemu-system-arm -M {QEMU_MACHINES[cpu]} "
        "(semihosting I/O, -icount shift=0), compared with the tflm golden (tflite rounding family); "
        "instruction counts, not device time"
    )


def run_bundle(bundle, out: Path, cpu: str, kernels: str, timeout: float) -> None:
    """Run an mcu bundle's int8 .tflite as firmware; write result.json / outputs.npy like runner.py."""
    from edgeconv.core.tensors import load_npy
    from edgeconv.export.expose import tflite_with_outputs

    m = bundle.manifest
    if m["runtime"]["kind"] != "tflite_micro":
        raise InputError(
            f"--device qemu-{cpu} runs TFLite Micro bundles (target mcu); this bundle is for target "
            f"{m['target']['name']} ({m['runtime']['kind']}); bundle --target mcu"
        )
    from edgeconv.firmware import app

    model = (bundle.folder / m["artifact"]).read_bytes()
    analysis = app.source_from_bytes(model, m["artifact"]).analysis  # of the graph as exported
    extra = list(m.get("extra_outputs") or [])
    if extra:
        model = tflite_with_outputs(model, [m["output"]["name"]] + [e["name"] for e in extra])
    x = load_npy(bundle.folder / m["input"]["file"], "bundle inputs")
    if x.dtype != np.int8:
        raise InputError(f"bundle inputs: {x.dtype}, expected int8 for a TFLite Micro target")
    elf_folder = build_firmware(model, cpu, kernels, m["artifact"], analysis=analysis, exposed=bool(extra))
    run = run_elf(elf_folder / "firmware.elf", cpu, x, timeout)
    predicted = app.predicted_arena(app.source_from_bytes(model, m["artifact"], analysis, bool(extra)), kernels)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "outputs.npy", run.outputs[0], allow_pickle=False)
    for spec, y in zip(extra, run.outputs[1:]):
        np.save(out / spec["file"], y, allow_pickle=False)
    result = {
        "format": 1,
        "model": m.get("model"),
        "target": m["target"]["name"],
        "manifest_sha256": hashlib.sha256((bundle.folder / "manifest.json").read_bytes()).hexdigest(),
        "runtime": {
            "kind": "tflite_micro",
            "name": "TFLite Micro firmware",
            "version": f"on qemu-system-arm -M {QEMU_MACHINES[cpu]}",
        },
        "kernels": kernels,
        "machine": cpu,
        "samples": int(x.shape[0]),
        "timings": {
            "emulator_s": round(run.seconds, 3),
            "instructions_per_invoke": run.median_instructions,
            "arena_used_bytes": run.arena_used_bytes,
            "arena_bytes": run.arena_bytes,
            "arena_predicted_32bit": predicted[0] if predicted else None,
            "stack_bytes": run.stack_bytes,
            "layer_instructions": [{"op": op, "instructions": n} for op, n in run.layer_instructions],
        },
    }
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
