"""The app's runtime without a server: the compute lane (order, budget, cancellation, queue
feedback), path confinement, compare of up to three models, fine-tune jobs."""

import threading
import time
from pathlib import Path

import pytest

from app.lane import Cancelled, Lane
from app.paths import Paths
from app.runtime import Runtime

PROMPT = "a big red circle on the left on a black background"


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    return Runtime(out=tmp_path_factory.mktemp("app"))


def test_the_lane_runs_everything_on_one_thread_in_order_and_lets_queued_work_in():
    lane, order = Lane(), []
    threads = set()
    release = threading.Event()

    def long_task():  # a fine-tune: waits for work to queue up, then lets it in between "steps"
        threads.add(threading.get_ident())
        release.wait(5)
        order.append("step 1")
        ran = lane.let_others_go()
        order.append("step 2")
        return ran

    def click(name):
        threads.add(threading.get_ident())
        order.append(name)
        return name

    results = {}
    trainer = threading.Thread(target=lambda: results.update(trainer=lane.run("fine-tune", long_task)))
    trainer.start()
    while lane.current is None or lane.current.who != "fine-tune":
        time.sleep(0.01)
    users = [threading.Thread(target=lambda n=n: results.update({n: lane.run(n, click, n)})) for n in ("a", "b")]
    for u in users:
        u.start()
        while lane.waiting < users.index(u) + 1:
            time.sleep(0.01)
    release.set()
    for t in (trainer, *users):
        t.join(5)
    assert order == ["step 1", "a", "b", "step 2"]
    assert results == {"trainer": 2, "a": "a", "b": "b"} and len(threads) == 1
    with pytest.raises(ZeroDivisionError):  # errors reach the caller; the lane keeps working
        lane.run("bad", lambda: 1 / 0)
    assert lane.run("after", lambda: "ok") == "ok"
    with pytest.raises(RuntimeError, match="for work running on the lane"):
        lane.let_others_go()


def test_the_lane_refuses_work_over_budget_tells_places_and_cancels():
    lane = Lane(budget=100)
    with pytest.raises(ValueError, match="at most 100"):
        lane.submit("huge", lambda task: None, cost=1e9)
    gate, steps = threading.Event(), []

    def slow(task):
        gate.wait(5)
        for i in range(1000):  # a running task stops at its next check
            task.check()
            steps.append(i)
            time.sleep(0.01)

    running = lane.submit("running", slow, cost=50)
    while lane.current is None:
        time.sleep(0.01)
    queued = [lane.submit(f"q{i}", lambda task: "done", cost=10) for i in range(3)]
    assert [lane.place(t) for t in queued] == [1, 2, 3]
    assert lane.wait_estimate(queued[2]) > lane.wait_estimate(queued[0]) > 0
    queued[1].cancel()  # a queued task never runs
    gate.set()
    time.sleep(0.1)
    running.cancel()
    with pytest.raises(Cancelled):
        running.future.result(5)
    assert len(steps) < 1000
    assert queued[0].future.result(5) == "done" and queued[2].future.result(5) == "done"
    assert queued[1].future.cancelled()


def test_paths_from_the_ui_are_confined_and_shown_relative(tmp_path):
    paths = Paths(tmp_path / "out")
    inside = tmp_path / "out" / "runs" / "x"
    inside.mkdir(parents=True)
    assert paths.resolve(str(inside)) == inside.resolve()
    assert paths.show(inside) == "out/runs/x" and paths.resolve("out/runs/x") == inside.resolve()
    assert paths.show(paths.roots["assets"] / "toy-base") == "assets/toy-base"
    for bad, message in (("/etc/passwd", "outside the folders"), (str(inside / ".." / ".." / ".."), "outside"),
                         (str(tmp_path / "out" / "missing.safetensors"), "does not exist"),
                         ("http://example.com/x.safetensors", "URLs are not accepted"), ("a\x00b", "not a usable"),
                         (3, "must be given as text"), (None, "must be given as text")):
        with pytest.raises(ValueError, match=message):
            paths.resolve(bad)
    (tmp_path / "out" / "link").symlink_to("/etc")
    with pytest.raises(ValueError, match="outside the folders"):
        paths.resolve(str(tmp_path / "out" / "link" / "passwd"))
    assert str(tmp_path) not in str(pytest.raises(ValueError, paths.resolve, "/etc/passwd").value)


def test_input_components_answer_junk_in_the_fields_words():
    """The app's Number/Slider/Dropdown/CheckboxGroup check a payload's type before Gradio's own
    bounds and choices checks, which would fail on None or a list with a Python type error; they
    draw as the Gradio components they extend and write no stub file into the source tree."""
    import gradio as gr

    from app import ui

    def message(component, payload):
        with pytest.raises(gr.Error) as err:
            component.preprocess(payload)
        return err.value.message

    slider = ui.Slider(1, 50, 25, step=1, label="DDIM steps")
    number = ui.Number(0, label="Seed", precision=0)
    single = ui.Dropdown(["linear", "cosine"], value="linear", label="Schedule")
    many = ui.CheckboxGroup(["dpo", "dde"], value=["dde"], label="Variants")
    assert slider.preprocess(10) == 10 and number.preprocess(3) == 3 and number.preprocess(None) is None
    assert single.preprocess("cosine") == "cosine" and many.preprocess(["dpo"]) == ["dpo"]
    assert message(slider, None) == "DDIM steps expects a finite number, got nothing"
    assert message(slider, "x") == "DDIM steps expects a finite number, got 'x'"
    assert message(number, float("nan")) == "Seed expects a finite number, got nan"
    assert message(number, [1]) == "Seed expects a finite number, got a list"
    assert message(slider, 99) == "DDIM steps must be a number in [1, 50], got 99"
    assert message(many, None) == "Variants expects a list of choices, got nothing"
    assert message(many, [None]) == "Variants: a choice must be text, got nothing"
    assert message(single, "x").startswith("Schedule: 'x' is not one of the choices (linear, cosine)")
    assert [c.get_block_name() for c in (slider, number, single, many)] == ["slider", "number", "dropdown",
                                                                          "checkboxgroup"]
    assert not list((Path(ui.__file__).parent).glob("*.pyi"))


def _compare(rt, *args, models=("base",)):
    return rt.compare_task(*args, list(models)).future.result(300)


def test_compare_pairs_models_on_the_same_noise(rt):
    same = _compare(rt, PROMPT, "", 7, 5, 2.0, 2, models=["base", "assets/toy-base"])
    assert same.labels == ["base", "toy-base"] and len(same.images) == 2 and len(same.images[0]) == 2
    assert [im.tobytes() for im in same.images[0]] == [im.tobytes() for im in same.images[1]]
    assert (same.divergence.value == 0).all() and len(same.divergence) == 5  # one row per DDIM step
    assert same.strips[0].width == 5 * 96  # 5 steps -> 5 x0 frames
    tuned = _compare(rt, PROMPT, "", 7, 5, 2.0, 2, models=["base", "dde"])
    assert [im.tobytes() for im in tuned.images[0]] == [im.tobytes() for im in same.images[0]]
    assert [im.tobytes() for im in tuned.images[1]] != [im.tobytes() for im in same.images[0]]
    assert (tuned.divergence.value > 0).any()
    means = tuned.mean_scores()
    assert set(means) == {"base", "dde"} and 0 <= means["dde"]["judge"] <= 1


def test_side_by_side_sampling_matches_each_model_alone_and_cancels_every_model(rt):
    import numpy as np
    import torch

    from dde.backends.parallel import sample_side_by_side

    backends = [rt.models.get(rt.spec(m)) for m in ("base", "dde")]
    steps_seen = {0: [], 1: []}
    together = sample_side_by_side(backends, [PROMPT] * 2, lambda k, i, n: steps_seen[k].append(i), seed=3,
                                   steps=4, return_x0=True)
    for backend, result in zip(backends, together):  # the same images as each model sampled on its own
        alone = backend.sample([PROMPT] * 2, seed=3, steps=4)
        np.testing.assert_allclose(result.images.numpy(), alone.images.numpy(), atol=1e-4)
        assert len(result.x0_latents) == 4
    assert steps_seen == {0: [1, 2, 3, 4], 1: [1, 2, 3, 4]}
    assert not torch.equal(together[0].images, together[1].images)
    calls = {0: [], 1: []}

    def stop(k, i, n):  # only model 0's callback raises (a cancelled task, or a failure)
        calls[k].append(i)
        if k == 0 and i == 2:
            raise Cancelled("stopped")

    with pytest.raises(Cancelled):
        sample_side_by_side(backends, [PROMPT], stop, seed=0, steps=50)
    assert calls[0] == [1, 2] and max(calls[1]) < 50  # model 1 stopped too, long before its last step


def test_side_by_side_samples_a_backend_given_twice_once(rt, monkeypatch):
    from dde.backends.parallel import sample_side_by_side

    base, dde = (rt.models.get(rt.spec(m)) for m in ("base", "dde"))
    calls = []
    original = type(base).sample

    def counting(self, *a, **k):
        calls.append(self)
        return original(self, *a, **k)

    monkeypatch.setattr(type(base), "sample", counting)
    seen = {0: [], 1: [], 2: []}
    results = sample_side_by_side([base, dde, base], [PROMPT], lambda k, i, n: seen[k].append(i), seed=1, steps=3)
    assert sorted(map(id, calls)) == sorted([id(base), id(dde)])  # two samplings, not three
    assert results[0] is results[2] and results[0] is not results[1]
    assert seen == {0: [1, 2, 3], 1: [1, 2, 3], 2: [1, 2, 3]}  # every position's progress still reported


@pytest.mark.parametrize("args, message", [
    (("", "", 0, 5, 2.0, 1), "prompt is empty"),
    (("x" * 2000, "", 0, 5, 2.0, 1), "limit is 1000"),
    ((PROMPT, "", 0, 0, 2.0, 1), "DDIM steps"),
    ((PROMPT, "", 0, 2.5, 2.0, 1), "whole number"),
    ((PROMPT, "", -1, 5, 2.0, 1), "seed"),
    ((PROMPT, "", 0, 5, 99.0, 1), "guidance"),
    ((PROMPT, "", 0, 5, float("nan"), 1), "guidance"),
    ((PROMPT, "", 0, 5, 2.0, 9), "images per model"),
    ((PROMPT, 5, 0, 5, 2.0, 1), "negative prompt must be text"),
    ((3, "", 0, 5, 2.0, 1), "prompt must be text, got 3$"),
])
def test_compare_rejects_bad_input_with_a_message(rt, args, message):
    with pytest.raises(ValueError, match=message):
        _compare(rt, *args)


@pytest.mark.parametrize("models, message", [
    (["/etc/passwd"], "outside the folders"), (["assets/none.safetensors"], "does not exist"),
    (["assets/toy-pairs.json"], "is not a LoRA or UNet"), ([], "at least one model"),
    (["dde", "dpo", "assets/toy-base", "base"], "at most 3 models"), ([None], "must be given as text, got nothing$"),
    ([["base"]], "must be given as text, got a list$"),
])
def test_compare_rejects_bad_models_with_a_message(rt, models, message):
    with pytest.raises(ValueError, match=message):
        _compare(rt, PROMPT, "", 0, 2, 2.0, 1, models=models)


def _wait(job, timeout=300):
    t0 = time.time()
    while job.state in ("queued", "running") and time.time() - t0 < timeout:
        time.sleep(0.1)
    return job.state


def test_fine_tunes_run_one_at_a_time_and_queue_the_rest(rt):
    small = {"steps": 3, "batch_pairs": 2, "calibration_batches": 1, "lora_rank": 2, "judge_prompts": 2,
             "checkpoint_every": 3}
    ft = rt.finetunes
    first = ft.submit({"variant": "dde", **small})
    second = ft.submit({"variant": "dpo", **small})
    third = ft.submit({"variant": "dpo", **small})
    assert ft.position(second) >= 1 and second.state == "queued"
    ft.cancel(third.id)
    assert third.state == "cancelled"
    # a compare click goes between training steps
    _compare(rt, PROMPT, "", 0, 2, 2.0, 1)
    assert _wait(first) == "finished" and _wait(second) == "finished"
    assert first.started < first.ended <= second.started
    assert [m["step"] for m in first.metrics] == [1, 2, 3]
    assert [r["step"] for r in first.run.rows("judge")] == [0, 3]  # the reward probe at start and checkpoint
    shown = rt.paths.show(first.run.path)
    assert shown.startswith("out/runs/") and shown in dict((v, k) for k, v in rt.model_choices())
    assert not third.run.log("metrics").exists()
    # the new run is usable as a model
    result = _compare(rt, PROMPT, "", 0, 2, 2.0, 1, models=["base", shown])
    assert len(result.images) == 2


def test_a_fine_tune_can_be_cancelled_while_running(rt):
    job = rt.finetunes.submit({"variant": "dpo", "steps": 400, "batch_pairs": 2, "calibration_batches": 0,
                               "lora_rank": 2, "judge_prompts": 0})
    while not job.metrics:
        time.sleep(0.05)
    rt.finetunes.cancel(job.id)
    assert _wait(job) == "cancelled"
    assert len(job.metrics) < 400
    assert job.run.latest_step() is not None


def test_bad_fine_tune_settings_are_refused_before_anything_runs(rt):
    from app.tabs.finetune import settings_from_form

    before = set(rt.finetunes.jobs)
    with pytest.raises(ValueError, match="variant"):
        rt.finetunes.submit({"variant": "nope"})
    with pytest.raises(ValueError, match="unknown config key"):
        rt.finetunes.submit({"output_dir_typo": 1})
    good = ("dde", 500, 3e-4, 10, 8, 0, 1000, 1, 2, 0)
    assert settings_from_form(*good)["steps"] == 10
    for k, bad, message in ((3, 2.5, "steps must be a whole number"), (4, 2.5, "LoRA rank must be a whole number"),
                            (1, float("inf"), "beta"), (2, "fast", "learning rate"), (5, 600, "t from must be below"),
                            (3, None, "steps"), (9, True, "seed")):
        form = list(good)
        form[k] = bad
        if k == 5:
            form[6] = 500
        with pytest.raises(ValueError, match=message):
            settings_from_form(*form)
    assert set(rt.finetunes.jobs) == before


def test_the_page_is_built_before_the_model_libraries_load():
    """The app serves its page, then loads models in the lane: building it must not import diffusers
    (seconds of imports on a small machine)."""
    import json
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    code = ("import sys, tempfile; from app.main import build_app; from app.runtime import Runtime; "
            "rt = Runtime(out=tempfile.mkdtemp()); build_app(rt); "
            "print(sorted(m for m in ('diffusers', 'transformers', 'peft') if m in sys.modules), rt.default_guidance)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=root,
                         env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    assert out.returncode == 0, out.stderr[-2000:]
    guidance = json.loads((root / "assets" / "toy-base" / "model.json").read_text())["default_guidance"]
    assert out.stdout.split() == ["[]", str(float(guidance))]


def test_the_warm_up_loads_every_default_model_and_times_itself(tmp_path):
    rt = Runtime(out=tmp_path)
    task = rt.warm()
    assert rt.compare_defaults() == ["base", "dde"]  # the shipped DDE LoRA beside the base
    assert rt.warm_task is task and task.future.result(300) == 2
    assert task.started <= task.finished
    names = [what for what, _ in rt.warm_log]
    assert names == ["import the model libraries", "load base", "sample base", "load dde", "sample dde"]
    assert all(seconds >= 0 for _, seconds in rt.warm_log)
    # the Compare after it finds every default model loaded
    assert len(rt.models._models) == 2


def test_page_progress_passes_on_at_most_one_update_per_interval_and_the_last(monkeypatch):
    from types import SimpleNamespace

    from app import ui

    clock, seen = [0.0], []
    monkeypatch.setattr(ui, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    report = ui.page_progress(lambda fraction, desc: seen.append((fraction, desc)), every=0.5)
    for step in range(1, 51):  # 50 steps, 0.1 s apart
        clock[0] = step * 0.1
        report(step / 50, f"step {step}")
    assert seen[0] == (1 / 50, "step 1") and seen[-1] == (1.0, "step 50")
    assert len(seen) == 11  # steps 1, 6, 11, ..., 46 and the last


@pytest.mark.parametrize("value, message", [
    (None, "seed must be a whole number in [0, 2147483647], got nothing"),
    (True, "seed must be a whole number in [0, 2147483647], got true"),
    ([1], "seed must be a whole number in [0, 2147483647], got a list"),
    ({"a": 1}, "seed must be a whole number in [0, 2147483647], got a set of named values"),
    ("x" * 50, "seed must be a whole number in [0, 2147483647], got a long text"),
    ("-1", "seed must be a whole number in [0, 2147483647], got '-1'"),
    (2.5, "seed must be a whole number in [0, 2147483647], got 2.5"),
])
def test_out_of_range_or_junk_numbers_are_named_in_words(value, message):
    import numpy as np

    from dde.limits import APP, FINETUNE, number, shown

    with pytest.raises(ValueError) as err:
        number(value, FINETUNE["seed"])
    assert str(err.value) == message
    assert number(np.int64(3), FINETUNE["seed"]) == 3 and shown(np.int64(3)) == "3"
    assert "1e-08" in str(pytest.raises(ValueError, number, 0, FINETUNE["lr"]).value)
    assert number("7", APP["seed"]) == 7


def test_compare_starts_with_the_base_and_the_default_tuned_model(tmp_path):
    from dde.backends.spec import SHIPPED

    assert Runtime(out=tmp_path / "a", tuned="dpo").compare_defaults() == ["base", "dpo"]
    given = Runtime(out=tmp_path / "b", tuned=str(SHIPPED["dpo"]))  # --tuned as a path, as a user gives it
    assert given.compare_defaults() == ["base", "assets/toy-dpo/lora.safetensors"]
    assert Runtime(out=tmp_path / "c").default_models() == ["base", "dde", "dpo"]  # Evaluate: every shipped model
