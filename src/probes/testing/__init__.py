"""Assert training dynamics in unit tests: helpers, live expectations and a pytest plugin."""

from probes.testing.assertions import (
    assert_keyword_learned,
    assert_logs_close,
    assert_no_format_collapse,
    assert_no_priming,
    assert_priming_below,
    assert_probability_trend,
    keyword_probability,
)
from probes.testing.expectations import (
    Expectation,
    ExpectationFailed,
    KeywordLearned,
    NoFormatCollapse,
    PrimingBelow,
    ProbeExpectations,
)
from probes.testing.sources import SourceData, collect

__all__ = [
    "Expectation",
    "ExpectationFailed",
    "KeywordLearned",
    "NoFormatCollapse",
    "PrimingBelow",
    "ProbeExpectations",
    "SourceData",
    "assert_keyword_learned",
    "assert_logs_close",
    "assert_no_format_collapse",
    "assert_no_priming",
    "assert_priming_below",
    "assert_probability_trend",
    "collect",
    "keyword_probability",
]
