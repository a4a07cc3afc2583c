"""Every code block of README.md and docs/*.md that is meant to run is run, extracted from the files
themselves, so the docs cannot drift from the code.

Rules:

* ```` ```python ```` blocks are executed in order, one namespace per file, in a fresh working
  directory; a block defining ``test_*`` functions (the README's unit-test example) is run by
  pytest in a subprocess, as a user would, with the plugin's fixtures.
* ```` ```bash ```` blocks are run line by line; each line must be a ``probes ...`` command, run
  in-process through ``probes.cli.entry``.
* A block that is deliberately not runnable says so in its info string (```` ```python no-run ````,
  invisible on GitHub, which reads only the first word) and is listed in ``NOT_RUN`` below with
  the reason; blocks without a language are output or diagrams.
* The names snippets use without defining them come from a small fixture namespace: ``tokenizer``
  (the byte tokenizer), ``module`` (the tiny LM, its LM at ``module.model``), ``loader``
  (``pretrain_loader``, ``sft_loader``), ``pairs``, ``counts``/``scores`` and ``Trainer``. Every
  Trainer (also ``lightning.pytorch.Trainer`` imported by a snippet) runs on CPU with at most
  ``MAX_STEPS`` steps, so a snippet's ``max_steps=1000`` finishes in seconds.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MAX_STEPS = 12
REAL_TRAINER = pl.Trainer
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```\s*$", re.M | re.S)

# (file, first line of the block) -> why it is not run
NOT_RUN = {
    ("README.md", "bash scripts/demo.sh      # sets up .venv and runs `probes demo` on the embedded tiny model"):
        "creates virtual environments and runs the whole suite; `probes demo` is tests/test_demo.py",
    ("README.md", ".venv/bin/python benchmarks/run_all.py            # --quick for a fast smoke run"):
        "minutes of benchmarks; `run_all.py --quick` is tests/test_benchmarks_quick.py",
    ("README.md", "from probes import KeywordProbe"):
        "a fragment of the user's HF script (`model`, `args`, `train_dataset`); docs/hf.md runs a whole one",
    ("analysis.md", "from probes.choice.stages import load_run_scores, stage_transfer"):
        "needs three trained mixtures; examples/stage_transfer.py runs this analysis (tests/test_examples.py)",
    ("analysis.md", "from probes import IFDProbe"):
        "a fragment: `...` stands for more samples and `tokenizer.bos_token_id` for an HF tokenizer",
    ("console.md", "from probes.console import by_step, follow, replay"):
        "a list of signatures, not a program",
    ("console.md", "from probes.runlog import open_run"):
        "follows a run that is still training and waits up to 600 s for new records",
}


@dataclass(frozen=True)
class Block:
    file: str
    line: int
    lang: str
    flags: tuple[str, ...]
    code: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.file, self.code.splitlines()[0] if self.code.strip() else "")


def blocks(path: Path) -> Iterator[Block]:
    text = path.read_text()
    for m in FENCE.finditer(text):
        info = m[1].split()
        lang, flags = (info[0], tuple(info[1:])) if info else ("", ())
        yield Block(path.name, text.count("\n", 0, m.start()) + 1, lang, flags, m[2])


def _capped_trainer(**kwargs: Any) -> pl.Trainer:
    steps = kwargs.get("max_steps", -1)
    kwargs["max_steps"] = MAX_STEPS if steps is None or steps < 0 else min(steps, MAX_STEPS)
    for key, value in dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                           enable_model_summary=False, enable_progress_bar=False).items():
        kwargs.setdefault(key, value)
    return REAL_TRAINER(**kwargs)


class _TrainerType(type):
    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, REAL_TRAINER)


class CappedTrainer(metaclass=_TrainerType):
    """Stands for ``lightning.pytorch.Trainer`` while a snippet runs."""

    def __new__(cls, *args: Any, **kwargs: Any) -> pl.Trainer:  # type: ignore[misc]
        assert not args, "snippets pass Trainer arguments by keyword"
        return _capped_trainer(**kwargs)


def namespace() -> dict[str, Any]:
    from probes.demos import ByteTokenizer, GPTConfig, TinyLM, corpus_loader

    pl.seed_everything(0, verbose=False)
    loader = corpus_loader(n_windows=8 * MAX_STEPS, batch_size=8, block_size=32)
    return {
        "__name__": "__docs__",
        "tokenizer": ByteTokenizer(),
        "module": TinyLM(GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=64)),
        "loader": loader,
        "pretrain_loader": loader,
        "sft_loader": loader,
        "pairs": [("sand", "the colour of sand is", "yellow"), ("sky", "the colour of the sky is", "blue")],
        "counts": np.array([0, 1, 3, 10, 30, 100, 300]),
        "scores": np.array([0.1, 0.2, 0.25, 0.4, 0.5, 0.65, 0.7]),
        "Trainer": CappedTrainer,
    }


ALL = [b for path in DOCS for b in blocks(path)]


def test_every_block_is_run_or_says_why_not() -> None:
    assert len(ALL) > 20 and {"README.md", "analysis.md", "console.md", "runlog.md"} <= set(RUNNABLE_DOCS)
    for b in ALL:
        assert b.lang in ("", "python", "bash"), f"{b.file}:{b.line}: unknown block language {b.lang!r}"
        assert set(b.flags) <= {"no-run"}, f"{b.file}:{b.line}: unknown flags {b.flags}"
        if "no-run" in b.flags:
            assert b.key in NOT_RUN, f"{b.file}:{b.line} is marked no-run; add the reason to NOT_RUN"
    marked = {b.key for b in ALL if "no-run" in b.flags}
    assert marked == set(NOT_RUN), f"NOT_RUN lists blocks that are not marked: {set(NOT_RUN) - marked}"


def _run_bash(b: Block) -> None:
    from probes.cli.entry import main

    for line in b.code.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        assert words[0] == "probes", f"{b.file}:{b.line}: only `probes ...` commands run here, got {line!r}"
        rc = main(words[1:])
        assert rc == 0, f"{b.file}:{b.line}: `{line.strip()}` exited with {rc}"


def _run_pytest(b: Block, tmp: Path) -> None:
    test_file = tmp / f"test_snippet_{b.file.replace('.', '_')}_{b.line}.py"
    test_file.write_text(b.code)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", str(test_file)],
        cwd=tmp, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0 and re.search(r"\b\d+ passed\b", proc.stdout), (
        f"{b.file}:{b.line}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )


RUNNABLE_DOCS = sorted({b.file for b in ALL if b.lang in ("python", "bash") and "no-run" not in b.flags})


@pytest.mark.parametrize("doc", RUNNABLE_DOCS)
def test_doc_blocks_run(
    doc: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    runnable = [b for b in ALL if b.file == doc and b.lang in ("python", "bash") and "no-run" not in b.flags]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pl, "Trainer", CappedTrainer)
    ns = namespace()
    for b in runnable:
        if b.lang == "bash":
            _run_bash(b)
        elif re.search(r"^def test_\w+\(", b.code, re.M):
            _run_pytest(b, tmp_path)
        else:
            try:
                exec(compile(b.code, f"{doc}:{b.line}", "exec"), ns)
            except Exception as e:
                raise AssertionError(f"{doc}:{b.line}: the block raised {type(e).__name__}: {e}\n{b.code}") from e
    capsys.readouterr()


def test_the_readme_trainer_snippet_logs_what_it_promises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The "Ten lines in your trainer" block, then the reads its next sentence suggests."""
    block = next(b for b in ALL if b.file == "README.md" and "trainer.fit(module, loader)" in b.code)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pl, "Trainer", CappedTrainer)
    ns = namespace()
    exec(compile(block.code, "README.md", "exec"), ns)
    from probes import open_run

    steps, logp = open_run("runs/exp1").read("keyword/logp_seq")
    assert steps.tolist() == list(range(MAX_STEPS + 1))  # one reading per optimizer step and the final one
    history = np.stack([r.tensors["logp_seq"].numpy() for r in ns["probe"].history])
    np.testing.assert_array_equal(logp, history.astype(logp.dtype))
