"""IFDProbe: the Instruction-Following Difficulty of SFT samples, read over training.

For an instruction ``Q`` and its answer ``A`` (Li et al. 2024, arXiv 2402.10110, after Li et al.
2023, arXiv 2308.12032):

* ``PPL(A | Q) = exp(-(1/n_A) sum_t log p(a_t | Q, a_<t))`` over the answer tokens only;
* ``PPL(A) = exp(-(1/n_A) sum_t log p(a_t | start, a_<t))``: the same answer tokens with no
  instruction, conditioned only on the start tokens (``bos_id`` and/or ``prefix``);
* ``IFD = PPL(A | Q) / PPL(A)``. Below 1 the instruction helps the model predict the answer;
  ``IFD >= 1`` means it does not (the sample is flagged: likely misaligned, or beyond what the
  model can use yet);
* the reverse score ``r-IFD = PPL(Q | A') / PPL(Q)``, where ``A'`` is the answer rendered by
  ``reverse_template`` (the paper wraps it in a prompt asking to guess the instruction). A high
  r-IFD means the answer gives little clue to the instruction: the pair is hard for the student
  to learn from ("feasibility"). Li et al. 2024 keep samples with high IFD and low r-IFD.

The answer (instruction) tokens scored with and without their context are the *same* token ids:
those of the answer as tokenized after the instruction (of the instruction after the reversed
answer), so both perplexities average over identical targets. All four items of every sample are
scored in one batched pass of one :class:`~probes.core.plan.ScoringPlan`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
from torch import nn

from probes.core.checks import TextOrIds, named_items, text_or_ids
from probes.core.context import TrainingContext
from probes.core.model_io import Encoder, as_encoder
from probes.core.nonfinite import NonFiniteMonitor
from probes.core.options import ScoringOptions
from probes.core.plan import ItemScores, TokenizedItem
from probes.core.probe import ScoringProbe
from probes.core.reader import Gather
from probes.core.schedule import ReadSchedule
from probes.core.tokenize import Affixes, tokenize_continuation

__all__ = ["IFDProbe", "IFDReading", "IFDSample"]




@dataclass(frozen=True)
class IFDSample:
    """One SFT sample: an instruction and the answer the model is trained to give.

    Args:
        name: unique identifier.
        instruction: the prompt text (or token ids).
        answer: the target response (or token ids); of the same kind as ``instruction``.

    Raises:
        ValueError: an empty name, instruction or answer, or a mix of text and ids.
    """

    name: str
    instruction: TextOrIds
    answer: TextOrIds

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"Expected IFD sample `name` to be a non-empty string, got {self.name!r}.")
        instruction = text_or_ids(self.instruction, "instruction", f"IFD sample {self.name!r}")
        answer = text_or_ids(self.answer, "answer", f"IFD sample {self.name!r}")
        if isinstance(instruction, str) != isinstance(answer, str):
            raise ValueError(
                f"IFD sample {self.name!r}: instruction and answer must both be text or both be token ids."
            )
        object.__setattr__(self, "instruction", instruction)
        object.__setattr__(self, "answer", answer)

    @property
    def is_text(self) -> bool:
        return isinstance(self.answer, str)

    def to_json(self) -> dict[str, Any]:
        def enc(v: TextOrIds) -> object:
            return v if isinstance(v, str) else list(v)

        return {"name": self.name, "instruction": enc(self.instruction), "answer": enc(self.answer)}


SampleLike = Union[IFDSample, Sequence[Any], Mapping[str, Any]]


def _as_samples(samples: Iterable[SampleLike]) -> tuple[IFDSample, ...]:
    out: list[IFDSample] = []
    for i, s in enumerate(samples):
        if isinstance(s, IFDSample):
            out.append(s)
        elif isinstance(s, Mapping):
            out.append(IFDSample(**s))
        elif isinstance(s, (tuple, list)) and len(s) == 3:
            out.append(IFDSample(*s))
        else:
            raise ValueError(
                f"IFD sample #{i}: expected an IFDSample or a (name, instruction, answer) tuple, got {s!r}."
            )
    return tuple(named_items(out, "IFD sample"))


def _split(encode: Optional[Encoder], context: str, target: str, sample: str, what: str) -> tuple[tuple[int, ...], ...]:
    """(context ids, target ids) under the library's score convention (:mod:`probes.core.tokenize`):
    ``target`` starts with the separator, and the context's trailing whitespace moves to it."""
    if encode is None:
        raise ValueError(f"IFD sample {sample!r} is text but no tokenizer was given: pass `tokenizer=` or give ids.")
    try:
        tokens = tokenize_continuation(encode, context, target, affixes=Affixes())
    except ValueError as err:
        raise ValueError(f"IFD sample {sample!r}: the {what}: {err}") from None
    return tokens.context, tokens.continuation


@dataclass(frozen=True)
class IFDReading:
    """One IFD pass (device tensors, ``[n_samples]``; the reverse fields are None without ``reverse``).

    Attributes:
        ifd: ``PPL(A | Q) / PPL(A)``.
        ppl_answer_cond: ``PPL(A | Q)`` on the answer tokens.
        ppl_answer: ``PPL(A)`` on the same tokens after the start tokens only.
        flagged: ``ifd >= 1`` (the instruction does not help).
        r_ifd: ``PPL(Q | A') / PPL(Q)``.
        ppl_instruction_cond: ``PPL(Q | A')``.
        ppl_instruction: ``PPL(Q)`` after the start tokens only.
        nonfinite: the model's logits were NaN or +inf where one of the sample's items is read
            (its figures are then NaN).
    """

    ifd: torch.Tensor
    ppl_answer_cond: torch.Tensor
    ppl_answer: torch.Tensor
    flagged: torch.Tensor
    r_ifd: Optional[torch.Tensor] = None
    ppl_instruction_cond: Optional[torch.Tensor] = None
    ppl_instruction: Optional[torch.Tensor] = None
    nonfinite: Optional[torch.Tensor] = None

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {
            "ifd": self.ifd,
            "ppl_answer_cond": self.ppl_answer_cond,
            "ppl_answer": self.ppl_answer,
            "flagged": self.flagged,
            "frac_flagged": self.flagged.float().mean(),
        }
        if self.nonfinite is not None:
            out["nonfinite"] = self.nonfinite
        if self.r_ifd is not None:
            assert self.ppl_instruction_cond is not None and self.ppl_instruction is not None
            out.update(
                r_ifd=self.r_ifd,
                ppl_instruction_cond=self.ppl_instruction_cond,
                ppl_instruction=self.ppl_instruction,
            )
        return out


class IFDProbe(ScoringProbe):
    """Records IFD and r-IFD of every SFT sample every ``every_n_steps`` optimizer steps and when
    training ends, in one batched no-grad pass (see the module docstring for the definitions).

    Records (``[n_samples]`` in sample order unless noted): ``ifd``, ``ppl_answer_cond``,
    ``ppl_answer``, ``flagged`` (bool, ``ifd >= 1``), ``frac_flagged`` (0-d), and with
    ``reverse=True``: ``r_ifd``, ``ppl_instruction_cond``, ``ppl_instruction``.

    Scoring an answer "without the instruction" still needs a token to condition the first answer
    token on: give the model's BOS id (``bos_id=``), and/or a neutral text ``prefix=`` (e.g.
    ``"\\n"`` or ``". "`` for a model trained on plain text without a BOS token). The start tokens
    are prepended to *every* scored context, conditioned or not, so the only difference between
    the two perplexities is the instruction (or the answer, for r-IFD).

    Args:
        samples: :class:`IFDSample` objects or ``(name, instruction, answer)`` tuples.
        tokenizer: a Hugging Face tokenizer, a ``tokenizers.Tokenizer``, a callable
            ``str -> list[int]``, or None for token-id samples.
        name: metric namespace and ``state_key`` suffix.
        every_n_steps: read every this many optimizer steps, or a
            :class:`~probes.core.schedule.ReadSchedule` (plus the reading at the end of fit).
        bos_id: start token id(s) prepended to every context (default: ``scoring.bos_id``).
        prefix: start text, tokenized and appended after ``bos_id``.
        separator: inserted between a text instruction and its answer (default one space).
        reverse: also compute r-IFD (doubles the scored items).
        reverse_template: renders the answer as the context of the instruction for r-IFD; must
            contain ``"{answer}"``. Li et al. use a prompt such as ``"Below is the response to an
            instruction, please guess the corresponding instruction for the given response.\\n
            {answer}\\nGenerate the instruction for the above response."``; the default,
            ``"{answer}\\n"``, suits small models with short context windows.
        scoring: the :class:`~probes.core.options.ScoringOptions`; each option may also be passed as
            a keyword argument (``model="model"``), as for :class:`~probes.keyword.probe.KeywordProbe`.
        log_scalars: also log the mean IFD and the flagged fraction through the Trainer's loggers.

    Raises:
        ValueError: bad samples or arguments, no start tokens, or text that does not tokenize.

    Example::

        probe = IFDProbe([("s0", "Q: colour of sand?", "A: yellow")], ByteTokenizer(), prefix=". ")
    """

    kind = "IFDProbe"

    def __init__(
        self,
        samples: Iterable[SampleLike],
        tokenizer: Any = None,
        *,
        name: str = "ifd",
        every_n_steps: Union[int, ReadSchedule] = 1,
        bos_id: Union[int, Sequence[int], None] = None,
        prefix: Optional[str] = None,
        separator: str = " ",
        reverse: bool = True,
        reverse_template: str = "{answer}\n",
        log_scalars: bool = True,
        scoring: Optional[ScoringOptions] = None,
        **scoring_options: Any,
    ) -> None:
        super().__init__(name, every_n_steps, ScoringOptions.merged(scoring, scoring_options, owner="IFDProbe"))
        if bos_id is None:
            bos_id = self.scoring.bos_id
        if not isinstance(separator, str):
            raise ValueError(f"Expected `separator` to be a string, got {separator!r}.")
        if not isinstance(reverse_template, str) or "{answer}" not in reverse_template:
            raise ValueError(
                f"Expected `reverse_template` to be a string containing '{{answer}}', got {reverse_template!r}."
            )
        try:
            reverse_template.format(answer="")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(
                f"`reverse_template` {reverse_template!r} has a placeholder other than '{{answer}}' ({err!r});"
                " double literal braces as '{{' and '}}'."
            ) from None
        self.samples = _as_samples(samples)
        encode = as_encoder(tokenizer)
        self.start = self._start_ids(bos_id, prefix, encode)
        self.separator = separator
        self.reverse = bool(reverse)
        self.reverse_template = reverse_template
        self.log_scalars = log_scalars
        self.items = self._tokenize(encode)
        self.nonfinite = NonFiniteMonitor(self.state_key, [s.name for s in self.samples])
        self.requests = self.items

    @staticmethod
    def _start_ids(
        bos_id: Union[int, Sequence[int], None], prefix: Optional[str], encode: Optional[Encoder]
    ) -> tuple[int, ...]:
        if bos_id is None:
            start: tuple[int, ...] = ()
        elif isinstance(bos_id, int) and not isinstance(bos_id, bool):
            start = (bos_id,)
        elif isinstance(bos_id, (list, tuple)) and all(isinstance(t, int) and not isinstance(t, bool) for t in bos_id):
            start = tuple(bos_id)
        else:
            raise ValueError(f"Expected `bos_id` to be a token id or a sequence of token ids, got {bos_id!r}.")
        if any(t < 0 for t in start):
            raise ValueError(f"Expected `bos_id` to hold non-negative token ids, got {bos_id!r}.")
        if prefix is not None:
            if not isinstance(prefix, str) or not prefix:
                raise ValueError(f"Expected `prefix` to be a non-empty string, got {prefix!r}.")
            if encode is None:
                raise ValueError("`prefix` is text but no tokenizer was given: pass `tokenizer=` or use `bos_id=`.")
            start = start + tuple(encode(prefix))
        if not start:
            raise ValueError(
                "IFDProbe needs start tokens to score an answer without its instruction: pass `bos_id=` (e.g."
                " tokenizer.bos_token_id) or `prefix=` (a neutral text such as '\\n' for models without a BOS"
                " token)."
            )
        return start

    def _tokenize(self, encode: Optional[Encoder]) -> list[TokenizedItem]:
        cond_a, plain_a, cond_q, plain_q = [], [], [], []
        for s in self.samples:
            if s.is_text:
                ctx, ans = _split(encode, str(s.instruction), self.separator + str(s.answer), s.name, "answer")
            else:
                ctx, ans = tuple(s.instruction), tuple(s.answer)  # type: ignore[arg-type]
            cond_a.append(TokenizedItem(f"{s.name}/answer|instruction", self.start + ctx, ans))
            plain_a.append(TokenizedItem(f"{s.name}/answer", self.start, ans))
            if not self.reverse:
                continue
            if s.is_text:
                rev = self.reverse_template.format(answer=s.answer)
                rctx, ins = _split(encode, rev, str(s.instruction), s.name, "instruction")
            else:
                rctx, ins = tuple(s.answer), tuple(s.instruction)  # type: ignore[arg-type]
            cond_q.append(TokenizedItem(f"{s.name}/instruction|answer", self.start + rctx, ins))
            plain_q.append(TokenizedItem(f"{s.name}/instruction", self.start, ins))
        return cond_a + plain_a + cond_q + plain_q

    def describe(self) -> Mapping[str, Any]:
        metrics = {
            "ifd": "PPL(answer | instruction) / PPL(answer), answer tokens only",
            "ppl_answer_cond": "PPL(answer | start + instruction)",
            "ppl_answer": "PPL(answer | start)",
            "flagged": "ifd >= 1: the instruction does not help predict the answer",
            "frac_flagged": "fraction of samples flagged",
        }
        if self.reverse:
            metrics |= {
                "r_ifd": "PPL(instruction | start + reversed answer) / PPL(instruction | start)",
                "ppl_instruction_cond": "PPL(instruction | start + reverse_template(answer))",
                "ppl_instruction": "PPL(instruction | start)",
            }
        return {
            **super().describe(),
            "samples": [s.to_json() for s in self.samples],
            "start_ids": list(self.start),
            "separator": self.separator,
            "reverse": self.reverse,
            "reverse_template": self.reverse_template,
            **self.schedule.describe(),
            "metrics": metrics,
        }

    def read(self, module: nn.Module, *, gather: Optional[Gather] = None) -> IFDReading:  # type: ignore[override]
        """Score every sample against ``module`` now (no Trainer needed); device tensors.

        ``gather`` is only needed when the reader is sharded across ranks (set up by a Trainer).
        """
        return self.reading_of(super().read(module, gather=gather))

    def reading_of(self, scores: ItemScores) -> IFDReading:
        """The IFD reading of the scores of :attr:`requests`."""
        n = len(self.samples)
        # mean negative log-likelihood per token, in nats; PPL = exp(nll)
        nll = -scores.logp_seq.double() / scores.n_tokens.double()
        ppl = nll.exp().float()
        ifd = (nll[:n] - nll[n : 2 * n]).exp().float()
        bad = scores.nonfinite.reshape(-1, n).any(dim=0)  # items are [cond A, A, (cond Q, Q)] x samples
        out = IFDReading(
            ifd=ifd, ppl_answer_cond=ppl[:n], ppl_answer=ppl[n : 2 * n], flagged=ifd >= 1.0, nonfinite=bad
        )
        if not self.reverse:
            return out
        return IFDReading(
            ifd=out.ifd,
            ppl_answer_cond=out.ppl_answer_cond,
            ppl_answer=out.ppl_answer,
            flagged=out.flagged,
            r_ifd=(nll[2 * n : 3 * n] - nll[3 * n :]).exp().float(),
            ppl_instruction_cond=ppl[2 * n : 3 * n],
            ppl_instruction=ppl[3 * n :],
            nonfinite=bad,
        )

    def take_reading(self, ctx: TrainingContext) -> None:
        step = ctx.step
        reading = self.reading_of(self.read_scores(ctx))
        self.schedule.mark(step)
        self.emit(step, reading.tensors(), epoch=ctx.epoch)
        if reading.nonfinite is not None:
            self.nonfinite.observe(step, reading.nonfinite)
        if ctx.final:
            self.nonfinite.flush()
        elif self.log_scalars and ctx.log is not None:
            prefix = f"probes/{self.source}"
            ctx.log(f"{prefix}/mean_log10_ifd", reading.ifd.log().mean() / math.log(10))
            ctx.log(f"{prefix}/frac_flagged", reading.flagged.float().mean())
