"""Shared helpers for the benchmark scripts: machine description, robust timing."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import torch


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores visible, torch {torch.__version__} with {torch.get_num_threads()} "
            f"threads, {gpu}")


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def verdict(value: float, target: float) -> str:
    outcome = "meets" if value <= target else "misses"
    return f"{value:.3f} vs target {target:.3f} (ratio {value / target:.2f}, {outcome})"


def md_table(rows: list[dict]) -> str:
    """A markdown table of dict rows (columns from the first row; floats to 3 decimals; a key a row
    lacks is a blank cell)."""
    if not rows:
        return "(none)\n"
    cols = list(rows[0])
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    return ("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
            + "".join("| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |\n" for r in rows))
