"""``ModelReader``: score a fixed list of tokenized items against a model, the core every probe
shares. Optionally sharded across data-parallel ranks. No Lightning import here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal, Optional

import torch
from torch import nn

from probes.core.budget import TokenBudget, resolve_token_budget
from probes.core.head import ReadPositions, find_head
from probes.core.isolation import isolated_eval
from probes.core.model_io import LogitsFn, infer_max_positions, infer_vocab_size, make_logits_fn, resolve_module
from probes.core.plan import ItemScores, ScoringPlan, TokenizedItem
from probes.core.prefix import PrefixPlan, cache_parts, worth_caching

__all__ = ["Gather", "ModelReader", "fsdp2_ancestors", "fsdp2_gathered", "module_device", "shard_items"]

Gather = Callable[[torch.Tensor], torch.Tensor]
"""All-gather across ranks: a tensor of the same shape on every rank -> ``[world_size, *shape]``."""


def _fsdp2_class() -> Optional[type]:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - torch without FSDP2
        return None
    return FSDPModule


def fsdp2_ancestors(root: nn.Module, path: Optional[str]) -> list[nn.Module]:
    """Modules sharded with FSDP2 (``torch.distributed.fsdp.fully_shard``) on the attribute path from
    ``root`` to the probed model, the model itself excluded.

    FSDP2 all-gathers a module's parameters in a hook on that module's own ``forward``. A probe calls
    the language model directly, so the parameters of a sharded *ancestor* (e.g. a LightningModule
    given to ``fully_shard`` whole) stay sharded unless the probe unshards that ancestor itself.
    """
    fsdp = _fsdp2_class()
    if fsdp is None or not path:
        return []
    chain, obj = [root], root
    for part in path.split(".")[:-1]:
        obj = getattr(obj, part)
        chain.append(obj)
    return [m for m in chain if isinstance(m, fsdp)]


@contextmanager
def fsdp2_gathered(root: nn.Module, path: Optional[str]) -> Iterator[None]:
    """Make a probe's forward through the model at ``path`` inside ``root`` see full parameters
    under FSDP2, and leave every FSDP2 module sharded afterwards, as training expects.

    On entry the sharded ancestors (:func:`fsdp2_ancestors`) are all-gathered; FSDP2 modules inside
    the model gather themselves in their forward hooks. On exit every FSDP2 module involved is
    resharded: FSDP2 keeps the *root* module's parameters gathered after a forward (it expects the
    backward to follow), and a gathered copy left in place after a probe's forward would be used by
    the next training forward instead of the parameters the optimizer has just updated.

    A collective (all-gathers): every rank must enter it, which holds because sharded-parameter
    strategies never shard the probe set (every rank runs the same reading). Without FSDP2 modules
    it does nothing.
    """
    fsdp = _fsdp2_class()
    ancestors = fsdp2_ancestors(root, path)
    module = resolve_module(root, path)
    inner = [m for m in module.modules() if isinstance(m, fsdp)] if fsdp is not None else []
    gathered = []
    try:
        for m in ancestors:
            m.unshard()  # type: ignore[operator]
            gathered.append(m)
        yield
    finally:
        for m in [*reversed(inner), *reversed(gathered)]:
            m.reshard()  # type: ignore[operator]


def module_device(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


def shard_items(items: Sequence[TokenizedItem], world_size: int) -> list[list[int]]:
    """Item indices each of ``world_size`` ranks scores (ascending within a rank).

    Items with the same context stay on one rank: their rows share it (one forward row serves
    every single-token keyword of a context, and the scoring plan drops rows that are prefixes of
    others), so splitting them would make every rank run that context. Context groups go, most
    tokens first, to the rank with the fewest tokens so far. Deterministic: every rank computes the
    same assignment from the items alone.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(tuple(it.context), []).append(i)

    def cost(context: tuple[int, ...], members: list[int]) -> int:
        # padded tokens of the rows this group needs: continuations that are prefixes of another are free
        tails = sorted({tuple(items[i].target[:-1]) for i in members})
        kept = [t for t, nxt in zip(tails, [*tails[1:], None]) if nxt is None or nxt[: len(t)] != t]
        return sum(len(context) + len(t) for t in kept)

    order = sorted(groups.items(), key=lambda kv: (-cost(*kv), kv[1][0]))
    load = [0] * world_size
    assign: list[list[int]] = [[] for _ in range(world_size)]
    for context, members in order:
        r = min(range(world_size), key=lambda q: (load[q], q))
        load[r] += cost(context, members)
        assign[r].extend(members)
    return [sorted(a) for a in assign]


class ModelReader:
    """Resolves the language model inside a (Lightning) module, infers its vocabulary and maximum
    length, builds the :class:`~probes.core.plan.ScoringPlan` once, and runs it in isolation.

    With ``world_size > 1`` (set by :meth:`bind`) each rank scores its share of the items
    (:func:`shard_items`: whole context groups, balanced by tokens) and :meth:`read` all-gathers the
    shares (one collective per reading) and puts them back in order, so every rank returns the
    scores of all items in their original order. Every rank must call :meth:`read` the same number
    of times.
    """

    def __init__(
        self,
        items: Sequence[TokenizedItem],
        *,
        model: Optional[str] = None,
        logits_fn: Optional[LogitsFn] = None,
        vocab_size: Optional[int] = None,
        max_positions: Optional[int] = None,
        truncation: Literal["error", "left"] = "error",
        token_budget: TokenBudget = "auto",
        head: Optional[str] = "auto",
        kv_cache: bool = True,
    ) -> None:
        self.items = list(items)
        self.model_path = model
        self.logits_fn = logits_fn
        self.vocab_size = vocab_size
        self.max_positions = max_positions
        self.truncation = truncation
        self.token_budget = token_budget
        self.head_option = head
        self.head: Optional[ReadPositions] = None  # the output head restricted to read positions
        self.kv_cache = bool(kv_cache)
        self.budget: Optional[int] = None  # the resolved token budget (set by bind)
        self._assumed_full_logits = True
        self.prefix: Optional[PrefixPlan] = None  # shared contexts through a key/value cache
        self.plan: Optional[ScoringPlan] = None
        self.rank = 0
        self.world_size = 1
        self._bound: Optional[nn.Module] = None
        self._key: tuple[int, int] = (0, 1)
        self._order = torch.arange(len(self.items))  # item positions in the gathered slices
        self._src = torch.arange(len(self.items))
        self._per_rank = len(self.items)

    def __getstate__(self) -> dict[str, object]:
        # the bound module, its forward closure and the plan are rebuilt by the next `bind`, so a
        # probe that has already read pickles cleanly (e.g. for `ddp_spawn`)
        state = dict(self.__dict__)
        state.update(plan=None, _bound=None, _forward=None, head=None, prefix=None)
        return state

    def bind(self, root: nn.Module, *, rank: int = 0, world_size: int = 1) -> nn.Module:
        """Resolve the language model inside ``root`` and build this rank's plan (once per module)."""
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"Expected 0 <= rank < world_size, got rank={rank}, world_size={world_size}.")
        module = resolve_module(root, self.model_path)
        if self._bound is not module or self._key != (rank, world_size):
            vocab = self.vocab_size or infer_vocab_size(module)
            positions = self.max_positions or infer_max_positions(module)
            found = find_head(module, self.head_option, vocab)
            # a head not yet checked scores with full logits (see _verified_head)
            full_logits = found is None or ReadPositions(found).verified is not True
            budget = resolve_token_budget(
                self.token_budget, device=module_device(module), vocab_size=vocab, full_logits=full_logits
            )
            self.budget, self._assumed_full_logits = budget, full_logits
            # validate every item on every rank, so errors do not depend on the world size
            full = ScoringPlan(
                self.items,
                vocab_size=vocab,
                max_positions=positions,
                truncation=self.truncation,
                token_budget=budget,
            )
            assign = shard_items(self.items, world_size)
            shard = [self.items[i] for i in assign[rank]]
            self._order = torch.tensor([i for a in assign for i in a], dtype=torch.long)
            per_rank = max(len(a) for a in assign)
            self._src = torch.tensor([r * per_rank + j for r, a in enumerate(assign) for j in range(len(a))])
            self._per_rank = per_rank
            if world_size == 1:
                self.plan = full
            elif shard:
                self.plan = ScoringPlan(
                    shard,
                    vocab_size=vocab,
                    max_positions=positions,
                    truncation=self.truncation,
                    token_budget=budget,
                )
            else:
                self.plan = None  # more ranks than items: this rank only joins the gather
            self._forward = make_logits_fn(module, self.logits_fn)
            self.head = ReadPositions(found) if found is not None else None
            self.prefix = self._prefix_plan(module)
            self._bound = module
            self._key = (rank, world_size)
            self.rank, self.world_size = rank, world_size
        return module

    def check(self, root: nn.Module) -> None:
        """A one-row dry forward (isolated, no grad) that checks the model takes the probe's inputs
        and returns usable logits, so a wrong ``model=`` or a missing ``logits_fn=`` fails before
        training rather than inside the first optimizer step. Every rank must call it. Skipped under
        FSDP2 (see the comment in the body).

        Raises:
            ValueError: the forward fails, returns no logits, logits of the wrong shape, or a
                vocabulary smaller than the probe's token ids; the message says how to fix it.
        """
        module = self.bind(root, rank=self.rank, world_size=self.world_size)
        fsdp = _fsdp2_class()
        if fsdp is not None and (
            fsdp2_ancestors(root, self.model_path) or any(isinstance(m, fsdp) for m in module.modules())
        ):
            # FSDP2 initialises its state lazily in the root's first training forward; with a probe
            # forward before that, 1 in 3 two-rank CPU runs here aborted at exit ("terminate called
            # without an active exception"; 0 in 5 without it). The first reading, after the first
            # training forward, still reports a model that does not fit.
            return
        device = module_device(module)
        item = min(self.items, key=lambda it: len(it.context) + len(it.target))
        row = (item.context + item.target[:-1])[-(self.plan_positions or 1 << 30) :]
        ids = torch.tensor([row], dtype=torch.long, device=device)
        hint = (
            " Pass `model=` the attribute path of the language model inside your LightningModule (e.g."
            " model='model' for self.model = GPT2LMHeadModel(config)), or `logits_fn=` to adapt its call, e.g."
            " logits_fn=lambda m, ids, mask: m(input_ids=ids, attention_mask=mask).logits."
        )
        where = f"`model={self.model_path!r}` ({type(module).__name__})"
        try:
            with fsdp2_gathered(root, self.model_path), isolated_eval(module):
                logits = self._forward(ids, None)
        except Exception as err:
            raise ValueError(
                f"The probe's dry forward through {where} on one row of {len(row)} token ids failed with"
                f" {type(err).__name__}: {err}.{hint}"
            ) from err
        if not isinstance(logits, torch.Tensor) or logits.dim() != 3 or tuple(logits.shape[:2]) != (1, len(row)):
            shape = list(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(
                f"The probe's dry forward through {where} returned {shape}, expected logits of shape"
                f" [1, {len(row)}, vocab].{hint}"
            )
        with fsdp2_gathered(root, self.model_path), isolated_eval(module):
            head = self._verified_head(device, verify=True)  # before training, so no reading pays for it
        if self.token_budget == "auto" and self._assumed_full_logits != (head is None):
            self._bound = None  # the head's verdict changes the budget: pack again
            module = self.bind(root, rank=self.rank, world_size=self.world_size)
        if self.plan is not None and not self.plan._validated_vocab:
            self.plan.validate_vocab(int(logits.shape[-1]))
        with fsdp2_gathered(root, self.model_path), isolated_eval(module):
            if self.prefix is not None and self.plan is not None and PrefixPlan.verdict(module) is None:
                plan = self.plan
                self.prefix.verify(module, lambda: plan.run(self._forward, device, head), device)

    def _prefix_plan(self, module: nn.Module) -> Optional[PrefixPlan]:
        """The cached plan of this rank's items when it can pay off: a model with a key/value cache,
        no custom ``logits_fn``, no truncated item, and some context shared by multi-token items."""
        plan = self.plan
        if not self.kv_cache or self.logits_fn is not None or plan is None or plan.truncated:
            return None
        if cache_parts(module) is None or not worth_caching(plan.items):
            return None
        return PrefixPlan(plan.items, self.budget)

    def _verified_head(self, device: torch.device, *, verify: bool = False) -> Optional[ReadPositions]:
        """The restricted head once it has matched the full forward on the longest item's row
        (None: full logits). The check runs in :meth:`check` (before training); a reader that was
        never checked scores with full logits."""
        if self.head is None:
            return None
        if self.head.verified is None and verify:
            item = max(self.items, key=lambda it: len(it.context) + len(it.target))
            row = (item.context + item.target[:-1])[-(self.plan_positions or 1 << 30) :]
            self.head.verify(self._forward, torch.tensor([row], dtype=torch.long, device=device))
        return self.head if self.head.verified else None

    @property
    def plan_positions(self) -> Optional[int]:
        return self.plan.max_positions if self.plan is not None else self.max_positions

    def read(self, root: nn.Module, *, gather: Optional[Gather] = None) -> ItemScores:
        """One isolated no-grad pass; results stay on the model's device.

        Args:
            root: the module holding the language model (see ``model=``).
            gather: required when bound with ``world_size > 1``; e.g. a Lightning strategy's
                ``all_gather``.
        """
        module = self.bind(root, rank=self.rank, world_size=self.world_size)
        device = module_device(module)
        if self.plan is not None:
            with fsdp2_gathered(root, self.model_path), isolated_eval(module):
                parts = cache_parts(module) if self.prefix is not None and PrefixPlan.verdict(module) else None
                if parts is not None:
                    local = self.prefix.run(*parts, device)  # type: ignore[union-attr]
                else:
                    local = self.plan.run(self._forward, device, self._verified_head(device))
        if self.world_size == 1:
            return local
        if gather is None:
            raise ValueError("This reader is sharded across ranks; pass `gather=` (e.g. strategy.all_gather).")
        n, w, per_rank = len(self.items), self.world_size, self._per_rank
        packed = torch.full((3, per_rank), float("nan"), dtype=torch.float64, device=device)
        if self.plan is not None:
            k = len(self.plan.items)
            packed[0, :k] = local.logp_first
            packed[1, :k] = local.logp_seq
            packed[2, :k] = local.rank.double()  # exact: ranks are far below 2**53
        gathered = gather(packed)  # [W, 3, per_rank]: rank r's j-th item is item assign[r][j]
        flat = torch.empty(3, n, dtype=torch.float64, device=device)
        flat[:, self._order.to(device)] = gathered.permute(1, 0, 2).reshape(3, w * per_rank)[:, self._src.to(device)]
        return ItemScores(
            logp_first=flat[0],
            logp_seq=flat[1],
            rank=flat[2].round().long(),
            n_tokens=torch.tensor([len(it.target) for it in self.items], device=device),
        )
