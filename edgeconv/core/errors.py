"""One error hierarchy, mapped to the CLI's exit codes.

0 ok, 1 a check failed, 2 bad usage / bad input / missing runtime, 3 internal error,
75 infrastructure failure (DeviceUnavailable: device unreachable, place not acquired, copy failed).
`parity` sets separate bits per kind of failed check (parity.policy.EXIT_BITS): 1 deployment,
4 quality, 8 source, OR'ed (5 = deployment and quality); bit 2 is never set by a check.
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


class DeviceUnavailable(InputError):
    """Infrastructure, not numbers: a device that cannot be reached, a labgrid place not acquired
    within --wait, a copy to or from the device that failed, a device that timed out. Exit 75
    (sysexits EX_TEMPFAIL: trying again later may work); fleet runs retry only these."""

    exit_code = 75


class CheckFailed(EdgeconvError):
    """A parity or validation check that ran and failed; `exit_code` 1, or the OR of the
    failed kinds' bits for parity (see the module docstring)."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
