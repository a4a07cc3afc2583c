"""pytest plugin (registered through the ``pytest11`` entry point as ``probes``).

Fixtures:
    tiny_lm: a fresh, seeded :class:`~probes.demos.TinyLM` small enough to train in seconds.
    probe_trainer: a factory for fast, deterministic CPU trainers.
    probe_run_dir: a temporary directory for a run log.

Options:
    ``--probes-max-steps N`` caps ``max_steps`` of every trainer the factory builds.
    ``-m "not probes_slow"`` deselects tests marked ``@pytest.mark.probes_slow``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("probes")
    group.addoption(
        "--probes-max-steps",
        type=int,
        default=None,
        help="cap max_steps of trainers built by the probe_trainer fixture",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "probes_slow: a training-dynamics test that takes more than a few seconds")


@pytest.fixture
def tiny_lm() -> Any:
    """A seeded TinyLM (2 layers, width 48, 64 positions; ~60k parameters), learning rate 3e-3."""
    import lightning.pytorch as pl

    from probes.demos import GPTConfig, TinyLM

    pl.seed_everything(0, verbose=False)
    return TinyLM(GPTConfig(n_layer=2, n_embd=48, n_head=4, block_size=64))


@pytest.fixture
def probe_trainer(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Any]:
    """``probe_trainer(callbacks=[...], max_steps=20, seed=0, **trainer_kwargs)`` -> a CPU Trainer
    with no logger, checkpointing, progress bar or model summary unless asked, seeded and
    deterministic."""
    cap = request.config.getoption("--probes-max-steps")

    def make(callbacks: Any = None, *, max_steps: int = 20, seed: int = 0, **kwargs: Any) -> Any:
        import lightning.pytorch as pl

        pl.seed_everything(seed, verbose=False)
        settings: dict[str, Any] = dict(
            accelerator="cpu",
            devices=1,
            max_steps=min(max_steps, cap) if cap else max_steps,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            deterministic=True,
            default_root_dir=str(tmp_path),
            callbacks=list(callbacks or []),
        )
        settings.update(kwargs)
        return pl.Trainer(**settings)

    return make


@pytest.fixture
def probe_run_dir(tmp_path: Path) -> Path:
    """A fresh directory (not yet created) for a run log."""
    return tmp_path / "run"
