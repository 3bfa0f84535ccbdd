"""Progress (bar on a terminal, one line per step on a pipe) and runtime chatter kept off stderr."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from edgeconv.backends.quiet import quiet_stderr
from edgeconv.core.progress import progress_step, step_lines


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_pipe_gets_one_line_per_step(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    pipe = io.StringIO()
    with progress_step("calibrating", total=64, unit="sample", stream=pipe) as update:
        for _ in range(4):
            update(16)
    assert pipe.getvalue().startswith("calibrating: 64 samples in ")
    assert pipe.getvalue().count("\n") == 1
    lines = io.StringIO()
    with step_lines(2, stream=lines) as say:
        say("cpu: running 32 samples")
        say("arm: running 32 samples")
    assert lines.getvalue().splitlines() == ["cpu: running 32 samples", "arm: running 32 samples"]


def test_terminal_gets_a_bar_unless_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    tty = FakeTerminal()
    with progress_step("calibrating", total=64, unit="sample", stream=tty) as update:
        update(64)
    assert "64/64" in tty.getvalue() and "100%" in tty.getvalue()
    tty = FakeTerminal()
    with step_lines(2, stream=tty, unit="target") as say:
        say("cpu: running")
        say("arm: running")
    assert "2/2" in tty.getvalue() and "arm: running" in tty.getvalue()
    monkeypatch.setenv("CI", "true")
    ci = FakeTerminal()
    with progress_step("calibrating", total=64, unit="sample", stream=ci, line=False) as update:
        update(64)
    assert ci.getvalue() == ""


def test_quiet_stderr_drops_native_writes_and_replays_them_on_error(capfd, monkeypatch):
    monkeypatch.delenv("EDGECONV_VERBOSE", raising=False)
    with quiet_stderr():
        os.write(2, b"INFO: chatter from C\n")
    assert "chatter" not in capfd.readouterr().err
    with pytest.raises(RuntimeError), quiet_stderr():
        os.write(2, b"the C++ reason\n")
        raise RuntimeError("boom")
    assert "the C++ reason" in capfd.readouterr().err
    monkeypatch.setenv("EDGECONV_VERBOSE", "1")
    with quiet_stderr():
        os.write(2, b"INFO: verbose chatter\n")
    assert "verbose chatter" in capfd.readouterr().err


@pytest.fixture(scope="module")
def small_build(tmp_path_factory):
    from edgeconv.artifacts.build import BuildRequest, run_build

    out = tmp_path_factory.mktemp("quiet") / "b"
    run_build(BuildRequest(recipe="ds_cnn", calib_samples=8, out=str(out)))
    return out


def _parity_stderr(folder, *flags):
    cmd = [sys.executable, "-m", "edgeconv", *flags, "parity", str(folder), "--targets", "arm", "--samples", "32"]
    env = {k: v for k, v in os.environ.items() if k != "EDGECONV_VERBOSE"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120).stderr


def test_litert_info_line_only_with_verbose(small_build):
    quiet = _parity_stderr(small_build)
    assert quiet.splitlines() == ["arm: running 32 samples"], quiet  # a pipe: one line per target, no chatter
    assert "INFO: Created TensorFlow Lite XNNPACK delegate" in _parity_stderr(small_build, "--verbose")


def test_a_real_terminal_gets_bars(small_build):
    """`edgeconv parity` with stderr on a pseudo-terminal draws a tqdm bar (carriage returns,
    "1/1" target), even on one that reports 0 columns (this unsized pty: tqdm alone draws
    nothing there). On a pipe: one line per target (test_litert_info_line_only_with_verbose)."""
    import pty

    env = {k: v for k, v in os.environ.items() if k not in ("CI", "EDGECONV_VERBOSE")}
    cmd = [sys.executable, "-m", "edgeconv", "parity", str(small_build), "--targets", "arm", "--samples", "32"]
    leader, follower = pty.openpty()
    chunks = []
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=follower, env=env)
        os.close(follower)  # the child holds the terminal now; read while it writes
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child exited and closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        returncode = proc.wait(timeout=120)
    finally:
        os.close(leader)
    tty = b"".join(chunks).decode("utf-8", "replace")
    assert returncode == 0, tty
    assert "\r" in tty and "1/1" in tty and "arm: running 32 samples" in tty, tty
