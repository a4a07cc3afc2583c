"""Argument checks shared by every probe and spec: one wording for each kind of bad input."""

from __future__ import annotations

from typing import Optional, TypeVar, Union

__all__ = ["TextOrIds", "at_least", "named_items", "optional_token_id", "positive_int", "text_or_ids"]

TextOrIds = Union[str, tuple[int, ...]]
T = TypeVar("T")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(value: object, name: str) -> int:
    """``value`` if it is an int >= 1.

    Raises:
        ValueError: anything else (bools included), naming ``name``.
    """
    if not _is_int(value) or value < 1:  # type: ignore[operator]
        raise ValueError(f"Expected `{name}` to be a positive int, got {value!r}.")
    return value  # type: ignore[return-value]


def at_least(value: object, name: str, minimum: int) -> int:
    """``value`` if it is an int >= ``minimum``.

    Raises:
        ValueError: anything else (bools included), naming ``name`` and the minimum.
    """
    if not _is_int(value) or value < minimum:  # type: ignore[operator]
        raise ValueError(f"Expected `{name}` to be an int >= {minimum}, got {value!r}.")
    return value  # type: ignore[return-value]


def optional_token_id(value: object, name: str) -> Optional[int]:
    """``value`` if it is None or a token id (an int >= 0).

    Raises:
        ValueError: anything else, naming ``name``.
    """
    if value is not None and (not _is_int(value) or value < 0):  # type: ignore[operator]
        raise ValueError(f"Expected `{name}` to be None or a token id >= 0, got {value!r}.")
    return value  # type: ignore[return-value]


def text_or_ids(value: object, what: str, where: str, *, nonempty: bool = True, nonnegative: bool = False) -> TextOrIds:
    """A text, or a sequence (list, tuple, 1-D integer tensor) of token ids as a tuple.

    Args:
        value: what the user gave.
        what: the field's name in messages (``"context"``).
        where: the owner in messages (``"Probe pair 'sky'"``).
        nonempty: refuse a blank text or an empty id sequence.
        nonnegative: refuse negative token ids here (otherwise the scoring plan refuses them).

    Raises:
        ValueError: anything else, naming the owner, the field, the type and the value.
    """
    if isinstance(value, str):
        if nonempty and not value.strip():
            raise ValueError(f"{where}: expected `{what}` to be non-empty, got {value!r}.")
        return value
    ids: Optional[tuple[int, ...]] = None
    if isinstance(value, (list, tuple)) and all(_is_int(v) for v in value):
        ids = tuple(int(v) for v in value)
    else:
        try:  # torch / numpy integer vectors
            import torch

            if isinstance(value, torch.Tensor) and value.dim() == 1 and not value.is_floating_point():
                ids = tuple(int(v) for v in value.tolist())
        except ImportError:  # pragma: no cover
            pass
    if ids is None:
        raise ValueError(
            f"{where}: expected `{what}` to be a string or a sequence of int token ids, got {type(value).__name__}"
            f" {value!r}."
        )
    if nonempty and not ids:
        raise ValueError(f"{where}: expected `{what}` to be non-empty, got no token ids.")
    if nonnegative and any(v < 0 for v in ids):
        raise ValueError(f"{where}: `{what}` has a negative token id ({list(ids)}); token ids are >= 0.")
    return ids


def named_items(items: list[T], what: str, *, within: str = "") -> list[T]:
    """``items`` (objects with a ``name``) if there is at least one and no name repeats.

    Args:
        items: the converted items.
        what: their kind in messages (``"probe pair"``).
        within: where names must be unique, for the message (``" within a suite"``).

    Raises:
        ValueError: no items, or a repeated name (the first one).
    """
    if not items:
        raise ValueError(f"Expected at least one {what}, got none.")
    seen: set[str] = set()
    for item in items:
        name = item.name  # type: ignore[attr-defined]
        if name in seen:
            raise ValueError(f"Duplicate {what} name {name!r}: names must be unique{within}.")
        seen.add(name)
    return items
