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
    from probes.cli.entry import SUBCOMMANDS, build_parser

    help_text = build_parser().format_help()
    for name in SUBCOMMANDS:
        assert name in help_text


def test_cli_start_does_not_import_lightning():
    """`import probes` is lazy, so `probes summary/replay/...` start without loading Lightning."""
    import subprocess
    import sys

    code = "import sys, probes.cli.entry; probes.cli.entry.build_parser(); print('lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_type_checking_imports_mirror_the_export_table():
    """The lazy export table is the one list of public names: the TYPE_CHECKING imports (for type
    checkers) name the same objects from the same modules, and ``__all__`` is derived from it."""
    import ast
    from pathlib import Path

    import probes

    tree = ast.parse(Path(probes.__file__).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    imported = {a.name: node.module for node in block.body if isinstance(node, ast.ImportFrom) for a in node.names}
    assert imported == probes._EXPORTS
    assert sorted(probes.__all__) == sorted([*probes._EXPORTS, "__version__"])
