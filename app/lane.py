"""The one compute lane: every piece of model work in the app runs on one long-lived thread, first
come first served, so two users never run torch work at once and a fine-tune never sees its
weights change under it.

A task declares its cost (images x DDIM steps, or a comparable unit) when it is queued; a task over
the lane's budget is refused at once with a message naming the limit. While a task waits, its
caller can ask for its place and an estimate of the wait (from the measured seconds per unit of
cost of the tasks that ran before). A task can be cancelled: a queued one never runs; a running
one sees ``task.cancelled`` and stops at its next check (sampling checks after every DDIM step).
A long task (a fine-tune) calls :meth:`Lane.let_others_go` between its steps, so Compare stays
usable while it trains.

One thread rather than a lock: torch work hopping between Gradio's worker threads ran slower on a
CPU than on one warm thread (Compare through the app: 5.46 s with a lock, 3.61 s on the lane
thread, ``python -m bench.app_latency`` on 2 cores).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field


class Cancelled(Exception):  # noqa: N818 - reads as a state, not an error
    """Raised inside lane work when its task was cancelled (the client left or asked to stop)."""


@dataclass(eq=False)
class Task:
    who: str
    fn: Callable
    cost: float
    future: Future = field(default_factory=Future)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    id: int = 0
    started: float | None = None
    finished: float | None = None

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def check(self) -> None:
        """From inside the work: raise :class:`Cancelled` if the task was cancelled."""
        if self.cancel_event.is_set():
            raise Cancelled(f"{self.who} was cancelled")

    def cancel(self) -> None:
        self.cancel_event.set()
        self.future.cancel()  # only succeeds while it is still queued


class Lane:
    """One compute thread; see the module docstring."""

    def __init__(self, budget: float = float("inf")) -> None:
        self.budget = budget
        self._queue: deque[Task] = deque()
        self._cv = threading.Condition()
        self._ids = itertools.count(1)
        self.current: Task | None = None
        self.seconds_per_unit = 0.02  # seconds per image x DDIM step (toy world, 2 cores); refined by every task
        self._thread = threading.Thread(target=self._loop, name="compute-lane", daemon=True)
        self._thread.start()

    # ----- submitting ---------------------------------------------------------------------------------
    def submit(self, who: str, fn: Callable[[Task], object], cost: float = 0.0) -> Task:
        """Queue ``fn(task)``; refuses at once (ValueError) when ``cost`` exceeds the budget."""
        if cost > self.budget:
            raise ValueError(f"this request would cost {cost:,.0f} images x DDIM steps; one request may cost at most "
                             f"{self.budget:,.0f} (fewer prompts, seeds, models or steps)")
        task = Task(who, fn, float(cost), id=next(self._ids))
        with self._cv:
            self._queue.append(task)
            self._cv.notify_all()
        return task

    def run(self, who: str, fn: Callable, *args, cost: float = 0.0, **kwargs):
        """Queue ``fn(*args, **kwargs)`` and wait for its result (exceptions re-raised here). Work
        that is already on the lane (nested) runs directly."""
        if threading.current_thread() is self._thread:
            return fn(*args, **kwargs)
        return self.submit(who, lambda task: fn(*args, **kwargs), cost).future.result()

    # ----- watching ------------------------------------------------------------------------------------
    def place(self, task: Task) -> int:
        """0 when running or done, else the number of tasks ahead of it (the running one included)."""
        with self._cv:
            live = [t for t in self._queue if not t.cancelled]
            if task not in live:
                return 0
            return live.index(task) + int(self.current is not None)

    def wait_estimate(self, task: Task) -> float:
        """Seconds until ``task`` starts, from the costs of the tasks ahead and the measured rate."""
        with self._cv:
            ahead = [t for t in itertools.takewhile(lambda t: t is not task, self._queue) if not t.cancelled]
            running = self.current
        left = sum(t.cost for t in ahead) * self.seconds_per_unit
        if running is not None and running.started is not None:
            left += max(0.0, running.cost * self.seconds_per_unit - (time.time() - running.started))
        return left

    @property
    def waiting(self) -> int:
        with self._cv:
            return sum(not t.cancelled for t in self._queue)

    # ----- the thread ----------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: bool(self._queue))
                task = self._queue.popleft()
            self._run(task)

    def _run(self, task: Task) -> None:
        if not task.future.set_running_or_notify_cancel():
            return
        outer, self.current = self.current, task
        task.started = time.time()
        try:
            task.check()
            result = task.fn(task)
        except BaseException as err:  # noqa: BLE001 - handed to the caller, who re-raises it
            task.finished = time.time()
            task.future.set_exception(err)
        else:
            task.finished = time.time()  # before the result: callbacks on the future may read it
            if task.cost > 0:  # learn the rate: seconds per unit of cost, smoothed
                rate = (task.finished - task.started) / task.cost
                self.seconds_per_unit = 0.7 * self.seconds_per_unit + 0.3 * rate
            task.future.set_result(result)
        finally:
            self.current = outer

    def let_others_go(self) -> int:
        """From a task on the lane: run the tasks queued so far; returns how many ran."""
        if threading.current_thread() is not self._thread:
            raise RuntimeError("let_others_go is for work running on the lane")
        ran = 0
        while True:
            with self._cv:
                if not self._queue:
                    return ran
                task = self._queue.popleft()
            self._run(task)
            ran += 1
