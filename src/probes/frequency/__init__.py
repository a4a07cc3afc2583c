"""Concept frequency and sample similarity, online: how often and how closely the training stream
touches each probe item, and whether probability gains follow the one or the other.

``spec`` (items and their token forms), ``measures`` (the math, pure functions on the device),
``probe`` (:class:`~probes.frequency.probe.FrequencyProbe`, framework-free), ``view`` (its probe
kind), ``analysis`` (the attribution).
"""
