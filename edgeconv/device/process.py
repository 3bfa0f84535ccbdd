"""What every device kind shares: running a command under a timeout, the runner's error line,
the installed edgeconv's own runner.py, and the run plan validate hands it."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgeconv.core.errors import DeviceUnavailable, InputError, MissingRuntime


def last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def run_command(argv: list[str], timeout: float, what: str, env: dict | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:  # a hung device: infrastructure (exit 75), not a verdict
        raise DeviceUnavailable(f"{what}: did not finish within {timeout:g} s (raise --timeout)") from None
    except FileNotFoundError:
        raise MissingRuntime(f"{what}: {argv[0]} not found") from None


def runner_failed(device: object, proc: subprocess.CompletedProcess) -> InputError:
    # the runner's own error line ("runner: error: ...") rather than a runtime's INFO chatter
    lines = [line.strip() for line in (proc.stderr or "").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("runner: error:")]
    why = (errors[-1] if errors else None) or last_line(proc.stderr) or last_line(proc.stdout) or "no output"
    if proc.returncode < 0:
        why = f"killed by signal {-proc.returncode}" + (f" ({why})" if why != "no output" else "")
    return InputError(f"device {device}: the runner failed (exit {proc.returncode}): {why[:300]}")


def own_runner() -> Path:
    """The runner.py shipped with the installed edgeconv: the only runner validate executes."""
    from edgeconv.device import runner

    return Path(runner.__file__).resolve()


@dataclass(frozen=True)
class RunPlan:
    """What validate tells the runner, from the installed target profile (never the bundle)."""

    kernels: str
    options: dict

    def argv(self) -> list[str]:
        return ["--kernels", self.kernels, "--options", json.dumps(self.options, sort_keys=True)]
