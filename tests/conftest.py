"""Shared fixtures. Tests run on CPU with few threads so the suite is fast on 2 cores."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

os.environ.setdefault("PYTHONHASHSEED", "0")
torch.set_num_threads(1)  # tiny models: one thread is as fast and avoids oversubscription
warnings.filterwarnings("ignore", message=".*litlogger.*")


@pytest.fixture
def byte_tok():
    from probes.demos import ByteTokenizer

    return ByteTokenizer()


@pytest.fixture
def tiny_gpt():
    from probes.demos import GPTConfig, TinyGPT

    torch.manual_seed(0)
    return TinyGPT(GPTConfig(n_layer=2, n_embd=48, n_head=4, block_size=64)).eval()
