"""Starting test subprocesses as a user's foreground command would run (shared by test files)."""

from __future__ import annotations

import signal
import subprocess


def popen_foreground(argv: list[str], sig: int, **kw) -> subprocess.Popen:
    """Popen with `sig` at its default disposition in the child, as for a command run in the
    foreground of a terminal. Why: a test run started as a background job of a script (`cmd &`
    without job control) inherits SIGINT ignored, every child inherits it in turn and Python then
    keeps it ignored (no KeyboardInterrupt handler), so a test's SIGINT would be a no-op rather
    than the Ctrl-C it stands for. A caught signal is reset to its default by exec, so the parent
    catches it around the spawn; not preexec_fn: that forces fork(), whose gRPC atfork handlers
    abort the child (SIGABRT) once this worker has run labgrid clients."""
    ignored = signal.getsignal(sig) == signal.SIG_IGN
    if ignored:
        signal.signal(sig, signal.default_int_handler)
    try:
        return subprocess.Popen(argv, **kw)
    finally:
        if ignored:
            signal.signal(sig, signal.SIG_IGN)
