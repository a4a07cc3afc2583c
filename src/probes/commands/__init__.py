"""Subcommands of the ``probes`` CLI, one module each (see :mod:`probes.cli`)."""
