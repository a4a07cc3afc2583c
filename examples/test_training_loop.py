"""Unit-testing a training loop with probes: ``pytest examples/test_training_loop.py`` (a few seconds).

The ``probes`` pytest plugin (installed with the package) provides the fixtures: ``tiny_lm``, a
seeded ~60k-parameter byte-level LM; ``probe_trainer``, a factory of fast deterministic CPU
Trainers; ``probe_run_dir``, a fresh directory for a run log. The ``probes.testing`` helpers
assert on what a probe recorded (the callback itself, or the run log on disk) and fail with a
table of the offending steps.
"""

import torch

from probes import KeywordProbe, RunLog
from probes.demos import ByteTokenizer, corpus_loader
from probes.testing import assert_keyword_learned, assert_probability_trend

torch.set_num_threads(1)  # tiny models train fastest on one thread


def test_loop_learns_the_corpus(tiny_lm, probe_trainer, probe_run_dir):
    pairs = [("grammar", "the colour of sand", "is"), ("fact", "the colour of sand is", "yellow")]
    probe = KeywordProbe(pairs, ByteTokenizer(), model="model", every_n_steps=10)
    trainer = probe_trainer([probe, RunLog(probe_run_dir)], max_steps=100)
    trainer.fit(tiny_lm, corpus_loader(n_windows=1600, batch_size=16))
    assert_keyword_learned(probe, "grammar", min_prob=0.02, min_gain=100)  # the frame (" is") is learned first,
    assert_probability_trend(probe_run_dir, "fact", "rising", min_change=4)  # the fact is on its way (from the log)
