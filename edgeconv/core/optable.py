"""One op table per pass: every pass that treats each IR op dispatches through one of these.

A pass module creates its table and registers one handler per IR op class:

    SHAPES = OpTable("shapes, params, MACs")

    @SHAPES.register(Conv2d)
    def _conv_info(layer, in_shapes): ...

and calls `SHAPES.handler(layer)(...)` instead of an `isinstance` chain. Every table is kept in
`TABLES`; `tests/test_optable.py` imports `PASS_MODULES` and fails naming each (op, pass) pair
that has no handler, so a new IR op cannot reach a model before every pass knows it. A pass
for which an op is a no-op (a pool has no weights) registers that no-op explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from edgeconv.core.errors import EdgeconvError

Handler = TypeVar("Handler", bound=Callable[..., Any])

# the modules whose import fills TABLES; the coverage test imports every one of them
PASS_MODULES = (
    "edgeconv.core.graph",
    "edgeconv.core.reference",
    "edgeconv.core.weights",
    "edgeconv.plan.memory",
    "edgeconv.plan.arena",
    "edgeconv.quant.quantize",
    "edgeconv.quant.golden",
    "edgeconv.export.onnx_float",
    "edgeconv.export.onnx_qdq",
    "edgeconv.export.tflite",
    "edgeconv.report.tables",
)


class UnsupportedOp(EdgeconvError):
    """A pass met an op it has no handler for (a bug caught by tests/test_optable.py)."""

    exit_code = 2


class OpTable(Generic[Handler]):
    """The handlers of one pass, keyed by the IR op name (`Conv2d.op == "conv2d"`)."""

    def __init__(self, pass_name: str) -> None:
        if pass_name in TABLES:
            raise ValueError(f"op table {pass_name!r} is defined twice")
        self.pass_name = pass_name
        self._handlers: dict[str, Handler] = {}
        TABLES[pass_name] = self

    def register(self, *op_classes: type) -> Callable[[Handler], Handler]:
        def add(handler: Handler) -> Handler:
            for cls in op_classes:
                op = cls.op  # type: ignore[attr-defined]  # every IR layer class carries its op name
                if op in self._handlers:
                    raise ValueError(f"{self.pass_name}: op {op!r} registered twice")
                self._handlers[op] = handler
            return handler

        return add

    def handler(self, layer: object) -> Handler:
        op = getattr(layer, "op", type(layer).__name__)
        try:
            return self._handlers[op]
        except KeyError:
            name = getattr(layer, "name", "?")
            raise UnsupportedOp(
                f"{name}: the {self.pass_name} pass has no handler for op {op!r} "
                f"(it handles {', '.join(sorted(self._handlers))})"
            ) from None

    @property
    def ops(self) -> frozenset[str]:
        return frozenset(self._handlers)


TABLES: dict[str, OpTable[Any]] = {}
