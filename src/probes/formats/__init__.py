"""Answer formats: the share of each format among a model's outputs, its entropy and the step where
RL collapses it (Zhao et al. 2025); the mass put on a label space in SFT (Kung & Peng 2023).

The format specifications are importable from here as before (``from probes.formats import
FormatSpec``)."""

from probes.formats.spec import (
    ECHO_CHAMBER_MATH,
    ECHO_CHAMBER_MATH_STRICT,
    Format,
    FormatSpec,
    LabelSpace,
    as_format_spec,
)

__all__ = ["ECHO_CHAMBER_MATH", "ECHO_CHAMBER_MATH_STRICT", "Format", "FormatSpec", "LabelSpace", "as_format_spec"]
