"""The ``probes`` command. Each subcommand lives in ``probes.commands.<name>`` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int`` as the handler.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Optional

__all__ = ["build_parser", "main"]

# Order is the order shown in --help.
SUBCOMMANDS = ("demo", "summary", "replay", "watch", "export", "plot", "compare")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probes", description="Watch, log, replay and test training dynamics of language models."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"probes.commands.{name}").register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
