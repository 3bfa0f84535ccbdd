"""Device `ssh://[user@]host[:port]`: the system ssh and scp (OpenSSH) as argument lists, never a
shell; the bundle and edgeconv's runner are copied into a fresh `mktemp -d` folder, run under a
timeout, the result fetched back and the folder removed."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgeconv.core.errors import DeviceUnavailable, InputError
from edgeconv.device.bundle import Bundle
from edgeconv.device.process import RunPlan, last_line, own_runner, run_command, runner_failed

if TYPE_CHECKING:
    from edgeconv.device.validate import Device

DEFAULT_CONNECT_TIMEOUT = 10
REMOTE_RUNNER = "edgeconv-runner.py"  # beside the bundle folder on the device, never inside it
_REMOTE_DIR = re.compile(r"^/[A-Za-z0-9._/-]+$")


@dataclass(frozen=True)
class SshOptions:
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT
    identity: str | None = None
    known_hosts: str | None = None
    python: str = "python3"

    @classmethod
    def from_env(
        cls,
        connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
        identity: str | None = None,
        known_hosts: str | None = None,
        python: str | None = None,
    ) -> SshOptions:
        return cls(
            connect_timeout,
            identity or os.environ.get("EDGECONV_SSH_IDENTITY") or None,
            known_hosts or os.environ.get("EDGECONV_SSH_KNOWN_HOSTS") or None,
            python or os.environ.get("EDGECONV_DEVICE_PYTHON") or "python3",
        )

    def common(self) -> list[str]:
        args = [
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={int(self.connect_timeout)}",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ServerAliveCountMax=3",
            "-o",
            "LogLevel=ERROR",
        ]
        if self.identity:
            args += ["-o", "IdentitiesOnly=yes", "-i", self.identity]
        if self.known_hosts:
            args += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        return args


class SshDevice:
    """ssh/scp as argument lists; the one string that reaches the remote shell is built with shlex."""

    def __init__(self, device: Device, options: SshOptions):
        self.device, self.options = device, options

    def ssh_argv(self, *remote: str) -> list[str]:
        port = ["-p", str(self.device.port)] if self.device.port else []
        return ["ssh", *self.options.common(), *port, "--", self.device.destination, shlex.join(remote)]

    def scp_argv(self, sources: list[str], dest: str) -> list[str]:
        port = ["-P", str(self.device.port)] if self.device.port else []
        return ["scp", "-q", *self.options.common(), *port, "--", *sources, dest]

    def remote(self, path: str) -> str:
        """scp's user@host:path (an IPv6 address keeps its brackets)."""
        return f"{self.device.user + '@' if self.device.user else ''}{self.device.host}:{path}"

    def _check(self, proc: subprocess.CompletedProcess, what: str) -> None:
        if proc.returncode == 255:  # ssh's own failure: cannot connect, authenticate, ...
            raise DeviceUnavailable(f"device {self.device}: {what}: ssh failed: {last_line(proc.stderr) or 'exit 255'}")
        if proc.returncode != 0:
            raise (DeviceUnavailable if "(scp)" in what else InputError)(
                f"device {self.device}: {what} failed (exit {proc.returncode}): "
                f"{last_line(proc.stderr) or last_line(proc.stdout) or 'no output'}"
            )

    def run(self, bundle: Bundle, out: Path, plan: RunPlan | str, timeout: float) -> Path:
        if isinstance(plan, str):
            plan = RunPlan(plan, dict(bundle.manifest["runtime"].get("options") or {}))
        short = self.options.connect_timeout + 30
        proc = run_command(
            self.ssh_argv("mktemp", "-d", "/tmp/edgeconv-bundle.XXXXXXXX"), short, f"device {self.device}: connecting"
        )
        self._check(proc, "creating a work folder (mktemp -d)")
        workdir = last_line(proc.stdout)
        if not _REMOTE_DIR.match(workdir):
            raise InputError(f"device {self.device}: mktemp -d printed {workdir!r}, expected a folder path")
        try:
            remote_bundle = f"{workdir}/bundle"
            proc = run_command(self.ssh_argv("mkdir", "--", remote_bundle), short, f"device {self.device}: mkdir")
            self._check(proc, "creating the bundle folder (mkdir)")
            files = [str(bundle.folder / name) for name in sorted([*bundle.manifest["files"], "manifest.json"])]
            proc = run_command(
                self.scp_argv(files, self.remote(remote_bundle + "/")),
                timeout,
                f"device {self.device}: copying the bundle",
            )
            self._check(proc, "copying the bundle (scp)")
            # edgeconv's own runner, beside (not inside) the bundle folder
            proc = run_command(
                self.scp_argv([str(own_runner())], self.remote(f"{workdir}/{REMOTE_RUNNER}")),
                timeout,
                f"device {self.device}: copying the runner",
            )
            self._check(proc, "copying the runner (scp)")
            remote_out = f"{workdir}/result"
            proc = run_command(
                self.ssh_argv(
                    self.options.python,
                    f"{workdir}/{REMOTE_RUNNER}",
                    remote_bundle,
                    *plan.argv(),
                    "--out",
                    remote_out,
                ),
                timeout,
                f"device {self.device}: the runner",
            )
            if proc.returncode == 255:
                self._check(proc, "running the runner")
            if proc.returncode != 0:
                raise runner_failed(self.device, proc)
            out.mkdir(parents=True, exist_ok=True)
            fetch = [
                "result.json",
                "outputs.npy",
                *[spec["file"] for spec in bundle.manifest.get("extra_outputs") or []],
            ]
            proc = run_command(
                self.scp_argv([self.remote(f"{remote_out}/{name}") for name in fetch], str(out) + "/"),
                timeout,
                f"device {self.device}: fetching the result",
            )
            self._check(proc, "fetching the result (scp)")
        finally:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                subprocess.run(
                    self.ssh_argv("rm", "-rf", "--", workdir),
                    capture_output=True,
                    timeout=short,
                    stdin=subprocess.DEVNULL,
                )
        return out
