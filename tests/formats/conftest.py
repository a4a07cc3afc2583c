"""Format tests run their tiny models on one intra-op thread (restored afterwards).

The models here are a few tens of thousands of parameters: a second thread buys nothing, and on
a shared, oversubscribed 2-core machine it made a 3-second pretraining run take minutes.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
