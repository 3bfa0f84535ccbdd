"""Atomic, deterministic file output.

Every artifact is written to a temporary file in the destination folder and renamed over the
final name, so an interrupted or failed run never leaves a half-written file. Archives carry
fixed timestamps so the same inputs give byte-identical files.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from edgeconv.core.errors import InputError

FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise InputError(f"output {path}: cannot write there ({err.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_files_atomic(folder: Path, files: dict[str, bytes]) -> list[Path]:
    """Write every file of a run only after all of them have been produced in memory."""
    written = []
    for name, data in files.items():
        write_bytes_atomic(Path(folder) / name, data)
        written.append(Path(folder) / name)
    return written


def json_bytes(document: object) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=False, ensure_ascii=False) + "\n").encode("utf-8")


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A .npz readable by np.load, with fixed entry times (np.savez stamps the current time,
    which would make identical runs differ byte for byte)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key in arrays:
            entry = zipfile.ZipInfo(f"{key}.npy", date_time=FIXED_ZIP_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            payload = io.BytesIO()
            np.lib.format.write_array(payload, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            archive.writestr(entry, payload.getvalue())
    return buffer.getvalue()
