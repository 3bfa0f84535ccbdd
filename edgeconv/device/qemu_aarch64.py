"""Device `qemu-aarch64`: the runner with an aarch64 Python under qemu-aarch64-static, from the
userland scripts/build_aarch64_userland.sh builds; LiteRT's reference kernels only."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from edgeconv.core.errors import MissingRuntime, UsageError
from edgeconv.device.bundle import Bundle
from edgeconv.device.process import RunPlan, own_runner, run_command, runner_failed

QEMU_NOTE = (
    "qemu-aarch64: ran LiteRT's reference kernels (BUILTIN_REF, tflite rounding family) on an aarch64 "
    "build of the runtime under qemu-aarch64-static -cpu cortex-a72, compared with the litert_ref golden; "
    "the optimized kernels are not trusted under Debian 12's qemu-user (XNNPACK gave wrong numbers with "
    "qemu's default -cpu max)"
)


def find_qemu() -> tuple[str, Path, Path]:
    """(qemu binary, userland root, its python) or MissingRuntime saying how to get them."""
    qemu = os.environ.get("EDGECONV_QEMU") or shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
    if not qemu:
        raise MissingRuntime(
            "device qemu-aarch64: qemu-aarch64-static not found; install it with: apt-get install qemu-user-static"
        )
    root = Path(os.environ.get("EDGECONV_AARCH64_ROOT") or Path.home() / ".cache" / "edgeconv" / "aarch64")
    pythons = sorted((root / "usr" / "bin").glob("python3.[0-9]*"))
    pythons = [p for p in pythons if re.fullmatch(r"python3\.\d+", p.name)]
    if not pythons:
        raise MissingRuntime(
            f"device qemu-aarch64: no aarch64 userland in {root}; build it with: "
            "scripts/build_aarch64_userland.sh (or set EDGECONV_AARCH64_ROOT)"
        )
    return qemu, root, pythons[-1]


def run_qemu(bundle: Bundle, out: Path, timeout: float, plan: RunPlan | None = None) -> Path:
    if bundle.manifest["runtime"]["kind"] != "litert":
        raise UsageError(
            f"--device qemu-aarch64 runs LiteRT bundles only (its userland has ai-edge-litert and "
            f"numpy); this bundle is for target {bundle.manifest['target']['name']} "
            f"({bundle.manifest['runtime']['kind']}); bundle --target arm, or use --device local/ssh://"
        )
    qemu, root, python = find_qemu()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", "/")}
    # -cpu cortex-a72 matches the aarch64 /proc/cpuinfo the userland script writes into root
    # (LiteRT's cpuinfo reads it; the host's x86 one makes it crash, see the script)
    argv = [
        qemu,
        "-cpu",
        "cortex-a72",
        "-L",
        str(root),
        str(python),
        "-I",
        str(own_runner()),
        str(bundle.folder),
        *RunPlan("reference", plan.options if plan else {}).argv(),
        "--out",
        str(out),
    ]
    proc = run_command(argv, timeout, "device qemu-aarch64: the runner", env)
    if proc.returncode != 0:
        raise runner_failed("qemu-aarch64", proc)
    return out
