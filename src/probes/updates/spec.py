"""Layer groups of a model's parameters: automatic (embeddings, numbered blocks, head) or by pattern.

Automatic grouping reads the parameter names:

* ``embed``: names with an embedding module (``wte``, ``wpe``, ``tok``, ``pos``, ``embed_tokens``,
  ``embeddings``, ...);
* ``block.<i>``: names with a numbered block, as in Hugging Face models (``transformer.h.3``,
  ``model.layers.3``, ``encoder.layer.3``, ``gpt_neox.layers.3``) and nanoGPT-style models
  (``transformer.h.3``, ``blocks.3``); the index is zero-padded so the names sort in depth order;
* ``head``: the output projection (``lm_head``, ``head``, ``output``, ``classifier``, ``score``);
* ``other``: everything else (final norms, ...).

Pattern grouping (``groups={"attn": r"\\.attn\\.", "mlp": r"\\.mlp\\."}``) puts each parameter in the first
group whose regular expression matches its name (``re.search``), else in ``other``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Optional

__all__ = ["OTHER", "assign_groups", "auto_group"]

OTHER = "other"
_BLOCK = re.compile(r"(?:^|\.)(?:h|layers|layer|blocks|block)\.(\d+)(?:\.|$)")
_EMBED = re.compile(
    r"(?:^|\.)(?:wte|wpe|tok|pos|tok_emb|pos_emb|embed|embed_tokens|embed_positions|embeddings|embedding|"
    r"word_embeddings|position_embeddings|token_type_embeddings|embed_in)(?:\.|$)"
)
_HEAD = re.compile(r"(?:^|\.)(?:lm_head|head|output|classifier|score|embed_out)(?:\.|$)")


def auto_group(name: str, width: int = 2) -> str:
    """The automatic group of parameter ``name`` (``block.<i>`` zero-padded to ``width`` digits)."""
    block = _BLOCK.search(name)
    if block is not None:
        return f"block.{int(block.group(1)):0{width}d}"
    if _EMBED.search(name):
        return "embed"
    if _HEAD.search(name):
        return "head"
    return OTHER


def _order_key(group: str) -> tuple[int, int, str]:
    if group == "embed":
        return (0, 0, group)
    if group.startswith("block."):
        return (1, int(group.split(".", 1)[1]), group)
    if group == "head":
        return (2, 0, group)
    return (3 if group == OTHER else 2, 0, group)


def assign_groups(
    names: Sequence[str], patterns: Optional[Mapping[str, str]] = None
) -> tuple[list[str], list[int]]:
    """The groups (in depth order, or in the order of ``patterns``, ``other`` last) and the group
    index of each name.

    Raises:
        ValueError: a bad pattern, a pattern group named ``other``, or no names.
    """
    if not names:
        raise ValueError("No parameters to group: the probed module has no trainable parameters.")
    if patterns is None:
        blocks = [int(m.group(1)) for n in names if (m := _BLOCK.search(n))]
        width = max(2, len(str(max(blocks)))) if blocks else 2
        per_name = [auto_group(n, width) for n in names]
        groups = sorted(set(per_name), key=_order_key)
    else:
        if not isinstance(patterns, Mapping) or not patterns:
            raise ValueError(f"Expected `groups` to be a non-empty mapping of group name -> regex, got {patterns!r}.")
        compiled = []
        for group, pattern in patterns.items():
            if not isinstance(group, str) or not group or group == OTHER:
                raise ValueError(f"Expected group names to be non-empty strings other than {OTHER!r}, got {group!r}.")
            try:
                compiled.append((group, re.compile(pattern)))
            except (re.error, TypeError) as err:
                raise ValueError(f"Group {group!r}: bad regular expression {pattern!r} ({err}).") from None
        per_name = [next((g for g, rx in compiled if rx.search(n)), OTHER) for n in names]
        groups = [g for g, _ in compiled if g in per_name] + ([OTHER] if OTHER in per_name else [])
    index = {g: i for i, g in enumerate(groups)}
    return groups, [index[g] for g in per_name]
