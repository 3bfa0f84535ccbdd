"""The hostile and malformed inputs of issue 16, one CLI call each (shared by
tests/test_hardening.py and scripts/probe_hardening.py).

Every case is (id, make) where make(ctx) writes what the case needs under ctx.tmp and returns
the argv after `edgeconv`. ctx.build is a sealed ds_cnn build folder and ctx.bundle an arm
bundle of it (both made once). Every case must end with exit 2 and one error line.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Ctx:
    tmp: Path
    build: Path
    bundle: Path
    bomb_bytes: int = 2 * 2**30  # the 2 GiB zip bomb; the test uses a smaller one under a lower ceiling

    def path(self, name: str) -> Path:
        return self.tmp / name


def _recipe(ctx: Ctx, name: str, body: str, input_: str = "[8, 8, 3]", model: str = "probe") -> str:
    path = ctx.path(f"{name}.toml")
    path.write_text(f'name = "{model}"\ninput = {input_}\n{body}')
    return str(path)


def _conv(filters: str = "8", kernel: str = "3", padding: str = '"same"') -> str:
    return (
        f'[[layers]]\nname = "c1"\nop = "conv2d"\nfilters = {filters}\nkernel = {kernel}\npadding = {padding}\n'
        '[[layers]]\nname = "gap"\nop = "global_avg_pool"\n[[layers]]\nname = "fc"\nop = "dense"\nunits = 4\n'
    )


def _huge_npy(ctx: Ctx, name: str = "huge.npy") -> str:
    """A 128-byte .npy whose header claims a 100000 x 100000 x 3 x 3 float32 array (~360 GB)."""
    path = ctx.path(name)
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "<f4", "fortran_order": False, "shape": (100000, 100000, 3, 3)}
        )
    return str(path)


def _copy_build(ctx: Ctx, name: str, edit: Callable[[Path], None]) -> str:
    from edgeconv.artifacts.folder import reseal_build_folder

    folder = ctx.path(name)
    shutil.copytree(ctx.build, folder)
    edit(folder)
    reseal_build_folder(folder)  # the manifest agrees: the content itself is what is wrong
    return str(folder)


def _edit_quant(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        doc = json.loads((folder / "quant.json").read_text())
        change(doc)
        (folder / "quant.json").write_text(json.dumps(doc))

    return edit


def _first_layer_act(doc: dict) -> dict:
    return doc["activations"][next(k for k in doc["activations"] if k != "input")]


def _bundle_edit(ctx: Ctx, name: str, change: Callable[[dict[str, bytes]], None]) -> str:
    """The ctx bundle with its members changed and the manifest hashes updated to match."""
    from edgeconv.device.bundle import sha256_bytes, tar_gz

    with tarfile.open(ctx.bundle, "r:gz") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}
    change(files)
    manifest = json.loads(files["manifest.json"])
    if isinstance(manifest.get("files"), dict):
        manifest["files"] = {n: sha256_bytes(files[n]) for n in manifest["files"] if n in files}
    files["manifest.json"] = json.dumps(manifest).encode()
    path = ctx.path(name)
    path.write_bytes(tar_gz(files))
    return str(path)


def _manifest_change(change: Callable[[dict], None]) -> Callable[[dict[str, bytes]], None]:
    def edit(files: dict[str, bytes]) -> None:
        m = json.loads(files["manifest.json"])
        change(m)
        files["manifest.json"] = json.dumps(m).encode()

    return edit


def _zip_bomb(ctx: Ctx) -> str:
    """A ~2 MB .npz whose one member inflates to 2 GiB of zeros (a valid .npy header)."""
    path = ctx.path("bomb.npz")
    header = io.BytesIO()
    n = ctx.bomb_bytes // 4
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (n,)})
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("c1.weight.npy", "w", force_zip64=True) as member,
    ):
        member.write(header.getvalue())
        block = bytes(1 << 24)
        for _ in range(n * 4 // len(block)):
            member.write(block)
    return str(path)


def _long_name_bomb(ctx: Ctx, size: int = 64 * 2**20) -> str:
    """A GNU long-name header claiming `size` bytes of name: tarfile would read it all."""
    path = ctx.path("longname.tar.gz")
    raw = io.BytesIO()
    info = tarfile.TarInfo("././@LongLink")
    info.type = tarfile.GNUTYPE_LONGNAME
    info.size = size
    raw.write(info.tobuf(format=tarfile.GNU_FORMAT))
    with gzip.open(path, "wb", compresslevel=9) as gz:
        gz.write(raw.getvalue())
        block = b"a" * (1 << 20)
        for _ in range(size // len(block)):
            gz.write(block)
    return str(path)


def _pax_bomb(ctx: Ctx, size: int = 8 * 2**20) -> str:
    """A PAX header of `size` bytes of ' ' records (the quadratic parse of CVE-2024-6232)."""
    path = ctx.path("pax.tar.gz")
    info = tarfile.TarInfo("x")
    info.type = tarfile.XHDTYPE
    info.size = size
    with gzip.open(path, "wb", compresslevel=9) as gz:
        gz.write(info.tobuf(format=tarfile.USTAR_FORMAT))
        gz.write(b"0 " * (size // 2))
    return str(path)


def _scale_case(value: float) -> Callable[[Ctx], list[str]]:
    def make(c: Ctx) -> list[str]:
        edit = _edit_quant(lambda d: _first_layer_act(d).update(scale=[value]))
        return ["parity", _copy_build(c, f"q{abs(hash(str(value)))}", edit), "--targets", "cpu"]

    return make


CASES: list[tuple[str, Callable[[Ctx], list[str]]]] = [
    # -- options ------------------------------------------------------------------------------
    ("build --seed -1", lambda c: ["build", "--recipe", "ds_cnn", "--seed", "-1", "--out", str(c.path("o"))]),
    ("build --calib-samples 1e8", lambda c: ["build", "--recipe", "ds_cnn", "--calib-samples", "100000000"]),
    ("build --calib huge .npy header", lambda c: ["build", "--recipe", "ds_cnn", "--calib", _huge_npy(c)]),
    ("run --input huge .npy header", lambda c: ["run", str(c.build), "--target", "cpu", "--input", _huge_npy(c)]),
    (
        "build --calib not-npy (pickle)",
        lambda c: [
            "build",
            "--recipe",
            "ds_cnn",
            "--calib",
            str((c.path("p.npy"), c.path("p.npy").write_bytes(b"\x80\x04not numpy"))[0]),
        ],
    ),
    ("build --weights zip bomb", lambda c: ["build", "--recipe", _recipe(c, "zb", _conv()), "--weights", _zip_bomb(c)]),
    ("build --input 100000x100000x3", lambda c: ["build", "--input", "100000x100000x3"]),
    ("build --input 8192x8192x3", lambda c: ["build", "--input", "8192x8192x3", "--out", str(c.path("o"))]),
    ("build --macs 1", lambda c: ["build", "--macs", "1", "--out", str(c.path("o"))]),
    ("build --budget fullwidth 1MB", lambda c: ["build", "--budget", "\uff11MB"]),
    ("build --budget ''", lambda c: ["build", "--budget", ""]),
    ("build --budget 99999999999GB", lambda c: ["build", "--budget", "99999999999GB", "--out", str(c.path("o"))]),
    ("build --percentile nan", lambda c: ["build", "--recipe", "ds_cnn", "--percentile", "nan"]),
    ("build --classes 1e9", lambda c: ["build", "--classes", "1000000000", "--out", str(c.path("o"))]),
    ("bench --repeat 1e12", lambda c: ["bench", str(c.build), "--targets", "cpu", "--repeat", "1000000000000"]),
    ("parity --samples 1e8", lambda c: ["parity", str(c.build), "--targets", "cpu", "--samples", "100000000"]),
    # -- recipes ------------------------------------------------------------------------------
    ("recipe filters = 1e9", lambda c: ["build", "--recipe", _recipe(c, "f1e9", _conv("1000000000"))]),
    ("recipe filters = 2**63-1", lambda c: ["build", "--recipe", _recipe(c, "f63", _conv(str(2**63 - 1)))]),
    (
        "recipe units = 1e8",
        lambda c: [
            "build",
            "--recipe",
            _recipe(c, "u1e8", '[[layers]]\nname = "fc"\nop = "dense"\nunits = 100000000\n'),
        ],
    ),
    (
        "recipe input = [100000, 100000, 3]",
        lambda c: ["build", "--recipe", _recipe(c, "in", _conv(), input_="[100000, 100000, 3]")],
    ),
    ("recipe padding = 100001", lambda c: ["build", "--recipe", _recipe(c, "pad", _conv(padding="100001"))]),
    ("recipe kernel 1001 same on 8x8x3", lambda c: ["build", "--recipe", _recipe(c, "k1001", _conv(kernel="1001"))]),
    (
        "recipe layer name 'fc 1/x'",
        lambda c: [
            "build",
            "--recipe",
            _recipe(c, "lname", _conv().replace('name = "fc"', 'name = "fc 1/x"')),
        ],
    ),
    # -- build folders ------------------------------------------------------------------------
    (
        "plan.json = []",
        lambda c: [
            "run",
            _copy_build(c, "planlist", lambda f: (f / "plan.json").write_text("[]")),
            "--target",
            "cpu",
            "--input",
            "x.npy",
        ],
    ),
    (
        "quant.json missing a tensor",
        lambda c: [
            "parity",
            _copy_build(c, "qmiss", _edit_quant(lambda d: d["activations"].pop(next(iter(d["activations"]))))),
            "--targets",
            "cpu",
        ],
    ),
    *[
        (f"quant.json scale {label}", _scale_case(value))
        for label, value in (("NaN", float("nan")), ("0", 0.0), ("inf", float("inf")), ("-1", -1.0))
    ],
    (
        "quant.json input zero point 1000",
        lambda c: [
            "parity",
            _copy_build(c, "qzp", _edit_quant(lambda d: d["activations"]["input"].update(zero_point=[1000]))),
            "--targets",
            "cpu",
        ],
    ),
    (
        "mixed build folder (old quant.json)",
        lambda c: [
            "run",
            str((lambda f: (shutil.copytree(c.build, f), (f / "quant.json").write_text("{}"), f)[2])(c.path("mixed"))),
            "--target",
            "cpu",
            "--input",
            "x.npy",
        ],
    ),
    (
        "bundle of a symlinked artifact",
        lambda c: [
            "bundle",
            str(
                (
                    lambda f: (
                        shutil.copytree(c.build, f),
                        (f / "model.int8.tflite").unlink(),
                        (f / "model.int8.tflite").symlink_to("/etc/passwd"),
                        f,
                    )[3]
                )(c.path("linked"))
            ),
            "--target",
            "arm",
            "-o",
            str(c.path("linked.tar.gz")),
        ],
    ),
    # -- outputs ------------------------------------------------------------------------------
    ("bundle -o directory", lambda c: ["bundle", str(c.build), "--target", "arm", "-o", str(c.tmp)]),
    ("bundle -o /dev/full", lambda c: ["bundle", str(c.build), "--target", "arm", "-o", "/dev/full"]),
    ("parity --md directory", lambda c: ["parity", str(c.build), "--targets", "cpu", "--md", str(c.tmp)]),
    ("parity --junit /dev/full", lambda c: ["parity", str(c.build), "--targets", "cpu", "--junit", "/dev/full"]),
    (
        "run --output directory",
        lambda c: ["run", str(c.build), "--target", "cpu", "--input", "x.npy", "--output", str(c.tmp)],
    ),
    ("build --out a file", lambda c: ["build", "--recipe", "ds_cnn", "--out", str(c.bundle)]),
    # -- bundles and validate -----------------------------------------------------------------
    ("validate --timeout nan", lambda c: ["validate", str(c.bundle), "--device", "local", "--timeout", "nan"]),
    (
        "validate --connect-timeout huge",
        lambda c: ["validate", str(c.bundle), "--device", "local", "--connect-timeout", "99999999999999999999"],
    ),
    ("validate ssh port fullwidth 22", lambda c: ["validate", str(c.bundle), "--device", "ssh://h:\uff12\uff12"]),
    (
        "manifest without output",
        lambda c: [
            "validate",
            _bundle_edit(c, "noout.tar.gz", _manifest_change(lambda m: m.pop("output"))),
            "--device",
            "local",
        ],
    ),
    (
        "manifest files is a list",
        lambda c: [
            "validate",
            _bundle_edit(c, "flist.tar.gz", _manifest_change(lambda m: m.update(files=list(m["files"])))),
            "--device",
            "local",
        ],
    ),
    (
        "tolerance.json {}",
        lambda c: [
            "validate",
            _bundle_edit(c, "tol.tar.gz", lambda f: f.update({"tolerance.json": b"{}"})),
            "--device",
            "local",
        ],
    ),
    (
        "bundle model 'not a model at all'",
        lambda c: [
            "validate",
            _bundle_edit(c, "notmodel.tar.gz", lambda f: f.update({"model.int8.tflite": b"not a model at all"})),
            "--device",
            "local",
        ],
    ),
    ("tar GNU long-name bomb", lambda c: ["validate", _long_name_bomb(c), "--device", "local"]),
    ("tar PAX header bomb", lambda c: ["validate", _pax_bomb(c), "--device", "local"]),
    (
        "validate --verify on an unsigned bundle",
        lambda c: ["validate", str(c.bundle), "--device", "local", "--verify", str(c.build.parent / "key.pub.pem")],
    ),
]


def make_ctx(tmp: Path) -> Ctx:
    """A ds_cnn build folder, an arm bundle of it, an input file and a public key in tmp."""
    from edgeconv.cli import cli

    build, bundle = tmp / "ds_cnn", tmp / "ds_cnn.arm.tar.gz"
    for argv in (
        ["build", "--recipe", "ds_cnn", "--calib-samples", "8", "--out", str(build)],
        ["bundle", str(build), "--target", "arm", "-o", str(bundle), "--samples", "2"],
    ):
        try:
            cli.main(argv)
        except SystemExit as done:
            assert done.code == 0, (argv, done.code)
    np.save(tmp / "x.npy", np.zeros((1, 10, 49, 1), np.float32))
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        key = ed25519.Ed25519PrivateKey.generate().public_key()
        (tmp / "key.pub.pem").write_bytes(
            key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    except ImportError:
        (tmp / "key.pub.pem").write_text("cryptography not installed")
    return Ctx(tmp, build, bundle)
