"""The memory ceiling for tensors, and .npy/.npz files read under it.

Every tensor edgeconv allocates from user input (an input volume, an activation, a weight
array, a calibration or comparison set, an array in a file) is checked against
MAX_TENSOR_BYTES before it is allocated: 1 GiB by default; raise it with the environment
variable EDGECONV_MAX_TENSOR_BYTES (a byte count, or a size like 4GiB). A .npy header is read
and checked (dtype, shape, bytes against the ceiling and against the file's own size) before
numpy allocates the array; an .npz member's declared size is checked before it is inflated,
so a zip bomb is refused without expanding it.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from edgeconv.core.errors import InputError, UsageError

DEFAULT_MAX_TENSOR_BYTES = 1 << 30
ENV = "EDGECONV_MAX_TENSOR_BYTES"
MAX_NPZ_MEMBERS = 4096
_DTYPES = {"f", "i", "u", "b"}  # float, signed, unsigned, bool: never objects or structured dtypes


def max_tensor_bytes() -> int:
    text = os.environ.get(ENV)
    if not text:
        return DEFAULT_MAX_TENSOR_BYTES
    from edgeconv.core.sizes import parse_size

    return parse_size(text, ENV)


def _ceiling_message(what: str, n_bytes: int, detail: str) -> str:
    limit = max_tensor_bytes()
    return (
        f"{what}: {detail} needs {n_bytes:,} bytes, over the tensor memory ceiling of {limit:,} bytes "
        f"(raise it with {ENV}=4GiB, or use a smaller size)"
    )


def check_tensor(shape, itemsize: int, what: str, detail: str | None = None) -> int:
    """Raise InputError when a tensor of `shape` x `itemsize` bytes would exceed the ceiling."""
    n = math.prod(int(d) for d in shape) * int(itemsize)
    if n > max_tensor_bytes():
        dims = "x".join(str(int(d)) for d in shape)
        raise InputError(_ceiling_message(what, n, detail or f"a {dims} tensor of {itemsize}-byte values"))
    return n


def _npy_header(handle, what: str, size: int) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = np.lib.format.read_magic(handle)
    except (ValueError, EOFError):
        raise InputError(f"{what}: not a .npy file (no NPY header)") from None
    try:
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(handle)
    except Exception as err:  # numpy's header parser raises ValueError, SyntaxError, TokenError, ...
        raise InputError(f"{what}: malformed .npy header ({' '.join(str(err).split())[:160]})") from None
    if dtype.hasobject or dtype.kind not in _DTYPES or dtype.fields is not None:
        raise InputError(
            f"{what}: holds {dtype} values; expected numbers (float or integer arrays; object and "
            "pickled arrays are never loaded)"
        )
    n = check_tensor(shape, dtype.itemsize, what)
    if n > size:
        raise InputError(f"{what}: the header claims {n:,} bytes of data, the file has {size:,} (truncated?)")
    return tuple(shape), dtype


def load_npy(path: str | Path, what: str) -> np.ndarray:
    """np.load of a .npy file, header checked first (never pickles)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            _npy_header(handle, what, size)
            handle.seek(0)
            return np.load(handle, allow_pickle=False)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{what}: file not found") from None
    except (OSError, ValueError, EOFError) as err:
        raise InputError(f"{what}: unreadable .npy ({' '.join(str(err).split())[:160]})") from None


def check_npz(path: str | Path, what: str) -> None:
    """Check an .npz without inflating it: member count, every member's declared size against
    the ceiling (and the sum), and each member's .npy header."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_NPZ_MEMBERS:
                raise InputError(f"{what}: {len(infos)} members, more than {MAX_NPZ_MEMBERS}")
            total = sum(info.file_size for info in infos)
            if total > max_tensor_bytes():
                raise InputError(_ceiling_message(what, total, f"{len(infos)} arrays that"))
            for info in infos:
                with archive.open(info) as member:
                    _npy_header(member, f"{what}, member {info.filename[:80]!r}", info.file_size)
                    # read to the end in chunks (memory stays flat): a corrupt stream or a CRC
                    # mismatch is refused here, not half-way through numpy's read
                    read = 0
                    while chunk := member.read(1 << 20):
                        read += len(chunk)
                        if read > info.file_size:
                            raise InputError(f"{what}: member {info.filename[:80]!r} inflates past its declared size")
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{what}: file not found") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, zlib.error) as err:
        raise InputError(f"{what}: could not read it as .npz ({' '.join(str(err).split())[:160]})") from None


def check_array_file(path: str | Path, what: str) -> None:
    """Pre-check a .npy or .npz before numpy reads it (size, dtype, zip bomb, pickle)."""
    path = Path(path)
    if not path.is_file():
        return  # the reader says "file not found" in its own words
    if path.suffix.lower() == ".npz":
        check_npz(path, what)
    elif path.suffix.lower() == ".npy":
        with open(path, "rb") as handle:
            _npy_header(handle, what, os.fstat(handle.fileno()).st_size)


def check_count(value: int, what: str, limit: int) -> int:
    if not 0 <= value <= limit:
        raise UsageError(f"{what}: expected 0 to {limit:,}, got {value:,}")
    return value


# the float reference runs this many samples at once (quant.calibrate.BATCH); its sliding
# windows are the largest temporaries edgeconv allocates
REFERENCE_BATCH = 16


def check_analysis_memory(analysis, what: str) -> None:
    """Refuse a model whose tensors would exceed the ceiling, before any is allocated: the
    input, every layer's output and weights (float32), and each conv's sliding windows over
    a batch of the float reference."""
    w, h, c = analysis.model.input.shape
    check_tensor((h, w, c), 4 * REFERENCE_BATCH, what, f"the {w}x{h}x{c} input (a batch of {REFERENCE_BATCH})")
    for info in analysis.layers:
        ow, oh, oc = info.out_shape
        check_tensor((oh, ow, oc), 4 * REFERENCE_BATCH, what, f"layer {info.name}'s {ow}x{oh}x{oc} output")
        check_tensor((info.params,), 4, what, f"layer {info.name}'s {info.params:,} parameters")
        if info.op in ("conv2d", "depthwise_conv2d") and oc:
            windows = info.macs // oc if info.op == "conv2d" else info.macs
            check_tensor((windows,), 4 * REFERENCE_BATCH, what, f"layer {info.name}'s sliding windows")


def check_samples_memory(n: int, analysis, what: str) -> None:
    w, h, c = analysis.model.input.shape
    check_tensor((n, h, w, c), 4, what, f"{n:,} samples of {w}x{h}x{c}")
