"""The app's plumbing, without UI: the model cache, the one compute lane, fine-tune jobs, and the
work behind each tab (compare, estimation error, evaluate). The UI (app.main) only formats.

- :class:`Lane` is one compute thread. Every piece of model work runs on it, first come first
  served, so two users never run torch work at once and a fine-tune never sees its weights change
  under it. A fine-tune runs on the lane and lets queued work (a Compare click) go between steps,
  so the app stays responsive while it trains.
- Fine-tunes run one at a time in a background thread; further requests wait in a FIFO queue and
  are told their place. Each writes a normal run directory under ``<out>/runs/`` (config, metrics,
  checkpoints, LoRA): the trainer's resume and atomic writes apply unchanged.
- Paths typed into the UI are accepted only inside the allowed roots (the output folder, the
  shipped assets, ``runs/`` of the repository and any ``--allow`` folder).
"""

from __future__ import annotations

import collections
import itertools
import json
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from dde.config import TrainConfig, from_dict

ROOT = Path(__file__).resolve().parents[1]
MAX_IMAGES = 8
MAX_STEPS = 100
STRIP_FRAMES = 6


class Lane:
    """One long-lived thread runs every piece of model work, first come first served.

    ``run(who, fn)`` queues ``fn`` and waits for its result (exceptions re-raised in the caller). A
    single thread rather than a lock: torch work hopping between Gradio's worker threads ran slower
    on a CPU than on one warm thread (``python -m bench.app_latency``, 2 cores: Compare through the
    app took 5.46 s with a lock and 3.61 s on the lane thread). A task running on the lane (a fine-tune) calls
    :meth:`let_others_go` between steps to run the work queued meanwhile.
    """

    def __init__(self) -> None:
        self._tasks: queue.Queue = queue.Queue()
        self.holder: str | None = None
        self._thread = threading.Thread(target=self._loop, name="compute-lane", daemon=True)
        self._thread.start()

    def run(self, who: str, fn: Callable, *args, **kwargs):
        if threading.current_thread() is self._thread:  # already on the lane (nested work)
            return fn(*args, **kwargs)
        future: Future = Future()
        self._tasks.put((who, fn, args, kwargs, future))
        return future.result()

    def _loop(self) -> None:
        while True:
            self._run_one(self._tasks.get())

    def _run_one(self, task) -> None:
        who, fn, args, kwargs, future = task
        if not future.set_running_or_notify_cancel():
            return
        outer, self.holder = self.holder, who
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:  # noqa: BLE001 - handed to the caller, who re-raises it
            future.set_exception(err)
        finally:
            self.holder = outer

    def let_others_go(self) -> int:
        """From a task on the lane: run the tasks queued so far; returns how many ran."""
        if threading.current_thread() is not self._thread:
            raise RuntimeError("let_others_go is for work running on the lane")
        ran = 0
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                return ran
            self._run_one(task)
            ran += 1

    @property
    def waiting(self) -> int:
        return self._tasks.qsize()


def allowed_path(text: str, roots: list[Path]) -> Path:
    """``text`` as an existing path inside one of ``roots`` (symlinks resolved), else ValueError."""
    if not text or not text.strip():
        raise ValueError("no path given")
    path = Path(text.strip()).expanduser()
    if not path.is_absolute():
        path = ROOT / path
    path = path.resolve()
    if not any(path.is_relative_to(r.resolve()) for r in roots):
        raise ValueError(f"{text!r} is outside the folders this app may read ({', '.join(str(r) for r in roots)}); "
                         "start the app with --allow <folder> to add one")
    if not path.exists():
        raise ValueError(f"{text!r} does not exist")
    return path


def to_pil(images: torch.Tensor, size: int = 256) -> list[Image.Image]:
    """``[B, 3, H, W]`` in [-1, 1] -> PIL images, upscaled (nearest) to at least ``size`` pixels."""
    from dde.toy.world import from_model

    out = []
    for arr in from_model(images.numpy()):
        im = Image.fromarray(arr)
        if im.width < size:
            im = im.resize((size, size * im.height // im.width), Image.Resampling.NEAREST)
        out.append(im)
    return out


def strip(frames: list[Image.Image], labels: list[str]) -> Image.Image:
    """Frames side by side with a label strip above each (the x0 predictions along the trajectory)."""
    from PIL import ImageDraw

    w, h = frames[0].size
    canvas = Image.new("RGB", (w * len(frames), h + 18), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (frame, label) in enumerate(zip(frames, labels)):
        canvas.paste(frame, (i * w, 18))
        draw.text((i * w + 4, 3), label, fill="black")
    return canvas


@dataclass
class Job:
    """One fine-tune requested from the UI."""

    id: str
    cfg: TrainConfig
    state: str = "queued"  # queued, running, finished, cancelled, failed
    error: str | None = None
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    metrics: list = field(default_factory=list)

    @property
    def run(self) -> Path:
        return Path(self.cfg.output_dir)

    @property
    def lora(self) -> Path | None:
        path = self.run / "final" / "lora.safetensors"
        return path if path.is_file() else None


@dataclass
class CompareResult:
    base: list[Image.Image]
    tuned: list[Image.Image]
    scores: pd.DataFrame
    base_strip: Image.Image
    tuned_strip: Image.Image
    seconds: float


class Runtime:
    """Everything the app does with models. ``backend``: toy or sd; ``model``: the base model (None =
    the shipped toy base); ``tuned``: the default tuned spec (toy: 'tuned' = the shipped LoRA)."""

    def __init__(self, *, backend: str = "toy", model: str | None = None, tuned: str | None = None,
                 out: str | Path = ROOT / "outputs" / "app", data: str | None = None,
                 scorers: dict[str, str | None] | None = None, allow: list[str] | None = None,
                 device: str | None = None) -> None:
        self.kind, self.model_path, self.data, self.device = backend, model, data, device
        self.out = Path(out).resolve()
        (self.out / "runs").mkdir(parents=True, exist_ok=True)
        self.default_tuned = tuned or ("tuned" if backend == "toy" else None)
        self.scorer_paths = scorers if scorers is not None else ({"judge": None} if backend == "toy" else {})
        self.roots = [self.out, ROOT / "assets", ROOT / "runs", *(Path(a) for a in allow or [])]
        self.lane = Lane()
        self._models: collections.OrderedDict = collections.OrderedDict()
        self._cache: dict = {}
        self.jobs: dict[str, Job] = {}
        self._queue: collections.deque[str] = collections.deque()
        self._jobs_cv = threading.Condition()
        self._ids = itertools.count(1)
        threading.Thread(target=self._worker, name="fine-tune", daemon=True).start()

    # ----- models ------------------------------------------------------------------------------
    def tuned_choices(self) -> list[tuple[str, str]]:
        """(label, spec) for the Compare/Evaluate menus: the shipped tuned model, this session's
        finished runs, the default given on the command line."""
        choices = []
        if self.default_tuned:
            label = "shipped DDE LoRA" if self.default_tuned == "tuned" else self.default_tuned
            choices.append((label, self.default_tuned))
        for job in self.jobs.values():
            if job.lora is not None:
                choices.append((f"run {job.id} ({job.cfg.variant}, {job.cfg.steps} steps)", str(job.lora)))
        return choices

    @property
    def default_guidance(self) -> float:
        return {"toy": 2.0, "sd": 7.5, "sdxl": 5.0}[self.kind]

    def run_choices(self) -> list[tuple[str, str]]:
        """(label, run folder) of runs with logs: the shipped toy runs and this session's fine-tunes."""
        shipped = sorted((ROOT / "assets" / "toy-dde" / "runs").glob("*/metrics.jsonl")) if self.kind == "toy" else []
        choices = [(f"shipped {p.parent.name} run", str(p.parent)) for p in shipped]
        choices += [(f"run {j.id} ({j.cfg.variant})", str(j.run)) for j in self.jobs.values()
                    if (j.run / "metrics.jsonl").is_file()]
        return choices

    def resolve_run(self, run: str) -> str:
        """A run folder from the UI, confined to the allowed roots."""
        return str(allowed_path(run, self.roots))

    def resolve(self, spec: str) -> str:
        """A model spec from the UI: 'base', 'tuned', a listed choice, or a path inside the roots."""
        spec = (spec or "").strip()
        if spec in ("base", "tuned") or spec in {v for _, v in self.tuned_choices()}:
            return spec
        return str(allowed_path(spec, self.roots))

    def model(self, spec: str):
        """The backend for ``spec`` (cached, last four). Only work on the lane calls it."""
        if spec in self._models:
            self._models.move_to_end(spec)
            return self._models[spec]
        backend = self._models[spec] = self._load(spec)
        while len(self._models) > 4:
            self._models.popitem(last=False)
        return backend

    def _load(self, spec: str):
        from dde.backends import load_backend, load_toy_spec

        if self.kind == "toy":
            return load_toy_spec(spec, self.model_path)
        if spec == "base":
            return load_backend(self.kind, self.model_path, device=self.device)
        path = Path(spec)
        if (path / "final" / "lora.safetensors").is_file():
            path = path / "final" / "lora.safetensors"
        if path.suffix == ".safetensors":
            return load_backend(self.kind, self.model_path, device=self.device, lora=str(path))
        if (path / "config.json").is_file() or (path / "unet" / "config.json").is_file():
            return load_backend(self.kind, self.model_path, device=self.device, unet=str(path))
        raise ValueError(f"{spec!r} is not a LoRA file, a run directory or a UNet folder for the {self.kind} backend")

    # ----- compare -----------------------------------------------------------------------------
    def compare(self, prompt: str, negative: str, seed: int, steps: int, guidance: float, n: int, tuned: str,
                progress: Callable[[float, str], None] | None = None) -> CompareResult:
        """Base and tuned images from the same noise, their scores and x0 strips of image 0."""
        seed, steps = whole_number(seed, "seed", 0, 2**31 - 1), whole_number(steps, "steps", 1, MAX_STEPS)
        n = whole_number(n, "images", 1, MAX_IMAGES)
        if guidance is None or not 0.0 <= float(guidance) <= 30.0:
            raise ValueError("guidance must lie in [0, 30]")
        spec = self.resolve(tuned or self.default_tuned or "")
        t0 = time.time()
        out, strips = {}, {}

        def work():
            nonlocal prompt
            for k, name in enumerate(("base", spec)):
                backend = self.model(name)
                prompt = backend.validate_prompt(prompt)
                cb = (lambda i, total, k=k: progress((k + i / total) / 2, f"{'base' if k == 0 else 'tuned'} step "
                                                     f"{i}/{total}")) if progress else None
                result = backend.sample([prompt] * n, seed=seed, steps=steps, guidance=float(guidance),
                                        negative_prompt=negative or "", return_x0=True, callback=cb)
                out[name], strips[name] = result.images, _x0_strip(backend, result)
            return self._score_table(out["base"], out[spec], prompt, seed)

        scores = self.lane.run("compare", work)
        return CompareResult(to_pil(out["base"]), to_pil(out[spec]), scores, strips["base"], strips[spec],
                             time.time() - t0)

    def _score_table(self, base: torch.Tensor, tuned: torch.Tensor, prompt: str, seed: int) -> pd.DataFrame:
        from analysis.scorers import get_scorer
        from dde.toy.world import from_model

        rows = [{"image": i + 1, "seed": seed + i} for i in range(base.shape[0])]
        for name, path in self.scorer_paths.items():
            scorer = get_scorer(name, path)
            for label, images in (("base", base), ("tuned", tuned)):
                try:
                    values = scorer.score(from_model(images.numpy()), [prompt] * images.shape[0])
                except ValueError:  # the judge reads only toy captions
                    values = [np.nan] * images.shape[0]
                for row, v in zip(rows, values):
                    row[f"{name} {label}"] = round(float(v), 4)
        return pd.DataFrame(rows)

    # ----- estimation error ---------------------------------------------------------------------
    def estimation(self, spec: str, samples: int, progress: Callable[[float, str], None] | None = None) -> pd.DataFrame:
        """The estimation-error curves for ``spec`` on ``samples`` training images (cached)."""
        from analysis.estimation import estimation_error_frame
        from dde.data import PairData, read_pairs
        from dde.train import DEFAULT_PAIRS

        samples = whole_number(samples, "samples", 4, 256)
        spec = self.resolve(spec)
        key = ("estimation", spec, samples)
        if key in self._cache:
            return self._cache[key]

        def work():
            backend = self.model(spec)
            size = backend.latent_shape()[-1] * getattr(backend, "vae_scale", 1)
            data = PairData(read_pairs(self.data or DEFAULT_PAIRS), size=size, val_fraction=0.0)
            batch = data.batch(data.train_indices(0, samples))
            x0 = backend.images_to_latents(batch.images[:samples])
            return estimation_error_frame(
                backend, x0, batch.captions[:samples],
                progress=(lambda i, total: progress(i / total, f"t {i}/{total}")) if progress else None)

        frame = self._cache[key] = self.lane.run("estimation", work)
        return frame

    # ----- fine-tunes ---------------------------------------------------------------------------
    def submit(self, settings: dict) -> Job:
        """Validate ``settings`` (TrainConfig keys) and queue a fine-tune; raises ValueError."""
        job_id = f"{time.strftime('%H%M%S')}-{next(self._ids)}"
        values = {"backend": self.kind, "model": self.model_path, "data": self.data, "device": self.device,
                  "checkpoint_every": max(1, int(settings.get("steps", 200)) // 4), **settings,
                  "output_dir": str(self.out / "runs" / job_id)}
        cfg = from_dict(values)
        job = Job(job_id, cfg)
        with self._jobs_cv:
            self.jobs[job_id] = job
            self._queue.append(job_id)
            self._jobs_cv.notify_all()
        return job

    def position(self, job: Job) -> int:
        """0 when running or done, else the number of fine-tunes ahead of it (the running one included)."""
        with self._jobs_cv:
            if job.id not in self._queue:
                return 0
            running = any(j.state == "running" for j in self.jobs.values())
            return list(self._queue).index(job.id) + int(running)

    def cancel(self, job_id: str) -> Job:
        """A queued job is dropped; a running one stops after its current step, with a checkpoint."""
        with self._jobs_cv:
            job = self.jobs.get(job_id)
            if job is None:
                raise ValueError(f"no fine-tune {job_id!r} in this session")
            job.cancel.set()
            if job.state == "queued":
                self._queue.remove(job_id)
                job.state, job.ended = "cancelled", time.time()
        return job

    def _worker(self) -> None:
        while True:
            with self._jobs_cv:
                self._jobs_cv.wait_for(lambda: bool(self._queue))
                job = self.jobs[self._queue.popleft()]
                job.state, job.started = "running", time.time()
            self._run(job)

    def _run(self, job: Job) -> None:
        from dde.train import train

        def on_step(metrics: dict) -> None:  # the trainer checks job.cancel before every step
            job.metrics.append(metrics)
            self.lane.let_others_go()

        try:
            self.lane.run(f"fine-tune {job.id}", train, job.cfg, on_step=on_step, cancel=job.cancel, progress=False)
            status = json.loads((job.run / "status.json").read_text())
            job.state = status["status"]
        except Exception as err:  # shown in the UI; the run directory keeps what was written
            job.state, job.error = "failed", f"{type(err).__name__}: {err}"
        job.ended = time.time()

    # ----- evaluate -----------------------------------------------------------------------------
    def evaluate(self, prompts: list[str], models: list[str], scorers: list[str], seeds: int, steps: int,
                 progress: Callable[[float, str], None] | None = None) -> pd.DataFrame:
        """Per-image table (analysis.evaluate) for ``models`` (specs; the first is the baseline)."""
        from analysis.evaluate import evaluate_models
        from analysis.scorers import get_scorer

        if not prompts:
            raise ValueError("the prompt set is empty")
        if len(models) < 1:
            raise ValueError("choose at least one model")
        if not scorers:
            raise ValueError("choose at least one scorer")
        seeds, steps = whole_number(seeds, "seeds", 1, 8), whole_number(steps, "steps", 1, MAX_STEPS)
        specs = {m: self.resolve(m) for m in models}
        total, done = len(prompts) * seeds * len(specs), [0]

        def tick(k: int) -> None:
            done[0] += k
            if progress:
                progress(done[0] / total, f"{done[0]}/{total} images")

        def work():
            backends = {name: self.model(spec) for name, spec in specs.items()}
            for b in backends.values():
                for p in prompts:
                    b.validate_prompt(p)
            return evaluate_models(backends, prompts, seeds=seeds, steps=steps,
                                   scorers={s: get_scorer(s, self.scorer_paths.get(s)) for s in scorers},
                                   batch=32, progress=tick)

        return self.lane.run("evaluate", work)

    def images_for(self, spec: str, prompts: list[str], seeds: list[int], steps: int) -> list[Image.Image]:
        """Re-sample chosen (prompt, seed) images of one model (the evaluate tab's best/worst grid)."""
        spec = self.resolve(spec)
        return self.lane.run("images", lambda: to_pil(self.model(spec).sample(prompts, seeds=seeds, steps=steps).images,
                                                      size=128))


def _x0_strip(backend, result) -> Image.Image:
    """Image 0's x0 predictions at up to STRIP_FRAMES evenly spaced steps, decoded, side by side."""
    n = len(result.timesteps)
    picks = np.unique(np.linspace(0, n - 1, min(STRIP_FRAMES, n)).round().astype(int))
    x0 = torch.cat([result.x0_latents[i][:1] for i in picks]).to(backend.device, backend.dtype)
    frames = to_pil(backend.latents_to_images(x0).float().cpu().clamp(-1, 1), size=128)
    return strip(frames, [f"t={result.timesteps[i]}" for i in picks])


def finite_number(value, name: str, lo: float, hi: float) -> float:
    """``value`` as a float in [lo, hi], else ValueError naming ``name`` (UI input checks)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [{lo:g}, {hi:g}], got {value!r}") from None
    if not np.isfinite(number) or not lo <= number <= hi:
        raise ValueError(f"{name} must be a number in [{lo:g}, {hi:g}], got {value}")
    return number


def whole_number(value, name: str, lo: int, hi: int) -> int:
    """``value`` as an int in [lo, hi] (a float like 3.0 is fine, 2.5 is not), else ValueError."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number) or number != int(number) or not lo <= number <= hi:
        raise ValueError(f"{name} must be a whole number in [{lo}, {hi}], got {value}")
    return int(number)
