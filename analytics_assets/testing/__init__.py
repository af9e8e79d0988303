"""Harnesses for the tests and the benchmarks (not imported by the code location)."""
