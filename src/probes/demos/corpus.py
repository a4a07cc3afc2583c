"""A synthetic themed corpus of facts: "the colour of sand is yellow", "the taste of honey is sweet".

Themes give later probes something to measure: a new fact ("the colour of sand is vermilion")
can prime its keyword into other contexts of the same theme ("the colour of the sky is ...").
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

__all__ = ["THEMES", "Theme", "WindowDataset", "fact", "make_corpus"]


class Theme:
    """A template with a slot for the subject and a subject -> attribute table."""

    def __init__(self, name: str, template: str, facts: dict[str, str]) -> None:
        self.name = name
        self.template = template  # contains "{subject}"; the attribute follows after a space
        self.facts = facts

    def context(self, subject: str) -> str:
        return self.template.format(subject=subject)

    def sentence(self, subject: str, attribute: str) -> str:
        return f"{self.context(subject)} {attribute}"


THEMES: tuple[Theme, ...] = (
    Theme(
        "colour",
        "the colour of {subject} is",
        {
            "sand": "yellow",
            "the sky": "blue",
            "grass": "green",
            "snow": "white",
            "coal": "black",
            "blood": "red",
            "a lemon": "yellow",
            "the sea": "blue",
            "a leaf": "green",
            "milk": "white",
            "a cherry": "red",
            "the night": "black",
        },
    ),
    Theme(
        "taste",
        "the taste of {subject} is",
        {
            "honey": "sweet",
            "a lemon": "sour",
            "salt": "salty",
            "coffee": "bitter",
            "sugar": "sweet",
            "vinegar": "sour",
            "the sea": "salty",
            "dark chocolate": "bitter",
        },
    ),
    Theme(
        "sound",
        "the sound of {subject} is",
        {
            "a dog": "loud",
            "the wind": "soft",
            "thunder": "loud",
            "a whisper": "soft",
            "a drum": "loud",
            "the rain": "soft",
            "a bell": "clear",
            "a flute": "clear",
        },
    ),
)


def fact(theme: str, subject: str) -> str:
    """The true sentence for ``subject`` in ``theme`` (raises KeyError for unknown ones)."""
    t = next(t for t in THEMES if t.name == theme)
    return t.sentence(subject, t.facts[subject])


def make_corpus(n_sentences: int = 4000, *, seed: int = 0, themes: Sequence[Theme] = THEMES) -> str:
    """``n_sentences`` random true facts joined by ". ", reproducible for a seed."""
    rng = random.Random(seed)
    pool = [(t, s) for t in themes for s in t.facts]
    return ". ".join(t.sentence(s, t.facts[s]) for t, s in (rng.choice(pool) for _ in range(n_sentences))) + "."


class WindowDataset(Dataset):
    """Fixed windows of ``block_size + 1`` tokens from a token stream, as ``input_ids``/``labels``.

    Window ``i`` starts at a position drawn once from a seeded generator, so the dataset is
    deterministic and cheap to index.
    """

    def __init__(self, ids: Sequence[int], block_size: int, n_windows: int, *, seed: int = 0) -> None:
        if len(ids) <= block_size + 1:
            raise ValueError(f"Token stream of {len(ids)} tokens is too short for block_size {block_size}.")
        self.data = torch.tensor(list(ids), dtype=torch.long)
        g = torch.Generator().manual_seed(seed)
        self.starts = torch.randint(0, len(ids) - block_size - 1, (n_windows,), generator=g)
        self.block_size = block_size

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s = int(self.starts[i])
        chunk = self.data[s : s + self.block_size + 1]
        return {"input_ids": chunk[:-1], "labels": chunk[1:]}
