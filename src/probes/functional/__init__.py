"""Pure math on tensors and arrays: no Lightning, rich or safetensors imports."""

from probes.functional.scoring import target_logprobs, target_ranks

__all__ = ["target_logprobs", "target_ranks"]
