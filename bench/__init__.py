"""Benchmarks: they print numbers and ratios against targets; they never assert on timings."""
