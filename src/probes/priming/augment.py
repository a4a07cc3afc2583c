"""Stepping-stone augmentation of a learning sample (Sun et al. 2025, arXiv 2504.09522).

The paper's first remedy for priming: instead of training on the bare surprising fact ("the
colour of a pearl is vermilion"), train on a text that reaches the surprising keyword through
intermediate, less surprising elaborations, so that the keyword is far less surprising where it
is learned. The paper reports that priming (S_prime) falls while memorization (S_mem) is kept.

:func:`stepping_stone_text` builds such a text from the sample's own learning context and a list
of *stones* (words or phrases the model already finds likely, chosen by the user, e.g. ordinary
colours on the way to "vermilion"). The keyword still ends the text, so the same
:class:`~probes.priming.spec.LearningSample` (its learning context, keyword and priming prefixes) is
what a :class:`~probes.callbacks.PrimingProbe` keeps measuring: memorization is read on the
original learning context, not on the augmented one. Pass the text to
:class:`~probes.priming.injection.InjectedLoader` with ``texts={sample.name: text}``.

Departure from the paper: the paper writes the elaborations with a language model, as natural
sentences; here they are a template over user-given stones, which is what a tiny model without
semantics can be given. No Lightning import here.
"""

from __future__ import annotations

from collections.abc import Sequence

from probes.priming.spec import LearningSample

__all__ = ["stepping_stone_text"]


def stepping_stone_text(
    sample: LearningSample, stones: Sequence[str], *, joiner: str = ", then ", lead: str = "first "
) -> str:
    """``"<learning context> first <stone 1>, then <stone 2>, then <keyword>"``.

    Args:
        sample: the fact to augment.
        stones: one or more intermediate words or phrases, least surprising first.
        joiner: text between consecutive elements.
        lead: text before the first stone.

    Raises:
        ValueError: no stones, an empty stone, or a stone equal to the keyword.

    Example::

        stepping_stone_text(sample, ["white", "red"])
        # 'the colour of a pearl is first white, then red, then vermilion'
    """
    if isinstance(stones, str) or not stones:
        raise ValueError(f"Expected `stones` to be a non-empty list of strings, got {stones!r}.")
    for stone in stones:
        if not isinstance(stone, str) or not stone.strip():
            raise ValueError(f"Expected every stone to be a non-empty string, got {stone!r}.")
        if stone.strip() == sample.keyword:
            raise ValueError(f"Stone {stone!r} is the keyword itself; stones lead up to the keyword.")
    gap = sample.learning_continuation[: len(sample.learning_continuation) - len(sample.keyword)]
    return f"{sample.learning_context}{gap}{lead}{joiner.join([*stones, sample.keyword])}"
