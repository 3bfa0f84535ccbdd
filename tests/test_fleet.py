"""labgrid places and fleet runs against a REAL labgrid: a labgrid-coordinator on 127.0.0.1, a
labgrid-exporter exporting two NetworkService boards (two OpenSSH servers on loopback ports,
started here), places made with labgrid-client. Every process started here is stopped by its
PID at the end (fixture finalizers).

System requirements (CI: .ci/setup-system.sh, the `fleet` extra): labgrid 26, openssh-server
and openssh-client, root (the boards' sshd log in as root on 127.0.0.1).

Each board's "python" is a small wrapper (board/python) that marks the run as started and can
be told to linger (board/delay), so a test can hold a place, stop an sshd mid-run or make a
device hang; the wrapper exits as soon as its ssh session goes away.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from processes import popen_foreground

from edgeconv.core.errors import DeviceUnavailable, EdgeconvError, UsageError
from edgeconv.device.fleet import ERROR, INFRA, PASS, FleetDevice, load_fleet, run_fleet
from edgeconv.device.labgrid import parse_labgrid, validate_on_place
from edgeconv.device.validate import SshOptions

BIN = Path(sys.executable).parent
WRAPPER = f"""#!{sys.executable}
import os, sys, time, pathlib
here = pathlib.Path(__file__).resolve().parent
(here / "started").write_text(str(time.time()))
delay = float((here / "delay").read_text()) if (here / "delay").exists() else 0.0
parent, end = os.getppid(), time.time() + delay
while time.time() < end:
    if os.getppid() != parent:
        sys.exit(1)  # the ssh session is gone
    time.sleep(0.05)
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(what: str, cond, timeout: float = 15.0, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: the process exited ({proc.returncode})")
        time.sleep(0.05)
    pytest.fail(f"{what}: not within {timeout} s")


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


class Board:
    """One sshd on a loopback port, with its own host key, authorized key and python wrapper."""

    def __init__(self, root: Path, name: str, user_key: Path, sshd_bin: str):
        self.dir = root / name
        self.dir.mkdir()
        self.name, self.sshd_bin, self.port = name, sshd_bin, _free_port()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.dir / "host_key")], check=True)
        (self.dir / "authorized_keys").write_text(Path(str(user_key) + ".pub").read_text())
        (self.dir / "sshd_config").write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.dir / 'host_key'}",
                    "UsePAM no",
                    "PermitRootLogin yes",
                    f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
                    "StrictModes no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "Subsystem sftp internal-sftp",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        self.python = self.dir / "python"
        self.python.write_text(WRAPPER)
        self.python.chmod(0o755)
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        with open(self.dir / "sshd.log", "ab") as log:
            self.proc = subprocess.Popen(
                [self.sshd_bin, "-D", "-e", "-f", str(self.dir / "sshd_config")], stdout=subprocess.DEVNULL, stderr=log
            )
        _wait_for(f"sshd {self.name} on port {self.port}", lambda: _listening(self.port), proc=self.proc)

    def stop(self) -> None:
        """The listener and every session it forked (a board that goes away mid-run)."""
        if self.proc is None:
            return
        sessions = _children(self.proc.pid)
        _stop(self.proc)
        for pid in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc = None

    def linger(self, seconds: float) -> None:
        (self.dir / "started").unlink(missing_ok=True)
        if seconds:
            (self.dir / "delay").write_text(str(seconds))
        else:
            (self.dir / "delay").unlink(missing_ok=True)

    def started(self) -> bool:
        return (self.dir / "started").exists()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    missing = [t for t in ("labgrid-coordinator", "labgrid-exporter", "labgrid-client") if not (BIN / t).exists()]
    if missing:
        pytest.skip(f"needs labgrid (pip install 'edgeconv[fleet]'): no {', '.join(missing)}")
    sshd_bin = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
    if not sshd_bin or not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        pytest.skip("needs Debian's openssh-server and openssh-client (apt-get install openssh-server)")
    if os.geteuid() != 0:
        pytest.skip("the boards' sshd log in as root on 127.0.0.1 (run as root, as CI does)")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    root = tmp_path_factory.mktemp("lab")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "user_key")], check=True)
    procs: list[subprocess.Popen] = []
    boards: dict[str, Board] = {}
    try:
        for name in ("board-a", "board-b"):
            boards[name] = Board(root, name, root / "user_key", sshd_bin)
        port = _free_port()
        coordinator = f"127.0.0.1:{port}"
        (root / "coordinator").mkdir()  # it keeps places.yaml in its working folder
        with open(root / "coordinator.log", "wb") as log:
            procs.append(
                subprocess.Popen(
                    [str(BIN / "labgrid-coordinator"), "-l", coordinator],
                    cwd=root / "coordinator",
                    stdout=log,
                    stderr=log,
                )
            )
        _wait_for("labgrid-coordinator", lambda: _listening(port), proc=procs[-1])
        (root / "exporter.yaml").write_text(
            "".join(
                f"{name}:\n  NetworkService:\n    address: 127.0.0.1\n    port: {b.port}\n    username: root\n"
                for name, b in boards.items()
            )
        )
        with open(root / "exporter.log", "wb") as log:
            procs.append(
                subprocess.Popen(
                    [str(BIN / "labgrid-exporter"), "-c", coordinator, "-n", "exp1", str(root / "exporter.yaml")],
                    stdout=log,
                    stderr=log,
                )
            )
        env = {**os.environ, "LG_COORDINATOR": coordinator}

        def client(*args: str) -> str:
            return subprocess.run(
                [str(BIN / "labgrid-client"), *args], env=env, capture_output=True, text=True, check=True, timeout=30
            ).stdout

        _wait_for("the exporter's resources", lambda: client("resources").count("NetworkService") == 2, proc=procs[-1])
        for name, tags in (("board-a", ["board=a", "kind=sim"]), ("board-b", ["board=b", "kind=sim"])):
            client("-p", name, "create")
            client("-p", name, "add-match", f"exp1/{name}/NetworkService")
            client("-p", name, "set-tags", *tags)
        options = SshOptions(
            connect_timeout=5, identity=str(root / "user_key"), known_hosts=str(root / "known_hosts"), python="python3"
        )
        yield {"coordinator": coordinator, "boards": boards, "client": client, "options": options, "root": root}
    finally:
        for b in boards.values():
            b.stop()
        for p in reversed(procs):
            _stop(p)


def _acquired(lab, place: str) -> str | None:
    for line in lab["client"]("-p", place, "show").splitlines():
        if line.strip().startswith("acquired:"):
            value = line.split(":", 1)[1].strip()
            return None if value == "None" else value
    return None


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("fleet-build")
    subprocess.run(
        [sys.executable, "-m", "edgeconv", "build", "--recipe", "resnet8", "--out", str(out / "b")],
        check=True,
        capture_output=True,
    )
    path = out / "arm.tar.gz"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeconv",
            "bundle",
            str(out / "b"),
            "--target",
            "arm",
            "-o",
            str(path),
            "--samples",
            "4",
        ],
        check=True,
        capture_output=True,
    )
    return str(path)


def _options(lab, board: str) -> SshOptions:
    o = lab["options"]
    return SshOptions(o.connect_timeout, o.identity, o.known_hosts, str(lab["boards"][board].python))


def _device(lab, spec: str, board: str | None = None, **kw) -> FleetDevice:
    o = lab["options"]
    python = str(lab["boards"][board].python) if board else None
    return FleetDevice(
        spec=spec,
        name=kw.pop("name", board or spec),
        connect_timeout=o.connect_timeout,
        identity=o.identity,
        known_hosts=o.known_hosts,
        python=python,
        coordinator=lab["coordinator"],
        **kw,
    )


# -- no lab needed --------------------------------------------------------------------------------


def test_specs():
    assert parse_labgrid("labgrid://board-a").filters() == {"name": "board-a"}
    assert parse_labgrid("labgrid://?tags=kind=sim,board=b").filters() == {"board": "b", "kind": "sim"}
    for bad in ("labgrid://", "labgrid://a b", "labgrid://?tags=Board=x", "labgrid://?tags=k", "labgrid://?x=1"):
        with pytest.raises(UsageError) as err:
            parse_labgrid(bad)
        assert "\n" not in str(err.value)


def test_fleet_toml_errors(tmp_path):
    base = FleetDevice(spec="local")
    f = tmp_path / "fleet.toml"
    for text, needle in (
        ("timeout = 1\n", "no [[device]]"),
        ('[[device]]\nspec = "local"\ncolour = 1\n', "unknown key 'colour'"),
        ('[[device]]\nspec = "local"\ntimeout = "x"\n', "expected a number"),
        ('[[device]]\nspec = "tcp://x"\n', "--device"),
        ('[[device]]\nspec = "local"\n[[device]]\nspec = "local"\n', "names must differ"),
        ('[[device]]\nspec = "labgrid://a"\n', "LG_COORDINATOR"),
        ("[[device\n", "not readable TOML"),
    ):
        f.write_text(text)
        env = os.environ.pop("LG_COORDINATOR", None)
        try:
            with pytest.raises(EdgeconvError) as err:
                load_fleet(f, base)
        finally:
            if env is not None:
                os.environ["LG_COORDINATOR"] = env
        assert needle in str(err.value) and "\n" not in str(err.value), (text, str(err.value))
    f.write_text(
        'timeout = 30\n[[device]]\nspec = "local"\n[[device]]\nname = "b"\nspec = "ssh://u@h:2"\ntimeout = 5\n'
    )
    devices = load_fleet(f, base)
    assert [(d.label, d.timeout) for d in devices] == [("local", 30.0), ("b", 5.0)]


def test_interrupt_reaches_a_child_of_a_background_run():
    # test_release_after_interrupt[SIGINT] timed out (30 s, no release) in any run that inherits
    # SIGINT ignored (`bash -c 'pytest ... & wait'`): so did `edgeconv validate`, which never saw
    # the signal and ran its 30 s linger out; _popen_foreground undoes the inherited ignore
    probe = [sys.executable, "-c", "import signal as s; print(s.getsignal(s.SIGINT) is s.default_int_handler)"]
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a script's `cmd &` does
    try:
        plain = subprocess.run(probe, capture_output=True, text=True, timeout=30).stdout.strip()
        fixed = popen_foreground(probe, signal.SIGINT, stdout=subprocess.PIPE, text=True).communicate(timeout=30)[0]
        still = signal.getsignal(signal.SIGINT)  # this process's own disposition is left as it was
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (plain, fixed.strip(), still) == ("False", "True", signal.SIG_IGN)


# -- with the lab ----------------------------------------------------------------------------------


def test_tagged_place(lab, bundle):
    lab["boards"]["board-b"].linger(0)
    report = validate_on_place(
        bundle, "labgrid://?tags=board=b", lab["coordinator"], 10, timeout=60, ssh=_options(lab, "board-b")
    )
    assert report.passed and report.lsb_stats["max_lsb"] == 0
    lease = report.to_json()["labgrid"]
    assert lease["place"] == "board-b" and lease["exporter"] == "exp1"
    assert lease["resource"] == "exp1/board-b/NetworkService/NetworkService"
    assert lease["ssh"] == f"ssh://root@127.0.0.1:{lab['boards']['board-b'].port}"
    assert "labgrid: place board-b" in report.to_text()
    assert _acquired(lab, "board-b") is None  # released


def test_fleet_boards_and_local(lab, bundle, tmp_path):
    for b in lab["boards"].values():
        b.linger(0)
    devices = [
        _device(lab, "labgrid://board-a", "board-a", timeout=60),
        _device(lab, "labgrid://?tags=board=b,kind=sim", "board-b", timeout=60),
        _device(lab, "local", timeout=60),
    ]
    report = run_fleet([bundle], devices, jobs=3)
    assert [r.status for r in report.results] == [PASS, PASS, PASS], report.to_text()
    assert report.exit_code == 0
    data = report.to_json()
    assert [r["labgrid"]["place"] if r["labgrid"] else None for r in data["results"]] == ["board-a", "board-b", None]
    suites = ET.fromstring(report.to_junit()).findall("testsuite")
    assert [s.get("name") for s in suites] == ["board-a", "board-b", "local"]
    assert all(s.get("failures") == "0" and s.get("errors") == "0" for s in suites)
    props = {p.get("name"): p.get("value") for p in suites[0].iter("property")}
    assert props["labgrid.place"] == "board-a" and props["labgrid.exporter"] == "exp1"
    md = report.to_markdown()
    assert "| board-a | PASS 0 LSB" in md and "| local | PASS 0 LSB" in md
    assert _acquired(lab, "board-a") is None and _acquired(lab, "board-b") is None


def test_second_job_waits_for_the_held_place(lab, bundle, tmp_path):
    board = lab["boards"]["board-a"]
    board.linger(3.0)
    o = lab["options"]
    holder = subprocess.Popen(
        [sys.executable, "-m", "edgeconv", "validate", bundle, "--device", "labgrid://board-a", "--json"]
        + ["--coordinator", lab["coordinator"], "--identity", o.identity, "--known-hosts", o.known_hosts]
        + ["--python", str(board.python), "--timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for("the first job's runner on board-a", board.started, 30, holder)
        held_by = _acquired(lab, "board-a")
        assert held_by
        # a job that may not wait long enough: an infrastructure failure naming the holder
        with pytest.raises(DeviceUnavailable) as err:
            validate_on_place(
                bundle, "labgrid://board-a", lab["coordinator"], 0.5, timeout=60, ssh=_options(lab, "board-a")
            )
        assert "no place acquired within 0.5 s" in str(err.value) and f"board-a by {held_by}" in str(err.value)
        board.linger(0)  # the second job's own run does not linger
        asked = time.time()
        second = validate_on_place(
            bundle, "labgrid://board-a", lab["coordinator"], 30, timeout=60, ssh=_options(lab, "board-a")
        )
        out, _ = holder.communicate(timeout=60)
    finally:
        _stop(holder)
    first = json.loads(out)["labgrid"]
    assert holder.returncode == 0 and second.passed
    lease = second.lease
    # never shared: the second acquisition comes after the first release
    assert lease["acquired_at"] >= first["released_at"]
    assert lease["waited_s"] >= 1.0 and lease["acquired_at"] - asked >= 1.0
    assert lease["acquired_at"] - first["released_at"] < 1.5  # handed on at the release (POLL_S polling)


def test_sshd_stopped_mid_run_and_a_hanging_device(lab, bundle):
    a, b = lab["boards"]["board-a"], lab["boards"]["board-b"]
    a.linger(4.0)  # board-a's sshd is stopped while its runner lingers
    b.linger(60.0)  # board-b hangs: cut off at its 2 s run timeout
    devices = [
        _device(lab, "labgrid://board-a", "board-a", timeout=60),
        _device(lab, "labgrid://board-b", "board-b", timeout=2),
        _device(lab, "local", timeout=60),
    ]
    stopper = threading.Thread(target=lambda: (_wait_for("board-a's runner", a.started, 30), a.stop()))
    stopper.start()
    try:
        report = run_fleet([bundle], devices, jobs=3, retries=1)
    finally:
        stopper.join()
        a.start()
        a.linger(0)
        b.linger(0)
    ra, rb, rl = report.results
    assert rl.status == PASS, report.to_text()
    assert ra.status == INFRA and len(ra.attempts) == 2, report.to_text()
    assert "ssh failed" in ra.attempts[0].message and "board-a" in ra.attempts[0].message
    assert rb.status == INFRA and all("did not finish within 2 s" in x.message for x in rb.attempts)
    assert report.exit_code == 75
    assert ET.fromstring(report.to_junit()).find("testsuite/testcase/error").get("type") == "InfrastructureFailure"
    assert _acquired(lab, "board-a") is None and _acquired(lab, "board-b") is None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_release_after_interrupt(lab, bundle, sig):
    board = lab["boards"]["board-b"]
    board.linger(30.0)
    o = lab["options"]
    proc = popen_foreground(
        [sys.executable, "-m", "edgeconv", "validate", bundle, "--device", "labgrid://board-b"]
        + ["--coordinator", lab["coordinator"], "--identity", o.identity, "--known-hosts", o.known_hosts]
        + ["--python", str(board.python), "--timeout", "60"],
        sig,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for("the runner on board-b", board.started, 30, proc)
        assert _acquired(lab, "board-b")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        _stop(proc)
        board.linger(0)
    assert proc.returncode == 128 + sig, err
    assert "released place board-b" in err and "interrupted" in err.splitlines()[-1]
    assert _acquired(lab, "board-b") is None


def test_fleet_cli_error_status(lab, bundle, tmp_path):
    # a place that does not exist is bad input (exit 2, status error), not retried
    f = tmp_path / "fleet.toml"
    f.write_text(f'coordinator = "{lab["coordinator"]}"\n[[device]]\nspec = "labgrid://nope"\n')
    r = subprocess.run(
        [sys.executable, "-m", "edgeconv", "validate", bundle, "--devices", str(f), "--retries", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    data = json.loads(r.stdout)
    assert r.returncode == 2 and data["results"][0]["status"] == ERROR and len(data["results"][0]["attempts"]) == 1
    assert "no place 'nope'" in data["results"][0]["message"]
