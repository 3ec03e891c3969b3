"""The app's runtime without a server: the compute lane, path confinement, compare, fine-tune jobs."""

import threading
import time

import pytest

from app.runtime import Lane, Runtime, allowed_path

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
    while lane.holder != "fine-tune":
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


def test_paths_from_the_ui_are_confined(tmp_path):
    inside = tmp_path / "runs" / "x"
    inside.mkdir(parents=True)
    assert allowed_path(str(inside), [tmp_path]) == inside.resolve()
    with pytest.raises(ValueError, match="outside the folders"):
        allowed_path("/etc/passwd", [tmp_path])
    with pytest.raises(ValueError, match="outside the folders"):
        allowed_path(str(inside / ".." / ".." / ".."), [tmp_path])
    with pytest.raises(ValueError, match="does not exist"):
        allowed_path(str(tmp_path / "missing.safetensors"), [tmp_path])
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(ValueError, match="outside the folders"):
        allowed_path(str(tmp_path / "link" / "passwd"), [tmp_path])


def test_compare_pairs_base_and_tuned_on_the_same_noise(rt):
    same = rt.compare(PROMPT, "", 7, 5, 2.0, 2, "base")
    assert len(same.base) == len(same.tuned) == 2
    assert [im.tobytes() for im in same.base] == [im.tobytes() for im in same.tuned]
    assert same.base[0].size == (256, 256)
    assert same.base_strip.width == 5 * 128  # 5 steps -> 5 x0 frames
    tuned = rt.compare(PROMPT, "", 7, 5, 2.0, 2, "tuned")
    assert [im.tobytes() for im in tuned.base] == [im.tobytes() for im in same.base]
    assert [im.tobytes() for im in tuned.tuned] != [im.tobytes() for im in same.base]
    assert list(tuned.scores.columns) == ["image", "seed", "judge base", "judge tuned"]
    assert tuned.scores.seed.tolist() == [7, 8]
    free_text = rt.compare("a red circle", "", 0, 2, 2.0, 1, "tuned")  # not a toy caption: no judge score
    assert free_text.scores["judge base"].isna().all()


@pytest.mark.parametrize("args, message", [
    (("", "", 0, 5, 2.0, 1, "tuned"), "empty"),
    (("x" * 1001, "", 0, 5, 2.0, 1, "tuned"), "1000 characters"),
    ((PROMPT, "", 0, 0, 2.0, 1, "tuned"), "steps"),
    ((PROMPT, "", 0, 101, 2.0, 1, "tuned"), "steps"),
    ((PROMPT, "", 0, 2.5, 2.0, 1, "tuned"), "steps"),
    ((PROMPT, "", -1, 5, 2.0, 1, "tuned"), "seed"),
    ((PROMPT, "", 0, 5, 99.0, 1, "tuned"), "guidance"),
    ((PROMPT, "", 0, 5, 2.0, 9, "tuned"), "images"),
    ((PROMPT, "", 0, 5, 2.0, 1, "/etc/passwd"), "outside the folders"),
    ((PROMPT, "", 0, 5, 2.0, 1, "assets/none.safetensors"), "does not exist"),
    ((PROMPT, "", 0, 5, 2.0, 1, "assets/toy-pairs.json"), "not 'base', 'tuned'"),
])
def test_compare_rejects_bad_input_with_a_message(rt, args, message):
    with pytest.raises(ValueError, match=message):
        rt.compare(*args)


def _wait(job, timeout=300):
    t0 = time.time()
    while job.state in ("queued", "running") and time.time() - t0 < timeout:
        time.sleep(0.1)
    return job.state


def test_fine_tunes_run_one_at_a_time_and_queue_the_rest(rt):
    small = {"steps": 3, "batch_pairs": 2, "calibration_batches": 1, "lora_rank": 2}
    first = rt.submit({"variant": "dde", **small})
    second = rt.submit({"variant": "dpo", **small})
    third = rt.submit({"variant": "dpo", **small})
    assert rt.position(second) >= 1 and second.state == "queued"
    rt.cancel(third.id)
    assert third.state == "cancelled"
    # a compare click goes between training steps
    rt.compare(PROMPT, "", 0, 2, 2.0, 1, "base")
    assert _wait(first) == "finished" and _wait(second) == "finished"
    assert first.started < first.ended <= second.started
    assert [m["step"] for m in first.metrics] == [1, 2, 3]
    assert first.lora is not None and str(first.lora) in dict((v, k) for k, v in rt.tuned_choices())
    assert not (third.run / "metrics.jsonl").exists()
    # the new LoRA is usable as the tuned model
    result = rt.compare(PROMPT, "", 0, 2, 2.0, 1, str(first.lora))
    assert len(result.tuned) == 1


def test_a_fine_tune_can_be_cancelled_while_running(rt):
    job = rt.submit({"variant": "dpo", "steps": 400, "batch_pairs": 2, "calibration_batches": 0, "lora_rank": 2})
    while not job.metrics:
        time.sleep(0.05)
    rt.cancel(job.id)
    assert _wait(job) == "cancelled"
    assert len(job.metrics) < 400
    assert (job.run / "checkpoints" / "latest.json").is_file()


def test_bad_fine_tune_settings_are_refused_before_anything_runs(rt):
    before = set(rt.jobs)
    with pytest.raises(ValueError, match="variant"):
        rt.submit({"variant": "nope"})
    with pytest.raises(ValueError, match="unknown config key"):
        rt.submit({"output_dir_typo": 1})
    assert set(rt.jobs) == before
