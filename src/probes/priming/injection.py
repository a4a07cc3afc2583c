"""Put learning samples into training the way Sun et al. (2025) do: replace one row of a minibatch
with the sample, for ``N`` presentations, one every ``K`` minibatches.

:class:`InjectionSchedule` says which minibatches carry which sample; :class:`InjectedLoader`
wraps any iterable of collated batches (a ``DataLoader``, a list...) and rewrites those rows, with
padding, attention mask and label masking. Every presentation is recorded, so counts are exact,
and the loader's position is checkpointed (``state_dict``) so a resumed run continues the
schedule where it stopped. No Lightning import here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

import torch

from probes.core.checks import at_least
from probes.core.model_io import as_encoder
from probes.priming.spec import LearningSample, SampleLike, as_samples

__all__ = ["InjectedLoader", "InjectionEvent", "InjectionSchedule"]

LabelMode = Literal["auto", "same", "shifted"]




@dataclass(frozen=True)
class InjectionSchedule:
    """Which minibatches (0-based, counted across epochs) carry each sample.

    Sample ``s`` is presented in minibatches ``start + s * stagger + i * every`` for
    ``i = 0 .. presentations - 1``: ``every=1`` is consecutive presentation, ``every > 1`` spaced.

    Args:
        presentations: N, the number of presentations of every sample.
        every: K, the spacing in minibatches.
        start: the first minibatch of sample 0.
        stagger: offset between the first minibatches of consecutive samples (0: all samples
            share the same minibatches, in different rows).

    Raises:
        ValueError: a non-integer or out-of-range argument.
    """

    presentations: int
    every: int = 1
    start: int = 0
    stagger: int = 0

    def __post_init__(self) -> None:
        at_least(self.presentations, "presentations", 1)
        at_least(self.every, "every", 1)
        at_least(self.start, "start", 0)
        at_least(self.stagger, "stagger", 0)

    def first(self, sample: int) -> int:
        return self.start + sample * self.stagger

    def batches(self, sample: int) -> range:
        """The minibatch indices that carry ``sample``."""
        first = self.first(sample)
        return range(first, first + self.presentations * self.every, self.every)

    def carries(self, batch_index: int, sample: int) -> bool:
        offset = batch_index - self.first(sample)
        return 0 <= offset < self.presentations * self.every and offset % self.every == 0

    def last_batch(self, n_samples: int) -> int:
        """Index of the last minibatch with a presentation."""
        return max(self.batches(s)[-1] for s in range(n_samples))


@dataclass(frozen=True)
class InjectionEvent:
    """One presentation: minibatch index (across epochs), epoch, sample name and row replaced."""

    batch_index: int
    epoch: int
    sample: str
    row: int


class InjectedLoader:
    """Wraps an iterable of batches and injects learning samples on an :class:`InjectionSchedule`.

    Each sample's text is tokenized once (``tokenizer(text)``, with ``bos_id`` prepended and
    ``eos_id`` appended when given) and written into a row of the batch, replacing it:

    * ``input_ids`` (``input_key``): the tokens, right-padded with ``pad_id``;
    * ``attention_mask`` (``mask_key``), when the batch has one: 1 on the tokens, 0 on padding;
    * ``labels`` (``labels_key``), when the batch has one: ``labels="same"`` copies the ids
      (the model shifts, Hugging Face style); ``labels="shifted"`` stores the next token at each
      position (``labels[t] = ids[t + 1]``); ``"auto"`` decides from the first batch that has
      labels. Padding, and the last position in shifted mode, get ``label_pad`` (-100). The whole
      sample text is in the input ids, so exposure counting finds it in either mode.

    A plain tensor batch ``[B, T]`` is treated as the input ids. When several samples share a
    minibatch they take consecutive rows starting at ``row``. Other tensor entries of a dict batch
    with the batch dimension raise an error unless named in ``passthrough`` (left unchanged);
    non-tensor entries are left unchanged. Injected tensors are copies: the wrapped loader's
    tensors are never modified.

    Args:
        loader: the training batches (a ``DataLoader`` or any re-iterable).
        samples: :class:`~probes.priming.spec.LearningSample` objects or tuples.
        tokenizer: a Hugging Face tokenizer, a ``tokenizers.Tokenizer`` or a callable.
        presentations, every, start, stagger: see :class:`InjectionSchedule`; or pass
            ``schedule=`` instead.
        row: the first row to replace.
        input_key, mask_key, labels_key: dict keys of the ids, mask and labels.
        labels: ``"auto"``, ``"same"`` or ``"shifted"`` (see above).
        pad_id, label_pad: padding values of ids and labels.
        bos_id, eos_id: optional ids added around each sample's tokens.
        passthrough: dict keys with a batch dimension to leave untouched.
        texts: sample name -> the text written into the row instead of the sample's own ``text``
            (e.g. a stepping-stone augmentation from :func:`probes.priming.augment.stepping_stone_text`);
            exposure counting only finds a sample whose written text contains its fact.
        widen: when a sample is longer than a minibatch's rows, right-pad that minibatch's ids
            (``pad_id``), mask (0) and labels (``label_pad``) to the sample's length instead of
            raising. Without it, every sample's length is checked against the first minibatch
            when iteration starts, before the first training step.

    Raises:
        ValueError: bad arguments; when iteration starts (before the first batch is yielded, so
            before any training step), samples longer than the first minibatch's rows (unless
            ``widen=True``); at iteration, more samples in a minibatch than rows, or a batch of
            an unsupported layout.

    Example::

        loader = InjectedLoader(corpus_loader(), [sample], ByteTokenizer(), presentations=20, every=4)
        trainer.fit(model, loader)
        loader.counts  # {"sand": 20} once training passed minibatch 76
    """

    def __init__(
        self,
        loader: Iterable[Any],
        samples: Union[LearningSample, Iterable[SampleLike]],
        tokenizer: Any,
        *,
        presentations: Optional[int] = None,
        every: int = 1,
        start: int = 0,
        stagger: int = 0,
        schedule: Optional[InjectionSchedule] = None,
        row: int = 0,
        input_key: str = "input_ids",
        mask_key: str = "attention_mask",
        labels_key: str = "labels",
        labels: LabelMode = "auto",
        pad_id: int = 0,
        label_pad: int = -100,
        bos_id: Optional[int] = None,
        eos_id: Optional[int] = None,
        passthrough: Sequence[str] = (),
        widen: bool = False,
        texts: Optional[Mapping[str, str]] = None,
    ) -> None:
        if schedule is None:
            if presentations is None:
                raise ValueError("Pass `presentations=` (N) or a `schedule=`, e.g. presentations=20, every=1.")
            schedule = InjectionSchedule(presentations, every, start, stagger)
        elif presentations is not None:
            raise ValueError("Pass either `schedule=` or `presentations=`/`every=`/..., not both.")
        if not isinstance(schedule, InjectionSchedule):
            raise ValueError(f"Expected `schedule` to be an InjectionSchedule, got {schedule!r}.")
        if labels not in ("auto", "same", "shifted"):
            raise ValueError(f"Expected `labels` to be 'auto', 'same' or 'shifted', got {labels!r}.")
        if not hasattr(loader, "__iter__"):
            raise ValueError(f"Expected `loader` to be an iterable of batches, got {type(loader).__name__}.")
        if isinstance(loader, Iterator):
            raise ValueError(
                "Expected a re-iterable loader (a DataLoader or a list), got a one-shot iterator: every epoch"
                " calls iter() again."
            )
        at_least(row, "row", 0)
        at_least(pad_id, "pad_id", 0)
        encode = as_encoder(tokenizer)
        if encode is None:
            raise ValueError("Pass the `tokenizer` that matches the model, to turn the sample texts into ids.")
        self.loader = loader
        self.samples = as_samples(samples)
        self.schedule = schedule
        self.row = row
        self.input_key, self.mask_key, self.labels_key = input_key, mask_key, labels_key
        self.labels: LabelMode = labels
        self.pad_id, self.label_pad = pad_id, label_pad
        self.passthrough = frozenset(passthrough)
        self.widen = bool(widen)
        self._width_checked = False
        self.tokens: dict[str, list[int]] = {}
        texts = dict(texts or {})
        unknown = sorted(set(texts) - {s.name for s in self.samples})
        if unknown:
            raise ValueError(f"`texts` names unknown samples {unknown}; give texts for samples of `samples` only.")
        for s in self.samples:
            head = [bos_id] if bos_id is not None else []
            tail = [eos_id] if eos_id is not None else []
            ids = head + list(encode(texts.get(s.name, s.text))) + tail
            if len(ids) < 2:
                raise ValueError(f"Sample {s.name!r} tokenizes to {ids}: a training row needs at least 2 tokens.")
            self.tokens[s.name] = ids
        self.batch_index = 0  # minibatches yielded so far, across epochs
        self.epoch = -1
        self.batch_in_epoch = 0
        self.counts: dict[str, int] = {s.name: 0 for s in self.samples}
        self.events: list[InjectionEvent] = []
        self._skip = 0  # minibatches of the wrapped loader to skip after a resume

    # ----------------------------------------------------------------------------- iteration

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        self.epoch += 1
        self.batch_in_epoch = 0
        skip, self._skip = self._skip, 0
        for position, batch in enumerate(self.loader):
            if position < skip:
                continue
            if not self._width_checked:
                self.check_width(batch)
            scheduled = [s for i, s in enumerate(self.samples) if self.schedule.carries(self.batch_index, i)]
            if scheduled:
                batch = self.inject(batch, scheduled)
            self.batch_index += 1
            self.batch_in_epoch = position + 1
            yield batch

    @property
    def done(self) -> bool:
        """Whether every sample has received all its presentations."""
        return all(c >= self.schedule.presentations for c in self.counts.values())

    # ----------------------------------------------------------------------------- rewriting

    def check_width(self, batch: Any) -> None:
        """Refuse, naming every one, the samples longer than ``batch``'s rows (unless ``widen``)."""
        self._width_checked = True
        ids = batch if isinstance(batch, torch.Tensor) else None
        if isinstance(batch, Mapping):
            ids = batch.get(self.input_key)
        if self.widen or not isinstance(ids, torch.Tensor) or ids.dim() != 2:
            return  # `inject` reports unsupported layouts with its own message
        width = int(ids.shape[1])
        long = {name: len(t) for name, t in self.tokens.items() if len(t) > width}
        if long:
            raise ValueError(
                f"InjectedLoader: {len(long)} sample(s) are longer than the loader's rows of {width} tokens:"
                f" {', '.join(f'{n!r} ({k} tokens)' for n, k in long.items())}. Shorten them, train with rows of at"
                f" least {max(long.values())} tokens, or pass widen=True to pad the minibatches that carry them."
            )

    def _widened(self, batch: Any, width: int) -> Any:
        """``batch`` right-padded to ``width`` tokens (ids, mask and labels)."""
        fill = {self.input_key: self.pad_id, self.mask_key: 0, self.labels_key: self.label_pad}
        if isinstance(batch, torch.Tensor):
            return torch.nn.functional.pad(batch, (0, width - batch.shape[1]), value=self.pad_id)
        out = dict(batch)
        for key, value in batch.items():
            if key in fill and isinstance(value, torch.Tensor) and value.dim() == 2:
                out[key] = torch.nn.functional.pad(value, (0, width - value.shape[1]), value=fill[key])
        return out

    def _row(self, name: str, width: int, like: torch.Tensor) -> tuple[torch.Tensor, int]:
        ids = self.tokens[name]
        if len(ids) > width:
            raise ValueError(
                f"Sample {name!r} is {len(ids)} tokens but the batch rows hold {width}; shorten the text or"
                " train with longer rows."
            )
        out = torch.full((width,), self.pad_id, dtype=like.dtype, device=like.device)
        out[: len(ids)] = torch.as_tensor(ids, dtype=like.dtype, device=like.device)
        return out, len(ids)

    def _label_mode(self, ids: torch.Tensor, labels: torch.Tensor) -> Literal["same", "shifted"]:
        if self.labels != "auto":
            return self.labels
        known = labels != self.label_pad
        if bool(((labels == ids) | ~known).all()):
            self.labels = "same"
        elif bool(((labels[:, :-1] == ids[:, 1:]) | ~known[:, :-1]).all()):
            self.labels = "shifted"
        else:
            raise ValueError(
                "Could not tell how labels relate to input ids in the first batch (neither equal nor shifted"
                " by one); pass labels='same' or labels='shifted'."
            )
        return self.labels

    def inject(self, batch: Any, samples: Sequence[LearningSample]) -> Any:
        """A copy of ``batch`` with ``samples`` written into rows ``row, row + 1, ...``; records them."""
        if isinstance(batch, torch.Tensor):
            ids = batch
        elif isinstance(batch, Mapping):
            if self.input_key not in batch:
                raise ValueError(
                    f"Batch has no key {self.input_key!r} (keys: {sorted(map(str, batch))}); pass `input_key=`."
                )
            ids = batch[self.input_key]
        else:
            raise ValueError(
                f"InjectedLoader supports batches that are tensors or dicts of tensors, got {type(batch).__name__};"
                " collate to a dict (e.g. {'input_ids': ..., 'labels': ...})."
            )
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
            raise ValueError(f"Expected input ids of shape [batch, seq], got {getattr(ids, 'shape', ids)!r}.")
        n_rows, width = ids.shape
        need = max(len(self.tokens[s.name]) for s in samples)
        if self.widen and need > width:
            batch = self._widened(batch, need)
            ids = batch if isinstance(batch, torch.Tensor) else batch[self.input_key]
            n_rows, width = ids.shape
        if self.row + len(samples) > n_rows:
            raise ValueError(
                f"Minibatch {self.batch_index} must carry {len(samples)} sample(s) from row {self.row} but has"
                f" {n_rows} rows; use `stagger=` to spread samples over minibatches, or a larger batch."
            )
        new_ids = ids.clone()
        rows = range(self.row, self.row + len(samples))
        built = [self._row(s.name, width, ids) for s in samples]
        for r, (row_ids, _) in zip(rows, built):
            new_ids[r] = row_ids
        if isinstance(batch, torch.Tensor):
            out: Any = new_ids
        else:
            out = dict(batch)
            out[self.input_key] = new_ids
            for key, value in batch.items():
                if key == self.input_key or not isinstance(value, torch.Tensor):
                    continue
                if key == self.mask_key:
                    mask = value.clone()
                    for r, (_, n) in zip(rows, built):
                        mask[r] = 0
                        mask[r, :n] = 1
                    out[key] = mask
                elif key == self.labels_key:
                    out[key] = self._labels(ids, value, rows, built)
                elif value.dim() >= 1 and value.shape[0] == n_rows and key not in self.passthrough:
                    raise ValueError(
                        f"Batch entry {key!r} has the batch dimension but InjectedLoader does not know how to"
                        f" fill it for an injected row; pass passthrough=[{key!r}] to leave it unchanged."
                    )
        for r, s in zip(rows, samples):
            self.counts[s.name] += 1
            self.events.append(InjectionEvent(self.batch_index, self.epoch, s.name, r))
        return out

    def _labels(
        self, ids: torch.Tensor, labels: torch.Tensor, rows: range, built: list[tuple[torch.Tensor, int]]
    ) -> torch.Tensor:
        if labels.shape != ids.shape:
            raise ValueError(f"Expected labels of the ids' shape {list(ids.shape)}, got {list(labels.shape)}.")
        mode = self._label_mode(ids, labels)
        out = labels.clone()
        for r, (row_ids, n) in zip(rows, built):
            out[r] = self.label_pad
            if mode == "same":
                out[r, :n] = row_ids[:n].to(labels.dtype)
            else:
                out[r, : n - 1] = row_ids[1:n].to(labels.dtype)
        return out

    # ----------------------------------------------------------------------------- checkpointing

    def state_dict(self) -> dict[str, Any]:
        """Position and counts: restoring them resumes the schedule exactly (the wrapped loader's
        first ``batch_in_epoch`` batches are skipped on the next pass)."""
        return {
            "version": 1,
            "batch_index": self.batch_index,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "counts": dict(self.counts),
            "labels": self.labels,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        names = sorted(self.counts)
        if sorted(state.get("counts", {})) != names:
            raise ValueError(
                f"Checkpoint injects samples {sorted(state.get('counts', {}))} but this loader injects {names};"
                " resume with the same samples."
            )
        self.batch_index = int(state["batch_index"])
        self.epoch = int(state["epoch"]) - 1  # the next __iter__ continues this epoch
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self._skip = self.batch_in_epoch
        if hasattr(self.loader, "__len__") and self._skip >= len(self.loader):  # type: ignore[arg-type]
            self.epoch += 1  # the saved epoch was complete: start the next one from its beginning
            self._skip = 0
        self.counts = {k: int(v) for k, v in state["counts"].items()}
        self.labels = state.get("labels", self.labels)
