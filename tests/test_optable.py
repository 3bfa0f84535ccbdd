"""Every IR op is handled by every pass: the checklist for adding an op, enforced.

Passes dispatch through edgeconv.core.optable tables. A new op class in edgeconv.core.ir.LAYER_TYPES
fails here once per pass that lacks a handler, naming the (op, pass) pair.
"""

from __future__ import annotations

import importlib

import pytest

from edgeconv.core.ir import LAYER_TYPES
from edgeconv.core.optable import PASS_MODULES, TABLES, UnsupportedOp
from edgeconv.quant.golden import RUNTIMES, variant

for module in PASS_MODULES:
    importlib.import_module(module)

EXPECTED_PASSES = {
    "shapes, params, MACs",
    "float reference",
    "weights layout",
    "model file bytes",
    "TFLite op sequence (arena model)",
    "quantization ranges",
    "int8 golden",
    "ONNX export (float and QDQ)",
    "TFLite export",
    "report rows",
}


def test_every_pass_module_defines_its_table():
    assert set(TABLES) >= EXPECTED_PASSES, f"missing tables: {sorted(EXPECTED_PASSES - set(TABLES))}"


@pytest.mark.parametrize("pass_name", sorted(EXPECTED_PASSES))
@pytest.mark.parametrize("op", sorted(LAYER_TYPES))
def test_op_has_a_handler_in_pass(op, pass_name):
    assert op in TABLES[pass_name].ops, f"op {op!r} has no handler in the {pass_name!r} pass"


def test_tables_handle_no_op_outside_the_ir():
    for name, table in TABLES.items():
        assert table.ops <= set(LAYER_TYPES), f"{name}: handlers for unknown ops {sorted(table.ops - set(LAYER_TYPES))}"


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("op", sorted(LAYER_TYPES))
def test_op_has_a_golden_variant_for_every_runtime(op, runtime):
    # each golden family (tflite, fp32, ORT's own kernels) names the kernel it uses for the op
    family, kernel = variant(op, runtime)
    assert family and kernel


def test_a_missing_handler_is_a_one_line_error_naming_op_and_pass():
    from dataclasses import dataclass

    from edgeconv.core.reference import REFERENCE

    @dataclass(frozen=True)
    class Hardmax:
        name: str = "hm"
        op = "hardmax"

    with pytest.raises(UnsupportedOp, match=r"hm: the float reference pass has no handler for op 'hardmax'") as err:
        REFERENCE.handler(Hardmax())
    assert "\n" not in str(err.value)


def test_every_op_has_a_torch_module_handler():
    # the training pass (edgeconv/train, the `train` extra): CI installs torch, so this runs there
    pytest.importorskip("torch", reason="needs torch (pip install 'edgeconv[train]')")
    importlib.import_module("edgeconv.train.module")
    missing = sorted(set(LAYER_TYPES) - TABLES["torch module"].ops)
    assert not missing, f"ops without a handler in the 'torch module' pass: {missing}"
