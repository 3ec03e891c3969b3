"""The alignment study: its statistics on cases with known answers, and the whole study end to end
at a toy size (tune, widen, train, evaluate, report, rewrite the report from saved outputs)."""

import numpy as np
import pandas as pd
import pytest

from bench.alignment import choose, grid_edges
from bench.alignment_report import _first_reach, curve_table, summary_table


def _images(variant, seeds, effect, rng, prompts=40, sample_seeds=2, seed_sd=0.0):
    rows = []
    for s in seeds:
        shift = rng.normal(0, seed_sd)
        for p in range(prompts):
            for k in range(sample_seeds):
                score = 0.5 + 0.1 * np.sin(p) + effect + shift + rng.normal(0, 0.02)
                rows.append({"variant": variant, "train_seed": s, "prompt": f"p{p}", "seed": k * prompts + p,
                             "score": score, **{f"ok_{a}": True for a in ("shape", "colour", "size", "position",
                                                                         "background")}})
    return rows


def test_summary_pairs_every_variant_with_the_base_and_dpo_on_a_known_case():
    rng = np.random.default_rng(0)
    rows = _images("base", [-1], 0.0, rng) + _images("dpo", range(5), 0.05, rng) + _images("dde", range(5), 0.08, rng)
    s = summary_table(pd.DataFrame(rows)).set_index("variant")
    assert s.loc["dde", "vs_base"] == pytest.approx(0.08, abs=0.005)
    assert s.loc["dde", "vs_dpo"] == pytest.approx(0.03, abs=0.005)
    assert s.loc["dde", "vs_dpo_lo"] > 0 and s.loc["dpo", "vs_base_lo"] > 0
    assert s.loc["dde", "win_rate"] > 0.95 and np.isnan(s.loc["dpo"].get("vs_dpo", np.nan))


def test_steps_to_reach_a_target_on_a_known_curve():
    steps = [0, 25, 50, 75, 100]
    curves = np.array([[0.5, 0.55, 0.60, 0.62, 0.61], [0.5, 0.52, 0.53, 0.54, 0.55]])
    reach = _first_reach(curves, np.array([0.60, 0.60]), steps)
    assert reach[0] == 50 and np.isnan(reach[1])
    rng = np.random.default_rng(1)
    rows = []
    for variant, speed in (("dpo", 0.002), ("dde", 0.004)):
        for s in range(4):
            for step in (25, 50, 75, 100):
                for p in range(30):
                    rows.append({"variant": variant, "train_seed": s, "step": step, "prompt": f"p{p}", "seed": p,
                                 "score": 0.5 + speed * min(step, 75) + rng.normal(0, 0.01)})
    rows += [{"variant": "base", "train_seed": -1, "step": 0, "prompt": f"p{p}", "seed": p, "score": 0.5}
             for p in range(30)]
    frame, reach = curve_table(pd.DataFrame(rows))
    assert reach["dpo"]["step"] == 75  # dpo peaks at 0.65 from step 75; dde passes it at step 50
    assert reach["dde"]["step"] == 50 and reach["dde"]["hi"] <= 75
    assert set(frame.series) == {"dpo", "dde"} and (frame.lo <= frame.value).all()


def test_choice_and_grid_edges():
    grid = pd.DataFrame([{"variant": "dpo", "beta": b, "lr": lr, "step": st, "score": -abs(b - 1000) - abs(lr - 3e-4)
                          - abs(st - 50) / 1e4} for b in (250.0, 1000.0, 4000.0) for lr in (1e-4, 3e-4, 1e-3)
                         for st in (25, 50)])
    chosen = choose(grid)
    assert chosen["dpo"] == {"beta": 1000.0, "lr": 3e-4, "steps": 50, "tune_score": pytest.approx(0.0)}
    assert grid_edges(chosen, [250.0, 1000.0, 4000.0], [1e-4, 3e-4, 1e-3]) == []
    assert grid_edges({"x": {"beta": 4000.0, "lr": 1e-4}}, [250.0, 4000.0], [1e-4, 1e-3]) == [("beta", "high"),
                                                                                                ("lr", "low")]


def test_no_job_starts_after_the_deadline(monkeypatch):
    import time

    from bench import jobs

    started = []

    def fake_run(job):
        started.append(job.name)
        time.sleep(0.3)
        return job

    monkeypatch.setattr(jobs, "run_job", fake_run)
    three = [jobs.Job(f"j{i}", None, []) for i in range(3)]
    assert [j.name for j in jobs.run_jobs(three, workers=1)] == ["j0", "j1", "j2"]  # no deadline: all run
    started.clear()
    with pytest.raises(jobs.BudgetSpentError, match="1 of 3 jobs done; run the same command again") as err:
        jobs.run_jobs(three, workers=1, deadline=time.time() + 0.2)
    assert started == ["j0"] and (err.value.done, err.value.total) == (1, 3)


def _sleepy_job(job):  # module level: worker processes import it
    import time

    time.sleep(1.5)
    job.result = {"pid": __import__("os").getpid()}
    return job


def test_worker_processes_start_no_job_after_the_deadline():
    import time

    from bench import jobs

    five = [jobs.Job(f"j{i}", None, []) for i in range(5)]
    with pytest.raises(jobs.BudgetSpentError, match="2 of 5 jobs done") as err:  # two start at once, then none
        jobs.run_jobs(five, workers=2, deadline=time.time() + 1.0, runner=_sleepy_job)
    assert (err.value.done, err.value.total) == (2, 5)
    finished = jobs.run_jobs(five, workers=2, runner=_sleepy_job)
    assert [j.name for j in finished] == [f"j{i}" for i in range(5)]  # in input order
    assert __import__("os").getpid() not in {j.result["pid"] for j in finished}  # in worker processes


def test_a_runs_folder_from_other_inputs_is_refused(tmp_path):
    import json
    import shutil

    from bench import jobs
    from dde.toy import DEFAULT_BASE

    model = tmp_path / "base"
    shutil.copytree(DEFAULT_BASE, model)
    pairs = tmp_path / "pairs.parquet"
    pairs.write_bytes(b"pairs v1")
    config = {"model": str(model), "data": str(pairs)}
    run = tmp_path / "run"
    jobs._check_inputs(run, config)  # first use records the digests
    (run / "status.json").write_text("{}")  # the run's results
    jobs._check_inputs(run, config)  # the same inputs: resumes
    pairs.write_bytes(b"pairs v2")
    with pytest.raises(jobs.StaleRunError, match=r"pairs/pairs.parquet changed since.*fresh --runs"):
        jobs._check_inputs(run, config)
    pairs.write_bytes(b"pairs v1")
    (model / "model.json").write_text((model / "model.json").read_text() + " ")
    with pytest.raises(jobs.StaleRunError, match="model/model.json"):
        jobs._check_inputs(run, config)
    # a run whose setup failed left only inputs.json: the next attempt with other inputs starts afresh
    jobs._check_inputs(tmp_path / "failed", config)
    pairs.write_bytes(b"pairs v3")
    jobs._check_inputs(tmp_path / "failed", config)
    assert json.loads((tmp_path / "failed" / "inputs.json").read_text()) == jobs.input_digests(config)
    # results from before inputs were recorded are refused, not adopted
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "eval-tune-final.csv").write_text("score\n0.5\n")
    with pytest.raises(jobs.StaleRunError, match="before their inputs were recorded"):
        jobs._check_inputs(tmp_path / "old", None)
    jobs._check_inputs(tmp_path / "base-scores", None)  # a base-model job depends on the model only
    recorded = json.loads((tmp_path / "base-scores" / "inputs.json").read_text())
    assert set(recorded) == {"model/model.json", "model/text_encoder.safetensors", "model/unet.safetensors"}
    # what is not a local file is compared by name; a pairs.jsonl folder by its index file
    folder = tmp_path / "jsonl"
    folder.mkdir()
    (folder / "pairs.jsonl").write_text("{}\n")
    named = jobs.input_digests({"model": "org/some-model", "data": "hf://datasets/org/pairs/x.parquet"})
    assert named == {"model": "org/some-model", "pairs": "hf://datasets/org/pairs/x.parquet"}
    assert set(jobs.input_digests({"model": str(model), "data": str(folder)})) >= {"pairs/pairs.jsonl"}


def _no_runner(job):  # a job the ledger should have answered must not run
    raise AssertionError(f"{job.name} ran although its ledger entry matches")


def test_the_ledger_keeps_finished_jobs_for_a_fresh_clone(tmp_path):
    """A finished job's tables are kept in its ledger; with the runs folder gone (a fresh clone) the job
    is read back, not run, and counts as done before any deadline; a changed job is run again."""
    import json
    import shutil
    import time

    from bench import jobs
    from dde.toy.report import training_prompts_spread

    prompts = training_prompts_spread(2)

    def job(seed=0):
        return jobs.Job("base", None, [jobs.Scoring("tune", prompts, [None], seeds=1, sample_steps=2, seed=seed)],
                        out=str(tmp_path / "runs" / "base"), ledger=str(tmp_path / "ledger"))

    first = jobs.run_jobs([job()], workers=1)[0]
    assert not first.result["restored"]
    record = json.loads((tmp_path / "ledger" / "base" / "job.json").read_text())
    assert record["config"] is None and set(record["inputs"]) >= {"model/unet.safetensors"}
    assert (tmp_path / "ledger" / "base" / "eval-tune-final.csv").is_file()

    shutil.rmtree(tmp_path / "runs")  # what a fresh clone has: the ledger only
    again = jobs.run_jobs([job()], workers=1, runner=_no_runner)[0]
    assert again.result["restored"] and again.result["train_seconds"] == 0
    pd.testing.assert_frame_equal(again.result["tables"]["tune"], first.result["tables"]["tune"])

    # read back before the deadline is looked at: the budget message counts it, with its origin
    other = jobs.Job("other", None, [], ledger=str(tmp_path / "ledger"))
    with pytest.raises(jobs.BudgetSpentError, match=r"1 of 2 jobs done \(1 of them read back from earlier"):
        jobs.run_jobs([job(), other], workers=1, deadline=time.time() - 1, runner=_no_runner)

    # another scoring (other noise) does not match the entry: it runs, and replaces the entry; the
    # runs folder's cached table (the first noise) is not taken for it
    jobs.run_jobs([job()], workers=1)  # cache the first noise's table in runs/ again
    changed = jobs.run_jobs([job(seed=7)], workers=1)[0]
    assert not changed.result["restored"]
    assert changed.result["tables"]["tune"].seed.tolist() == [7, 8]
    kept = json.loads((tmp_path / "ledger" / "base" / "job.json").read_text())
    assert kept["scorings"][0]["seed"] == 7 and kept["version"] == jobs.LEDGER_VERSION
    assert pd.read_csv(tmp_path / "ledger" / "base" / "eval-tune-final.csv").seed.tolist() == [7, 8]
    # an entry from another ledger version, or an incomplete one (a table missing), is not read back
    kept["version"] = jobs.LEDGER_VERSION + 1
    (tmp_path / "ledger" / "base" / "job.json").write_text(json.dumps(kept))
    assert not jobs.restore(job(seed=7))
    kept["version"] = jobs.LEDGER_VERSION
    (tmp_path / "ledger" / "base" / "job.json").write_text(json.dumps(kept))
    assert jobs.restore(job(seed=7))
    (tmp_path / "ledger" / "base" / "eval-tune-final.csv").unlink()
    assert not jobs.restore(job(seed=7))


def test_cached_tables_of_another_scoring_are_not_reused(tmp_path):
    """A run folder's cached table stands only for the scoring that made it: other prompts or noise
    are scored anew, and another sampler step count (recorded in eval-<name>.json) drops the tables."""
    from bench import jobs
    from dde.toy.report import training_prompts_spread

    prompts = training_prompts_spread(3)
    calls = []

    def model(step):
        calls.append(step)
        from dde.backends.spec import ModelSpec, load_model
        return load_model(ModelSpec("toy"))

    first = jobs.score(model, tmp_path, jobs.Scoring("tune", prompts[:2], [None], sample_steps=2))
    assert len(calls) == 1 and first.prompt.tolist() == prompts[:2]
    jobs.score(model, tmp_path, jobs.Scoring("tune", prompts[:2], [None], sample_steps=2))
    assert len(calls) == 1  # the same scoring: read from the cache
    other = jobs.score(model, tmp_path, jobs.Scoring("tune", prompts, [None], sample_steps=2))
    assert len(calls) == 2 and other.prompt.tolist() == prompts
    jobs.score(model, tmp_path, jobs.Scoring("tune", prompts, [None], sample_steps=3))
    assert len(calls) == 3
    with pytest.raises(FileNotFoundError, match="not this scoring's images"):
        jobs.score(None, tmp_path, jobs.Scoring("tune", prompts[:1], [None], sample_steps=3))


@pytest.mark.slow
def test_the_study_writes_its_report(tmp_path, capsys):
    import json

    from bench.alignment import main

    small = ["--variants", "dpo", "dde", "window", "--seeds", "2", "--max-steps", "2", "--every", "1",
             "--prompts", "3", "--tune-prompts", "2", "--curve-prompts", "2", "--betas", "500", "1000",
             "--lrs", "3e-4", "--widen", "0", "--eval-seeds", "1", "--sample-steps", "2", "--workers", "2",
             "--no-png", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as stop:  # a budget spent before the first job: nothing runs, status 3
        main(small + ["--budget-minutes", "1e-9"])
    assert stop.value.code == 3 and not (tmp_path / "runs" / "tune").exists()
    main(small + ["--status"])
    assert "tuning: 0 of 7 jobs kept, 7 to run" in capsys.readouterr().out  # base + 3 methods x 2 betas
    results = main(small)
    text = results.read_text()
    invocations = json.loads((tmp_path / "out" / "invocations.json").read_text())
    assert len(invocations) == 2 and "stopped" in invocations[0] and "trained" in invocations[1]
    assert results == tmp_path / "RESULTS.md"
    assert "python -m bench.alignment --variants dpo dde window" in text
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert summary.variant.tolist() == ["base", "dpo", "dde", "window"]
    assert summary.n.tolist() == [3, 6, 6, 6]  # 3 prompts x 1 base; 3 prompts x 2 training seeds
    assert summary.win_rate.iloc[1:].between(0, 1).all()
    tuning = pd.read_csv(tmp_path / "out" / "tuning.csv")
    assert set(tuning.variant) == {"dpo", "dde", "dde-closed"}  # the same grid for each tuned method
    assert tuning.groupby("variant").size().nunique() == 1
    assert len(tuning[["beta", "lr"]].drop_duplicates()) == 2  # --widen 0 keeps the grid as given
    curve = pd.read_csv(tmp_path / "out" / "curve.csv")
    assert sorted(curve.step.unique()) == [0, 1, 2]
    assert "**DDE vs Diffusion-DPO**" in text and "## Learning curves" in text and "half-width" in text
    credit = pd.read_csv(tmp_path / "out" / "credit_weights.csv")
    assert set(credit.series) == {"dpo", "dde", "window"}
    # a fresh clone has the committed outputs (the ledger among them) but no runs: nothing is trained
    # or sampled again, and the same report comes out
    clone = [a if a != str(tmp_path / "runs") else str(tmp_path / "clone-runs") for a in small]
    main(clone)
    assert not (tmp_path / "clone-runs").exists()  # nothing trained, sampled or scored
    invocations = json.loads((tmp_path / "out" / "invocations.json").read_text())
    assert invocations[-1]["trained"] == []
    capsys.readouterr()
    main(clone + ["--status"])
    said = capsys.readouterr().out
    assert "tuning: complete; chosen: dpo beta" in said and "main stage: complete" in said
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "summary.csv"), summary)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "credit_weights.csv"), credit)
    # the report can be rewritten from the saved outputs alone
    (tmp_path / "out" / "discussion.md").write_text("Hand-written reading.")
    main(["--report-only", "--no-png", "--out", str(tmp_path / "out")])
    assert "Hand-written reading." in results.read_text()


def test_probe_table_reads_runs_logs(tmp_path):
    """bench.probe_table: one row per run, a column per logged step, blanks where a run stopped."""
    from bench.probe_table import main
    from dde.config import TrainConfig
    from dde.run import RunDir

    for name, judged in (("a", {0: 0.5, 50: 0.6}), ("b", {0: 0.5})):
        run = RunDir(tmp_path / name)
        run.path.mkdir()
        run.write_config(TrainConfig())
        run.append("metrics", {"step": 1, "loss": 0.69})
        for step, score in judged.items():
            run.append("judge", {"step": step, "judge": score, "scores": [score] * 4})
        run.append("val", {"step": 50, "val_loss": 0.65, "val_implicit_acc": 0.625})
    text = main([str(tmp_path / "a"), str(tmp_path / "b"), "--name", "first", "--name", "second"])
    assert "| judge probe (4 prompts) | step 0 | step 50 |" in text
    assert "| first | 0.500 | 0.600 |" in text and "| second | 0.500 |  |" in text
    assert "| first | 0.650 / 62% |" in text
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing")])


def test_make_tuned_sums_stage_minutes_over_invocations(tmp_path):
    import json
    import time

    from bench.make_tuned import _record_stage

    assert _record_stage(tmp_path, "tune", time.time() - 120, "cmd") == {"tune": 2.0}
    # a second invocation into the same runs folder (the first one stopped after tuning)
    assert _record_stage(tmp_path, "tune", time.time() - 30, "cmd") == {"tune": 2.5}
    assert _record_stage(tmp_path, "train and evaluate", time.time() - 60, "cmd") == {"tune": 2.5,
                                                                                      "train and evaluate": 1.0}
    history = json.loads((tmp_path / "invocations.json").read_text())
    assert [e["stage"] for e in history] == ["tune", "tune", "train and evaluate"] and history[0]["command"] == "cmd"


def test_gain_anatomy_splits_scores_by_shape_and_renders_score_near_the_top(tmp_path):
    from bench.gain_anatomy import anatomy, ceiling

    for name, scores, ok in (("base", [0.8, 0.6], [True, False]), ("dde-s0", [0.9, 0.9], [True, True])):
        (tmp_path / "final" / name).mkdir(parents=True)
        pd.DataFrame({"score": scores, "ok_shape": ok}).to_csv(tmp_path / "final" / name / "eval-held-out-final.csv")
    table = anatomy(tmp_path).set_index("model")
    assert table.loc["base", "score_shape_right"] == 0.8 and table.loc["base", "score_shape_wrong"] == 0.6
    assert table.loc["base", "shape_right"] == 0.5 and table.loc["dde-s0", "variant"] == "dde"
    assert 0.85 < ceiling(1) <= 1.0  # the judge scores ground-truth renders near its top
