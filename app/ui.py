"""What every tab shares: turning errors into messages (in one place), waiting on the compute lane
with visible queue feedback, and small formatting helpers. No tensor math here."""

from __future__ import annotations

import functools
import inspect
import logging
import time

import gradio as gr

from app.lane import Cancelled, Lane, Task

log = logging.getLogger("dde.app")


def user_errors(fn):
    """Bad input (ValueError, a cancelled task) becomes a message in the UI (gr.Error); anything else
    is logged and shown as a short message, never a traceback. Works for generators too."""
    def convert(err: BaseException) -> gr.Error:
        if isinstance(err, gr.Error):
            return err
        if isinstance(err, (ValueError, Cancelled)):
            return gr.Error(str(err))
        log.exception("handler %s failed", fn.__name__)
        return gr.Error(f"the request failed ({type(err).__name__}); the server log has the details")

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except GeneratorExit:
                raise
            except Exception as err:
                raise convert(err) from None
        return gen

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            raise convert(err) from None
    return call


def follow(lane: Lane, task: Task, waiting_update, poll: float = 0.25):
    """Yield ``waiting_update(text)`` while ``task`` waits in the lane (its place and an estimate),
    then return its result. If the client goes away (the generator is closed) or the request is
    stopped, the task is cancelled: a queued one never runs, a running one stops at its next step."""
    last = None
    try:
        while not task.future.done():
            place = lane.place(task)
            if place > 0:
                text = (f"Waiting in the compute lane: place {place}, about {lane.wait_estimate(task):.0f} s "
                        "(one model job runs at a time on this server).")
                if text != last:
                    last = text
                    yield waiting_update(text)
            time.sleep(poll)
        return task.future.result()
    finally:
        if not task.future.done():
            task.cancel()


def run_with_feedback(lane: Lane, task: Task, outputs_count: int, status_index: int):
    """For a handler with ``outputs_count`` outputs whose ``status_index``-th is a status Markdown:
    yields status-only updates while waiting, returns the task's result."""
    def waiting(text):
        updates = [gr.update() for _ in range(outputs_count)]
        updates[status_index] = text
        return tuple(updates)

    return (yield from follow(lane, task, waiting))


def interval(value, lo, hi, digits: int = 3, pct: bool = False) -> str:
    """``0.612 [0.598, 0.626]`` (or percentages)."""
    import math

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if pct:
        return f"{value:.0%} [{lo:.0%}, {hi:.0%}]"
    return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
