"""Assert training dynamics in unit tests: helpers, live expectations and a pytest plugin."""

from probes.testing.assertions import (
    assert_above_chance,
    assert_calibrated,
    assert_flagged_at_most,
    assert_ifd_below,
    assert_keyword_learned,
    assert_logs_close,
    assert_no_format_collapse,
    assert_no_priming,
    assert_priming_below,
    assert_probability_trend,
    keyword_probability,
)
from probes.testing.collect import SourceData, collect
from probes.testing.expectations import (
    AboveChance,
    Calibrated,
    Expectation,
    ExpectationFailed,
    FlaggedAtMost,
    IFDBelow,
    KeywordLearned,
    NoFormatCollapse,
    PrimingBelow,
    ProbeExpectations,
)

__all__ = [
    "AboveChance",
    "Calibrated",
    "Expectation",
    "ExpectationFailed",
    "FlaggedAtMost",
    "IFDBelow",
    "KeywordLearned",
    "NoFormatCollapse",
    "PrimingBelow",
    "ProbeExpectations",
    "SourceData",
    "assert_above_chance",
    "assert_calibrated",
    "assert_flagged_at_most",
    "assert_ifd_below",
    "assert_keyword_learned",
    "assert_logs_close",
    "assert_no_format_collapse",
    "assert_no_priming",
    "assert_priming_below",
    "assert_probability_trend",
    "collect",
    "keyword_probability",
]
