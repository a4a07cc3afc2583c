"""The scoring hub: every probe's scoring requests on one model, scored in one plan per step.

A scoring probe states its requests once (tokenized ``(context, continuation)`` items, see
:class:`~probes.core.plan.TokenizedItem`) and asks its hub for their scores when it reads. The hub
knows every probe registered with it and their read schedules, so the first probe to ask at a step
gets the union of the requests of every probe due at that step scored in one pass: items repeated
across probes are scored once, rows are packed together (and sharded across data-parallel ranks with
one all-gather, as :class:`~probes.core.reader.ModelReader` does), and each probe is handed its own
slice when it asks in turn. Probes with different :class:`~probes.core.options.ScoringOptions` use
different hubs.

A slice is handed out only for the same step, the same kind of reading and the same weights (the
sum of the parameters' in-place version counters, which every optimizer step and checkpoint load
advances), so a probe never receives scores of weights it did not read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Protocol

import torch
from torch import nn

from probes.core.model_io import infer_max_positions, infer_vocab_size, resolve_module
from probes.core.options import ScoringOptions
from probes.core.plan import ItemScores, ScoringPlan, TokenizedItem
from probes.core.reader import Gather, ModelReader
from probes.core.schedule import ReadSchedule

if TYPE_CHECKING:
    from probes.core.context import TrainingContext

__all__ = ["Hubs", "ScoringHub", "ScoringMember"]


class ScoringMember(Protocol):
    """What the hub needs of a scoring probe."""

    @property
    def state_key(self) -> str: ...

    requests: list[TokenizedItem]
    scoring: ScoringOptions
    schedule: ReadSchedule


@dataclass
class _Round:
    """One union plan: the distinct items of some members and where each member's items sit in it."""

    members: tuple[int, ...]
    reader: ModelReader
    index: dict[int, Optional[torch.Tensor]]  # member id -> positions in the union (None: the identity)


def _weights_version(module: nn.Module) -> int:
    """A number that changes whenever a parameter is updated in place (optimizer steps, loads)."""
    total = count = 0
    for p in module.parameters():  # one pass: this runs at every reading of every probe
        total += p._version
        count += 1
    return total + count


def _slice(scores: ItemScores, index: Optional[torch.Tensor]) -> ItemScores:
    if index is None:
        return scores
    index = index.to(scores.logp_seq.device)
    return ItemScores(
        logp_first=scores.logp_first[index],
        logp_seq=scores.logp_seq[index],
        rank=scores.rank[index],
        n_tokens=scores.n_tokens[index],
    )


class ScoringHub:
    """Scores the requests of every probe registered with it, one union plan per reading.

    Args:
        options: the scoring options every member shares.
    """

    def __init__(self, options: ScoringOptions) -> None:
        self.options = options
        self.members: list[ScoringMember] = []
        self._rounds: dict[tuple[int, ...], _Round] = {}
        self._pending: dict[int, tuple[tuple[Any, ...], ItemScores]] = {}
        self.n_passes = 0  # scoring passes run (a test and benchmark counter)

    def __getstate__(self) -> dict[str, Any]:
        # readers rebuild their plans on the next bind; pending device slices are not worth pickling
        state = dict(self.__dict__)
        state.update(_rounds={}, _pending={})
        return state

    def register(self, member: ScoringMember) -> None:
        """Add ``member`` (idempotent)."""
        if not any(m is member for m in self.members):
            self.members.append(member)
            self._rounds.clear()

    def validate(self, member: ScoringMember, root: nn.Module) -> None:
        """Check ``member``'s requests against the model inside ``root`` (vocabulary, length) now,
        so a bad item fails before training with the probe's name in the message.

        Raises:
            ValueError: an item the model cannot score.
        """
        module = resolve_module(root, self.options.model)
        try:
            ScoringPlan(
                member.requests,
                vocab_size=self.options.vocab_size or infer_vocab_size(module),
                max_positions=self.options.max_positions or infer_max_positions(module),
                truncation=self.options.truncation,
                token_budget=1 << 20,  # validation only: the reading's plan packs with the resolved budget
            )
        except ValueError as err:
            raise ValueError(f"{member.state_key}: {err}") from None

    def reader_for(self, members: Sequence[ScoringMember]) -> ModelReader:
        """The reader of the union plan of ``members`` (built once per set of members)."""
        return self._round(members).reader

    def _round(self, members: Sequence[ScoringMember]) -> _Round:
        key = tuple(sorted(id(m) for m in members))
        found = self._rounds.get(key)
        if found is not None:
            return found
        union: list[TokenizedItem] = []
        position: dict[tuple[tuple[int, ...], tuple[int, ...]], int] = {}
        index: dict[int, Optional[torch.Tensor]] = {}
        for m in sorted(members, key=lambda m: self._order(m)):
            where = []
            for item in m.requests:
                k = (item.context, item.target)
                if k not in position:
                    position[k] = len(union)
                    union.append(item)
                where.append(position[k])
            index[id(m)] = torch.tensor(where, dtype=torch.long)
        if len(members) == 1:
            (only,) = members
            if len(union) == len(only.requests):
                index[id(only)] = None  # the member's own items, in order
                union = list(only.requests)
        reader = ModelReader(union, **self.options.reader_options)
        found = self._rounds[key] = _Round(key, reader, index)
        return found

    def _order(self, member: ScoringMember) -> int:
        for i, m in enumerate(self.members):
            if m is member:
                return i
        raise ValueError(f"{member.state_key} is not registered with this scoring hub.")

    def check(self, member: ScoringMember, root: nn.Module, shard: tuple[int, int] = (0, 1)) -> None:
        """A one-row dry forward through the model (see :meth:`ModelReader.check`)."""
        reader = self._round([member]).reader
        reader.bind(root, rank=shard[0], world_size=shard[1])
        reader.check(root)

    def read_alone(self, member: ScoringMember, root: nn.Module, gather: Optional[Gather] = None) -> ItemScores:
        """``member``'s scores now, from a pass over its own requests only (outside any schedule)."""
        found = self._round([member])
        scores = found.reader.read(root, gather=gather)
        self.n_passes += 1
        return _slice(scores, found.index[id(member)])

    def scores(self, member: ScoringMember, ctx: TrainingContext) -> ItemScores:
        """``member``'s scores at the reading ``ctx`` describes (every rank must call it for the
        same members in the same order).

        The first member to ask at a step triggers one pass over the union of the requests of every
        member due now (``member`` itself and every other whose schedule reads at this step and has
        not read yet); the others receive their slices when they ask.
        """
        module = resolve_module(ctx.root, self.options.model)
        key = (ctx.step, ctx.final, id(module), _weights_version(module))
        held = self._pending.pop(id(member), None)
        if held is not None and held[0] == key:
            return held[1]
        due = [member] + [
            m for m in self.members if m is not member and m.schedule.wants(ctx.step, final=ctx.final)
        ]
        found = self._round(due)
        found.reader.bind(ctx.root, rank=ctx.shard[0], world_size=ctx.shard[1])
        scores = found.reader.read(ctx.root, gather=ctx.gather)
        self.n_passes += 1
        mine = _slice(scores, found.index[id(member)])
        for m in due:
            if m is not member:
                self._pending[id(m)] = (key, _slice(scores, found.index[id(m)]))
        return mine


class Hubs:
    """The scoring hubs of one training loop, one per set of scoring options."""

    def __init__(self) -> None:
        self._hubs: dict[tuple[Any, ...], ScoringHub] = {}

    def get(self, options: ScoringOptions) -> ScoringHub:
        key = options.hub_key()
        hub = self._hubs.get(key)
        if hub is None:
            hub = self._hubs[key] = ScoringHub(options)
        return hub

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._hubs.values())
