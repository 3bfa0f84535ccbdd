"""The TFLite Micro static library for one (Cortex-M core, kernels) pair, built once and cached.

The sources are the archives TFLM's Makefile pins (TFLM itself, CMSIS-NN, CMSIS 6, flatbuffers,
gemmlowp, ruy, kissfft), taken from a folder (``--sources`` or ``EDGECONV_TFLM_SOURCES``, default
``../shared/third_party`` next to the repository) and checked by sha256 before anything is
unpacked. The unpacking does what TFLM's download scripts do (they are skipped because the
``downloads/<name>`` folder exists): ``*BUILD`` files deleted, TFLM's ``flatbuffers.patch`` and
``third_party/kissfft/kissfft.patch`` applied. Two empty folders stop the network steps that
are not needed here: ``downloads/gcc_embedded`` (Debian's ``gcc-arm-none-eabi`` on PATH is used
instead of a downloaded Arm GCC) and ``downloads/pigweed`` (style checks only).

The cache lives in ``${EDGECONV_TFLM_CACHE:-~/.cache/edgeconv/tflm}/<cpu>-<kernels>``; its
``key.json`` records the core, kernels, archive hashes and compiler version. A rerun with the
same key does nothing; a different key rebuilds into a temporary sibling that replaces the old
folder in one rename. ``flags.json`` records the compile flags and include folders the library
was built with, so a firmware project compiles against it with the same ABI.

Run ``scripts/build_tflm.sh --cpu cortex-m4 --kernels cmsis_nn`` (or
``python -m edgeconv.firmware.library``); the tests only look the cache up (:func:`find`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from edgeconv.core.errors import InputError

CPUS = ("cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")
KERNELS = ("cmsis_nn", "reference")
RECIPE_VERSION = 1  # bump when the way the library is built changes (invalidates caches)

# archive -> (folder under tensorflow/lite/micro/tools/make/downloads, or "" for TFLM, sha256)
ARCHIVES: dict[str, tuple[str, str]] = {
    "tflite-micro-90b983c2b.tar.gz": ("", "323681760d293f5f1fc8e981437c1855772cbf2039f72149ab3fd9aae17e8c6f"),
    "cmsis-nn-4ab83cc3.tar.gz": ("cmsis_nn", "66570d3e3d1580a199ab7f218c1ea2ded6271c914f6415aa64b3039446d74ee4"),
    "cmsis6-5782d6f8.tar.gz": ("cmsis", "ddaac1981868d61525befc9adf667bd81caa9975b0aa2b23a1d2a584a2b984ef"),
    "flatbuffers-v25.9.23.tar.gz": (
        "flatbuffers",
        "57c5858615dc72b18726be929f9568c28cdb0456c290c43ecb56bd5515bbd237",
    ),
    "gemmlowp-719139ce.tar.gz": ("gemmlowp", "5fe05ffe6ae2e9e0b8d3ccd95a237333b33681f14c93ff2f72beac580ce388e9"),
    "kissfft-v130.tar.gz": ("kissfft", "e4e165fdc96b94927220878a25f14ca15bc47e67e8aa9013d9810d01b97bdb8c"),
    "ruy-d3712831.tar.gz": ("ruy", "c09619e6e47c23383021d54704c86feb0ae035ad8f2d02dc42210d6e5f200849"),
}
# patches from the TFLM tree, applied inside downloads/<name> as the download scripts do
PATCHES = {
    "flatbuffers": "tensorflow/lite/micro/tools/make/flatbuffers.patch",
    "kissfft": "third_party/kissfft/kissfft.patch",
}
APT_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib"
BUILD_SCRIPT = "scripts/build_tflm.sh"
LIB_NAME = "libtensorflow-microlite.a"
_PRINT_MK = """
edgeconv_print_flags:
\t@echo 'CXXFLAGS=$(CXXFLAGS)'
\t@echo 'CCFLAGS=$(CCFLAGS)'
\t@echo 'INCLUDES=$(INCLUDES)'
\t@echo 'LIB=$(MICROLITE_LIB_PATH)'
"""


@dataclass(frozen=True)
class Library:
    """A built, cached TFLM library."""

    folder: Path
    cpu: str
    kernels: str
    lib: Path
    tree: Path  # the TFLM source tree (headers)
    cxxflags: list[str]
    ccflags: list[str]
    includes: list[str]  # -I folders relative to the TFLM tree ("." is the tree)
    build_seconds: float


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def default_sources() -> Path:
    env = os.environ.get("EDGECONV_TFLM_SOURCES")
    return Path(env) if env else repo_root().parent / "shared" / "third_party"


def cache_root() -> Path:
    env = os.environ.get("EDGECONV_TFLM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "edgeconv" / "tflm"


def _check(cpu: str, kernels: str) -> None:
    if cpu not in CPUS:
        raise InputError(f"--cpu: expected one of {', '.join(CPUS)}, got {cpu!r}")
    if kernels not in KERNELS:
        raise InputError(f"--kernels: expected one of {', '.join(KERNELS)}, got {kernels!r}")


def cache_folder(cpu: str, kernels: str) -> Path:
    _check(cpu, kernels)
    return cache_root() / f"{cpu}-{kernels}"


def _compiler_version() -> str:
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        raise InputError(
            f"arm-none-eabi-gcc: not on PATH; expected Debian's toolchain (apt-get install {APT_PACKAGES})"
        )
    out = subprocess.run([gcc, "--version"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0].strip()


def cache_key(cpu: str, kernels: str) -> dict[str, object]:
    return {
        "cpu": cpu,
        "kernels": kernels,
        "recipe": RECIPE_VERSION,
        "archives": {name: sha for name, (_, sha) in sorted(ARCHIVES.items())},
        "compiler": _compiler_version(),
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_sources(sources: Path) -> dict[str, Path]:
    """Every pinned archive present in `sources` with its pinned sha256."""
    found: dict[str, Path] = {}
    for name, (_, sha) in ARCHIVES.items():
        path = sources / name
        if not path.is_file():
            raise InputError(
                f"TFLM sources {sources}: {name} missing; expected the pinned archives "
                "(--sources DIR or EDGECONV_TFLM_SOURCES)"
            )
        got = _sha256(path)
        if got != sha:
            raise InputError(f"TFLM sources: {path} has sha256 {got}, expected {sha}")
        found[name] = path
    return found


def _unpack(archive: Path, dest: Path) -> None:
    """Unpack a `git archive` tarball whose single top folder is named like the archive into `dest`."""
    top = archive.name.removesuffix(".tar.gz")
    with tarfile.open(archive) as tar, tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        tar.extractall(tmp, filter="data")
        src = Path(tmp) / top
        if not src.is_dir():
            raise InputError(f"{archive}: expected one top folder {top}/ inside")
        src.rename(dest)


def _delete_build_files(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file() and (p.name.endswith("BUILD") or p.name == "BUILD.bazel"):
            p.unlink()


def lay_out(tree: Path, archives: dict[str, Path]) -> None:
    """Unpack TFLM into `tree` and its dependencies into its downloads/ folder, patched."""
    tflm = next(n for n, (d, _) in ARCHIVES.items() if d == "")
    _unpack(archives[tflm], tree)
    downloads = tree / "tensorflow/lite/micro/tools/make/downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    for name, (folder, _) in ARCHIVES.items():
        if not folder:
            continue
        _unpack(archives[name], downloads / folder)
        _delete_build_files(downloads / folder)
        if folder in PATCHES:
            subprocess.run(
                ["patch", "-p1", "-s", "-l", "-i", str(tree / PATCHES[folder])],
                cwd=downloads / folder,
                check=True,
            )
    (downloads / "gcc_embedded").mkdir(exist_ok=True)  # use the toolchain on PATH
    (downloads / "pigweed").mkdir(exist_ok=True)  # pigweed_download.sh would git clone


def _make_args(cpu: str, kernels: str) -> list[str]:
    args = ["-f", "tensorflow/lite/micro/tools/make/Makefile", "TARGET=cortex_m_qemu", f"TARGET_ARCH={cpu}"]
    if kernels == "cmsis_nn":
        args.append("OPTIMIZED_KERNEL_DIR=cmsis_nn")
    return args


def _relative_includes(includes: list[str], tree: Path) -> list[str]:
    out: list[str] = []
    for inc in includes:
        rel = os.path.relpath(inc, tree) if os.path.isabs(inc) else os.path.normpath(inc)
        if rel not in out:
            out.append(rel)
    return out


def _load(folder: Path) -> Library:
    info = json.loads((folder / "flags.json").read_text())
    return Library(
        folder=folder,
        cpu=info["cpu"],
        kernels=info["kernels"],
        lib=folder / LIB_NAME,
        tree=folder / "tflite-micro",
        cxxflags=info["cxxflags"],
        ccflags=info["ccflags"],
        includes=_relative_includes(info["includes"], folder / "tflite-micro"),
        build_seconds=info["build_seconds"],
    )


def find(cpu: str = "cortex-m4", kernels: str = "cmsis_nn") -> Library:
    """The cached library, or an InputError naming the cache folder and the build script."""
    folder = cache_folder(cpu, kernels)
    ok = folder / "key.json"
    if not ok.is_file() or not (folder / LIB_NAME).is_file():
        raise InputError(
            f"TFLM library for {cpu}/{kernels}: not built in {folder}; expected a cached build "
            f"(run {BUILD_SCRIPT} --cpu {cpu} --kernels {kernels})"
        )
    if json.loads(ok.read_text()) != cache_key(cpu, kernels):
        raise InputError(
            f"TFLM library in {folder}: built from other sources or another compiler; "
            f"expected the pinned key (rerun {BUILD_SCRIPT} --cpu {cpu} --kernels {kernels})"
        )
    return _load(folder)


def _split_flags(value: str) -> list[str]:
    return [f for f in value.split() if f]


def build(
    cpu: str = "cortex-m4",
    kernels: str = "cmsis_nn",
    sources: Path | None = None,
    jobs: int | None = None,
    log=sys.stderr,
) -> Library:
    """Build (or find) the cached library for (cpu, kernels)."""
    folder = cache_folder(cpu, kernels)
    key = cache_key(cpu, kernels)
    have = folder / "key.json"
    if have.is_file() and (folder / LIB_NAME).is_file() and json.loads(have.read_text()) == key:
        print(f"TFLM {cpu}/{kernels}: cached in {folder}", file=log)
        return _load(folder)
    try:
        import PIL  # noqa: F401  (TFLM's Makefile runs generate_cc_arrays.py while parsing)
    except ImportError:
        raise InputError("Pillow: not installed; TFLM's Makefile needs it (pip install pillow)") from None
    for tool in ("make", "patch"):
        if shutil.which(tool) is None:
            raise InputError(f"{tool}: not on PATH; expected it to build TFLM (apt-get install {tool})")
    archives = check_sources(sources or default_sources())
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        start = time.monotonic()
        tree = work / "tflite-micro"
        lay_out(tree, archives)
        # the Makefile calls `python3` itself: put this interpreter (which has Pillow) first
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        args = _make_args(cpu, kernels)
        n = jobs or os.cpu_count() or 1
        print(f"TFLM {cpu}/{kernels}: building in {work} with make -j{n} (about 10 min on 2 cores)", file=log)
        with open(work / "build.log", "w") as out:
            proc = subprocess.run(
                ["make", *args, f"-j{n}", "microlite"], cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        if proc.returncode != 0:
            tail = (work / "build.log").read_text(errors="replace").splitlines()[-15:]
            raise InputError(f"TFLM build failed (exit {proc.returncode}); last lines:\n" + "\n".join(tail))
        mk = work / "print_flags.mk"
        mk.write_text(_PRINT_MK)
        printed = subprocess.run(
            ["make", *args, "-f", str(mk), "edgeconv_print_flags"],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        values = dict(line.split("=", 1) for line in printed.splitlines() if "=" in line)
        lib = tree / values["LIB"].strip()
        shutil.copy2(lib, work / LIB_NAME)
        includes = []
        for flag in _split_flags(values["INCLUDES"]):
            inc = flag.removeprefix("-I")
            path = Path(inc) if Path(inc).is_absolute() else tree / inc
            includes.append(str(folder / path.relative_to(work)))
        seconds = round(time.monotonic() - start, 1)
        info = {
            "cpu": cpu,
            "kernels": kernels,
            "cxxflags": [f for f in _split_flags(values["CXXFLAGS"]) if not f.startswith("-I")],
            "ccflags": [f for f in _split_flags(values["CCFLAGS"]) if not f.startswith("-I")],
            "includes": includes,
            "build_seconds": seconds,
            "make": args,
        }
        (work / "flags.json").write_text(json.dumps(info, indent=1) + "\n")
        # object files are not needed once the archive is copied out
        shutil.rmtree(tree / "gen", ignore_errors=True)
        (work / "key.json").write_text(json.dumps(key, indent=1) + "\n")
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old.{os.getpid()}.tmp")
            folder.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        work.chmod(0o755)  # mkdtemp made it private
        work.rename(folder)
        print(f"TFLM {cpu}/{kernels}: built in {seconds:.0f} s -> {folder}", file=log)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return _load(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build and cache the TFLite Micro library for a Cortex-M core.")
    parser.add_argument("--cpu", default="cortex-m4", choices=CPUS)
    parser.add_argument("--kernels", default="cmsis_nn", choices=KERNELS)
    parser.add_argument("--sources", type=Path, default=None, help="folder with the pinned archives")
    parser.add_argument("--jobs", type=int, default=None)
    ns = parser.parse_args(argv)
    try:
        lib = build(ns.cpu, ns.kernels, ns.sources, ns.jobs)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(lib.lib)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
