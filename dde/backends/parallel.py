"""Several models sampling the same prompts from the same noise at once (the app's Compare, the
side-by-side benchmark)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

import torch


class _StoppedByAnotherModelError(Exception):
    """Raised inside one model's sampling when another model of the same Compare failed or was stopped."""


@functools.cache
def _threads_are_per_caller() -> bool:
    """torch.set_num_threads sets only the calling thread's share when torch runs on OpenMP."""
    return "parallel backend: OpenMP" in torch.__config__.parallel_info()


def sample_side_by_side(backends: list, prompts: list[str], callback: Callable[[int, int, int], None],
                        **kwargs) -> list:
    """``backend.sample(prompts, **kwargs)`` for every backend, the same noise for all. On the CPU the
    models run at once, one thread each with an equal share of torch's threads: a small UNet's
    operators do not fill two cores, so two models side by side take about the time of one
    (``python -m bench.sampling --side-by-side``); on an accelerator, or where torch's thread count is not per
    thread, they run one after another. ``callback(k, step, steps)`` after each step of model k; if
    it raises (a cancelled task) or a model fails, every model stops at its next step and the first
    error is raised. A backend given twice (two menu entries that resolve to one model) samples once;
    its result and its callbacks serve every position it holds."""
    unique = list({id(b): b for b in backends}.values())
    if len(unique) < len(backends):
        where = [unique.index(b) for b in backends]  # position -> unique model

        def fan_out(u, i, total):
            for k, w in enumerate(where):
                if w == u:
                    callback(k, i, total)

        results = sample_side_by_side(unique, prompts, fan_out, **kwargs)
        return [results[w] for w in where]
    stop, errors, lock = threading.Event(), [], threading.Lock()

    def one(k: int, threads: int | None):
        if threads:
            torch.set_num_threads(threads)  # this thread's share (OpenMP's setting is per thread)

        def step(i, total):
            if stop.is_set():
                raise _StoppedByAnotherModelError
            callback(k, i, total)

        try:
            return backends[k].sample(prompts, callback=step, **kwargs)
        except BaseException as err:
            if not isinstance(err, _StoppedByAnotherModelError):
                with lock:
                    errors.append(err)
            stop.set()
            raise

    if len(backends) == 1 or any(b.device.type != "cpu" for b in backends) or not _threads_are_per_caller():
        return [one(k, None) for k in range(len(backends))]
    threads = max(1, torch.get_num_threads() // len(backends))
    with ThreadPoolExecutor(len(backends), thread_name_prefix="sample") as pool:
        futures = [pool.submit(one, k, threads) for k in range(len(backends))]
        wait(futures)
    if errors:
        raise errors[0]  # the first failure, not another model's stop
    return [f.result() for f in futures]
