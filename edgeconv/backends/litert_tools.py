"""LiteRT helper for measurements (not a backend): an interpreter with one thread, optionally
with every tensor preserved or with the builtin kernels only (no XNNPACK)."""

from __future__ import annotations

from ai_edge_litert.interpreter import Interpreter, OpResolverType


def litert(model: bytes, preserve: bool = False, builtin_only: bool = False) -> Interpreter:
    kwargs = {}
    if builtin_only:
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = Interpreter(model_content=model, num_threads=1, experimental_preserve_all_tensors=preserve, **kwargs)
    interp.allocate_tensors()
    return interp
