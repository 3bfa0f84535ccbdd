"""Fleet runs: `edgeconv validate BUNDLE... --devices fleet.toml [--jobs N] [--retries K]`.

Every (device, bundle) pair is one job, run as its own `python -m edgeconv validate BUNDLE
--device SPEC --json` process (in a new session, so it can be cut off with its children
without touching the others; labgrid's gRPC state stays per process). A device runs one job at
a time (a board is never shared, and a labgrid place queues anyway); at most N devices run at
once. Each job's outcome is one of

  pass   every check passed                                   (the job exits 0)
  fail   a check failed: a numeric verdict, never retried     (1)
  infra  the device, not the numbers: unreachable, place not  (75, DeviceUnavailable; also a
         acquired within --wait, copy failed, timed out        job cut off at its deadline)
  error  bad input or usage, missing runtime, internal error  (2, 3)

infra outcomes are retried up to --retries times (1 s apart); the report keeps every attempt.
A job's hard deadline is its device's wait + timeout + connect_timeout + 30 s; past it the job
gets SIGTERM (it releases its labgrid place), then SIGKILL after KILL_GRACE_S.
The fleet's exit code: 2 if any job is an error, else 1 if any failed, else 75 if any had an
infrastructure failure, else 0.

fleet.toml: top-level keys are defaults for every device, each [[device]] table one device:

    timeout = 300              # s, the run timeout on the device
    coordinator = "lab:20408"  # labgrid coordinator (else --coordinator / $LG_COORDINATOR)

    [[device]]
    spec = "local"

    [[device]]
    name = "rpi4"              # the row label (default: the spec)
    spec = "labgrid://?tags=board=rpi4"
    wait = 120                 # s to wait for a free place

Device keys: spec (required), name, timeout, wait, connect_timeout, identity, known_hosts,
python, coordinator.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

from edgeconv.core.errors import DeviceUnavailable, InputError, UsageError

PASS, FAIL, INFRA, ERROR = "pass", "fail", "infra", "error"
EXIT_INFRA = DeviceUnavailable.exit_code
KILL_GRACE_S = 20.0
RETRY_DELAY_S = 1.0
POLL_S = 0.05
MAX_JOBS = 256
MAX_RETRIES = 10
_KEYS: dict[str, type | tuple[type, ...]] = {
    "spec": str,
    "name": str,
    "timeout": (int, float),
    "wait": (int, float),
    "connect_timeout": int,
    "identity": str,
    "known_hosts": str,
    "python": str,
    "coordinator": str,
}


@dataclass(frozen=True)
class FleetDevice:
    spec: str
    name: str = ""
    timeout: float = 600.0
    wait: float = 60.0
    connect_timeout: int = 10
    identity: str | None = None
    known_hosts: str | None = None
    python: str | None = None
    coordinator: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.spec

    def deadline_s(self) -> float:
        wait = self.wait if self.spec.startswith("labgrid://") else 0.0
        return wait + self.timeout + self.connect_timeout + 30.0


def check_device(device: FleetDevice, where: str) -> FleetDevice:
    """Parse the spec and check the numbers now, so a typo fails before any job starts."""
    from edgeconv.device.labgrid import check_wait, coordinator_address, is_labgrid, parse_labgrid
    from edgeconv.device.validate import parse_device

    if is_labgrid(device.spec):
        parse_labgrid(device.spec)
        check_wait(device.wait)
        coordinator_address(device.coordinator)
    else:
        parse_device(device.spec)
    if not (0 < device.timeout <= 7 * 24 * 3600):
        raise UsageError(f"{where}: timeout: expected 0 to 604800 s, got {device.timeout}")
    if not 1 <= device.connect_timeout <= 3600:
        raise UsageError(f"{where}: connect_timeout: expected 1 to 3600 s, got {device.connect_timeout}")
    return device


def load_fleet(path: str | Path, base: FleetDevice) -> list[FleetDevice]:
    """The devices of a fleet.toml; `base` carries the command line's values as defaults."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"--devices: {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise InputError(f"--devices: {path} is not readable TOML ({' '.join(str(err).split())[:200]})") from None
    tables = data.pop("device", None)
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise InputError(f'--devices: {path} has no [[device]] tables (each with spec = "local" | "ssh://..." | ...)')
    defaults = _typed(data, f"--devices: {path}", top=True)
    devices = []
    for i, table in enumerate(tables, 1):
        where = f"--devices: {path}: device {i}"
        values = {**defaults, **_typed(table, where, top=False)}
        if "spec" not in values:
            raise InputError(f'{where}: no spec (expected spec = "local" | "ssh://user@host" | "labgrid://PLACE" ...)')
        devices.append(check_device(replace(base, **values), where))
    labels = [d.label for d in devices]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise InputError(f"--devices: {path}: device names must differ (give each a name =): {', '.join(dupes)}")
    return devices


def _typed(table: dict, where: str, top: bool) -> dict:
    out = {}
    for key, value in table.items():
        if key not in _KEYS or (top and key in ("spec", "name")):
            allowed = sorted(k for k in _KEYS if not (top and k in ("spec", "name")))
            raise InputError(f"{where}: unknown key {key!r} (expected one of {', '.join(allowed)})")
        want = _KEYS[key]
        if isinstance(value, bool) or not isinstance(value, want):
            raise InputError(f"{where}: {key} = {value!r}: expected {'a string' if want is str else 'a number'}")
        out[key] = float(value) if key in ("timeout", "wait") else value  # type: ignore[arg-type]
    return out


# -- one job --------------------------------------------------------------------------------------


@dataclass
class Attempt:
    status: str
    exit_code: int | None
    seconds: float
    message: str

    def to_json(self) -> dict:
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "seconds": round(self.seconds, 3),
            "message": self.message,
        }


@dataclass
class JobResult:
    device: FleetDevice
    bundle: str
    attempts: list[Attempt] = field(default_factory=list)
    report: dict | None = None

    @property
    def status(self) -> str:
        return self.attempts[-1].status if self.attempts else ERROR

    @property
    def message(self) -> str:
        return self.attempts[-1].message if self.attempts else "not run"

    @property
    def seconds(self) -> float:
        return sum(a.seconds for a in self.attempts)

    def to_json(self) -> dict:
        return {
            "device": self.device.label,
            "spec": self.device.spec,
            "bundle": self.bundle,
            "status": self.status,
            "message": self.message,
            "seconds": round(self.seconds, 3),
            "attempts": [a.to_json() for a in self.attempts],
            "labgrid": (self.report or {}).get("labgrid"),
            "report": self.report,
        }


def job_argv(device: FleetDevice, bundle: str, target: str | None, verify_key: str | None) -> list[str]:
    argv = [sys.executable, "-m", "edgeconv", "validate", bundle, "--device", device.spec, "--json"]
    argv += ["--timeout", repr(float(device.timeout)), "--connect-timeout", str(device.connect_timeout)]
    for flag, value in (
        ("--identity", device.identity),
        ("--known-hosts", device.known_hosts),
        ("--python", device.python),
        ("--target", target),
        ("--verify", verify_key),
    ):
        if value:
            argv += [flag, value]
    if device.spec.startswith("labgrid://"):
        argv += ["--wait", repr(float(device.wait))]
        if device.coordinator:
            argv += ["--coordinator", device.coordinator]
    return argv


def _error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("edgeconv: error:")]
    line = errors[-1] if errors else (lines[-1] if lines else "no output")
    return line.removeprefix("edgeconv: error:").strip()[:400]


def classify(code: int, stdout: str, stderr: str, cut_off: str | None) -> tuple[Attempt, dict | None]:
    """A finished job process -> (attempt without its time, the device's JSON report or None)."""
    report = None
    if code in (0, 1):
        try:
            report = json.loads(stdout)
        except ValueError:
            report = None
    if cut_off:
        return Attempt(INFRA, code, 0.0, cut_off), report
    if code == 0 and report is not None:
        return Attempt(PASS, 0, 0.0, "all checks passed"), report
    if code == 1 and report is not None:
        failed = [c["name"] for c in report.get("checks", []) if not c.get("passed")]
        return Attempt(FAIL, 1, 0.0, "failed: " + ", ".join(failed)), report
    if code == EXIT_INFRA:
        return Attempt(INFRA, code, 0.0, _error_line(stderr)), None
    if code < 0 or code >= 128:  # killed by a signal from outside (not by us)
        return Attempt(INFRA, code, 0.0, f"the job was killed (exit {code}): {_error_line(stderr)}"), None
    return Attempt(ERROR, code, 0.0, _error_line(stderr)), None


@dataclass
class _Running:
    result: JobResult
    proc: subprocess.Popen
    started: float
    deadline: float
    out: BinaryIO
    err: BinaryIO
    cut_off: str | None = None
    term_sent: float | None = None


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # the job is its own session leader: its ssh/scp children too


# -- the run --------------------------------------------------------------------------------------


@dataclass
class FleetReport:
    devices: list[FleetDevice]
    bundles: list[str]
    results: list[JobResult]
    jobs: int
    retries: int
    wall_s: float

    def result(self, device: FleetDevice, bundle: str) -> JobResult | None:
        for r in self.results:
            if r.device is device and r.bundle == bundle:
                return r
        return None

    def counts(self) -> dict[str, int]:
        out = {PASS: 0, FAIL: 0, INFRA: 0, ERROR: 0}
        for r in self.results:
            out[r.status] += 1
        return out

    @property
    def exit_code(self) -> int:
        c = self.counts()
        if c[ERROR]:
            return 2
        if c[FAIL]:
            return 1
        if c[INFRA]:
            return EXIT_INFRA
        return 0

    def bundle_labels(self) -> dict[str, str]:
        names = [Path(b).name for b in self.bundles]
        return {b: (Path(b).name if names.count(Path(b).name) == 1 else b) for b in self.bundles}

    def to_json(self) -> dict:
        return {
            "devices": [{"name": d.label, "spec": d.spec, "timeout": d.timeout} for d in self.devices],
            "bundles": self.bundles,
            "jobs": self.jobs,
            "retries": self.retries,
            "wall_s": round(self.wall_s, 3),
            "counts": self.counts(),
            "exit_code": self.exit_code,
            "results": [r.to_json() for r in self.results],
        }

    def _cell(self, r: JobResult | None) -> str:
        if r is None:
            return "-"
        tries = f", {len(r.attempts)} tries" if len(r.attempts) > 1 else ""
        if r.status in (PASS, FAIL) and r.report:
            lsb = (r.report.get("vs_golden") or {}).get("max_lsb")
            return f"{r.status.upper()} {lsb} LSB {r.seconds:.1f} s{tries}"
        return f"{r.status.upper()} {r.seconds:.1f} s{tries}"

    def table_rows(self) -> list[list[str]]:
        labels = self.bundle_labels()
        rows = [["device", *[labels[b] for b in self.bundles]]]
        for d in self.devices:
            rows.append([d.label, *[self._cell(self.result(d, b)) for b in self.bundles]])
        return rows

    def problems(self) -> list[str]:
        labels = self.bundle_labels()
        return [
            f"{r.device.label} x {labels[r.bundle]}: {r.status}: {r.message}" for r in self.results if r.status != PASS
        ]

    def to_text(self) -> str:
        rows = self.table_rows()
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [
            f"fleet: {len(self.bundles)} bundle(s) x {len(self.devices)} device(s), --jobs {self.jobs}, "
            f"--retries {self.retries}: wall {self.wall_s:.1f} s"
        ]
        for i, row in enumerate(rows):
            lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
            if i == 0:
                lines.append("  " + "  ".join("-" * w for w in widths))
        for r in self.results:
            lab = (r.report or {}).get("labgrid")
            if lab:
                lines.append(
                    f"  {r.device.label}: labgrid place {lab['place']}, resource {lab['resource']} "
                    f"(exporter {lab['exporter']}), waited {lab['waited_s']:.2f} s"
                )
        lines += [f"  {p}" for p in self.problems()]
        c = self.counts()
        lines.append(
            f"{c[PASS]} pass, {c[FAIL]} fail, {c[INFRA]} infrastructure, {c[ERROR]} error: exit {self.exit_code}"
        )
        return "\n".join(lines)

    def to_markdown(self) -> str:
        rows = self.table_rows()
        out = [
            "# edgeconv fleet validation",
            "",
            f"{len(self.bundles)} bundle(s) x {len(self.devices)} device(s), --jobs {self.jobs}, "
            f"--retries {self.retries}, wall {self.wall_s:.1f} s, exit {self.exit_code}.",
            "",
            "| " + " | ".join(rows[0]) + " |",
            "|" + "|".join("---" for _ in rows[0]) + "|",
        ]
        out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows[1:]]
        problems = self.problems()
        if problems:
            out += ["", "## Not passed", ""] + [f"- {p.replace('|', '/')}" for p in problems]
        return "\n".join(out) + "\n"

    def to_junit(self) -> bytes:
        labels = self.bundle_labels()
        root = ET.Element("testsuites", name="edgeconv fleet", time=f"{self.wall_s:.3f}")
        for d in self.devices:
            results = [r for r in self.results if r.device is d]
            suite = ET.SubElement(
                root,
                "testsuite",
                name=d.label,
                tests=str(len(results)),
                failures=str(sum(r.status == FAIL for r in results)),
                errors=str(sum(r.status in (INFRA, ERROR) for r in results)),
                skipped="0",
                time=f"{sum(r.seconds for r in results):.3f}",
            )
            props = ET.SubElement(suite, "properties")
            ET.SubElement(props, "property", name="spec", value=d.spec)
            for r in results:
                lab = (r.report or {}).get("labgrid")
                if lab:
                    for key in ("place", "exporter", "resource"):
                        ET.SubElement(props, "property", name=f"labgrid.{key}", value=str(lab[key]))
                    break
            classname = "edgeconv.fleet." + re.sub(r"[^A-Za-z0-9_.-]+", "_", d.label)
            for r in results:
                case = ET.SubElement(
                    suite, "testcase", classname=classname, name=labels[r.bundle], time=f"{r.seconds:.3f}"
                )
                if r.status == FAIL:
                    ET.SubElement(case, "failure", message=r.message, type="ValidationCheckFailed").text = "\n".join(
                        f"{c['name']}: {c['message']}"
                        for c in (r.report or {}).get("checks", [])
                        if not c.get("passed")
                    )
                elif r.status in (INFRA, ERROR):
                    kind = "InfrastructureFailure" if r.status == INFRA else "Error"
                    ET.SubElement(case, "error", message=r.message, type=kind).text = "\n".join(
                        f"attempt {i}: {a.status}: {a.message}" for i, a in enumerate(r.attempts, 1)
                    )
        tree = ET.ElementTree(root)
        ET.indent(tree)
        return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def run_fleet(
    bundles: list[str],
    devices: list[FleetDevice],
    jobs: int = 1,
    retries: int = 0,
    target: str | None = None,
    verify_key: str | None = None,
    log=None,
) -> FleetReport:
    """Run every bundle on every device, at most `jobs` devices at once, one job per device at a
    time; infrastructure failures are retried up to `retries` times."""
    if not 1 <= jobs <= MAX_JOBS:
        raise UsageError(f"--jobs: expected 1 to {MAX_JOBS}, got {jobs}")
    if not 0 <= retries <= MAX_RETRIES:
        raise UsageError(f"--retries: expected 0 to {MAX_RETRIES}, got {retries}")
    for b in bundles:
        if not Path(b).is_file():
            raise InputError(f"validate: bundle {b} does not exist (expected a .tar.gz from edgeconv bundle)")
    log = log or (lambda message: None)
    start = time.monotonic()
    results = {(i, b): JobResult(d, b) for i, d in enumerate(devices) for b in bundles}
    queues = {i: deque((b, 0.0) for b in bundles) for i in range(len(devices))}  # (bundle, not before)
    running: dict[int, _Running] = {}
    with tempfile.TemporaryDirectory(prefix="edgeconv-fleet-") as tmp:
        serial = 0
        try:
            while any(queues.values()) or running:
                now = time.monotonic()
                for i, device in enumerate(devices):
                    if i in running or not queues[i] or len(running) >= jobs:
                        continue
                    bundle, not_before = queues[i][0]
                    if now < not_before:
                        continue
                    queues[i].popleft()
                    serial += 1
                    out = open(Path(tmp) / f"{serial}.out", "w+b")  # noqa: SIM115 (closed in _finish)
                    err = open(Path(tmp) / f"{serial}.err", "w+b")  # noqa: SIM115
                    proc = subprocess.Popen(
                        job_argv(device, bundle, target, verify_key),
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=err,
                        start_new_session=True,
                    )
                    result = results[(i, bundle)]
                    log(f"fleet: {device.label} x {Path(bundle).name}: started (attempt {len(result.attempts) + 1})")
                    running[i] = _Running(result, proc, now, now + device.deadline_s(), out, err)
                for i, job in list(running.items()):
                    code = job.proc.poll()
                    now = time.monotonic()
                    if code is None:
                        if job.term_sent is None and now > job.deadline:
                            job.cut_off = f"cut off after {now - job.started:.1f} s (device deadline {job.result.device.deadline_s():g} s)"
                            _signal_group(job.proc, signal.SIGTERM)
                            job.term_sent = now
                        elif job.term_sent is not None and now > job.term_sent + KILL_GRACE_S:
                            _signal_group(job.proc, signal.SIGKILL)
                        continue
                    del running[i]
                    attempt = _finish(job, code, now)
                    log(
                        f"fleet: {job.result.device.label} x {Path(job.result.bundle).name}: {attempt.status}: {attempt.message}"
                    )
                    if attempt.status == INFRA and len(job.result.attempts) <= retries:
                        queues[i].appendleft((job.result.bundle, now + RETRY_DELAY_S))
                time.sleep(POLL_S)
        except BaseException:
            # Ctrl-C / SIGTERM of the fleet: every job gets SIGTERM (each releases its place),
            # then SIGKILL for any still there after the grace period
            for job in running.values():
                _signal_group(job.proc, signal.SIGTERM)
            end = time.monotonic() + KILL_GRACE_S
            for job in running.values():
                try:
                    job.proc.wait(timeout=max(0.1, end - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _signal_group(job.proc, signal.SIGKILL)
                    job.proc.wait()
                job.out.close()
                job.err.close()
            raise
    order = [results[(i, b)] for i in range(len(devices)) for b in bundles]
    return FleetReport(devices, list(bundles), order, jobs, retries, time.monotonic() - start)


def _finish(job: _Running, code: int, now: float) -> Attempt:
    job.out.seek(0)
    job.err.seek(0)
    stdout = job.out.read().decode("utf-8", "replace")
    stderr = job.err.read().decode("utf-8", "replace")
    job.out.close()
    job.err.close()
    attempt, report = classify(code, stdout, stderr, job.cut_off)
    attempt.seconds = now - job.started
    job.result.attempts.append(attempt)
    if report is not None:
        job.result.report = report
    return attempt
