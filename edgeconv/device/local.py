"""Device `local`: the runner in a subprocess of this machine's Python (sys.executable, or
EDGECONV_DEVICE_PYTHON / --python), isolated (-I) and without the caller's PYTHONPATH."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from edgeconv.device.bundle import Bundle
from edgeconv.device.process import RunPlan, own_runner, run_command, runner_failed


def run_local(bundle: Bundle, out: Path, plan: RunPlan | str, timeout: float, python: str | None = None) -> Path:
    if isinstance(plan, str):
        plan = RunPlan(plan, dict(bundle.manifest["runtime"].get("options") or {}))
    python = python or os.environ.get("EDGECONV_DEVICE_PYTHON") or sys.executable
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    argv = [python, "-I", str(own_runner()), str(bundle.folder), *plan.argv(), "--out", str(out)]
    proc = run_command(argv, timeout, "device local: the runner", env)
    if proc.returncode != 0:
        raise runner_failed("local", proc)
    return out
