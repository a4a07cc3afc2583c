"""Tiny reference model, synthetic corpora and LightningModules for examples, tests and benchmarks."""

from probes.demos.corpus import THEMES, Theme, WindowDataset, fact, make_corpus
from probes.demos.lm import TinyLM, corpus_loader, lm_loss
from probes.demos.rl import ARITHMETIC_FORMATS, ArithmeticTask, FormatRL, pretrain_policy
from probes.demos.tiny_gpt import GPTConfig, TinyGPT
from probes.demos.tokenizer import ByteTokenizer

__all__ = [
    "ARITHMETIC_FORMATS",
    "THEMES",
    "ArithmeticTask",
    "ByteTokenizer",
    "FormatRL",
    "GPTConfig",
    "Theme",
    "TinyGPT",
    "TinyLM",
    "WindowDataset",
    "corpus_loader",
    "fact",
    "lm_loss",
    "make_corpus",
    "pretrain_policy",
]
