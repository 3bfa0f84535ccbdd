"""Issue 16: a bundle is data, outputs cannot clobber or escape, every bad input is exit 2.

Every reproduction of the issue (tests/hardening_cases.py) must end with exit 2 and one
error line, never the CLI's catch-all exit 3; tar bombs are refused in < 1 s and < 100 MB
(resource.getrusage of a subprocess); a bundle's runner is never executed; a forged
tolerance does not loosen the verdict; signatures are checked; a killed build leaves the old
folder intact.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeconv.cli import cli
from edgeconv.core.errors import InputError
from edgeconv.device.bundle import sha256_bytes, tar_gz
from edgeconv.device.validate import validate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hardening_cases import CASES, make_ctx
from processes import popen_foreground

SLOW_CASES = {"build --input 8192x8192x3": 30.0}  # the planner's bounded search (~4 s here)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    return make_ctx(tmp_path_factory.mktemp("hardening"))


def _assert_one_line(result, code=2):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("edgeconv: error: ")]
    assert result.exit_code == code, (result.exit_code, result.output, result.stderr)
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert "internal error" not in errors[0] and "Traceback" not in result.output + result.stderr


@pytest.mark.parametrize("name,make", CASES, ids=[name for name, _ in CASES])
def test_every_reproduction_is_exit_2_with_one_line(ctx, name, make, tmp_path, monkeypatch):
    ctx.tmp = tmp_path
    shutil.copy(ctx.build.parent / "x.npy", tmp_path / "x.npy")
    monkeypatch.chdir(tmp_path)
    if name == "build --weights zip bomb":  # the same refusal, 16x cheaper to build: a 128 MiB bomb, 64 MiB ceiling
        ctx.bomb_bytes = 128 * 2**20
        monkeypatch.setenv("EDGECONV_MAX_TENSOR_BYTES", "64MiB")
    argv = make(ctx)
    ctx.bomb_bytes = 2 * 2**30
    start = time.perf_counter()
    result = CliRunner().invoke(cli, argv)
    _assert_one_line(result)
    assert time.perf_counter() - start < SLOW_CASES.get(name, 10.0), name
    assert Path("/dev/full").is_char_device()


_EXTRACT = """
import sys, tempfile, time
from edgeconv.device.bundle import safe_extract
from edgeconv.core.errors import InputError
start = time.perf_counter()
with tempfile.TemporaryDirectory() as out:
    try:
        safe_extract(sys.argv[1], out)
        print("accepted")
    except InputError as err:
        print("refused", str(err).replace(chr(10), " "))
print(time.perf_counter() - start)
"""
# getrusage of a child started from a small wrapper: Linux keeps the ru_maxrss of the process
# that forked across exec, so a child of pytest itself would report pytest's own peak
_WRAPPER = """
import resource, subprocess, sys
proc = subprocess.run([sys.executable, "-c", sys.argv[1], sys.argv[2]], capture_output=True, text=True, check=True)
print(proc.stdout.strip())
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


@pytest.mark.parametrize("bomb", ["long_name", "pax"])
def test_tar_bombs_refused_fast_and_small(tmp_path, bomb):
    import hardening_cases as hc

    c = hc.Ctx(tmp_path, tmp_path, tmp_path)
    path = hc._long_name_bomb(c, 256 * 2**20) if bomb == "long_name" else hc._pax_bomb(c, 64 * 2**20)
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, _EXTRACT, path], capture_output=True, text=True, check=True)
    verdict, seconds_text, peak_text = proc.stdout.strip().splitlines()
    seconds, peak_kb = float(seconds_text), float(peak_text)
    assert verdict.startswith("refused") and "long-name/PAX header" in verdict
    assert seconds < 1.0 and peak_kb < 100 * 1024, (seconds, peak_kb)


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}


def _rehash(files: dict[str, bytes]) -> dict[str, bytes]:
    manifest = json.loads(files["manifest.json"])
    manifest["files"] = {n: sha256_bytes(files[n]) for n in manifest["files"]}
    files["manifest.json"] = json.dumps(manifest).encode()
    return files


def test_validate_never_runs_the_bundles_runner(ctx, tmp_path):
    marker = tmp_path / "owned"
    files = _members(ctx.bundle)
    files["runner.py"] = f"open({str(marker)!r}, 'w').write('ran')\n".encode()
    path = tmp_path / "evil.tar.gz"
    path.write_bytes(tar_gz(_rehash(files)))
    report = validate(path, "local")
    assert report.passed and not marker.exists()


def test_forged_tolerance_does_not_loosen_the_verdict(ctx, tmp_path):
    files = _members(ctx.bundle)
    tol = json.loads(files["tolerance.json"])
    tol.update(allowed_lsb=1_000_000, max_lsb_vs_golden=1_000_000, min_sqnr_db=-1000.0, requantizing_layers=100000)
    files["tolerance.json"] = json.dumps(tol).encode()
    golden = np.load(__import__("io").BytesIO(files["expected_litert_xnnpack.npy"]))
    from edgeconv.device.bundle import npy_bytes

    files["expected_litert_xnnpack.npy"] = npy_bytes((golden.astype(np.int16) + 3).clip(-128, 127).astype(np.int8))
    path = tmp_path / "forged.tar.gz"
    path.write_bytes(tar_gz(_rehash(files)))
    result = CliRunner().invoke(cli, ["validate", str(path), "--device", "local"])
    assert result.exit_code == 1 and "lsb_vs_golden" in result.stderr, result.output


def test_validate_recomputes_the_golden_from_a_build(ctx, tmp_path):
    report = validate(ctx.bundle, "local", build_dir=ctx.build)
    assert report.passed and "recomputed" in report.note
    files = _members(ctx.bundle)  # a consistent forgery: golden and every hash changed together
    golden = np.load(__import__("io").BytesIO(files["expected_litert_xnnpack.npy"]))
    from edgeconv.device.bundle import npy_bytes

    files["expected_litert_xnnpack.npy"] = npy_bytes(np.roll(golden, 1, axis=-1))
    path = tmp_path / "forged.tar.gz"
    path.write_bytes(tar_gz(_rehash(files)))
    result = CliRunner().invoke(cli, ["validate", str(path), "--device", "local", "--build", str(ctx.build)])
    _assert_one_line(result)
    assert "differs from the litert_xnnpack golden recomputed" in result.stderr


def test_signed_bundles(ctx, tmp_path):
    pytest.importorskip("cryptography", reason="pip install cryptography (in the 'all' extra)")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    def keypair(name):
        key = ed25519.Ed25519PrivateKey.generate()
        (tmp_path / f"{name}.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        (tmp_path / f"{name}.pub.pem").write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )

    keypair("a"), keypair("b")
    signed = tmp_path / "signed.tar.gz"
    r = CliRunner().invoke(
        cli,
        [
            "bundle",
            str(ctx.build),
            "--target",
            "arm",
            "-o",
            str(signed),
            "--samples",
            "2",
            "--sign",
            str(tmp_path / "a.pem"),
        ],
    )
    assert r.exit_code == 0, r.output
    report = validate(signed, "local", verify_key=tmp_path / "a.pub.pem")
    assert report.passed and report.signature.startswith("verified")
    again = tmp_path / "again.tar.gz"
    CliRunner().invoke(
        cli,
        [
            "bundle",
            str(ctx.build),
            "--target",
            "arm",
            "-o",
            str(again),
            "--samples",
            "2",
            "--sign",
            str(tmp_path / "a.pem"),
        ],
    )
    assert again.read_bytes() == signed.read_bytes()  # Ed25519 is deterministic: bundles stay reproducible
    with pytest.raises(InputError, match="does not verify"):
        validate(signed, "local", verify_key=tmp_path / "b.pub.pem")
    with pytest.raises(InputError, match="unsigned"):
        validate(ctx.bundle, "local", verify_key=tmp_path / "a.pub.pem")
    files = _members(signed)  # a changed member with the manifest re-hashed: the signature breaks
    files["inputs.npy"] = files["inputs.npy"][:-1] + bytes([files["inputs.npy"][-1] ^ 1])
    tampered = tmp_path / "tampered.tar.gz"
    tampered.write_bytes(tar_gz(_rehash(files)))
    with pytest.raises(InputError, match="does not verify"):
        validate(tampered, "local", verify_key=tmp_path / "a.pub.pem")
    assert validate(signed, "local").signature.startswith("signed, not verified")


# -- build folders ---------------------------------------------------------------------------


def _build(out: Path, *extra: str, sig: int = signal.SIGHUP) -> subprocess.Popen:
    # with `sig` at its default in the child: under nohup SIGHUP is inherited ignored and the
    # SIGHUP case would let the build finish, testing nothing
    return popen_foreground(
        [
            sys.executable,
            "-m",
            "edgeconv",
            "build",
            "--recipe",
            "ds_cnn",
            "--calib-samples",
            "8",
            "--out",
            str(out),
            *extra,
        ],
        sig,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
def test_killed_rebuild_leaves_the_old_folder_whole(ctx, tmp_path, sig):
    out = tmp_path / "b"
    shutil.copytree(ctx.build, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = _build(out, "--seed", "7", sig=sig)
    deadline = time.time() + 20
    while time.time() < deadline and proc.poll() is None:  # kill it while it writes or computes
        if any(p.name.startswith(".b.") for p in tmp_path.iterdir()) or time.time() > deadline - 19.4:
            break
        time.sleep(0.01)
    proc.send_signal(sig)
    proc.wait(timeout=30)
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    if after != before:  # the build finished before the signal: then it is the whole new folder
        from edgeconv.artifacts.folder import load_build

        load_build(out)
    if sig != signal.SIGKILL:
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        if proc.returncode != 0:
            assert proc.stderr.read().strip().endswith(f"interrupted by {sig.name}; no output was left half-written")
    else:  # an orphan of a dead process is removed by the next write into the same parent
        r = CliRunner().invoke(
            cli, ["bundle", str(ctx.build), "--target", "arm", "-o", str(tmp_path / "x.tar.gz"), "--samples", "1"]
        )
        assert r.exit_code == 0
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_build_folder_manifest_and_refusals(ctx, tmp_path, monkeypatch):
    from edgeconv.artifacts.folder import load_build

    manifest = json.loads((ctx.build / "manifest.json").read_text())
    assert manifest["kind"] == "edgeconv-build" and set(manifest["files"]) == {p.name for p in ctx.build.iterdir()} - {
        "manifest.json"
    }
    # a folder of the user's own files is never replaced
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    r = CliRunner().invoke(cli, ["build", "--recipe", "ds_cnn", "--calib-samples", "8", "--out", str(mine)])
    _assert_one_line(r)
    assert "not an edgeconv build folder" in r.stderr and (mine / "notes.txt").read_text() == "keep"
    # a recipe's name cannot leave edgeconv-out/
    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "escape.toml"
    recipe.write_text(
        (Path(__file__).resolve().parents[1] / "models" / "ds_cnn.toml")
        .read_text()
        .replace('name = "ds_cnn"', 'name = "../../../y"', 1)
    )
    r = CliRunner().invoke(cli, ["build", "--recipe", str(recipe), "--calib-samples", "8"])
    assert r.exit_code == 0, r.output
    assert [p.name for p in (tmp_path / "edgeconv-out").iterdir()] == ["y"] and not (tmp_path.parent / "y").exists()
    load_build(tmp_path / "edgeconv-out" / "y")


def test_unicode_digits_and_huge_sizes_are_refused():
    from edgeconv.core.errors import UsageError
    from edgeconv.core.sizes import parse_shape, parse_size

    for text in ("\uff11MB", "\u0663KB", "99999999999GB", "", "1e3"):
        with pytest.raises(UsageError):
            parse_size(text, "--budget")
    with pytest.raises(UsageError):
        parse_shape("\u0663\u0662x32x3")
    assert parse_size("999999GB") == 999_999 * 10**9  # exact, no float rounding


def test_environment_raises_the_tensor_ceiling(monkeypatch):
    from edgeconv.core.tensors import check_tensor

    with pytest.raises(InputError, match="EDGECONV_MAX_TENSOR_BYTES"):
        check_tensor((2**16, 2**16), 4, "x")
    monkeypatch.setenv("EDGECONV_MAX_TENSOR_BYTES", "32GiB")
    assert check_tensor((2**16, 2**16), 4, "x") == 2**34
