"""The ``probes`` command. Each subcommand lives in ``probes.cli.<name>`` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int`` as the handler.

Every error a command meets becomes one line on stderr, ``probes COMMAND: error: ...``, and a
non-zero exit (1; 2 for bad arguments; 130 for Ctrl-C); ``--debug`` shows the traceback instead.
Text output escapes unprintable characters (``\\x00``, ``\\ud800``...), whatever a run log holds.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Optional

from probes.cli.common import add_debug_argument, error_line

__all__ = ["build_parser", "main"]

# Order is the order shown in --help.
SUBCOMMANDS = ("demo", "summary", "replay", "watch", "export", "plot", "compare")


def _version() -> str:
    from probes import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probes", description="Watch, log, replay and test training dynamics of language models."
    )
    add_debug_argument(parser, default=False)
    parser.add_argument("--version", action="version", version=f"probes {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"probes.cli.{name}").register(sub)
    return parser


def _tolerant_streams() -> None:
    """Never crash on an unencodable character (a lone surrogate in a name): escape it."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # pragma: no cover - a detached or closed stream
                pass


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _tolerant_streams()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `probes replay RUN | head`
        return 1
    except Exception as e:
        if getattr(args, "debug", False):
            raise
        print(error_line(args.command, e) + " (run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
