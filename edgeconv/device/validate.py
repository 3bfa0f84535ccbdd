"""`edgeconv validate`: run a bundle's runner on a device and judge its outputs like `parity`.

Devices:
  local               the runner in a subprocess of this machine's Python (sys.executable, or
                      EDGECONV_DEVICE_PYTHON / --python).
  ssh://[user@]host[:port]
                      the system ssh and scp (OpenSSH), never a shell: every argument is passed
                      as a list, the remote command is built with shlex.quote. Always
                      `-o BatchMode=yes -o ConnectTimeout=N -o StrictHostKeyChecking=accept-new`
                      plus keep-alives; optional identity file (--identity or EDGECONV_SSH_IDENTITY),
                      known-hosts file (--known-hosts or EDGECONV_SSH_KNOWN_HOSTS) and remote Python
                      (--python or EDGECONV_DEVICE_PYTHON, default python3). The verified bundle files
                      are copied into a fresh `mktemp -d` folder on the device, the runner runs there
                      under a run timeout, result.json and outputs.npy are fetched back, and the
                      folder is removed.
  qemu-aarch64        the runner with an aarch64 Python 3.11 under qemu-aarch64-static (Debian
                      package qemu-user-static; EDGECONV_QEMU to override) from the userland that
                      scripts/build_aarch64_userland.sh builds (EDGECONV_AARCH64_ROOT, default
                      ~/.cache/edgeconv/aarch64). The runner runs with --kernels reference (LiteRT's
                      reference kernels, compared with the litert_ref golden) and the report says
                      so: the optimized kernels are not trusted under Debian 12's qemu-user.
                      LiteRT bundles only (the userland carries ai-edge-litert and numpy).

A bundle is data, never code: every device runs the runner.py of the installed edgeconv (copied
to the device; the bundle's own copy is never executed), with the runtime options and kernels
of the installed target profile (a bundle's options could name a library to load), and the
verdict uses that profile's tolerance, not the bundle's tolerance.json (which only says how
many layers requantize, and the profile caps the allowance). The golden outputs and the float
reference are the bundle's: `--verify KEY` checks the bundle's Ed25519 signature over
manifest.json (and so over every member's hash) and refuses an unsigned or mis-signed bundle;
without a key the report says the numbers were taken on trust.

The comparison is parity's: the outputs against the expected golden of the kernels the runner
actually used (the bundle carries one per kernel family; same family, so the profile's policy,
exact for arm/cpu/mcu), and against float_reference.npy for SQNR and top-1 agreement.

The device kinds live in one module each (local.py, ssh.py, qemu_aarch64.py, cortex_m.py,
labgrid.py); this module parses --device, runs the bundle on the chosen one and judges.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeconv.core.errors import InputError, UsageError
from edgeconv.device.bundle import (
    FLOAT_REFERENCE,
    GOLDENS,
    RUNTIME_KIND,
    Bundle,
    expected_name,
    golden_for_kernels,
    load_verify_key,
    open_bundle,
    verify_signature,
)
from edgeconv.device.local import run_local
from edgeconv.device.process import RunPlan
from edgeconv.device.qemu_aarch64 import QEMU_NOTE, find_qemu, run_qemu
from edgeconv.device.ssh import DEFAULT_CONNECT_TIMEOUT, SshDevice, SshOptions
from edgeconv.parity import metrics
from edgeconv.parity.policy import Check, allowed_lsb, lsb_check, softmax_head_checks, sqnr_check, top1_check
from edgeconv.parity.report import fmt_number, json_number
from edgeconv.quant.params import TensorQuant

DEFAULT_TIMEOUT = 600.0
MAX_TIMEOUT = 7 * 24 * 3600.0
MAX_CONNECT_TIMEOUT = 3600
MAX_RESULT_BYTES = 64 * 2**20
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]+\])$")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Device:
    kind: str  # "local" | "ssh" | "qemu-aarch64"
    user: str | None = None
    host: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        if self.kind != "ssh":
            return self.kind
        return f"ssh://{self.user + '@' if self.user else ''}{self.host}{':' + str(self.port) if self.port else ''}"

    @property
    def destination(self) -> str:
        host = self.host.strip("[]") if self.host else ""
        return f"{self.user}@{host}" if self.user else host


def parse_device(spec: str) -> Device:
    usage = f"--device: expected local, ssh://user@host[:port], qemu-aarch64 or qemu-cortex-m4/-m7, got {spec!r}"
    if spec == "local":
        return Device("local")
    if spec.startswith("qemu-cortex-"):  # TFLM firmware on an emulated Cortex-M (device/cortex_m.py)
        from edgeconv.device.cortex_m import DEVICE_KINDS

        if spec not in DEVICE_KINDS:
            raise UsageError(
                f"--device: expected one of {', '.join(DEVICE_KINDS)} for an emulated Cortex-M, got {spec!r}"
            )
        return Device(spec)
    if spec in ("qemu-aarch64", "qemu"):
        return Device("qemu-aarch64")
    if not spec.startswith("ssh://"):
        raise UsageError(usage)
    rest = spec[len("ssh://") :].rstrip("/")
    user = None
    if "@" in rest:
        user, rest = rest.rsplit("@", 1)
        if not _USER.match(user):
            raise UsageError(f"{usage} (user name {user!r} is not a plain login name)")
    port = None
    m = re.match(r"^(\[[^\]]*\]|[^:]*)(?::(\d+))?$", rest, re.ASCII)  # ASCII: not port '２２'
    if not m or not m.group(1) or not _HOST.match(m.group(1)):
        raise UsageError(f"{usage} (host {rest!r} is not a host name or address)")
    if m.group(2) is not None:
        port = int(m.group(2))
        if not 1 <= port <= 65535:
            raise UsageError(f"{usage} (port {port} is out of range 1-65535)")
    return Device("ssh", user, m.group(1), port)


# -- the report -------------------------------------------------------------------------------------


@dataclass
class ValidationReport:
    model: str
    target: str
    device: str
    bundle: str
    runtime: dict
    kernels: str
    golden: str
    machine: str
    samples: int
    timings: dict
    float_stats: metrics.FloatStats
    lsb_stats: metrics.LsbStats
    checks: list[Check]
    other_goldens: dict = field(default_factory=dict)  # max LSB against the other variants
    note: str | None = None
    versions: dict = field(default_factory=dict)
    seconds: float = 0.0
    signature: str = "unsigned"  # "verified (key ID)", "signed, not verified", "unsigned"

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "target": self.target,
            "device": self.device,
            "bundle": self.bundle,
            "passed": self.passed,
            "runtime": self.runtime,
            "kernels": self.kernels,
            "golden": self.golden,
            "machine": self.machine,
            "samples": self.samples,
            "note": self.note,
            "signature": self.signature,
            "versions": self.versions,
            "timings": self.timings,
            "seconds": round(self.seconds, 3),
            "vs_float": {k: json_number(v) for k, v in self.float_stats.items()},
            "vs_golden": self.lsb_stats,
            "vs_other_goldens": self.other_goldens,
            "checks": [
                {
                    "name": c.name,
                    "passed": c.passed,
                    "value": json_number(c.value),
                    "limit": c.limit,
                    "message": c.message,
                }
                for c in self.checks
            ],
        }

    def to_text(self) -> str:
        rt = self.runtime
        lines = [
            f"validate {self.model} for {self.target} on {self.device}: {self.samples} samples, "
            f"{rt.get('name')} {rt.get('version')} ({self.kernels} kernels) on {self.machine}"
        ]
        if self.note:
            lines.append(f"  note: {self.note}")
        lines.append(
            f"  bundle signature: {self.signature}"
            + (
                ""
                if self.signature.startswith("verified")
                else ("; the golden outputs and float reference are the bundle's own (check them with --verify KEY)")
            )
        )
        t = self.timings
        lines.append(
            f"  device time: load {fmt_number(t.get('load_s'), '.3f')} s, run {fmt_number(t.get('total_s'), '.3f')} s "
            f"(median {fmt_number(t.get('median_ms'), '.2f')} ms per sample); wall {self.seconds:.1f} s"
        )
        lines.append(
            f"  vs {self.golden} golden: max {self.lsb_stats['max_lsb']} LSB, "
            f"{self.lsb_stats['share_differing']:.2%} of elements differ"
        )
        if self.other_goldens:
            lines.append(
                "  vs the other kernel families: "
                + ", ".join(f"{k} max {v} LSB" for k, v in self.other_goldens.items())
            )
        fs = self.float_stats
        lines.append(
            f"  vs float reference: SQNR {fmt_number(fs['sqnr_db'], '.2f')} dB, cosine {fmt_number(fs['cosine'], '.5f')}"
            + (f", top-1 {fs['top1_agreement']:.1%}" if fs.get("top1_agreement") is not None else "")
        )
        for c in self.checks:
            lines.append(f"  {c.name}: {'ok' if c.passed else 'FAILED'}: {c.message}")
        lines.append(f"{'PASS' if self.passed else 'FAIL'}")
        return "\n".join(lines)

    def to_junit(self) -> bytes:
        failures = sum(not c.passed for c in self.checks)
        suite = ET.Element(
            "testsuite",
            name=f"edgeconv validate {self.model} {self.target} {self.device}",
            tests=str(len(self.checks)),
            failures=str(failures),
            errors="0",
            skipped="0",
            time=f"{self.seconds:.3f}",
        )
        props = ET.SubElement(suite, "properties")
        for key, value in (
            ("device", self.device),
            ("machine", self.machine),
            ("kernels", self.kernels),
            ("runtime", f"{self.runtime.get('name')} {self.runtime.get('version')}"),
            ("golden", self.golden),
            ("note", self.note or ""),
            ("signature", self.signature),
        ):
            ET.SubElement(props, "property", name=key, value=str(value))
        device = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.device)
        for c in self.checks:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"edgeconv.device.validate.{self.model}.{self.target}.{device}",
                name=c.name,
                time=f"{self.seconds:.3f}",
            )
            if not c.passed:
                failure = ET.SubElement(case, "failure", message=c.message, type="ValidationCheckFailed")
                failure.text = c.message
        root = ET.Element("testsuites")
        root.append(suite)
        ET.indent(root)
        return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


# -- running on a device ----------------------------------------------------------------------------


# -- judging ----------------------------------------------------------------------------------------


def _load_result(out: Path, device: Device) -> tuple[dict, np.ndarray]:
    result_path, outputs_path = out / "result.json", out / "outputs.npy"
    for path in (result_path, outputs_path):
        if not path.is_file() or path.is_symlink():
            raise InputError(f"device {device}: the runner wrote no {path.name}")
        if path.stat().st_size > MAX_RESULT_BYTES:
            raise InputError(f"device {device}: {path.name} is over {MAX_RESULT_BYTES} bytes")
    from edgeconv.core.tensors import load_npy

    try:
        result = json.loads(result_path.read_bytes())
    except (ValueError, OSError, RecursionError) as err:
        raise InputError(f"device {device}: unreadable result ({' '.join(str(err).split())[:200]})") from None
    outputs = load_npy(outputs_path, f"device {device}: outputs.npy")
    if not isinstance(result, dict) or "kernels" not in result:
        raise InputError(f"device {device}: result.json is not a runner result")
    return result, outputs


def _load_extra(out: Path, device: Device, file: str) -> np.ndarray:
    path = out / file
    if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_RESULT_BYTES:
        raise InputError(f"device {device}: the runner wrote no usable {file}")
    from edgeconv.core.tensors import load_npy

    return load_npy(path, f"device {device}: {file}")


def _int8(q: np.ndarray) -> np.ndarray:
    if q.dtype == np.uint8:
        return (q.astype(np.int16) - 128).astype(np.int8)
    if q.dtype != np.int8:
        raise InputError(f"result: outputs.npy holds {q.dtype}, expected int8 or uint8 quantized outputs")
    return q


def profile_for(bundle: Bundle, target: str | None):
    """The installed target profile that judges the bundle: --target, else the built-in profile
    of the name in the manifest; it must describe the same backend, artifact and runtime."""
    from edgeconv.plan.targets import load_target, target_names

    m = bundle.manifest
    name = m["target"]["name"]
    if target is None:
        if name not in target_names():
            raise UsageError(
                f"validate: the bundle is for target {name[:60]!r}, not a built-in profile; pass the profile "
                "to judge it with: --target PROFILE.toml"
            )
        target = name
    profile = load_target(target)
    want = (profile.backend, profile.artifact, RUNTIME_KIND.get(profile.backend))
    got = (m["target"].get("backend"), m["target"].get("artifact"), m["runtime"].get("kind"))
    if want != got:
        raise UsageError(
            f"validate: profile {profile.name} is backend {want[0]}, artifact {want[1]}, runtime {want[2]}; "
            f"the bundle is backend {got[0]}, artifact {got[1]}, runtime {got[2]}"
        )
    if m["golden"] not in GOLDENS[profile.backend]:
        raise InputError(f"bundle: golden {m['golden']!r} is not one of {', '.join(GOLDENS[profile.backend])}")
    return profile


def run_plan(profile) -> RunPlan:
    """Kernels and runtime options from the installed profile (as `edgeconv bundle` records them)."""
    from edgeconv.device.bundle import _mcu_arena

    options = dict(profile.options)
    if profile.backend == "mcu":
        options["arena_bytes"] = _mcu_arena(options.get("arena"), profile)
    kernels = str(profile.option("kernels", "xnnpack")) if profile.backend == "arm" else "auto"
    return RunPlan(kernels, options)


def judge(
    bundle: Bundle,
    result: dict,
    outputs: np.ndarray,
    device: Device,
    note: str | None,
    seconds: float,
    extra: dict[str, np.ndarray] | None = None,
    profile=None,
    signature: str = "unsigned",
) -> ValidationReport:
    m, tol = bundle.manifest, bundle.tolerance
    profile = profile if profile is not None else profile_for(bundle, None)
    ptol = profile.tolerance
    target = m["target"]["name"]
    if result.get("manifest_sha256") != bundle.manifest_sha256:
        raise InputError(
            f"device {device}: the runner ran another manifest (SHA-256 "
            f"{str(result.get('manifest_sha256'))[:16]}..., sent {bundle.manifest_sha256[:16]}...)"
        )
    golden = golden_for_kernels(m, str(result["kernels"]))
    if expected_name(golden) not in m["files"]:
        raise InputError(f"bundle: has no {expected_name(golden)} for the {result['kernels']} kernels the runner used")
    want = bundle.array(expected_name(golden))
    got = _int8(np.asarray(outputs))
    if got.size != want.size:
        raise InputError(f"device {device}: outputs.npy has shape {got.shape}, expected {want.shape}")
    got = got.reshape(want.shape)
    lstats = metrics.lsb_stats(want, got)
    others = {}
    for variant in m.get("goldens", []):
        if variant != golden and expected_name(variant) in m["files"]:
            other = bundle.array(expected_name(variant))
            if other.shape == got.shape:
                others[variant] = metrics.lsb_stats(other, got)["max_lsb"]
    scale = np.float32(m["output"]["scale"][0])
    zp = int(m["output"]["zero_point_int8"][0])
    y = ((got.astype(np.int32) - zp).astype(np.float32) * scale).astype(np.float32)
    ref = bundle.array(FLOAT_REFERENCE)
    if ref.size != y.size:
        raise InputError(f"bundle: {FLOAT_REFERENCE} has shape {ref.shape}, the outputs {y.shape}")
    classifier = bool(tol.get("classifier"))
    fstats = metrics.float_stats(ref, y.reshape(ref.shape), classifier)
    # the allowance: the installed profile's policy and cap; the bundle only says how many layers
    # requantize, and min(count, cap) cannot exceed the profile's cap
    allowed = allowed_lsb(
        ptol.lsb_policy, ptol.max_lsb_vs_golden, int(tol["requantizing_layers"]), int(tol.get("bounded_layers", 0))
    )
    if tol.get("head"):
        head = tol["head"]
        logits_tq = TensorQuant(tuple(head["logits_scale"]), tuple(head["logits_zero_point_int8"]))
        if not extra or head["logits"] not in extra:
            raise InputError(f"device {device}: the runner wrote no logits {head['logits']!r}")
        logits_golden = bundle.array(expected_name(golden, head["logits"]))
        logits_got = _int8(np.asarray(extra[head["logits"]]))
        if logits_got.size != logits_golden.size:
            raise InputError(
                f"device {device}: the logits have shape {logits_got.shape}, expected {logits_golden.shape}"
            )
        checks = softmax_head_checks(
            target,
            golden,
            head["logits"],
            logits_golden,
            logits_got,
            logits_tq,
            got,
            m["output"]["name"],
            allowed_lsb(
                ptol.lsb_policy,
                ptol.max_lsb_vs_golden,
                int(head["requantizing_layers"]),
                int(head.get("bounded_layers", 0)),
            ),
            int(ptol.head_lsb),
            int(lstats["max_lsb"]),
        )
    else:
        checks = [lsb_check(target, int(lstats["max_lsb"]), allowed, f"{golden} golden reference")]
    checks.append(
        sqnr_check(target, float(fstats["sqnr_db"] or 0.0), float(ptol.min_sqnr_output_db))
    )  # the output floor; min_sqnr_db is the logits floor
    if classifier:
        checks.append(top1_check(target, float(fstats["top1_agreement"] or 0.0), float(ptol.min_top1_agreement)))
    runtime: dict = result["runtime"] if isinstance(result.get("runtime"), dict) else {}
    versions = {
        "bundle": m.get("versions", {}),
        "device": {
            "numpy": result.get("numpy"),
            "python": result.get("python"),
            "runtime": runtime.get("version"),
        },
        "profile": profile.source,
    }
    return ValidationReport(
        m["model"],
        target,
        str(device),
        str(bundle.folder),
        runtime,
        str(result["kernels"]),
        golden,
        str(result.get("machine")),
        int(result.get("samples", 0)),
        result.get("timings", {}) if isinstance(result.get("timings"), dict) else {},
        fstats,
        lstats,
        checks,
        others,
        note,
        versions,
        seconds,
        signature,
    )


def check_against_build(bundle: Bundle, build_dir: str | Path) -> str:
    """Recompute the bundle's golden outputs from a build folder on its own inputs and refuse a
    bundle whose artifact or goldens differ: the verdict then rests on edgeconv's numbers,
    not the bundle's. Returns the report's note."""
    import hashlib

    from edgeconv.artifacts.folder import ARTIFACT_FILES, load_build, to_int8_convention
    from edgeconv.quant.golden import run_int8

    build = load_build(build_dir)
    m = bundle.manifest
    kind = m["target"].get("artifact")
    if kind not in ARTIFACT_FILES:
        raise InputError(f"bundle: target artifact {kind!r} unknown")
    want = hashlib.sha256(build.artifact(kind).read_bytes()).hexdigest()
    derived = m.get("artifact_derived_from") if isinstance(m.get("artifact_derived_from"), dict) else None
    got = derived.get("sha256") if derived else m["files"].get(m["artifact"])
    if got != want:
        raise InputError(
            f"bundle: its artifact is not {build_dir}'s {ARTIFACT_FILES[kind]} (SHA-256 {str(got)[:16]}..., "
            f"the build's {want[:16]}...)"
        )
    x_q = bundle.array("inputs.npy")
    if x_q.ndim != 4 or x_q.dtype not in (np.int8, np.uint8):
        raise InputError(f"bundle: inputs.npy is {x_q.dtype} {x_q.shape}, expected int8/uint8 N x H x W x C")
    x_int8 = to_int8_convention(x_q)
    head = bundle.tolerance.get("head")
    for variant in m.get("goldens", []):
        name = expected_name(variant)
        if name not in m["files"]:
            continue
        outs = run_int8(build.analysis, build.qparams, x_int8, variant, keep_all=bool(head))
        checks = [(name, outs[build.analysis.model.output])]
        if head:
            checks.append((expected_name(variant, head["logits"]), outs[head["logits"]]))
        for file, mine in checks:
            theirs = bundle.array(file)
            if mine is None or theirs.shape != mine.shape or not np.array_equal(theirs, mine):
                raise InputError(
                    f"bundle: {file} differs from the {variant} golden recomputed from {build_dir}: refused"
                )
    return f"golden outputs recomputed from {build_dir} and equal to the bundle's"


def check_timeouts(timeout: float, connect_timeout: int | None = None) -> None:
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT):
        raise UsageError(f"--timeout: expected a number of seconds above 0 and at most {MAX_TIMEOUT:g}, got {timeout}")
    if connect_timeout is not None and not 1 <= connect_timeout <= MAX_CONNECT_TIMEOUT:
        raise UsageError(f"--connect-timeout: expected 1 to {MAX_CONNECT_TIMEOUT} seconds, got {connect_timeout}")


def validate(
    bundle_path: str | Path,
    device: Device | str,
    timeout: float = DEFAULT_TIMEOUT,
    ssh: SshOptions | None = None,
    python: str | None = None,
    target: str | None = None,
    verify_key: str | Path | None = None,
    build_dir: str | Path | None = None,
) -> ValidationReport:
    """Extract and verify the bundle, run edgeconv's runner on the device, compare with the
    installed profile's tolerance. Errors are one line."""
    if isinstance(device, str):
        device = parse_device(device)
    check_timeouts(timeout, ssh.connect_timeout if ssh else None)
    key = load_verify_key(verify_key) if verify_key is not None else None
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeconv-validate-") as tmp:
        folder = Path(tmp) / "bundle"
        folder.mkdir()
        bundle = open_bundle(bundle_path, folder)
        if key is not None:
            signature = f"verified (Ed25519 key {verify_signature(bundle, key)})"
        else:
            signature = "signed, not verified (no --verify key)" if bundle.signature is not None else "unsigned"
        profile = profile_for(bundle, target)
        plan = run_plan(profile)
        recomputed = check_against_build(bundle, build_dir) if build_dir is not None else None
        out = Path(tmp) / "result"
        note = None
        if device.kind == "local":
            run_local(bundle, out, plan, timeout, python)
        elif device.kind == "qemu-aarch64":
            run_qemu(bundle, out, timeout, plan)
            note = QEMU_NOTE
        elif device.kind.startswith("qemu-cortex-"):
            from edgeconv.device import cortex_m

            cpu, kernels = cortex_m.DEVICE_KINDS[device.kind], str(profile.option("kernels", "cmsis_nn"))
            cortex_m.run_bundle(bundle, out, cpu, kernels, timeout)
            note = cortex_m.note(cpu, kernels)
        else:
            run_ssh = SshDevice(device, ssh or SshOptions.from_env(python=python))
            run_ssh.run(bundle, out, plan, timeout)
        result, outputs = _load_result(out, device)
        extra = {
            spec["name"]: _load_extra(out, device, spec["file"]) for spec in bundle.manifest.get("extra_outputs") or []
        }
        if recomputed:
            note = f"{note}; {recomputed}" if note else recomputed
        return judge(bundle, result, outputs, device, note, time.perf_counter() - start, extra, profile, signature)


__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "Device",
    "SshOptions",
    "ValidationReport",
    "find_qemu",
    "parse_device",
    "validate",
]
