"""Priming (Sun et al. 2025): how far a newly learned keyword spreads into other contexts, next to
how well the learning sample is memorized; the learning sample, its exposures and the remedies."""
