"""Training what the planner builds (the `train` extra: PyTorch is imported only in this package).

    from edgeconv.train import to_module, weights_from_module
    module = to_module(plan)              # nn.Module, NHWC in, the IR's exact semantics
    ...                                   # train it with your own loop (module.logits(x) for the loss)
    weights = weights_from_module(module, plan)   # BatchNorm folded, weights.py layouts

Importing this package does not import torch; the functions do, on first use.
"""

from __future__ import annotations

from edgeconv.core.errors import InputError

INSTALL_HINT = "pip install 'edgeconv[train]'  (PyTorch, CPU wheel torch==2.13.0)"


def require_torch():
    """The torch module, or an InputError (exit 2) naming the extra to install."""
    try:
        import torch
    except ImportError as err:
        raise InputError(f"training needs PyTorch, which is not installed ({err}); {INSTALL_HINT}") from None
    return torch


def to_module(plan_or_model, weights=None, *, batchnorm: bool = True, seed: int = 0):
    """An nn.Module computing the IR model (a Plan, Model, Analysis or build folder object)."""
    require_torch()
    from edgeconv.train.module import to_module as _to_module

    return _to_module(plan_or_model, weights, batchnorm=batchnorm, seed=seed)


def weights_from_module(module, plan_or_model=None):
    """The IR weights of a module made by to_module, BatchNorm folded into each conv."""
    require_torch()
    from edgeconv.train.module import weights_from_module as _weights_from_module

    return _weights_from_module(module, plan_or_model)


__all__ = ["require_torch", "to_module", "weights_from_module"]
