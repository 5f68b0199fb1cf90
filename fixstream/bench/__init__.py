"""Benchmarks: measured side by side in one run, printed as a table, written as JSON."""

WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6", "W7")


def percentile(values: list[float], q: float) -> float:
    """The value at quantile ``q`` (nearest rank, no interpolation); 0 for no values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0
