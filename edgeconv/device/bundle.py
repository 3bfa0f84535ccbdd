"""On-device validation bundles: writing them deterministically, and reading them safely.

A bundle is a .tar.gz of flat, regular files:

| member | contents |
|---|---|
| `model.int8.tflite` / `model.int8.onnx` | the target's artifact |
| `inputs.npy` | the quantized inputs, N x H x W x C, in the target's activation dtype |
| `float_reference.npy` | the numpy float reference's outputs for the same (float) inputs |
| `expected_<runtime>.npy` | the int8 golden reference (int8 convention) of every kernel family the runner may use: arm has litert_xnnpack, litert_builtin and litert_ref (so a run with reference kernels under qemu has its own bit-exact expectation); cpu and npu ort_cpu; mcu tflm |
| `tolerance.json` | the target profile's tolerance, the requantizing-layer count and the LSB allowance |
| `runner.py` | edgeconv/device/runner.py: stdlib + numpy + the target runtime only |
| `manifest.json` | SHA-256 of every other member, versions, target profile, model, output quantization |

Determinism: members sorted by name, mtime 0, uid/gid 0, no user/group names, mode 0644
(runner.py 0755), ustar format, gzip header mtime 0 and no file name; the same build folder,
target and inputs give byte-identical bundles.

Bundles are untrusted input: data, never code. `edgeconv validate` runs the runner.py of the
installed edgeconv (the bundle's copy is for running a bundle by hand on a device), with the
runtime options of the installed target profile, and judges with that profile's tolerance.

`safe_extract` bounds the decompressed stream (MAX_TOTAL_BYTES plus the tar headers) before
tarfile sees a byte of it, refuses GNU long-name/long-link and PAX headers over
MAX_HEADER_BYTES (tarfile would read them whole into memory, and CPython 3.11.7's PAX parser
is quadratic, CVE-2024-6232), sparse members, absolute paths, `..`, anything but plain files
(symlinks, hard links, devices, FIFOs, directories), duplicate names, members over
MAX_MEMBER_BYTES, more than MAX_TOTAL_BYTES in all or more than MAX_MEMBERS members; passes each
member through tarfile's `data` filter; and writes each file itself (O_EXCL, never following a
link) instead of calling tarfile's extract. `verify_manifest` then checks every member against
the manifest's SHA-256 hashes and the manifest's schema.

Signing (optional): `bundle --sign KEY.pem` adds manifest.sig, an Ed25519 signature of
manifest.json's bytes (which hold the SHA-256 of every other member, so the signature covers
them all); `validate --verify KEY.pub.pem` refuses an unsigned or mis-signed bundle. Ed25519
(the `cryptography` package) rather than HMAC: the validating host needs only the public key,
so a device lab or CI runner that can check bundles cannot also forge them.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import platform
import re
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeconv.core.errors import InputError, MissingRuntime, UsageError
from edgeconv.quant.params import TensorQuant

FORMAT = 1
MANIFEST = "manifest.json"
RUNNER = "runner.py"
INPUTS = "inputs.npy"
FLOAT_REFERENCE = "float_reference.npy"
TOLERANCE = "tolerance.json"
SIGNATURE = "manifest.sig"
MAX_HEADER_BYTES = 4096  # a GNU long name or PAX header (edgeconv's own bundles have none)
MAX_EXTENDED_HEADERS = 8
MAX_JSON_BYTES = 4 * 2**20
MAX_MEMBER_BYTES = 64 * 2**20  # one member (a model, the inputs)
MAX_TOTAL_BYTES = 256 * 2**20  # the whole bundle, uncompressed
MAX_MEMBERS = 64
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

# which golden-reference variants (quant.golden runtimes) a bundle carries, per backend;
# the runner's kernels pick one of them (see golden_for_kernels)
GOLDENS = {
    "arm": ("litert_xnnpack", "litert_builtin", "litert_ref"),
    "cpu": ("ort_cpu",),
    "npu": ("qnn_htp", "ort_cpu"),  # its own family; ort_cpu for the informational cross-family figure
    "mcu": ("tflm",),
}
RUNTIME_KIND = {"arm": "litert", "cpu": "onnxruntime", "npu": "onnxruntime_qnn", "mcu": "tflite_micro"}
LITERT_GOLDEN = {"xnnpack": "litert_xnnpack", "builtin": "litert_builtin", "reference": "litert_ref"}


def expected_name(golden: str, tensor: str | None = None) -> str:
    return f"expected_{golden}.npy" if tensor is None else f"expected_{golden}_{tensor}.npy"


def golden_for_kernels(manifest: dict, kernels: str) -> str:
    """The golden variant that matches what the runner actually ran."""
    if manifest["runtime"]["kind"] == "litert":
        if kernels not in LITERT_GOLDEN:
            raise InputError(f"result: kernels {kernels!r} unknown; expected one of {', '.join(LITERT_GOLDEN)}")
        return LITERT_GOLDEN[kernels]
    return manifest["golden"]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def runner_source() -> bytes:
    return (Path(__file__).resolve().parent / "runner.py").read_bytes()


# -- writing ----------------------------------------------------------------------------------------


def bundle_files(build, target, x: np.ndarray, input_source: str) -> dict[str, bytes]:
    """Every member of the bundle of `build` for `target`, on float inputs x (N x H x W x C)."""
    from edgeconv import __version__
    from edgeconv.core import reference
    from edgeconv.parity.policy import (
        allowed_lsb,
        bounded_layers,
        golden_runtime,
        requantizing_layers,
        splits_softmax_head,
    )
    from edgeconv.parity.run import _is_classifier, target_dtype, target_pins
    from edgeconv.quant.golden import run_int8
    from edgeconv.quant.quantize import quantize_input

    if target.backend not in GOLDENS:
        raise UsageError(
            f"--target: {target.name} (backend {target.backend}) has no device runtime to bundle; "
            f"bundle one of the targets with backends {', '.join(GOLDENS)}"
        )
    artifact_path = build.artifact(target.artifact)
    dtype = target_dtype(build, target)
    if target.artifact == "qdq_onnx" and dtype != target.activation_dtype:
        raise InputError(
            f"{build.folder}: {artifact_path.name} has {dtype} activations, target {target.name} "
            f"takes {target.activation_dtype} (rebuild with --target {target.name})"
        )
    in_tq = build.qparams.activations["input"]
    out_name = build.analysis.model.output
    out_tq = build.qparams.activations[out_name]
    x = np.asarray(x, np.float32)
    x_q, x_q_int8 = quantize_input(x, in_tq, dtype), quantize_input(x, in_tq, "int8")
    kernels = str(target.option("kernels", "xnnpack")) if target.backend == "arm" else None
    golden = golden_runtime(target.backend, target.rounding, kernels)
    artifact = artifact_path.read_bytes()
    # across rounding families a softmax head is judged on the device's own logits (see
    # parity.policy), so the bundled artifact also outputs the logits: the build's artifact
    # with one more graph output (export.expose), its own hash recorded in the manifest
    split_head = splits_softmax_head(build.analysis, target.tolerance.lsb_policy, golden)
    logits = build.analysis.layers[-1].inputs[0] if split_head else None
    if split_head:
        from edgeconv.export.expose import onnx_with_outputs, tflite_with_outputs

        expose = onnx_with_outputs if target.artifact == "qdq_onnx" else tflite_with_outputs
        # an imported user's file keeps its own tensor names (BuiltModel.tensor_name)
        artifact = expose(artifact, [build.tensor_name(target.artifact, n) for n in (out_name, logits)])
    files: dict[str, bytes] = {
        artifact_path.name: artifact,
        INPUTS: npy_bytes(x_q),
        FLOAT_REFERENCE: npy_bytes(reference.run(build.analysis, build.weights, x)[out_name].astype(np.float32)),
        RUNNER: runner_source(),
    }
    for variant in GOLDENS[target.backend]:
        golden_all = run_int8(build.analysis, build.qparams, x_q_int8, variant, keep_all=split_head)
        files[expected_name(variant)] = npy_bytes(golden_all[out_name])
        if logits is not None:
            files[expected_name(variant, logits)] = npy_bytes(golden_all[logits])
    tol = target.tolerance
    n_requant = requantizing_layers(build.analysis)
    n_bounded = bounded_layers(build.analysis, golden)
    head = None
    if logits is not None:
        logits_tq = build.qparams.activations[logits]
        n_logits = requantizing_layers(build.analysis, logits)
        n_bounded_logits = bounded_layers(build.analysis, golden, logits)
        head = {
            "logits": logits,
            "file": f"output_{logits}.npy",
            "requantizing_layers": n_logits,
            "bounded_layers": n_bounded_logits,
            "allowed_lsb": allowed_lsb(tol.lsb_policy, tol.max_lsb_vs_golden, n_logits, n_bounded_logits),
            "head_lsb": tol.head_lsb,
            "logits_scale": list(logits_tq.scale),
            "logits_zero_point_int8": list(logits_tq.zero_point),
        }
    files[TOLERANCE] = _json(
        {
            "head": head,
            "lsb_policy": tol.lsb_policy,
            "max_lsb_vs_golden": tol.max_lsb_vs_golden,
            "requantizing_layers": n_requant,
            "bounded_layers": n_bounded,
            "allowed_lsb": allowed_lsb(tol.lsb_policy, tol.max_lsb_vs_golden, n_requant, n_bounded),
            "min_sqnr_db": tol.min_sqnr_db,
            "min_top1_agreement": tol.min_top1_agreement,
            "classifier": _is_classifier(build),
        }
    )
    options = dict(target.options)
    if target.backend == "mcu":
        options["arena_bytes"] = _mcu_arena(options.get("arena"), target)
    manifest = {
        "format": FORMAT,
        "kind": "edgeconv-bundle",
        "model": build.name,
        "target": {
            "name": target.name,
            "description": target.description,
            "backend": target.backend,
            "artifact": target.artifact,
            "activation_dtype": target.activation_dtype,
            "rounding": target.rounding,
            "packages": list(target.packages),
            "options": dict(target.options),
        },
        "artifact": artifact_path.name,
        "artifact_derived_from": None
        if not split_head
        else {
            "file": artifact_path.name,
            "sha256": sha256_bytes(artifact_path.read_bytes()),
            "change": f"graph outputs [{out_name}, {logits}]: the logits too, for the softmax head check",
        },
        "extra_outputs": [] if not split_head else [{"name": logits, "file": f"output_{logits}.npy"}],
        "runtime": {
            "kind": RUNTIME_KIND[target.backend],
            "packages": list(target.packages),
            "kernels": kernels,
            "options": options,
        },
        "golden": golden,
        "goldens": list(GOLDENS[target.backend]),
        "pins": target_pins(target),  # what the golden's numerics depend on (htp_arch, soc_model, QNN SDK, ...)
        "input": {
            "file": INPUTS,
            "dtype": str(x_q.dtype),
            "shape": list(x_q.shape),
            "source": input_source,
            "scale": list(in_tq.scale),
            "zero_point_int8": list(in_tq.zero_point),
        },
        "output": {
            "name": out_name,
            "shape": list(build.analysis.output_shape),
            "scale": list(out_tq.scale),
            "zero_point_int8": list(out_tq.zero_point),
            "note": "expected_*.npy hold the int8 convention; a uint8 runtime output is compared as q - 128",
        },
        "versions": {
            "edgeconv": __version__,
            "numpy": np.__version__,
            "runtime": {p: _version(p) for p in target.packages},
        },
        "built_on": {"python": platform.python_version(), "machine": platform.machine()},
        "files": {name: sha256_bytes(files[name]) for name in sorted(files)},
    }
    files[MANIFEST] = _json(manifest)
    return files


def _mcu_arena(value: Any, target) -> int | None:
    from edgeconv.backends.mcu import parse_arena

    return parse_arena(value, f"{target.source}, field 'options.arena'")


def _json(document: object) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")


def tar_gz(files: dict[str, bytes]) -> bytes:
    """A deterministic .tar.gz of flat files (sorted, mtime 0, root-owned, fixed modes)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o755 if name == RUNNER else 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def make_bundle(build, target, x: np.ndarray, input_source: str, signing_key=None) -> bytes:
    files = bundle_files(build, target, x, input_source)
    if signing_key is not None:
        files[SIGNATURE] = signature_bytes(files[MANIFEST], signing_key)
    return tar_gz(files)


# -- reading ----------------------------------------------------------------------------------------


class _Refused(Exception):
    """Raised from inside tarfile's header parsing (not a TarError, so tarfile lets it through)."""


class _BoundedStream(io.RawIOBase):
    """The decompressed bytes of a bundle, refused past `limit`: bounds what tarfile can ever
    read (and buffer) before any header is parsed."""

    def __init__(self, source, limit: int):
        self.source, self.limit, self.count = source, limit, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        room = self.limit + 1 - self.count  # one byte past the limit tells "over" from "at"
        data = self.source.read(room if size is None or size < 0 else min(size, room))
        self.count += len(data)
        if self.count > self.limit:
            raise _Refused(f"more than {self.limit} bytes uncompressed")
        return data


class _SafeTarInfo(tarfile.TarInfo):
    """Refuses oversized GNU long-name/long-link and PAX headers before tarfile reads them."""

    _EXTENDED = (
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
    )

    def _proc_member(self, tar):
        if self.type in self._EXTENDED:
            count = getattr(tar, "_edgeconv_extended", 0) + 1
            tar._edgeconv_extended = count
            if self.size > MAX_HEADER_BYTES:
                raise _Refused(f"a {self.size}-byte long-name/PAX header (limit {MAX_HEADER_BYTES})")
            if count > MAX_EXTENDED_HEADERS:
                raise _Refused(f"more than {MAX_EXTENDED_HEADERS} long-name/PAX headers")
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise _Refused(f"member {self.name[:80]!r} is a sparse file")
        return super()._proc_member(tar)  # type: ignore[misc]


def _refuse(bundle: Path, name: str, why: str) -> InputError:
    return InputError(
        f"bundle {bundle}: member {name[:100]!r} refused: {why}; bundles are untrusted input, "
        "rebuild it with 'edgeconv bundle'"
    )


def _check_member(
    bundle: Path, member: tarfile.TarInfo, seen: set[str], total: int, max_member: int, max_total: int
) -> None:
    name = member.name
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise _refuse(bundle, name, "absolute path")
    parts = re.split(r"[\\/]", name)
    if ".." in parts:
        raise _refuse(bundle, name, "path with '..'")
    if member.issym() or member.islnk():
        raise _refuse(bundle, name, f"{'symbolic' if member.issym() else 'hard'} link to {member.linkname[:100]!r}")
    if member.issparse():
        raise _refuse(bundle, name, "sparse file")
    if not member.isreg():
        kind = "directory" if member.isdir() else "device or special file"
        raise _refuse(bundle, name, f"{kind}; a bundle holds plain files only")
    if not _NAME.match(name):
        raise _refuse(bundle, name, "not a plain file name (a bundle is flat: letters, digits, '.', '_', '-')")
    if name in seen:
        raise _refuse(bundle, name, "duplicate member")
    if member.size > max_member:
        raise _refuse(bundle, name, f"{member.size} bytes, over the {max_member}-byte limit per member")
    if total + member.size > max_total:
        raise _refuse(bundle, name, f"the bundle would exceed {max_total} bytes uncompressed")


def safe_extract(
    bundle: str | Path,
    dest: str | Path,
    max_member: int = MAX_MEMBER_BYTES,
    max_total: int = MAX_TOTAL_BYTES,
    max_members: int = MAX_MEMBERS,
) -> list[str]:
    """Extract a bundle's plain files into the (existing, empty) folder dest; return the names."""
    bundle, dest = Path(bundle), Path(dest)
    if not bundle.is_file():
        raise InputError(f"bundle {bundle}: file not found")
    names: list[str] = []
    total = 0
    # the members' data, their headers (512 B each, plus at most MAX_EXTENDED_HEADERS extended
    # ones), the 512-byte padding of each member and the end-of-archive record
    limit = max_total + (max_members + 1) * 1024 + MAX_EXTENDED_HEADERS * (MAX_HEADER_BYTES + 1024) + 20480
    try:
        with open(bundle, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            stream = _BoundedStream(gz, limit)
            with tarfile.open(fileobj=stream, mode="r|", tarinfo=_SafeTarInfo) as tar:
                for member in tar:  # streamed: headers are checked before any data is read
                    if len(names) >= max_members:
                        raise _refuse(bundle, member.name, f"more than {max_members} members")
                    _check_member(bundle, member, set(names), total, max_member, max_total)
                    if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.12: the 'data' filter
                        try:
                            tarfile.data_filter(member, str(dest))
                        except tarfile.FilterError as err:
                            raise _refuse(bundle, member.name, f"tarfile's data filter: {err}") from None
                    total += member.size
                    source = tar.extractfile(member)
                    if source is None:
                        raise _refuse(bundle, member.name, "not a plain file")
                    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                    fd = os.open(dest / member.name, flags, 0o644)
                    with os.fdopen(fd, "wb") as out:
                        remaining = member.size
                        while remaining:
                            chunk = source.read(min(remaining, 1 << 20))
                            if not chunk:
                                raise InputError(f"bundle {bundle}: member {member.name!r} is truncated")
                            out.write(chunk)
                            remaining -= len(chunk)
                    names.append(member.name)
    except _Refused as err:
        raise InputError(
            f"bundle {bundle}: refused: {err}; bundles are untrusted input, rebuild it with 'edgeconv bundle'"
        ) from None
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, OSError, zlib.error, UnicodeError) as err:
        raise InputError(
            f"bundle {bundle}: not a readable .tar.gz ({' '.join(str(err).split())[:200] or type(err).__name__})"
        ) from None
    if not names:
        raise InputError(f"bundle {bundle}: empty archive")
    return names


@dataclass(frozen=True)
class Bundle:
    """An extracted, hash-verified bundle."""

    folder: Path
    manifest: dict
    manifest_sha256: str
    tolerance: dict
    manifest_bytes: bytes = b""
    signature: bytes | None = None  # manifest.sig, when the bundle carries one

    def array(self, name: str) -> np.ndarray:
        from edgeconv.core.tensors import load_npy

        return load_npy(self.folder / name, f"bundle: {name}")

    @property
    def files(self) -> list[str]:
        return sorted(self.manifest["files"])


_MANIFEST_SCHEMA = {
    "model": str,
    "artifact": str,
    "golden": str,
    "goldens": list,
    "target": dict,
    "runtime": dict,
    "input": dict,
    "output": dict,
}


def _manifest_problem(m: dict) -> str | None:
    """What is wrong with a manifest's fields that validate and the runner read, or None."""
    for key, kind in _MANIFEST_SCHEMA.items():
        if not isinstance(m.get(key), kind):
            return f"field {key!r}: expected {kind.__name__}, got {type(m.get(key)).__name__}"
    if not isinstance(m["target"].get("name"), str):
        return "field 'target.name': expected a target name"
    if m["runtime"].get("kind") not in RUNTIME_KIND.values():
        return f"field 'runtime.kind': expected one of {', '.join(RUNTIME_KIND.values())}, got {m['runtime'].get('kind')!r}"
    out = m["output"]
    if not isinstance(out.get("name"), str):
        return "field 'output.name': expected a tensor name"
    try:
        TensorQuant.from_json({"scale": out.get("scale"), "zero_point": out.get("zero_point_int8")})
    except ValueError as err:
        return f"field 'output': {err}"
    if m["input"].get("dtype") not in ("int8", "uint8"):
        return f"field 'input.dtype': expected int8 or uint8, got {m['input'].get('dtype')!r}"
    extra = m.get("extra_outputs") or []
    if not isinstance(extra, list) or not all(
        isinstance(e, dict)
        and isinstance(e.get("name"), str)
        and isinstance(e.get("file"), str)
        and _NAME.match(e["file"])
        for e in extra
    ):
        return "field 'extra_outputs': expected a list of {name, file} with plain file names"
    return None


def _tolerance_problem(t: object) -> str | None:
    if not isinstance(t, dict):
        return f"expected a JSON object, got {type(t).__name__}"
    n = t.get("requantizing_layers")
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 100_000:
        return f"field 'requantizing_layers': expected an integer 0-100000, got {n!r}"
    for where in (t, t.get("head") or {}):  # optional (bundles before the qnn_htp golden lack it)
        b = where.get("bounded_layers", 0) if isinstance(where, dict) else 0
        if isinstance(b, bool) or not isinstance(b, int) or not 0 <= b <= 100_000:
            return f"field 'bounded_layers': expected an integer 0-100000, got {b!r}"
    if not isinstance(t.get("classifier"), bool):
        return f"field 'classifier': expected true or false, got {t.get('classifier')!r}"
    head = t.get("head")
    if head is not None:
        if not isinstance(head, dict) or not isinstance(head.get("logits"), str):
            return "field 'head': expected null or a table naming the logits tensor"
        n = head.get("requantizing_layers")
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 100_000:
            return f"field 'head.requantizing_layers': expected an integer 0-100000, got {n!r}"
        try:
            TensorQuant.from_json({"scale": head.get("logits_scale"), "zero_point": head.get("logits_zero_point_int8")})
        except ValueError as err:
            return f"field 'head': {err}"
    return None


def _read_member(folder: Path, name: str, limit: int) -> bytes:
    from edgeconv.core.io import read_regular_file

    return read_regular_file(folder / name, limit, "bundle member")


def verify_manifest(folder: str | Path, names: list[str] | None = None) -> Bundle:
    """Check every file against manifest.json; a file not listed, missing or changed is refused."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise InputError(f"bundle: {MANIFEST} not found (not an edgeconv bundle?)")
    raw = _read_member(folder, MANIFEST, MAX_JSON_BYTES)
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError) as err:
        raise InputError(f"bundle: {MANIFEST} is not valid JSON ({' '.join(str(err).split())[:200]})") from None
    if not isinstance(manifest, dict):
        raise InputError(f"bundle: {MANIFEST}: expected a JSON object, got {type(manifest).__name__}")
    kind, files = manifest.get("kind"), manifest.get("files")
    if kind != "edgeconv-bundle" or manifest.get("format") != FORMAT:
        raise InputError(
            f"bundle: {MANIFEST}: expected an edgeconv bundle of format {FORMAT}, got "
            f"kind {kind!r} format {manifest.get('format')!r}"
        )
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise InputError(
            f"bundle: {MANIFEST}: expected 'files' to be a table of name -> SHA-256, got {type(files).__name__}"
        )
    listed = set(names if names is not None else (p.name for p in folder.iterdir()))
    present = listed - {MANIFEST, SIGNATURE}
    unlisted = sorted(present - set(files))
    if unlisted:
        raise InputError(f"bundle: {unlisted[0]} is not listed in {MANIFEST} (the bundle was modified)")
    for name in sorted(files):
        member = folder / name
        if not _NAME.match(str(name)) or name in (MANIFEST, SIGNATURE) or not member.is_file() or member.is_symlink():
            raise InputError(f"bundle: {str(name)[:100]!r} is listed in {MANIFEST} but missing")
        got = hashlib.sha256(_read_member(folder, name, MAX_MEMBER_BYTES)).hexdigest()
        if got != files[name]:
            raise InputError(
                f"bundle: {name} failed the hash check (SHA-256 {got[:16]}..., manifest says "
                f"{str(files[name])[:16]}...): the bundle was modified or corrupted; rebuild it "
                "with 'edgeconv bundle'"
            )
    problem = _manifest_problem(manifest)
    if problem:
        raise InputError(f"bundle: {MANIFEST}: {problem}")
    for required in (RUNNER, INPUTS, FLOAT_REFERENCE, TOLERANCE, manifest["artifact"]):
        if required not in files:
            raise InputError(f"bundle: {MANIFEST} lists no {required}")
    try:
        tolerance = json.loads(_read_member(folder, TOLERANCE, MAX_JSON_BYTES))
    except (ValueError, RecursionError) as err:
        raise InputError(f"bundle: {TOLERANCE} is malformed ({' '.join(str(err).split())[:200]})") from None
    problem = _tolerance_problem(tolerance)
    if problem:
        raise InputError(f"bundle: {TOLERANCE}: {problem}")
    signature = None
    if SIGNATURE in listed:
        signature = _read_member(folder, SIGNATURE, 4096)
    return Bundle(folder, manifest, sha256_bytes(raw), tolerance, raw, signature)


# -- signing ----------------------------------------------------------------------------------------


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise MissingRuntime(
            "signing: the cryptography package is not installed; install it with: pip install 'edgeconv[all]' "
            "(or pip install cryptography)"
        ) from None
    return serialization, ed25519, InvalidSignature


def _key_bytes(path: str | Path, what: str) -> bytes:
    from edgeconv.core.io import read_regular_file

    return read_regular_file(Path(path), 64 * 1024, what)


def load_signing_key(path: str | Path):
    """An Ed25519 private key from a PEM file (openssl genpkey -algorithm ed25519)."""
    serialization, ed25519, _ = _crypto()
    data = _key_bytes(path, "--sign key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        raise InputError(
            f"--sign {path}: expected an unencrypted Ed25519 private key in PEM "
            f"(openssl genpkey -algorithm ed25519 -out KEY.pem), got: {' '.join(str(err).split())[:120]}"
        ) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise InputError(f"--sign {path}: expected an Ed25519 private key, got a {type(key).__name__}")
    return key


def load_verify_key(path: str | Path):
    """An Ed25519 public key from a PEM file (openssl pkey -in KEY.pem -pubout), or the public
    half of a private key file."""
    serialization, ed25519, _ = _crypto()
    data = _key_bytes(path, "--verify key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        try:
            key = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError) as err:
            raise InputError(
                f"--verify {path}: expected an Ed25519 public key in PEM (openssl pkey -in KEY.pem -pubout), "
                f"got: {' '.join(str(err).split())[:120]}"
            ) from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise InputError(f"--verify {path}: expected an Ed25519 public key, got a {type(key).__name__}")
    return key


def key_id(public_key) -> str:
    serialization, _, _ = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def signature_bytes(manifest: bytes, private_key) -> bytes:
    """manifest.sig: the Ed25519 signature of manifest.json's exact bytes (deterministic)."""
    doc = {
        "algorithm": "ed25519",
        "signed": MANIFEST,
        "key_id": key_id(private_key.public_key()),
        "signature": base64.b64encode(private_key.sign(manifest)).decode("ascii"),
    }
    return _json(doc)


def verify_signature(bundle: Bundle, public_key) -> str:
    """Refuse an unsigned or mis-signed bundle; return the key id."""
    _, _, invalid = _crypto()
    want = key_id(public_key)
    if bundle.signature is None:
        raise InputError(f"bundle: unsigned (no {SIGNATURE}), and --verify was given: refused")
    try:
        doc = json.loads(bundle.signature)
        if doc.get("algorithm") != "ed25519" or doc.get("signed") != MANIFEST:
            raise ValueError(f"algorithm {doc.get('algorithm')!r}, expected ed25519")
        sig = base64.b64decode(str(doc["signature"]), validate=True)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise InputError(f"bundle: {SIGNATURE} is malformed ({err}): refused") from None
    try:
        public_key.verify(sig, bundle.manifest_bytes)
    except invalid:
        raise InputError(
            f"bundle: {SIGNATURE} does not verify with key {want} (signed by key {str(doc.get('key_id'))[:16]}, "
            "or the manifest was changed): refused"
        ) from None
    return want


def open_bundle(bundle: str | Path, dest: str | Path) -> Bundle:
    """safe_extract + verify_manifest."""
    names = safe_extract(bundle, dest)
    return verify_manifest(dest, names)
