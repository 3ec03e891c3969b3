"""What every tab shares: turning errors into messages (in one place), waiting on the compute lane
with visible queue feedback, and small formatting helpers. No tensor math here."""

from __future__ import annotations

import abc
import functools
import inspect
import logging
import math
import time
from concurrent.futures import wait

import gradio as gr

from app.lane import Cancelled, Lane, Task
from dde.limits import shown

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


class _Typed:
    """Gradio's input components check a payload (bounds, choices) before any handler runs, and
    junk from an API client (None, text, a list, NaN) fails there with a Python type error. These
    check the payload's type first and answer in the field's own words; the handlers then check the
    meaning (dde.limits). Rendered by the frontend as the Gradio component they extend."""

    def _expects(self) -> str:
        return "a value"

    def _field(self) -> str:
        return self.label or "this field"

    def _gradio_name(self) -> str:
        return next(c for c in type(self).__mro__ if c.__module__.startswith("gradio.")).__name__.lower()

    def get_block_name(self) -> str:  # the frontend draws the Gradio component this extends
        return self._gradio_name()

    def get_block_class(self) -> str:
        return self._gradio_name()

    def _check(self, payload):
        return payload

    def preprocess(self, payload):
        payload = self._check(payload)
        try:
            return super().preprocess(payload)
        except gr.Error:
            raise
        except Exception:  # noqa: BLE001 - any type error of the parent's check is the client's input
            raise gr.Error(f"{self._field()} expects {self._expects()}, got {shown(payload)}") from None


class _Numeric(_Typed):
    def _expects(self) -> str:
        return "a finite number"

    def _check(self, payload):
        if payload is None and isinstance(self, gr.Number):
            return None  # an empty number field: the handler says what it needs
        if isinstance(payload, bool) or not isinstance(payload, (int, float)) or not math.isfinite(payload):
            raise gr.Error(f"{self._field()} expects {self._expects()}, got {shown(payload)}")
        lo, hi = self.minimum, self.maximum
        if (lo is not None and payload < lo) or (hi is not None and payload > hi):
            span = f"in [{lo:g}, {hi:g}]" if lo is not None and hi is not None else (
                f">= {lo:g}" if lo is not None else f"<= {hi:g}")
            raise gr.Error(f"{self._field()} must be a number {span}, got {payload:g}")
        return payload


class _Choices(_Typed):
    def _many(self) -> bool:
        return bool(getattr(self, "multiselect", None)) or isinstance(self, gr.CheckboxGroup)

    def _expects(self) -> str:
        return "a list of choices" if self._many() else "one choice"

    def _check(self, payload):
        if payload is None and not self._many():
            return None
        if self._many() and not isinstance(payload, list):
            raise gr.Error(f"{self._field()} expects {self._expects()}, got {shown(payload)}")
        known = [value for _, value in self.choices]
        for value in payload if self._many() else [payload]:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise gr.Error(f"{self._field()}: a choice must be text, got {shown(value)}")
            if not getattr(self, "allow_custom_value", False) and value not in known:
                listed = ", ".join(str(k) for k in known[:12]) + (", ..." if len(known) > 12 else "")
                raise gr.Error(f"{self._field()}: {shown(value)} is not one of the choices ({listed})")
        return payload


class _NoStub(type(gr.Number)):
    """Gradio's component metaclass writes a .pyi stub next to the module of every subclass it
    creates (for the events a subclass declares). These subclasses declare no events and no
    __init__, which is all that metaclass adds, so they are built as plain ABC classes: no file is
    written into the source tree."""

    def __new__(cls, name, bases, attrs):
        return abc.ABCMeta.__new__(cls, name, bases, attrs)


class Number(_Numeric, gr.Number, metaclass=_NoStub):
    pass


class Slider(_Numeric, gr.Slider, metaclass=_NoStub):
    pass


class Dropdown(_Choices, gr.Dropdown, metaclass=_NoStub):
    pass


class CheckboxGroup(_Choices, gr.CheckboxGroup, metaclass=_NoStub):
    pass


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
            wait([task.future], timeout=poll)  # returns as soon as the task is done
        return task.future.result()
    finally:
        if not task.future.done():
            task.cancel()


def page_progress(progress: gr.Progress, every: float = 0.5):
    """``report(fraction, text)`` for lane work, passed on to a handler's ``gr.Progress`` at most once
    every ``every`` seconds; an update that reaches 1 always passes. Each update redraws the progress
    bar on every output of the handler in the visitor's browser, and on a small machine the browser
    shares the CPU with the models (a Compare of 3 models x 25 steps reports 75 steps)."""
    last = [-float("inf")]

    def report(fraction: float, text: str) -> None:
        now = time.monotonic()
        if now - last[0] >= every or fraction >= 1:
            last[0] = now
            progress(fraction, desc=text)

    return report


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
