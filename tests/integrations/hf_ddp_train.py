"""A ``transformers.Trainer`` run with ``ProbeTrainerCallback`` (keyword and priming probes), for
``test_hf_ddp.py``: ``python hf_ddp_train.py OUT PER_DEVICE_BATCH`` in one process, or under
``torch.distributed.run`` with two CPU ranks (gloo). Each rank writes its probes' records as JSON."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import transformers  # noqa: E402

from probes import KeywordProbe, LearningSample, PrimingProbe  # noqa: E402
from probes.demos import ByteTokenizer  # noqa: E402
from probes.integrations.hf import ProbeTrainerCallback  # noqa: E402
from tests.helpers import fact_pairs  # noqa: E402
from tests.integrations.test_hf import CONTEXTS, _model, _samples  # noqa: E402


def main(out: str, per_device: int) -> None:
    tok = ByteTokenizer()
    fact = LearningSample("coal", "the colour of coal is black", "black", CONTEXTS)
    probes = [KeywordProbe(fact_pairs(2), tok), PrimingProbe([fact], tok)]
    callback = ProbeTrainerCallback(probes, run_log=os.path.join(out, "run"))
    distributed = int(os.environ.get("WORLD_SIZE", 1)) > 1
    args = transformers.TrainingArguments(
        output_dir=os.path.join(out, "trainer"), per_device_train_batch_size=per_device, max_steps=4,
        learning_rate=1e-2, lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=0.0,
        train_sampling_strategy="sequential", report_to="none", save_strategy="no", logging_strategy="no",
        disable_tqdm=True, use_cpu=True, ddp_backend="gloo" if distributed else None,
    )
    trainer = transformers.Trainer(model=_model(), args=args, train_dataset=_samples(32))
    callback.install(trainer)
    trainer.train()
    records = {
        p.source: [{"step": r.step, **{k: v.tolist() for k, v in r.tensors.items()}} for r in p.history] for p in probes
    }
    Path(out, f"rank{os.environ.get('RANK', '0')}.json").write_text(json.dumps(records))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
