"""Benchmarks: measured side by side in one run, printed as a table, written as JSON."""

WORKLOADS = ("W1", "W2", "W3", "W4", "W5")
