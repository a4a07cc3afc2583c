"""RefinementProbe: does a teacher's refinement stay within what the student can learn?

After Selective Reflection-Tuning (Li et al. 2024, arXiv 2402.10110). For an instruction ``Q`` with
its original response ``A`` and a teacher-refined response ``A*``, the student (the model being
trained) scores, exactly as :class:`~probes.ifd.probe.IFDProbe` does (same tokenization, same start
tokens, same reversed template):

* ``IFD = PPL(A | Q) / PPL(A)`` and ``r-IFD = PPL(Q | A') / PPL(Q)`` on the original
  (``ifd_original``, ``r_ifd_original``) and on the refined response (``ifd_refined``,
  ``r_ifd_refined``), and the differences ``d_ifd = ifd_refined - ifd_original``,
  ``d_r_ifd = r_ifd_refined - r_ifd_original``.

The accept rule for a refined response, as the authors' selection code applies it
(``selection_code/get_select_data.py`` of github.com/tianyi-lab/Reflection_Tuning, response branch):

* the refined response is *preferred* when ``r_ifd_refined < r_ifd_original``: the student finds the
  instruction easier to guess from the refined response, i.e. the refinement is more feasible for it
  (lower r-IFD is better; for a reflected *instruction* the code keeps it when its IFD is *higher*,
  which this probe does not score: the instruction is fixed here);
* a preferred refinement is *kept* only if it is coherent for the student: ``ifd_refined < 1`` and
  ``r_ifd_refined < 1``.

``accepted = (r_ifd_refined < r_ifd_original) & (ifd_refined < 1) & (r_ifd_refined < 1)``, and
``accepted_fraction`` is its mean over the samples. The paper's final top-k ranking of the kept pairs
is not modelled. All eight items of every sample are scored in the shared scoring pass (items shared
by both versions, such as ``PPL(Q)``, once).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
from torch import nn

from probes.core.context import TrainingContext
from probes.core.nonfinite import NonFiniteMonitor
from probes.core.options import ScoringOptions
from probes.core.plan import ItemScores
from probes.core.probe import ScoringProbe
from probes.core.reader import Gather
from probes.core.schedule import ReadSchedule
from probes.frontier.spec import SampleLike, as_refined_samples
from probes.ifd.probe import IFDProbe, IFDReading

__all__ = ["FrontierReading", "RefinementProbe", "accept_refinement"]


def accept_refinement(
    ifd_refined: torch.Tensor, r_ifd_original: torch.Tensor, r_ifd_refined: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(preferred, accepted)`` by the rule of the module docstring (NaN compares False: not accepted)."""
    preferred = r_ifd_refined < r_ifd_original
    return preferred, preferred & (ifd_refined < 1.0) & (r_ifd_refined < 1.0)


@dataclass(frozen=True)
class FrontierReading:
    """One reading (device tensors, ``[n_samples]``)."""

    original: IFDReading
    refined: IFDReading
    preferred: torch.Tensor
    accepted: torch.Tensor

    def tensors(self) -> dict[str, torch.Tensor]:
        o, r = self.original, self.refined
        assert o.r_ifd is not None and r.r_ifd is not None
        bad = o.nonfinite if o.nonfinite is not None else torch.zeros_like(self.accepted)
        if r.nonfinite is not None:
            bad = bad | r.nonfinite
        return {
            "ifd_original": o.ifd,
            "ifd_refined": r.ifd,
            "r_ifd_original": o.r_ifd,
            "r_ifd_refined": r.r_ifd,
            "d_ifd": r.ifd - o.ifd,
            "d_r_ifd": r.r_ifd - o.r_ifd,
            "preferred": self.preferred,
            "accepted": self.accepted,
            "accepted_fraction": self.accepted.float().mean(),
            "nonfinite": bad,
        }


class RefinementProbe(ScoringProbe):
    """Records, per (instruction, original, refined) sample, the student's IFD and r-IFD of both
    responses, their differences and the accept decision, every ``every_n_steps`` optimizer steps and
    when training ends (see the module docstring).

    Records (``[n_samples]`` unless noted): ``ifd_original``, ``ifd_refined``, ``r_ifd_original``,
    ``r_ifd_refined``, ``d_ifd``, ``d_r_ifd``, ``preferred``, ``accepted`` (bool),
    ``accepted_fraction`` (0-d), ``nonfinite``.

    Args:
        samples: :class:`~probes.frontier.spec.RefinedSample` objects or ``(name, instruction,
            original, refined)`` tuples.
        tokenizer: as for :class:`~probes.ifd.probe.IFDProbe`.
        name: metric namespace and ``state_key`` suffix.
        every_n_steps: read every this many optimizer steps, or a ReadSchedule.
        bos_id, prefix, separator, reverse_template: as for :class:`~probes.ifd.probe.IFDProbe`
            (start tokens are required).
        scoring: the :class:`~probes.core.options.ScoringOptions` (or its fields as keywords).
        log_scalars: also log the accepted fraction through the loop's loggers.

    Raises:
        ValueError: bad samples or arguments (as for IFDProbe).

    Example::

        probe = RefinementProbe([("sand", "Q: colour of sand?", "A: yellow", "A: sand is yellow")], tok, prefix=". ")
    """

    kind = "RefinementProbe"

    def __init__(
        self,
        samples: Iterable[SampleLike],
        tokenizer: Any = None,
        *,
        name: str = "frontier",
        every_n_steps: Union[int, ReadSchedule] = 1,
        bos_id: Union[int, Sequence[int], None] = None,
        prefix: Optional[str] = None,
        separator: str = " ",
        reverse_template: str = "{answer}\n",
        log_scalars: bool = True,
        scoring: Optional[ScoringOptions] = None,
        **scoring_options: Any,
    ) -> None:
        super().__init__(name, every_n_steps, ScoringOptions.merged(scoring, scoring_options, owner="RefinementProbe"))
        self.samples = as_refined_samples(samples)
        common = dict(tokenizer=tokenizer, bos_id=bos_id, prefix=prefix, separator=separator, reverse=True,
                      reverse_template=reverse_template, scoring=self.scoring)
        # the IFD math and tokenization, once: two IFD probes (never attached) over the two versions
        self._original = IFDProbe([(s.name, s.instruction, s.original) for s in self.samples], **common)
        self._refined = IFDProbe([(s.name, s.instruction, s.refined) for s in self.samples], **common)
        self.start = self._original.start
        self.separator = separator
        self.reverse_template = reverse_template
        self.log_scalars = log_scalars
        self.requests = list(self._original.requests) + list(self._refined.requests)
        self.nonfinite = NonFiniteMonitor(self.state_key, [s.name for s in self.samples])

    def describe(self) -> Mapping[str, Any]:
        return {
            **super().describe(),
            "samples": [s.to_json() for s in self.samples],
            "start_ids": list(self.start),
            "separator": self.separator,
            "reverse_template": self.reverse_template,
            "rule": "accepted = r_ifd_refined < r_ifd_original and ifd_refined < 1 and r_ifd_refined < 1",
            **self.schedule.describe(),
            "metrics": {
                "ifd_original": "PPL(A | Q) / PPL(A), original response",
                "ifd_refined": "PPL(A* | Q) / PPL(A*), refined response",
                "r_ifd_original": "PPL(Q | A') / PPL(Q), original response",
                "r_ifd_refined": "PPL(Q | A*') / PPL(Q), refined response",
                "d_ifd": "ifd_refined - ifd_original",
                "d_r_ifd": "r_ifd_refined - r_ifd_original",
                "preferred": "r_ifd_refined < r_ifd_original",
                "accepted": "preferred and ifd_refined < 1 and r_ifd_refined < 1",
                "accepted_fraction": "fraction of samples accepted",
            },
        }

    def reading_of(self, scores: ItemScores) -> FrontierReading:
        """The reading of the scores of :attr:`requests`."""
        k = len(self._original.requests)

        def part(sl: slice) -> ItemScores:
            return ItemScores(scores.logp_first[sl], scores.logp_seq[sl], scores.rank[sl], scores.n_tokens[sl])

        original = self._original.reading_of(part(slice(0, k)))
        refined = self._refined.reading_of(part(slice(k, None)))
        assert original.r_ifd is not None and refined.r_ifd is not None
        preferred, accepted = accept_refinement(refined.ifd, original.r_ifd, refined.r_ifd)
        return FrontierReading(original, refined, preferred, accepted)

    def read(self, module: nn.Module, *, gather: Optional[Gather] = None) -> FrontierReading:  # type: ignore[override]
        """Score every sample against ``module`` now (no Trainer needed)."""
        return self.reading_of(super().read(module, gather=gather))

    def take_reading(self, ctx: TrainingContext) -> None:
        step = ctx.step
        reading = self.reading_of(self.read_scores(ctx))
        tensors = reading.tensors()
        self.schedule.mark(step)
        self.emit(step, tensors, epoch=ctx.epoch)
        self.nonfinite.observe(step, tensors["nonfinite"])
        if ctx.final:
            self.nonfinite.flush()
        elif self.log_scalars and ctx.log is not None:
            ctx.log(f"probes/{self.source}/accepted_fraction", tensors["accepted_fraction"])
            ctx.log(f"probes/{self.source}/mean_d_r_ifd", tensors["d_r_ifd"].mean())


