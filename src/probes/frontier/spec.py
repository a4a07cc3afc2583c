"""``RefinedSample``: an instruction with its original response and a teacher's refined response."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from probes.core.checks import TextOrIds, named_items, text_or_ids

__all__ = ["RefinedSample", "as_refined_samples"]


@dataclass(frozen=True)
class RefinedSample:
    """One instruction, the original response and the refined one.

    Args:
        name: unique identifier.
        instruction: the prompt (text or token ids).
        original: the response before refinement.
        refined: the teacher's refined response.

    Raises:
        ValueError: an empty field or a mix of text and ids.
    """

    name: str
    instruction: TextOrIds
    original: TextOrIds
    refined: TextOrIds

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"Expected refined sample `name` to be a non-empty string, got {self.name!r}.")
        where = f"Refined sample {self.name!r}"
        fields = [text_or_ids(getattr(self, f), f, where) for f in ("instruction", "original", "refined")]
        if len({isinstance(v, str) for v in fields}) != 1:
            raise ValueError(f"{where}: instruction, original and refined must all be text or all be token ids.")
        for f, v in zip(("instruction", "original", "refined"), fields):
            object.__setattr__(self, f, v)

    def to_json(self) -> dict[str, Any]:
        def enc(v: TextOrIds) -> object:
            return v if isinstance(v, str) else list(v)

        return {"name": self.name, "instruction": enc(self.instruction), "original": enc(self.original),
                "refined": enc(self.refined)}


SampleLike = Union[RefinedSample, Sequence[Any], Mapping[str, Any]]


def as_refined_samples(samples: Iterable[SampleLike]) -> tuple[RefinedSample, ...]:
    """:class:`RefinedSample` objects from samples, ``(name, instruction, original, refined)`` tuples or mappings.

    Raises:
        ValueError: anything else, no samples, or a repeated name.
    """
    out: list[RefinedSample] = []
    for i, s in enumerate(samples):
        if isinstance(s, RefinedSample):
            out.append(s)
        elif isinstance(s, Mapping):
            out.append(RefinedSample(**s))
        elif isinstance(s, (tuple, list)) and len(s) == 4:
            out.append(RefinedSample(*s))
        else:
            raise ValueError(
                f"Refined sample #{i}: expected a RefinedSample or a (name, instruction, original, refined) tuple,"
                f" got {s!r}."
            )
    return tuple(named_items(out, "refined sample"))
