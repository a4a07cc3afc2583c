"""``ScoringOptions``: how a probe reaches the model and how its scoring pass is shaped, given once.

Every scoring probe (keyword, priming, scored formats, benchmarks, IFD) takes the same seven
options; they live in one frozen object so that probes sharing them share one scoring hub (one set
of forwards per step) and a constructor does not repeat them. The probes still accept the options
as keyword arguments (``model="model"``), which :meth:`ScoringOptions.merged` folds in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, Optional

from probes.core.budget import TokenBudget
from probes.core.checks import optional_token_id, positive_int
from probes.core.model_io import LogitsFn

__all__ = ["ScoringOptions"]


@dataclass(frozen=True)
class ScoringOptions:
    """Options of the batched scoring pass, shared by every probe that scores continuations.

    Args:
        model: attribute path of the language model inside the module the trainer trains (e.g.
            ``"model"``); None reads the module itself.
        logits_fn: ``(module, input_ids, attention_mask) -> logits`` for models whose forward does
            not fit; may return anything :func:`~probes.core.model_io.extract_logits` accepts.
        bos_id: token id prepended to every context (e.g. a BOS token), or None.
        vocab_size, max_positions: override what is inferred from the model's config.
        truncation: ``"error"`` for contexts too long for the model, or ``"left"`` to drop leading
            context tokens with a warning.
        token_budget: maximum padded tokens per forward micro-batch, or ``"auto"``: chosen per
            device and for full or restricted logits when the model is bound
            (:mod:`probes.core.budget`: 8,192 on a CPU, 32,768 on CUDA, fewer with full logits).
        head: the model's output layer, projected only at the positions read (``"auto"``: found
            by :func:`~probes.core.head.find_head` and verified once against the full forward;
            an attribute path inside the probed model; None: full logits at every position).
        kv_cache: with a model that takes and returns a key/value cache (Hugging Face style), forward
            each context shared by multi-token continuations once and score the continuations
            against its cache (:mod:`probes.core.prefix`; verified once against the plain pass).

    Raises:
        ValueError: an option of the wrong type or range; the message names it.

    Example::

        scoring = ScoringOptions(model="model", token_budget=8192)
        probes = [KeywordProbe(pairs, tok, scoring=scoring), PrimingProbe(samples, tok, scoring=scoring)]
    """

    model: Optional[str] = None
    logits_fn: Optional[LogitsFn] = None
    bos_id: Optional[int] = None
    vocab_size: Optional[int] = None
    max_positions: Optional[int] = None
    truncation: Literal["error", "left"] = "error"
    token_budget: TokenBudget = "auto"
    head: Optional[str] = "auto"
    kv_cache: bool = True

    def __post_init__(self) -> None:
        if self.model is not None and (not isinstance(self.model, str) or not self.model):
            raise ValueError(f"Expected `model` to be an attribute path such as 'model', or None; got {self.model!r}.")
        if self.logits_fn is not None and not callable(self.logits_fn):
            raise ValueError(
                f"Expected `logits_fn` to be callable (module, ids, mask) -> logits, got {self.logits_fn!r}."
            )
        optional_token_id(self.bos_id, "bos_id")
        if self.vocab_size is not None:
            positive_int(self.vocab_size, "vocab_size")
        if self.max_positions is not None:
            positive_int(self.max_positions, "max_positions")
        if self.truncation not in ("error", "left"):
            raise ValueError(f"Expected `truncation` to be 'error' or 'left', got {self.truncation!r}.")
        if self.token_budget != "auto":
            if not isinstance(self.token_budget, int) or isinstance(self.token_budget, bool) or self.token_budget < 1:
                raise ValueError(
                    f"Expected `token_budget` to be a positive int or 'auto', got {self.token_budget!r}."
                )
        if self.head is not None and (not isinstance(self.head, str) or not self.head):
            raise ValueError(f"Expected `head` to be 'auto', an attribute path, or None; got {self.head!r}.")

    @classmethod
    def merged(cls, scoring: Optional[ScoringOptions], given: Mapping[str, Any], *, owner: str) -> ScoringOptions:
        """``scoring`` (or the defaults) with the options passed as keyword arguments folded in.

        Raises:
            ValueError: an unknown keyword, or the same option given both ways.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise TypeError(
                f"{owner} got unexpected keyword argument(s) {unknown}; the scoring options are {sorted(known)}."
            )
        if scoring is None:
            return cls(**given)
        if not isinstance(scoring, ScoringOptions):
            raise ValueError(f"Expected `scoring` to be a ScoringOptions, got {type(scoring).__name__}.")
        defaults = cls()
        clash = sorted(k for k, v in given.items() if getattr(defaults, k) != getattr(scoring, k) != v)
        if clash:
            raise ValueError(f"{owner}: {clash} given both in `scoring=` and as keyword arguments; pass each once.")
        return replace(scoring, **given) if given else scoring

    @property
    def reader_options(self) -> dict[str, Any]:
        """The options a :class:`~probes.core.reader.ModelReader` takes (``bos_id`` is used when tokenizing)."""
        return {
            "model": self.model,
            "logits_fn": self.logits_fn,
            "vocab_size": self.vocab_size,
            "max_positions": self.max_positions,
            "truncation": self.truncation,
            "token_budget": self.token_budget,
            "head": self.head,
            "kv_cache": self.kv_cache,
        }

    def hub_key(self) -> tuple[Any, ...]:
        """Probes whose options give the same key share one scoring hub (and one set of forwards)."""
        opts = self.reader_options
        return tuple((k, id(v) if k == "logits_fn" and v is not None else v) for k, v in opts.items())
