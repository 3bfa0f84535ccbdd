"""The command line. Thin: parse, call the core, print. Heavy imports happen inside commands
so that `edgeconv --help` starts fast."""

from __future__ import annotations

import os
import signal
import sys

import click

from edgeconv import __version__
from edgeconv.core.errors import EdgeconvError


class _Cli(click.Group):
    """Maps every error to a one-line message and an exit code (0 ok, 1 check failed, 2 bad
    usage, bad input or missing runtime), never a traceback."""

    # click types main() per standalone_mode with overloads; this override always exits itself
    def main(self, args=None, prog_name=None, **extra):  # type: ignore[override]
        args = list(sys.argv[1:] if args is None else args)
        if not args:
            args = ["--help"]
        _cleanup_on_signals()
        try:
            super().main(args=args, prog_name=prog_name or "edgeconv", standalone_mode=False, **extra)
        except EdgeconvError as err:
            _fail(str(err), err.exit_code)
        except click.exceptions.NoArgsIsHelpError as err:
            click.echo(err.ctx.get_help() if err.ctx else "", err=False)
            sys.exit(0)
        except click.UsageError as err:
            hint = f" (see '{err.ctx.command_path} --help')" if err.ctx else ""
            _fail(err.format_message().replace("\n", " ") + hint, 2)
        except click.exceptions.Abort as err:
            cause = err.__cause__  # click turns KeyboardInterrupt (and so SIGTERM/SIGHUP) into Abort
            if isinstance(cause, _Terminated):
                _fail(f"interrupted by {cause.name}; no output was left half-written", 128 + cause.signum)
            _fail("interrupted", 130)
        except _Terminated as err:
            _fail(f"interrupted by {err.name}; no output was left half-written", 128 + err.signum)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except click.exceptions.Exit as err:
            sys.exit(err.exit_code)
        except Exception as err:  # a bug: one line by default, the traceback on request
            if os.environ.get("EDGECONV_DEBUG"):
                raise
            _fail(f"internal error: {type(err).__name__}: {err} (set EDGECONV_DEBUG=1 for the traceback)", 3)
        sys.exit(0)


class _Terminated(KeyboardInterrupt):
    """SIGTERM / SIGHUP, raised like Ctrl-C so every `finally` and `except BaseException`
    that removes temporary files runs (the atomic writers in core/io.py)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


def _raise_terminated(signum, frame):
    raise _Terminated(signum)


def _cleanup_on_signals() -> None:
    import threading

    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread (CliRunner in a thread)
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _raise_terminated)


def _fail(message: str, code: int) -> None:
    click.echo(f"edgeconv: error: {message}", err=True)
    sys.exit(code)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeconv")
@click.option("--verbose", is_flag=True, help="Let the runtimes' own messages (LiteRT, QNN, ORT) through to stderr.")
def cli(verbose: bool) -> None:
    """Plan small conv nets for embedded targets, export them from one IR to ONNX and TFLite,
    and check that every runtime computes the same numbers.

    Shapes are W x H x C (for example 32x32x3). Sizes take B, KB, MB (powers of ten) and
    KiB, MiB (powers of two).
    """
    if verbose:
        from edgeconv.backends.quiet import set_verbose

        set_verbose(True)


def _register_commands() -> None:
    # the command modules import only click at import time; heavy imports live inside commands
    from edgeconv.cli.check import bench, parity, run
    from edgeconv.cli.device import bundle, validate
    from edgeconv.cli.firmware import firmware
    from edgeconv.cli.importer import import_model
    from edgeconv.cli.model import build, layer, targets
    from edgeconv.cli.report import report
    from edgeconv.cli.train import train

    for command in (layer, build, targets, run, parity, bench, bundle, validate, train, import_model, firmware):
        cli.add_command(command)
    cli.add_command(report)


_register_commands()


def main() -> None:
    cli.main()
