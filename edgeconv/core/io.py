"""Atomic, deterministic file output that cannot clobber what it should not.

Every artifact is written to a temporary file in the destination folder and renamed over the
final name, so an interrupted or failed run never leaves a half-written file. Archives carry
fixed timestamps so the same inputs give byte-identical files.

An output path that exists must be a regular file (never a symbolic link, a device, a FIFO
or a folder): `-o /dev/full` is refused instead of turning the device node into a file.
Temporary names carry the writer's process id (`.NAME.PID.XXXX.tmp`); a later write into
the same folder removes the ones whose process is gone, so a run killed with SIGKILL leaves
no orphan behind for long. `write_folder_atomic` writes a whole folder the same way: a
temporary sibling folder, moved over the old one in one rename (see there).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import io
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from edgeconv.core.errors import InputError

FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output_path(path: Path, what: str = "output") -> None:
    """Refuse an output path that exists and is not a regular file, or is a symbolic link."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as err:
        raise InputError(f"{what} {path}: cannot be checked ({err.strerror})") from None
    if stat.S_ISLNK(st.st_mode):
        raise InputError(f"{what} {path}: is a symbolic link; expected a new or regular file (remove the link first)")
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{what} {path}: is a folder; expected a file name (for example {path / 'out'})")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(
            f"{what} {path}: exists and is not a regular file (a device, FIFO or socket); "
            "expected a new or regular file"
        )


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove `.NAME.PID.*.tmp` files and folders of processes that no longer run."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TMP.match(entry.name)
        if not m or _alive(int(m.group("pid"))):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def write_bytes_atomic(path: Path, data: bytes, what: str = "output") -> None:
    path = Path(path)
    check_output_path(path, what)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise InputError(f"{what} {path}: cannot write there ({err.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual file mode
        check_output_path(path, what)  # once more, right before the rename
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"{what} {path}: cannot write there ({err.strerror})") from None
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


# renameat2(RENAME_EXCHANGE) swaps two paths in one atomic step (Linux >= 3.15, glibc >= 2.28);
# Python's os module has no binding for it, hence ctypes. Elsewhere: two renames.
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    if ctypes.get_errno() in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), str(b))


def write_folder_atomic(folder: Path, files: dict[str, bytes], may_replace, what: str = "output folder") -> None:
    """Write `files` as the whole content of `folder`, all or nothing.

    The files go into a temporary sibling folder (`.NAME.PID.XXXX.tmp`); that folder then
    takes the place of the old one in one rename (an atomic exchange where the OS has it, so
    a reader sees the old folder or the new one, never a mix), and the old content is
    removed. `may_replace(folder)` says whether an existing folder may be replaced (a build
    folder may; a folder of the user's own files must not be): it returns None or the reason.
    """
    folder = Path(folder)
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise InputError(f"{what} {folder}: cannot be checked ({err.strerror})") from None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise InputError(f"{what} {folder}: is a symbolic link; expected a folder (remove the link first)")
        if not stat.S_ISDIR(st.st_mode):
            raise InputError(f"{what} {folder}: exists and is not a folder")
        why = may_replace(folder)
        if why:
            raise InputError(f"{what} {folder}: {why}")
    parent = folder.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(parent)
        tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(folder), suffix=".tmp", dir=parent))
    except OSError as err:
        raise InputError(f"{what} {folder}: cannot write there ({err.strerror})") from None
    try:
        for name, data in files.items():
            if "/" in name or name in ("", ".", ".."):
                raise ValueError(f"not a plain file name: {name!r}")
            fd = os.open(tmp / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666 & ~_umask())
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        if st is None:
            os.rename(tmp, folder)
        elif _exchange(tmp, folder):
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old content
        else:
            old = Path(tempfile.mkdtemp(prefix=_tmp_prefix(folder), suffix=".tmp", dir=parent))
            os.rename(folder, old / "old")
            os.rename(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(f"{what} {folder}: cannot write there ({err.strerror})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_regular_file(path: Path, max_bytes: int, what: str) -> bytes:
    """Read a file without following a symbolic link, refusing anything but a regular file
    and anything over max_bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise InputError(f"{what} {path}: not found") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise InputError(f"{what} {path}: is a symbolic link; expected a regular file") from None
        raise InputError(f"{what} {path}: unreadable ({err.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{what} {path}: not a regular file")
        if st.st_size > max_bytes:
            raise InputError(f"{what} {path}: {st.st_size:,} bytes, over the {max_bytes:,}-byte limit")
        return handle.read(max_bytes + 1)


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
