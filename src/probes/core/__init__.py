"""The framework-free core every probe stands on: records, the score convention, the scoring plan
and the hub that runs it, model I/O, the read schedule, probe state and the probe-kind registry.
Nothing here imports Lightning (``tests/test_dependency_rule.py`` enforces it)."""
