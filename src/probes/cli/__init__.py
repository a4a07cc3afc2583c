"""The ``probes`` command: :func:`main` parses the command line; each subcommand is a module here."""

from probes.cli.entry import main

__all__ = ["main"]
