"""Training and scoring jobs shared by the world's recipes (make_tuned) and the alignment study.

A job trains one config through the trainer users run (resumable: a finished run is not redone, an
interrupted one resumes from its checkpoint) and scores chosen weights of the run on prompt sets
with the judge, every model sampling every prompt from the same seeds (paired). Every table is
cached as a CSV in the run folder, so an interrupted study resumes where it stopped. Jobs run in
worker processes of a few torch threads each.

A job given a ``ledger`` folder also copies what it produced there when it finishes: its tables and
a job.json holding the config, the input digests, the scorings and the run's timings (and, if asked,
the credit weight it trained with). The ledger is small and committed, so a study resumes on a fresh
clone, whose runs folder is empty: a job whose ledger entry matches it exactly is read back, not
run again.
"""

from __future__ import annotations

import functools
import hashlib
import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Scoring:
    """Score a run's weights at ``steps`` (None = final) on ``prompts``: ``seeds`` images per prompt,
    image (prompt i, repeat k) from seed ``seed + k * len(prompts) + i``, DDIM ``sample_steps``."""

    name: str
    prompts: list[str]
    steps: list[int | None] = field(default_factory=lambda: [None])
    seeds: int = 1
    sample_steps: int = 25
    seed: int = 0


@dataclass
class Job:
    """Train ``config`` (a TrainConfig dict; None = score the base model) and run each scoring."""

    name: str
    config: dict | None
    scorings: list[Scoring]
    out: str = ""  # where a base-model job caches its tables (runs cache in their own folder)
    ledger: str = ""  # a folder (committed) that keeps the finished job's tables: see the module's docstring
    credit: bool = False  # also keep the credit weight the run trained with (in the ledger's job.json)
    result: dict = field(default_factory=dict)


TUNE_SEED = 1000  # the training seed of every tuning run (never used for a shipped or main-stage model)
TUNE_NOISE = 20_000  # the sampling seed of the tuning prompts' images


def preset(variant: str, **overrides) -> dict:
    """configs/toy-<variant>.yaml (the shared toy preset) with ``overrides``, as a TrainConfig dict."""
    from dde.config import load_config, replace

    return replace(load_config(ROOT / "configs" / f"toy-{variant}.yaml"), **overrides).to_dict()


def run_name(variant: str, beta: float, lr: float, seed: int) -> str:
    return f"{variant}-b{beta:g}-lr{lr:g}-s{seed}"


def tuning_jobs(variants, betas, lrs, prompts: list[str], *, every: int, max_steps: int, sample_steps: int,
                folder: Path, ledger: str | Path = "") -> list[Job]:
    """One tuning run per (variant, beta, lr) under ``folder`` (seed TUNE_SEED), each checkpoint every
    ``every`` steps scored on ``prompts``; first, the base model on the same prompts and noise (its
    scores are every run's step 0). ``ledger``: where the finished jobs are kept (see the docstring)."""
    import itertools

    steps = list(range(every, max_steps + 1, every))
    scoring = Scoring("tune", prompts, steps, seeds=1, sample_steps=sample_steps, seed=TUNE_NOISE)
    ledger = str(ledger)
    jobs = [Job("base", None, [Scoring("tune", prompts, [None], seeds=1, sample_steps=sample_steps, seed=TUNE_NOISE)],
                out=str(folder / "base"), ledger=ledger)]
    for v, b, lr in itertools.product(variants, betas, lrs):
        name = run_name(v, b, lr, TUNE_SEED)
        jobs.append(Job(name, preset(v, beta=b, lr=lr, seed=TUNE_SEED, steps=max_steps, checkpoint_every=every,
                                     keep_checkpoints_every=every, judge_prompts=0, output_dir=str(folder / name)),
                        [scoring], ledger=ledger))
    return jobs


def _table_path(folder: Path, scoring: Scoring, step: int | None) -> Path:
    return folder / f"eval-{scoring.name}-{'final' if step is None else f'{step:07d}'}.csv"


def _images(scoring: Scoring) -> list[tuple[str, int]]:
    """The (prompt, seed) of every image of ``scoring``, in the order evaluate_models writes them."""
    n = len(scoring.prompts)
    return [(p, scoring.seed + k * n + i) for k in range(scoring.seeds) for i, p in enumerate(scoring.prompts)]


def _spec(scoring: Scoring) -> dict:
    """What a scoring's tables depend on besides the weights (its steps pick which tables there are)."""
    return {"prompts": list(scoring.prompts), "seeds": scoring.seeds, "sample_steps": scoring.sample_steps,
            "seed": scoring.seed}


def score(model_for_step, folder: Path, scoring: Scoring) -> pd.DataFrame:
    """The per-image judge tables of every step of ``scoring``, each cached in ``folder``
    (``model_for_step`` None: every table must be there already). A cached table is used only if it
    holds this scoring's images; eval-<name>.json records the scoring's prompts, seeds and sampler
    steps, and tables cached under another one are dropped."""
    import json

    from analysis.evaluate import evaluate_models
    from dde.io import atomic_write_json, atomic_write_text

    if model_for_step is not None:
        spec_path, want = folder / f"eval-{scoring.name}.json", _spec(scoring)
        try:
            held = json.loads(spec_path.read_text())
        except (OSError, ValueError):
            held = None
        if held != want:
            if held is not None:
                for stale in folder.glob(f"eval-{scoring.name}-*.csv"):
                    stale.unlink()
            atomic_write_json(want, spec_path)
    expected = _images(scoring)
    frames = []
    for step in scoring.steps:
        path = _table_path(folder, scoring, step)
        table = pd.read_csv(path) if path.is_file() else None
        if table is not None and list(zip(table.prompt, table.seed)) != expected:
            table = None  # cached for other prompts or noise
        if table is None:
            if model_for_step is None:
                raise FileNotFoundError(f"{path} (missing, or not this scoring's images)")
            table = evaluate_models({"model": model_for_step(step)}, scoring.prompts, seeds=scoring.seeds,
                                    steps=scoring.sample_steps, seed=scoring.seed)
            atomic_write_text(table.to_csv(index=False), path)
            table = pd.read_csv(path)
        frames.append(table.assign(step=-1 if step is None else step))
    return pd.concat(frames, ignore_index=True)


class StaleRunError(RuntimeError):
    """A cached run or table was made from another base model or other pairs than the job's."""


@functools.cache
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def input_digests(config: dict | None) -> dict[str, str]:
    """Content digests of what a job's results depend on besides its config: the base model's files
    (weights and model.json, its card included: any rewrite of the base counts as a new base) and, for
    a training job, the pairs (parquet files, or a folder's pairs.jsonl; its images are not read). A
    model or dataset that is not a local file or folder (a hub id, an hf:// URL) is recorded by name.
    A runs folder made before the world was regenerated must not be resumed as if it were current."""
    from dde.toy import DEFAULT_BASE
    from dde.train import DEFAULT_PAIRS

    def local(kind: str, name: str, patterns: tuple[str, ...]) -> dict[str, str]:
        path = Path(name)
        if path.is_file():
            files = [path]
        elif path.is_dir():
            files = sorted(f for pattern in patterns for f in path.glob(pattern) if f.is_file())
        else:
            return {kind: name}
        return {f"{kind}/{f.name}": _digest(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files} or {
            kind: name}

    digests = local("model", str((config or {}).get("model") or DEFAULT_BASE), ("*.json", "*.safetensors"))
    if config is not None:
        digests |= local("pairs", str(config.get("data") or DEFAULT_PAIRS), ("*.parquet", "pairs.jsonl"))
    return digests


def _check_inputs(folder: Path, config: dict | None) -> None:
    """Record the job's input digests in ``folder`` on first use; refuse a folder made from other
    inputs, or one holding results from before inputs were recorded."""
    import json

    from dde.io import atomic_write_json

    path, now = folder / "inputs.json", input_digests(config)
    held = [f for f in folder.iterdir() if f.name != "inputs.json"] if folder.is_dir() else []
    if not held:  # a new folder, or one whose run never started (setup failed): (re)record
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(now, path)
        return
    if not path.is_file():
        raise StaleRunError(f"{folder} holds results made before their inputs were recorded, so they may come from "
                            "another base model or other pairs; use a fresh --runs folder or delete this one")
    then = json.loads(path.read_text())
    changed = sorted(k for k in now.keys() | then.keys() if now.get(k) != then.get(k))
    if changed:
        raise StaleRunError(f"{folder} was made from other inputs ({', '.join(changed)} changed since): its "
                            "runs and scores do not describe the current world; use a fresh --runs folder or "
                            "delete this one")


def run_job(job: Job) -> Job:
    """Train (unless finished) and score; fills ``job.result`` with tables and timings (``run_seconds``:
    the run's own training time, over all its invocations). A folder made from another base model or
    other pairs (inputs.json) raises StaleRunError. With a ledger, the finished job is kept there
    (run_jobs reads matching entries back before it runs anything)."""
    from dde.backends.spec import ModelSpec, load_model
    from dde.config import from_dict
    from dde.run import RunDir
    from dde.train import train

    t0 = time.time()
    train_seconds, run_seconds = 0.0, 0.0
    if job.config is None:
        folder = Path(job.out)
        _check_inputs(folder, None)
        base = load_model(ModelSpec("toy"))
        model_for_step = lambda step: base  # noqa: E731
    else:
        cfg = from_dict(job.config)
        run = RunDir(cfg.output_dir)
        _check_inputs(run.path, job.config)
        status = run.status() or {}
        if not (status.get("status") == "finished" and status.get("step") == cfg.steps):
            for cached in run.path.glob("eval-*"):  # scored weights that this training replaces
                cached.unlink()
            train(cfg, progress=False)
            train_seconds = time.time() - t0
        folder = run.path
        run_seconds = float((run.status() or {}).get("seconds", train_seconds))
        model_for_step = lambda step: load_model(ModelSpec("toy", cfg.model, run.weights(step)))  # noqa: E731
    tables = {s.name: score(model_for_step, folder, s) for s in job.scorings}
    job.result = {"tables": tables, "train_seconds": round(train_seconds, 1), "seconds": round(time.time() - t0, 1),
                  "run_seconds": round(run_seconds, 1), "restored": False}
    if job.ledger:
        keep(job, folder)
    return job


# ----- the ledger: finished jobs' tables, committed -----------------------------------------------
LEDGER_VERSION = 1  # raise it when a change to the trainer, sampler or judge changes what a job produces


def _entry(job: Job) -> dict:
    """What a ledger entry must match to stand for ``job``: the ledger's version, the job's config
    (less where its run lives), its inputs' digests and its scorings (nothing that depends on where
    the repository is or when its files were written)."""
    import json
    from dataclasses import asdict

    config = None if job.config is None else {k: v for k, v in job.config.items() if k != "output_dir"}
    return json.loads(json.dumps({"version": LEDGER_VERSION, "name": job.name, "config": config,
                                  "inputs": input_digests(job.config),
                                  "scorings": [asdict(s) for s in job.scorings]}, default=str))


def _trained_credit(run_folder: Path) -> list[float]:
    """The credit weight per timestep the run trained with (its last calibration for calibrated variants)."""
    from dde import credit
    from dde.config import from_dict
    from dde.run import RunDir

    run = RunDir(run_folder)
    cfg = from_dict(run.config_dict())
    table = run.calibration_table() if credit.REGISTRY[cfg.variant].calibrated else None
    w = credit.weights(cfg.variant, run.schedule(), table, t_range=tuple(cfg.t_range), **cfg.variant_params)
    return [round(float(x), 6) for x in w]


def keep(job: Job, folder: Path) -> Path:
    """Copy ``job``'s tables from ``folder`` into its ledger entry and write job.json (last: it marks
    the entry complete). Returns the entry's folder."""
    import shutil

    from dde.io import atomic_write_json

    entry = Path(job.ledger) / job.name
    entry.mkdir(parents=True, exist_ok=True)
    (entry / "job.json").unlink(missing_ok=True)  # incomplete until rewritten below
    tables = {_table_path(folder, s, step).name for s in job.scorings for step in s.steps}
    for old in entry.glob("eval-*.csv"):
        if old.name not in tables:  # from an earlier version of the job
            old.unlink()
    for name in sorted(tables):
        shutil.copyfile(folder / name, entry / name)
    record = _entry(job) | {k: job.result[k] for k in ("seconds", "train_seconds", "run_seconds")}
    if job.credit and job.config is not None:
        record["credit"] = job.result["credit"] = _trained_credit(folder)
    atomic_write_json(record, entry / "job.json")
    return entry


def ledger_entry(job: Job) -> dict | None:
    """The job's ledger record if its entry exists, is complete and matches the job, else None."""
    import json

    if not job.ledger:
        return None
    path = Path(job.ledger) / job.name / "job.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    want = _entry(job)
    record.setdefault("version", 1)  # entries written before the version was recorded
    if any(record.get(k) != v for k, v in want.items()) or (job.credit and job.config is not None
                                                            and "credit" not in record):
        return None
    return record


def restore(job: Job) -> bool:
    """Fill ``job.result`` from its ledger entry (no training, no sampling) if there is a matching one."""
    record = ledger_entry(job)
    if record is None:
        return False
    entry = Path(job.ledger) / job.name
    try:
        tables = {s.name: score(None, entry, s) for s in job.scorings}
    except (FileNotFoundError, ValueError, pd.errors.ParserError):
        return False
    job.result = {"tables": tables, "train_seconds": 0.0, "seconds": 0.0, "recorded_seconds": record["seconds"],
                  "run_seconds": float(record.get("run_seconds", 0.0)), "restored": True}
    if "credit" in record:
        job.result["credit"] = record["credit"]
    return True


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


class BudgetSpentError(RuntimeError):
    """The invocation's time budget ran out before every job started; rerunning resumes."""

    def __init__(self, done: int, total: int, earlier: int = 0, finished: list[Job] | None = None) -> None:
        kept = f" ({earlier} of them read back from earlier invocations)" if earlier else ""
        super().__init__(f"time budget spent with {done} of {total} jobs done{kept}; run the same command again to "
                         "continue (finished runs and scored tables are kept)")
        self.done, self.total, self.earlier, self.finished = done, total, earlier, list(finished or [])


def run_jobs(jobs: list[Job], *, workers: int = 2, threads: int = 1, log=None,
             deadline: float | None = None, runner=None) -> list[Job]:
    """Run ``jobs`` in ``workers`` processes of ``threads`` torch threads (1 worker: in this process);
    ``log(job, done, total)`` after each. Returns the jobs with their results, in input order.
    ``deadline`` (a ``time.time()``): no job starts after it; the jobs running then finish (each
    is one run, minutes long), and BudgetSpentError is raised if any job was left unstarted.
    ``runner`` (default run_job) must be a module-level function: worker processes import it.
    Jobs with a matching ledger entry are read back first, in this process, and count as done
    whatever the deadline."""
    runner = runner or run_job
    done: dict[int, Job] = {i: job for i, job in enumerate(jobs) if restore(job)}  # the ledger's, before any deadline
    earlier = len(done)
    if earlier:
        print(f"{earlier} of {len(jobs)} jobs read back from their ledger", flush=True)
    todo = [(i, job) for i, job in enumerate(jobs) if i not in done]
    late = (lambda: False) if deadline is None else (lambda: time.time() >= deadline)
    if workers <= 1 or len(todo) <= 1:
        _init_worker(threads)
        for i, job in todo:
            if late():
                break
            done[i] = runner(job)
            if log:
                log(done[i], len(done), len(jobs))
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                                 initargs=(threads,)) as pool:
            queue, running = list(todo), {}
            while queue or running:
                while queue and len(running) < workers and not late():  # start jobs only as workers free up
                    i, job = queue.pop(0)
                    running[pool.submit(runner, job)] = i
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    i = running.pop(future)
                    done[i] = future.result()
                    if log:
                        log(done[i], len(done), len(jobs))
    if len(done) < len(jobs):
        raise BudgetSpentError(len(done), len(jobs), earlier, [done[i] for i in sorted(done)])
    return [done[i] for i in range(len(jobs))]


def record_invocation(path: Path, entry: dict, earlier: list[dict] | None = None) -> list[dict]:
    """Append ``entry`` (one invocation or stage: date, minutes, what it did or why it stopped) to the
    JSON list at ``path`` (started from ``earlier`` if the file does not exist yet); returns the list.
    Written after every stage, so an invocation stopped later still counts the time it spent."""
    import json

    from dde.io import atomic_write_json

    history = json.loads(Path(path).read_text()) if Path(path).is_file() else list(earlier or [])
    history.append(entry)
    atomic_write_json(history, path)
    return history


def progress_printer(t_start: float):
    """A ``log`` for :func:`run_jobs` that prints one line per finished job: the seconds since
    ``t_start``, the count, the job's name, its seconds and the training part of them."""
    def log(job: Job, done: int, total: int) -> None:
        print(f"[{time.time() - t_start:7.0f} s] {done}/{total} {job.name}: {job.result['seconds']:.0f} s "
              f"(training {job.result['train_seconds']:.0f} s)", flush=True)

    return log


def machine_line(workers: int, threads: int) -> str:
    """The machine a study ran on, for its report."""
    import os
    import platform

    import torch

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, "
            f"torch {torch.__version__}, {workers} worker process(es) x {threads} thread(s)")


def grid_scores(jobs: list[Job]):
    """Every tuning checkpoint of every trained job as a row: variant, beta, lr, step, mean score,
    images (the base model's job, if among ``jobs``, is left out: see base_score)."""
    import pandas as pd

    rows = []
    for job in (j for j in jobs if j.config is not None):
        for step, part in job.result["tables"]["tune"].groupby("step"):
            rows.append({"variant": job.config["variant"], "beta": job.config["beta"], "lr": job.config["lr"],
                         "step": int(step), "score": float(part.score.mean()), "n": len(part)})
    return pd.DataFrame(rows)


def base_score(jobs: list[Job], scoring: str = "tune") -> float:
    """The base model's mean score in ``jobs`` (the job without a config)."""
    base = next(j for j in jobs if j.config is None)
    return float(base.result["tables"][scoring].score.mean())


def choose(grid: pd.DataFrame) -> dict[str, dict]:
    """Per variant the (beta, lr, step) with the best mean tune score (ties: fewer steps)."""
    chosen = {}
    for variant, part in grid.groupby("variant", sort=False):
        best = part.sort_values(["score", "step"], ascending=[False, True]).iloc[0]
        chosen[variant] = {"beta": float(best.beta), "lr": float(best.lr), "steps": int(best.step),
                           "tune_score": float(best.score)}
    return chosen
