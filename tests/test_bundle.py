"""Bundles and `edgeconv validate`: round trips on local, ssh:// (a real OpenSSH server on
127.0.0.1 started here) and qemu-aarch64; hostile bundles refused.

System requirements (CI installs them with .ci/setup-system.sh): openssh-server and
openssh-client for the ssh test, qemu-user-static and the userland of
scripts/build_aarch64_userland.sh for the qemu test. When one is missing its test is skipped
with a reason naming the package or the script.
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeconv.cli.device import bundle as bundle_cmd
from edgeconv.cli.device import validate as validate_cmd
from edgeconv.core.errors import CheckFailed, InputError, MissingRuntime, UsageError
from edgeconv.device.bundle import make_bundle, open_bundle, safe_extract, tar_gz
from edgeconv.device.validate import SshOptions, find_qemu, parse_device, validate

REPO = Path(__file__).resolve().parent.parent
SAMPLES = 8


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("build") / "resnet8"
    subprocess.run(
        [sys.executable, "-m", "edgeconv", "build", "--recipe", "resnet8", "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="module")
def arm_bundle(build_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("bundle") / "arm.tar.gz"
    result = CliRunner().invoke(
        bundle_cmd,
        [str(build_dir), "--target", "arm", "-o", str(path), "--samples", str(SAMPLES)],
        standalone_mode=False,
    )
    assert result.exception is None, result.output
    return path


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}


def _write_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


# -- the bundle itself -------------------------------------------------------------------------------


def test_bundle_layout_and_determinism(build_dir, arm_bundle, tmp_path):
    files = _members(arm_bundle)
    assert sorted(files) == sorted(
        [
            "manifest.json",
            "runner.py",
            "inputs.npy",
            "float_reference.npy",
            "tolerance.json",
            "model.int8.tflite",
            "expected_litert_xnnpack.npy",
            "expected_litert_builtin.npy",
            "expected_litert_ref.npy",
        ]
    )
    manifest = json.loads(files["manifest.json"])
    assert set(manifest["files"]) == set(files) - {"manifest.json"}
    assert manifest["versions"]["runtime"]["ai-edge-litert"]
    assert manifest["input"]["dtype"] == "int8" and manifest["input"]["shape"][0] == SAMPLES
    with tarfile.open(arm_bundle, "r:gz") as tar:
        infos = tar.getmembers()
    assert [m.name for m in infos] == sorted(m.name for m in infos)
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.isreg() for m in infos)
    assert arm_bundle.read_bytes()[4:8] == b"\0\0\0\0"  # gzip header mtime 0
    again = tmp_path / "again.tar.gz"
    CliRunner().invoke(
        bundle_cmd,
        [str(build_dir), "--target", "arm", "-o", str(again), "--samples", str(SAMPLES)],
        standalone_mode=False,
    )
    assert again.read_bytes() == arm_bundle.read_bytes()


def test_runner_imports_no_edgeconv():
    source = (REPO / "edgeconv" / "device" / "runner.py").read_text()
    tree = ast.parse(source)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "runner.py must not use relative imports"
            imported.add((node.module or "").split(".")[0])
    allowed_runtime = {"numpy", "ai_edge_litert", "onnxruntime", "onnxruntime_qnn", "tflite_micro"}
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    assert "edgeconv" not in imported
    assert imported <= stdlib | allowed_runtime, imported - stdlib - allowed_runtime


def test_runner_runs_with_edgeconv_unimportable(arm_bundle, tmp_path):
    """Run runner.py in a Python where `import edgeconv` fails (a meta-path blocker)."""
    folder = tmp_path / "b"
    folder.mkdir()
    safe_extract(arm_bundle, folder)
    blocker = (
        "import sys, runpy\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'edgeconv' or name.startswith('edgeconv.'):\n"
        "            raise ImportError('edgeconv is not installed on this device')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.argv = ['runner.py', {str(folder)!r}, '--out', {str(tmp_path / 'out')!r}]\n"
        f"runpy.run_path({str(folder / 'runner.py')!r}, run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, "-I", "-c", blocker], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["kernels"] == "xnnpack" and result["samples"] == SAMPLES
    assert np.load(tmp_path / "out" / "outputs.npy").shape[0] == SAMPLES


# -- round trips -------------------------------------------------------------------------------------


def _assert_exact(report, golden: str):
    assert report.passed, report.to_text()
    assert report.golden == golden
    assert report.lsb_stats["max_lsb"] == 0
    assert report.samples == SAMPLES


def test_round_trip_local(arm_bundle, tmp_path):
    report = validate(arm_bundle, "local")
    _assert_exact(report, "litert_xnnpack")
    assert report.kernels == "xnnpack"
    doc = report.to_json()
    assert doc["passed"] and doc["vs_golden"]["max_lsb"] == 0
    junit = report.to_junit().decode()
    assert junit.count("<testcase") == len(report.checks) and "<failure" not in junit


def test_validate_cli_outputs(arm_bundle, tmp_path):
    junit = tmp_path / "v.xml"
    result = CliRunner().invoke(
        validate_cmd, [str(arm_bundle), "--device", "local", "--json", "--junit", str(junit)], standalone_mode=False
    )
    assert result.exception is None, result.output
    doc = json.loads(result.output)
    assert doc["passed"] and doc["device"] == "local"
    assert junit.read_text().startswith("<?xml")


def test_failed_verdict_is_check_failed(arm_bundle, tmp_path):
    """A profile whose tolerance the bundle cannot meet exits 1 (CheckFailed), not 2: the
    verdict uses the installed profile given with --target, never the bundle's tolerance.json."""
    profile = tmp_path / "strict_arm.toml"
    text = re.sub(
        r"(?m)^min_sqnr_output_db = [0-9.]+", "min_sqnr_output_db = 1000.0", (REPO / "targets" / "arm.toml").read_text()
    )
    assert "min_sqnr_output_db = 1000.0" in text
    profile.write_text(text)
    result = CliRunner().invoke(
        validate_cmd, [str(arm_bundle), "--device", "local", "--target", str(profile)], standalone_mode=False
    )
    assert isinstance(result.exception, CheckFailed) and result.exception.exit_code == 1
    assert "sqnr_vs_float" in str(result.exception)


def _members_from_build(build_dir) -> dict[str, bytes]:
    from edgeconv.artifacts.folder import load_build
    from edgeconv.device.bundle import bundle_files
    from edgeconv.parity.run import parity_inputs
    from edgeconv.plan.targets import load_target

    build = load_build(build_dir)
    return bundle_files(build, load_target("arm"), parity_inputs(build.analysis, 4, 0), "test")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    sshd_bin = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
    if not sshd_bin or not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        pytest.skip("needs Debian's openssh-server and openssh-client (apt-get install openssh-server)")
    if os.geteuid() != 0:
        pytest.skip("the test sshd logs in as root on 127.0.0.1 (run as root, as CI does)")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
    d = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    port = _free_port()
    config = d / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {d / 'host_key'}",
                "UsePAM no",
                "PermitRootLogin yes",
                f"AuthorizedKeysFile {d / 'authorized_keys'}",
                "StrictModes no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "Subsystem sftp internal-sftp",  # scp (OpenSSH 9) copies over SFTP
                f"PidFile {d / 'sshd.pid'}",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    with open(d / "sshd.log", "wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sshd_bin, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"sshd exited: {(d / 'sshd.log').read_text()}")
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("sshd did not listen within 15 s")
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    options = SshOptions(
        connect_timeout=5, identity=str(d / "user_key"), known_hosts=str(d / "known_hosts"), python=sys.executable
    )
    yield f"ssh://{user}@127.0.0.1:{port}", options
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_round_trip_ssh(arm_bundle, sshd):
    device, options = sshd
    report = validate(arm_bundle, device, timeout=120, ssh=options)
    _assert_exact(report, "litert_xnnpack")
    assert report.device == device


def test_ssh_cli_options(arm_bundle, sshd, tmp_path):
    device, options = sshd
    result = CliRunner().invoke(
        validate_cmd,
        [
            str(arm_bundle),
            "--device",
            device,
            "--json",
            "--identity",
            options.identity,
            "--known-hosts",
            options.known_hosts,
            "--python",
            sys.executable,
            "--timeout",
            "120",
        ],
        standalone_mode=False,
    )
    assert result.exception is None, result.output
    assert json.loads(result.output)["passed"]


def test_ssh_failed_remote_run_is_one_line(arm_bundle, sshd):
    device, options = sshd
    bad = SshOptions(options.connect_timeout, options.identity, options.known_hosts, "/nonexistent/python3")
    with pytest.raises(InputError) as err:
        validate(arm_bundle, device, timeout=60, ssh=bad)
    assert "runner failed" in str(err.value) and "\n" not in str(err.value)


def test_ssh_unreachable_host_is_one_line(arm_bundle, tmp_path):
    if not shutil.which("ssh"):
        pytest.skip("needs openssh-client (apt-get install openssh-client)")
    port = _free_port()  # nothing listens there
    options = SshOptions(connect_timeout=3, known_hosts=str(tmp_path / "known_hosts"))
    start = time.monotonic()
    with pytest.raises(InputError) as err:
        validate(arm_bundle, f"ssh://nobody@127.0.0.1:{port}", timeout=30, ssh=options)
    message = str(err.value)
    assert "\n" not in message and f"127.0.0.1:{port}" in message and "refused" in message.lower()
    assert time.monotonic() - start < 30


def test_round_trip_qemu_aarch64(arm_bundle):
    if not shutil.which("qemu-aarch64-static") and not os.environ.get("EDGECONV_QEMU"):
        pytest.skip("needs qemu-aarch64-static: apt-get install qemu-user-static")
    try:
        find_qemu()
    except MissingRuntime:
        pytest.skip("needs the aarch64 userland: run scripts/build_aarch64_userland.sh")
    report = validate(arm_bundle, "qemu-aarch64", timeout=600)
    _assert_exact(report, "litert_ref")
    assert report.machine == "aarch64" and report.kernels == "reference"
    assert "reference kernels" in report.note and "reference kernels" in report.to_text()


def test_qemu_refuses_non_litert_bundle(build_dir, tmp_path):
    from edgeconv.artifacts.folder import load_build
    from edgeconv.parity.run import parity_inputs
    from edgeconv.plan.targets import load_target

    build = load_build(build_dir)
    path = tmp_path / "cpu.tar.gz"
    path.write_bytes(make_bundle(build, load_target("cpu"), parity_inputs(build.analysis, 2, 0), "test"))
    with pytest.raises(UsageError, match="LiteRT bundles only"):
        validate(path, "qemu-aarch64")


# -- devices and hostile bundles -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "ssh://",
        "ssh://-oProxyCommand=x@h",
        "ssh://u@-oProxyCommand=x",
        "ssh://u@h:0",
        "ssh://u@h:99999",
        "ssh://u@h;rm -rf /",
        "ssh://u@h/path",
        "android",
        "qemu-arm",
        "ssh://u@h:22x",
    ],
)
def test_bad_device_is_usage_error(spec):
    with pytest.raises(UsageError) as err:
        parse_device(spec)
    assert "\n" not in str(err.value)


def test_good_devices():
    assert parse_device("ssh://pi@192.168.1.5:2222").port == 2222
    assert parse_device("ssh://pi@board.local").destination == "pi@board.local"
    assert parse_device("ssh://pi@[::1]:22").destination == "pi@::1"
    assert str(parse_device("local")) == "local"


def _valid_files(arm_bundle) -> dict[str, bytes]:
    return _members(arm_bundle)


def test_refuses_absolute_path(tmp_path):
    bad = _write_tar(tmp_path / "abs.tar.gz", [_file("/etc/evil", b"x")])
    with pytest.raises(InputError, match="absolute path"):
        safe_extract(bad, tmp_path / "out")


def test_refuses_dotdot(tmp_path):
    (tmp_path / "out").mkdir()
    bad = _write_tar(tmp_path / "dotdot.tar.gz", [_file("../evil", b"x")])
    with pytest.raises(InputError, match=r"'\.\.'"):
        safe_extract(bad, tmp_path / "out")
    assert not (tmp_path / "evil").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_refuses_links(tmp_path, kind):
    (tmp_path / "out").mkdir()
    info = tarfile.TarInfo("inputs.npy")
    info.type, info.linkname = kind, "/etc/passwd"
    bad = _write_tar(tmp_path / "link.tar.gz", [(info, None)])
    with pytest.raises(InputError, match="link to '/etc/passwd'"):
        safe_extract(bad, tmp_path / "out")
    assert not (tmp_path / "out" / "inputs.npy").exists()


def test_refuses_devices_and_directories(tmp_path):
    (tmp_path / "out").mkdir()
    info = tarfile.TarInfo("dev")
    info.type = tarfile.CHRTYPE
    with pytest.raises(InputError, match="device"):
        safe_extract(_write_tar(tmp_path / "dev.tar.gz", [(info, None)]), tmp_path / "out")
    info = tarfile.TarInfo("sub")
    info.type = tarfile.DIRTYPE
    with pytest.raises(InputError, match="directory"):
        safe_extract(_write_tar(tmp_path / "dir.tar.gz", [(info, None)]), tmp_path / "out")


def test_refuses_oversized_member(tmp_path):
    (tmp_path / "out").mkdir()
    bad = _write_tar(tmp_path / "big.tar.gz", [_file("inputs.npy", b"\0" * 4096)])
    with pytest.raises(InputError, match="over the 1024-byte limit"):
        safe_extract(bad, tmp_path / "out", max_member=1024)
    (tmp_path / "out2").mkdir()
    bad = _write_tar(tmp_path / "total.tar.gz", [_file("a.npy", b"\0" * 800), _file("b.npy", b"\0" * 800)])
    with pytest.raises(InputError, match="exceed 1024 bytes"):
        safe_extract(bad, tmp_path / "out2", max_member=1024, max_total=1024)


def test_refuses_duplicates_and_garbage(tmp_path):
    (tmp_path / "out").mkdir()
    bad = _write_tar(tmp_path / "dup.tar.gz", [_file("a.npy", b"1"), _file("a.npy", b"2")])
    with pytest.raises(InputError, match="duplicate"):
        safe_extract(bad, tmp_path / "out")
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(InputError, match="not a readable"):
        safe_extract(tmp_path / "junk.tar.gz", tmp_path / "out")


def test_hostile_bundle_via_validate(tmp_path, arm_bundle):
    files = _valid_files(arm_bundle)
    members = [_file(n, d) for n, d in sorted(files.items())] + [_file("../../escape.py", b"print('owned')")]
    bad = _write_tar(tmp_path / "escape.tar.gz", members)
    with pytest.raises(InputError, match="refused"):
        validate(bad, "local")


def test_tampered_file_fails_hash_check(tmp_path, arm_bundle):
    files = _valid_files(arm_bundle)
    x = bytearray(files["inputs.npy"])
    x[-1] ^= 1
    files["inputs.npy"] = bytes(x)
    bad = tmp_path / "tampered.tar.gz"
    bad.write_bytes(tar_gz(files))
    with pytest.raises(InputError) as err:
        validate(bad, "local")
    assert "inputs.npy failed the hash check" in str(err.value) and "\n" not in str(err.value)
    # the runner on the device checks too: exit 3 and one line
    folder = tmp_path / "ext"
    folder.mkdir()
    safe_extract(bad, folder)
    proc = subprocess.run(
        [sys.executable, "-I", str(folder / "runner.py"), str(folder)], capture_output=True, text=True
    )
    assert proc.returncode == 3
    assert proc.stderr.strip().count("\n") == 0 and "inputs.npy failed the hash check" in proc.stderr


def test_unlisted_file_refused(tmp_path, arm_bundle):
    files = _valid_files(arm_bundle)
    files["extra.py"] = b"print(1)"
    bad = tmp_path / "extra.tar.gz"
    bad.write_bytes(tar_gz(files))
    folder = tmp_path / "ext"
    folder.mkdir()
    with pytest.raises(InputError, match=r"extra\.py is not listed"):
        open_bundle(bad, folder)
