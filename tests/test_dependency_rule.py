"""The layering rule from the design: pure math and I/O layers do not import Lightning (or rich)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "probes"

FORBIDDEN = {
    "functional": {"lightning", "pytorch_lightning", "rich", "safetensors", "scipy"},
    "engine.py": {"lightning", "pytorch_lightning", "rich"},
    "adapters.py": {"lightning", "pytorch_lightning", "rich"},
    "records.py": {"lightning", "pytorch_lightning", "rich"},
    "specs.py": {"lightning", "pytorch_lightning", "rich"},
    "tokenization.py": {"lightning", "pytorch_lightning", "rich", "torch"},
    "nonfinite.py": {"lightning", "pytorch_lightning", "rich"},
    "model_reader.py": {"lightning", "pytorch_lightning", "rich"},
    "learning.py": {"lightning", "pytorch_lightning", "rich"},
    "runlog": {"lightning", "pytorch_lightning", "rich"},
    "console": {"lightning", "pytorch_lightning"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("where", sorted(FORBIDDEN))
def test_layer_imports(where):
    target = SRC / where
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    if not target.exists():
        pytest.skip(f"{where} not present")
    for f in files:
        bad = _imports(f) & FORBIDDEN[where]
        assert not bad, f"{f.relative_to(SRC)} imports {sorted(bad)}, which its layer must not"
