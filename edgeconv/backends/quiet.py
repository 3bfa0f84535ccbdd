"""Keep runtime chatter off the user's terminal unless --verbose.

LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." and the QNN EP its
banner from C++ straight to file descriptor 2, where Python's sys.stderr cannot catch them.
quiet_stderr() points fd 2 at a temporary file around a runtime call and puts fd 2 back
afterwards. What the runtime wrote is dropped when the call succeeds and written to stderr
when it raises (it may explain the error). `edgeconv --verbose` (or EDGECONV_VERBOSE=1) turns
the redirection off.

Only runtime calls go inside the block: progress bars and messages are written outside it.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


def verbose() -> bool:
    return os.environ.get("EDGECONV_VERBOSE", "") not in ("", "0")


def set_verbose(on: bool) -> None:
    """What `edgeconv --verbose` calls (an environment variable, so the bundle runner and
    subprocesses see it too)."""
    if on:
        os.environ["EDGECONV_VERBOSE"] = "1"
    else:
        os.environ.pop("EDGECONV_VERBOSE", None)


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence fd 2 for the body (see the module doc); nested use is fine."""
    if verbose():
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 at all: nothing to protect
        yield
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                sink.seek(0)
                text = sink.read().decode("utf-8", "replace").strip()
                if text:
                    print(text, file=sys.stderr, flush=True)
