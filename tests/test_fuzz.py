"""Fuzz lane (issue 16): hypothesis property tests over recipes, sizes and shapes, quantization
files, .npy/.npz files, bundle tar streams, the .tflite/.onnx importers and CLI options.

Property: every input ends in a result or an edgeconv error (the CLI's exit 0/1/2 with one
line), never another exception (the CLI's exit 3), within a deadline. The default profile
runs few examples (CI time); HYPOTHESIS_PROFILE=fuzz runs many:

    HYPOTHESIS_PROFILE=fuzz python -m pytest -q tests/test_fuzz.py

Inputs that once failed are kept below as @example regression cases.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edgeconv.core.errors import EdgeconvError

settings.register_profile(
    "default",
    max_examples=25,
    deadline=3000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "fuzz",
    max_examples=2000,
    deadline=5000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

ROOT = Path(__file__).resolve().parents[1]

# -- values a careless user or an attacker types -----------------------------------------------

ints = st.one_of(
    st.integers(-3, 70),
    st.sampled_from([0, 1, 2**31, 2**63 - 1, 2**64, 10**9, 100001, -(2**63)]),
)
junk = st.one_of(
    ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.booleans(),
    st.none(),
    st.lists(st.integers(-2, 9), max_size=5),
)
field_value = st.one_of(ints, junk)
OPS = ["conv2d", "depthwise_conv2d", "max_pool", "avg_pool", "global_avg_pool", "dense", "add", "softmax", "nope"]
layer = st.fixed_dictionaries(
    {
        "name": st.one_of(st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True), st.text(max_size=6)),
        "op": st.sampled_from(OPS),
    },
    optional={
        "filters": field_value,
        "kernel": field_value,
        "stride": field_value,
        "padding": st.one_of(st.sampled_from(["same", "valid"]), field_value),
        "pool": field_value,
        "units": field_value,
        "activation": st.one_of(st.sampled_from(["relu", "relu6", "none"]), junk),
        "inputs": st.lists(st.text(max_size=5), max_size=3),
    },
)
recipe = st.fixed_dictionaries(
    {
        "name": st.one_of(st.text(max_size=12), junk),
        "input": st.one_of(st.lists(ints, min_size=3, max_size=3), junk),
        "layers": st.one_of(st.lists(layer, min_size=1, max_size=5), junk),
    }
)


@given(recipe)
@example({"name": "m", "input": [8, 8, 3], "layers": [{"name": "c", "op": "conv2d", "filters": 10**9, "kernel": 3}]})
@example(
    {
        "name": "m",
        "input": [8, 8, 3],
        "layers": [{"name": "c", "op": "conv2d", "filters": 8, "kernel": 1001, "padding": "same"}],
    }
)
@example({"name": "m", "input": [100000, 100000, 3], "layers": [{"name": "g", "op": "global_avg_pool"}]})
@example({"name": "m", "input": [8, 8, 3], "layers": [{"name": "fc 1/x", "op": "dense", "units": 4}]})
def test_recipes_load_or_refuse(doc):
    from edgeconv.core.graph import analyze
    from edgeconv.plan.recipes import model_from_dict

    try:
        model = model_from_dict(doc, "fuzz.toml")
    except EdgeconvError as err:
        assert "\n" not in str(err)
        return
    analyze(model)  # a model that loads also analyzes, within the memory ceiling


@given(st.text(max_size=16))
@example("\uff11MB")
@example("99999999999GB")
@example("")
@example("1e3KB")
def test_sizes_parse_or_refuse(text):
    from edgeconv.core.sizes import parse_shape, parse_size

    for parse in (parse_size, parse_shape):
        try:
            value = parse(text)
        except EdgeconvError:
            continue
        if parse is parse_size:
            assert isinstance(value, int) and 0 < value <= 10**15 and text.isascii()
        else:
            assert len(value) == 3 and min(value) >= 1


tensor_doc = st.fixed_dictionaries(
    {},
    optional={
        "scale": st.one_of(st.lists(st.one_of(st.floats(), ints), max_size=3), junk),
        "zero_point": st.one_of(st.lists(st.one_of(ints, st.floats()), max_size=3), junk),
        "dtype": st.one_of(st.sampled_from(["int8", "uint8", "int32"]), junk),
        "axis": st.one_of(st.none(), ints, junk),
    },
)


@given(st.one_of(tensor_doc, junk))
@example({"scale": [float("nan")], "zero_point": [0]})
@example({"scale": [0.0], "zero_point": [0]})
@example({"scale": [1e-50], "zero_point": [0]})
@example({"scale": [0.1], "zero_point": [1000]})
@example({"scale": [0.1], "zero_point": [0], "dtype": [1]})  # found by the fuzzer: TypeError (unhashable)
def test_tensor_quant_validates(doc):
    from edgeconv.quant.params import TensorQuant

    try:
        tq = TensorQuant.from_json(doc)
    except ValueError:
        return
    assert all(math.isfinite(s) and s > 0 for s in tq.scale) and len(tq.zero_point) == len(tq.scale)
    lo, hi = {"int8": (-128, 127), "uint8": (0, 255), "int32": (0, 0)}[tq.dtype]
    assert all(lo <= z <= hi for z in tq.zero_point)


@pytest.fixture(scope="module")
def small_build(tmp_path_factory):
    from edgeconv.artifacts.build import BuildRequest, run_build

    out = tmp_path_factory.mktemp("fuzz") / "ds_cnn"
    run_build(BuildRequest(recipe="ds_cnn", calib_samples=8, out=str(out)))
    return out


@given(st.data())
def test_quant_json_mutations_load_or_refuse(small_build, data):
    from edgeconv.artifacts.folder import load_build, qparams_from_json

    build = load_build(small_build)
    doc = json.loads((small_build / "quant.json").read_text())
    section = data.draw(st.sampled_from(["activations", "weights"]))
    key = data.draw(st.sampled_from(sorted(doc[section])))
    if data.draw(st.booleans()):
        doc[section].pop(key)
    else:
        doc[section][key] = data.draw(st.one_of(tensor_doc, junk))
    try:
        qparams_from_json(doc, build.analysis, build.weights)
    except EdgeconvError as err:
        assert "\n" not in str(err)


def _mutate(data: bytes, draw) -> bytes:
    buf = bytearray(data)
    kind = draw(st.sampled_from(["flip", "truncate", "splice", "zero"]))
    if kind == "truncate":
        return bytes(buf[: draw(st.integers(0, len(buf)))])
    for _ in range(draw(st.integers(1, 8))):
        i = draw(st.integers(0, max(len(buf) - 1, 0)))
        if kind == "flip" and buf:
            buf[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "zero" and buf:
            buf[i : i + 16] = bytes(len(buf[i : i + 16]))
        elif kind == "splice":
            buf[i:i] = draw(st.binary(max_size=32))
    return bytes(buf)


NPY_REGRESSIONS = [  # found by the fuzzer: numpy's header parser raised tokenize.TokenError
    b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), \x00" + b" " * 40 + b"\n",
]


@pytest.mark.parametrize("blob", NPY_REGRESSIONS)
def test_npy_regressions(tmp_path, blob):
    from edgeconv.core.tensors import load_npy

    (tmp_path / "x.npy").write_bytes(blob)
    with pytest.raises(EdgeconvError):
        load_npy(tmp_path / "x.npy", "x.npy")


@given(st.data())
def test_npy_and_npz_readers_load_or_refuse(tmp_path_factory, data):
    from edgeconv.core.tensors import check_npz, load_npy

    tmp = tmp_path_factory.mktemp("npy")
    buf = io.BytesIO()
    np.save(buf, np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    (tmp / "x.npy").write_bytes(_mutate(buf.getvalue(), data.draw))
    try:
        load_npy(tmp / "x.npy", "x.npy")
    except EdgeconvError as err:
        assert "\n" not in str(err)
    buf = io.BytesIO()
    np.savez_compressed(buf, a=np.zeros((3, 3), np.float32))
    (tmp / "x.npz").write_bytes(_mutate(buf.getvalue(), data.draw))
    try:
        check_npz(tmp / "x.npz", "x.npz")
    except EdgeconvError as err:
        assert "\n" not in str(err)


def _tar_of(members: list[tuple[str, int, bytes]], fmt: int) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.type = bytes([kind])
            info.size = len(payload) if info.isreg() else 0
            if info.issym() or info.islnk():
                info.linkname = "../x"
            tar.addfile(info, io.BytesIO(payload) if info.isreg() else None)
    return gzip.compress(raw.getvalue(), mtime=0)


member = st.tuples(
    st.one_of(st.from_regex(r"[a-z]{1,8}\.npy", fullmatch=True), st.text(min_size=1, max_size=120)),
    st.sampled_from([ord(c) for c in "0125634"]),
    st.binary(max_size=64),
)


@given(
    st.lists(member, max_size=6),
    st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]),
    st.data(),
)
def test_tar_streams_extract_or_refuse(members, fmt, data):
    from edgeconv.device.bundle import safe_extract

    try:
        blob = _tar_of(members, fmt)
    except (ValueError, UnicodeError, tarfile.TarError):
        return  # tarfile itself cannot write this member
    if data.draw(st.booleans()):
        blob = _mutate(blob, data.draw)
    with tempfile.TemporaryDirectory() as tmp:
        path, out = Path(tmp) / "b.tar.gz", Path(tmp) / "out"
        path.write_bytes(blob)
        out.mkdir()
        try:
            names = safe_extract(path, out)
        except EdgeconvError as err:
            assert "\n" not in str(err)
            return
        assert sorted(p.name for p in out.iterdir()) == sorted(names)
        assert all(not (out / n).is_symlink() and (out / n).is_file() for n in names)


def _seed_models(small_build: Path) -> dict[str, bytes]:
    seeds = {
        "edgeconv.int8.tflite": (small_build / "model.int8.tflite").read_bytes(),
        "edgeconv.onnx": (small_build / "model.onnx").read_bytes(),
    }
    fixtures = ROOT / "tests" / "data" / "import"
    for name in ("keras_cnn_int8.tflite", "gap_linear.onnx"):
        if (fixtures / name).is_file():
            seeds[name] = (fixtures / name).read_bytes()
    return seeds


@given(st.data())
def test_model_importers_import_or_refuse(small_build, tmp_path_factory, data):
    seeds = _seed_models(small_build)
    name = data.draw(st.sampled_from(sorted(seeds)))
    blob = _mutate(seeds[name], data.draw)
    path = tmp_path_factory.mktemp("imp") / ("m.tflite" if name.endswith(".tflite") else "m.onnx")
    path.write_bytes(blob)
    if path.suffix == ".tflite":
        from edgeconv.frontends.tflite import import_tflite as importer
    else:
        pytest.importorskip("onnx")
        from edgeconv.frontends.onnx import import_onnx as importer
    try:
        importer(path)
    except EdgeconvError as err:
        assert "\n" not in str(err)


option_text = st.one_of(
    st.from_regex(r"-?[0-9]{1,25}", fullmatch=True),
    st.sampled_from(["nan", "inf", "-1", "0", "", "\uff12\uff12", "1e9", "32x32x3", "0x0x0", "１MB"]),
    st.text(max_size=10),
)


@given(
    st.sampled_from(["--input", "--filters", "--kernel", "--stride", "--pad"]),
    option_text,
)
@example("--input", "\u0663\u0662x32x3")
@example("--filters", "99999999999999999999")
def test_layer_command_exits_0_or_2_with_one_line(option, value):
    from edgeconv.cli import cli

    args = {"--input": "32x32x3", "--filters": "8", "--kernel": "3", "--stride": "1", "--pad": "same"}
    args[option] = value
    r = CliRunner().invoke(cli, ["layer", *[x for kv in args.items() for x in kv]])
    assert r.exit_code in (0, 2), (r.exit_code, r.output)
    if r.exit_code:
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("edgeconv: error: ") and "internal error" not in lines[0]
