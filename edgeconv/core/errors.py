"""One error hierarchy, mapped to the CLI's exit codes.

0 ok, 1 a check failed, 2 bad usage / bad input / missing runtime.
Messages are one line: what was expected, what was got, what to do.
"""

from __future__ import annotations


class EdgeconvError(Exception):
    """Base class; `exit_code` is what the CLI exits with."""

    exit_code = 2


class UsageError(EdgeconvError):
    """A malformed argument or option value."""


class InputError(EdgeconvError):
    """A bad file or a model description that cannot be built."""


class ShapeError(InputError):
    """A layer whose shape arithmetic does not work out."""


class InfeasibleError(EdgeconvError):
    """No plan meets the budgets."""


class MissingRuntime(EdgeconvError):
    """A target whose runtime package is not installed."""


class CheckFailed(EdgeconvError):
    """A parity or validation check that ran and failed."""

    exit_code = 1
