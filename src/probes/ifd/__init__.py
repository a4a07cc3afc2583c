"""Instruction-following difficulty (IFD) of SFT samples, read over training."""
