"""Compare two run logs metric by metric, with the tolerances the distributed tests allow."""

from __future__ import annotations

import numpy as np

from probes.runlog import RunReader

#: priming ratios exp(logp_t - logp_0) of two float32 log-probabilities
RATIOS = {"s_mem", "s_prime", "median_prime_ratio"}
LOG_RATIOS = {"log10_s_mem", "log10_s_prime"}


def tolerance(metric: str) -> tuple[float, float]:
    """``(atol, rtol)`` for one metric name (without its source): ``|a - b| <= atol + rtol * |b|``.

    * Integers and booleans (ranks, exposures, counts, flags): exact (not looked up here).
    * Everything else: 1e-6, absolute for values up to 1 and relative above (``atol = rtol = 1e-6``).
      A chained ``logp_seq`` of magnitude 30 is a float32 whose spacing is 1.9e-6, so one rounding
      step of the weights moves it by more than 1e-6 absolute: relative is what 1e-6 can mean there.
    * The priming ratios ``s_mem``, ``s_prime``, ``median_prime_ratio`` are ``exp(logp_t - logp_0)``
      of two such log-probabilities, so their *relative* error is the *absolute* error of
      ``logp_t - logp_0``. Here ``|logp_seq|`` reaches 51 (the chained log-probability of the nine
      bytes of "vermilion"); 1e-6 relative on each side gives ``rtol = 1e-6 * (51 + 51) ~ 1e-4``
      for the ratios and ``atol = 1e-4 / ln(10) ~ 4.4e-5`` for their log10.
    """
    if metric in RATIOS:
        return 0.0, 1e-4
    if metric in LOG_RATIOS:
        return 4.4e-5, 0.0
    return 1e-6, 1e-6


def compare_runs(got: RunReader, ref: RunReader, *, exact: bool = False) -> dict[str, float]:
    """Check that ``got`` logged the same steps and values as ``ref``, metric by metric.

    Args:
        got, ref: run readers.
        exact: demand bit-identical values (NaN equal to NaN).

    Returns:
        The largest absolute difference seen per float metric (0.0 where identical).

    Raises:
        AssertionError: a metric missing on either side, different steps, a differing integer or
            boolean, or a float outside :func:`tolerance`, listing every violation.
    """
    problems: list[str] = []
    worst: dict[str, float] = {}
    names = ref.metrics()
    if got.metrics() != names:
        problems.append(f"metrics differ: {sorted(set(got.metrics()) ^ set(names))}")
    for name in names:
        if name not in got.metrics():
            continue
        s_got, v_got = got.read(name)
        s_ref, v_ref = ref.read(name)
        if not np.array_equal(s_got, s_ref):
            problems.append(f"{name}: steps {s_got.tolist()} != {s_ref.tolist()}")
            continue
        if v_got.shape != v_ref.shape or v_got.dtype != v_ref.dtype:
            problems.append(f"{name}: {v_got.dtype}{list(v_got.shape)} != {v_ref.dtype}{list(v_ref.shape)}")
            continue
        if v_ref.dtype.kind != "f":
            if not np.array_equal(v_got, v_ref):
                rows = np.argwhere(v_got != v_ref)[:3].tolist()
                problems.append(f"{name}: integer/boolean values differ at {rows}")
            continue
        a, b = v_got.astype(np.float64), v_ref.astype(np.float64)
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        if not np.array_equal(nan_a, nan_b):
            problems.append(f"{name}: NaN in different places")
            continue
        diff = np.where(nan_a, 0.0, np.abs(a - b))
        worst[name] = float(diff.max(initial=0.0))
        if exact:
            if worst[name] != 0.0:
                problems.append(f"{name}: not bit-identical (max |diff| {worst[name]:.3g})")
            continue
        atol, rtol = tolerance(name.split("/", 1)[1])
        bad = diff > atol + rtol * np.where(nan_b, 0.0, np.abs(b))
        if bad.any():
            i = tuple(np.argwhere(bad)[0])
            problems.append(
                f"{name}: |{a[i]!r} - {b[i]!r}| = {diff[i]:.3g} exceeds atol={atol:g} + rtol={rtol:g}*|ref|"
                f" at step {int(s_ref[i[0]])} (index {i[1:]}); {int(bad.sum())} values out of tolerance"
            )
    if problems:
        raise AssertionError("run logs differ:\n  " + "\n  ".join(problems))
    return worst
