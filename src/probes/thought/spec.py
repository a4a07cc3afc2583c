"""``ThoughtItem``: a fixed (context, thought, continuation) triple whose information gain is read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from probes.core.checks import TextOrIds, named_items, text_or_ids

__all__ = ["ThoughtItem", "as_thought_items"]


@dataclass(frozen=True)
class ThoughtItem:
    """One triple: the thought is inserted between the context and the continuation.

    Args:
        name: unique identifier.
        context: the text (or token ids) before the thought.
        thought: the thought (or its ids).
        continuation: what follows (or its ids), scored with and without the thought.

    Raises:
        ValueError: an empty field or a mix of text and ids.
    """

    name: str
    context: TextOrIds
    thought: TextOrIds
    continuation: TextOrIds

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"Expected thought item `name` to be a non-empty string, got {self.name!r}.")
        where = f"Thought item {self.name!r}"
        fields = [text_or_ids(getattr(self, f), f, where) for f in ("context", "thought", "continuation")]
        if len({isinstance(v, str) for v in fields}) != 1:
            raise ValueError(f"{where}: context, thought and continuation must all be text or all be token ids.")
        for f, v in zip(("context", "thought", "continuation"), fields):
            object.__setattr__(self, f, v)

    @property
    def is_text(self) -> bool:
        return isinstance(self.context, str)

    def to_json(self) -> dict[str, Any]:
        def enc(v: TextOrIds) -> object:
            return v if isinstance(v, str) else list(v)

        return {"name": self.name, "context": enc(self.context), "thought": enc(self.thought),
                "continuation": enc(self.continuation)}


ItemLike = Union[ThoughtItem, Sequence[Any], Mapping[str, Any]]


def as_thought_items(items: Iterable[ItemLike]) -> tuple[ThoughtItem, ...]:
    """:class:`ThoughtItem` objects from items, ``(name, context, thought, continuation)`` tuples or mappings.

    Raises:
        ValueError: anything else, no items, or a repeated name.
    """
    out: list[ThoughtItem] = []
    for i, it in enumerate(items):
        if isinstance(it, ThoughtItem):
            out.append(it)
        elif isinstance(it, Mapping):
            out.append(ThoughtItem(**it))
        elif isinstance(it, (tuple, list)) and len(it) == 4:
            out.append(ThoughtItem(*it))
        else:
            raise ValueError(
                f"Thought item #{i}: expected a ThoughtItem or a (name, context, thought, continuation) tuple,"
                f" got {it!r}."
            )
    return tuple(named_items(out, "thought item"))
