"""Concept frequency and sample similarity, online: how often and how closely the training stream
touches each probe item, and whether probability gains follow the one or the other.

Items are keyword pairs, learning samples, format prompts or benchmark questions, mixed in one
probe (each type's keyword, context and name: :mod:`probes.frequency.spec`).

``spec`` (items and their token forms), ``measures`` (the math, pure functions on the device),
``probe`` (:class:`~probes.frequency.probe.FrequencyProbe`, framework-free), ``view`` (its probe
kind), ``analysis`` (the attribution).
"""

from probes.frequency.spec import ITEM_TYPES, FormatPrompts, FrequencyItem, as_items

__all__ = ["ITEM_TYPES", "FormatPrompts", "FrequencyItem", "as_items"]
