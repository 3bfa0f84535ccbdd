"""A build folder's artifacts are hash-checked when first used and again only when they change."""

from __future__ import annotations

import os

import pytest

from edgeconv.artifacts import folder as folder_mod
from edgeconv.artifacts.build import BuildRequest, run_build
from edgeconv.artifacts.folder import load_build
from edgeconv.core.errors import InputError


def test_artifact_hashed_once_and_rechecked_after_an_edit(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    run_build(BuildRequest(recipe="ds_cnn", out=str(out), calib_samples=8))
    build = load_build(out)
    hashed = []
    real = folder_mod._sha256_file
    monkeypatch.setattr(folder_mod, "_sha256_file", lambda path, what: hashed.append(path.name) or real(path, what))

    for _ in range(3):
        build.artifact("int8_tflite")
    assert hashed == ["model.int8.tflite"]  # the 3 calls hashed the file once

    # the same size, one byte flipped, the timestamp moved: the same instance hashes it again
    path = out / "model.int8.tflite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    st = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(InputError, match=r"does not match manifest\.json"):
        build.artifact("int8_tflite")
    assert hashed == ["model.int8.tflite", "model.int8.tflite"]
