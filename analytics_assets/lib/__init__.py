"""Shared code without Dagster: used by several domains, the scoring service and benchmarks."""
