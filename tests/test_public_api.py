"""The public surface: every exported name resolves, and subpackages export what they list."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    "module", ["probes", "probes.callbacks", "probes.functional", "probes.analysis", "probes.testing",
               "probes.runlog", "probes.console", "probes.demos"]
)
def test_all_names_resolve(module):
    mod = importlib.import_module(module)
    assert mod.__all__, f"{module} exports nothing"
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not missing, f"{module}.__all__ lists names it does not define: {missing}"
    assert len(set(mod.__all__)) == len(mod.__all__)


def test_cli_lists_every_subcommand():
    from probes.cli import SUBCOMMANDS, build_parser

    help_text = build_parser().format_help()
    for name in SUBCOMMANDS:
        assert name in help_text


def test_cli_start_does_not_import_lightning():
    """`import probes` is lazy, so `probes summary/replay/...` start without loading Lightning."""
    import subprocess
    import sys

    code = "import sys, probes.cli; probes.cli.build_parser(); print('lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
