"""The layering rules of docs/design.md, checked on every module of the package.

* Only the Lightning adapters import Lightning: ``callbacks/``, ``integrations/lightning.py``,
  ``testing/`` (the pytest helpers drive Trainers) and ``demos/`` (the demo trains with Lightning).
  The core, every probe package, the run log, the console, the CLI and the analysis are free of it.
* The core, the probe packages' specs, math and probes, and the run log do not import rich (only the
  views and the console draw); the pure math does not import safetensors or scipy.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "probes"
MODULES = sorted(p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py"))

LIGHTNING = {"lightning", "pytorch_lightning"}
LIGHTNING_ALLOWED = ("callbacks/", "demos/", "integrations/lightning.py", "testing/")
DOMAIN = ("keyword/", "priming/", "formats/", "choice/", "ifd/", "updates/", "thought/", "frontier/", "frequency/")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _forbidden(module: str) -> set[str]:
    bad: set[str] = set()
    if not module.startswith(LIGHTNING_ALLOWED):
        bad |= LIGHTNING
    drawing = module.endswith("view.py") or module.startswith(("console/", "cli/", "testing/", "demos/", "callbacks/"))
    if module.startswith(("core/", "runlog/", "functional/", "integrations/", *DOMAIN)) and not drawing:
        bad.add("rich")
    pure_math = {f"{d}scores.py" for d in DOMAIN} | {"frequency/measures.py"}
    if module.startswith(("core/", "functional/")) or module in pure_math:
        bad |= {"safetensors", "scipy"}
    if module == "core/tokenize.py":
        bad.add("torch")  # the score convention is plain Python over token ids
    return bad


def test_the_rules_cover_the_whole_package() -> None:
    assert len(MODULES) > 80
    lightning_free = [m for m in MODULES if "lightning" in _forbidden(m)]
    assert len(lightning_free) > len(MODULES) // 2
    for core in ("core/probe.py", "core/hub.py", "core/plan.py", "core/schedule.py", "integrations/loop.py"):
        assert core in lightning_free
    for domain in DOMAIN:
        assert f"{domain}probe.py" in lightning_free


@pytest.mark.parametrize("module", MODULES)
def test_layer_imports(module: str) -> None:
    bad = _imports(SRC / module) & _forbidden(module)
    assert not bad, f"{module} imports {sorted(bad)}, which its layer must not"
