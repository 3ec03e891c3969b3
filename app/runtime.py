"""The app's plumbing, without UI: the model cache, the fine-tune queue, and the work behind each tab
(compare, estimation error, evaluate), all run on the one compute lane (:mod:`app.lane`). The UI
(app.tabs) only validates what it shows and formats results.

- Models are named by the specs of :mod:`dde.backends.spec`; paths typed into the UI must lie in
  the allowed roots (:mod:`app.paths`).
- Every piece of work is queued on the lane with its cost (images x DDIM steps); requests above the
  lane's budget are refused at once; queued work can be cancelled, running work stops at its next
  DDIM step.
- Fine-tunes run one at a time in a background thread (a FIFO queue, each told its place); each
  writes a normal run folder under ``<out>/runs/``.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from app.lane import Lane, Task
from app.paths import ROOT, Paths
from dde.backends.parallel import sample_side_by_side
from dde.config import TrainConfig, from_dict
from dde.images import to_uint8
from dde.limits import APP, number, shown
from dde.run import RunDir

STRIP_FRAMES = 6
MAX_COMPARE_MODELS = 3
SHIPPED_LABELS = {"dpo": "shipped Diffusion-DPO LoRA", "dde": "shipped DDE LoRA"}


def to_pil(images: torch.Tensor, size: int = 192) -> list[Image.Image]:
    """``[B, 3, H, W]`` in [-1, 1] -> PIL images, upscaled (nearest) to at least ``size`` pixels."""
    out = []
    for a in to_uint8(images.float().numpy()):
        im = Image.fromarray(a)
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


# ----- models --------------------------------------------------------------------------------------
def base_first(models) -> list[str]:
    """The model texts of a request, each once, the base first (every comparison is against it)."""
    for m in models:
        if not isinstance(m, str):
            raise ValueError(f"a model must be given as text, got {shown(m)}")
    return list(dict.fromkeys(["base", *[m.strip() for m in models if m.strip() != "base"]]))


class ModelCache:
    """Loaded backends keyed by spec text, the last ``size`` kept. Only lane work touches it."""

    def __init__(self, kind: str, base: str | None, device: str | None, size: int = 5) -> None:
        self.kind, self.base, self.device, self.size = kind, base, device, size
        self._models: collections.OrderedDict = collections.OrderedDict()

    def get(self, spec):
        from dde.backends.spec import load_model

        key = (spec.backend, spec.base, str(spec.weights))
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        model = load_model(spec, device=self.device)
        if model.lora_config is not None:  # the app only samples: fold the adapter in, base-model speed
            model.merge_lora()
        self._models[key] = model
        while len(self._models) > self.size:
            self._models.popitem(last=False)
        return model


# ----- fine-tunes ------------------------------------------------------------------------------------
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
    def run(self) -> RunDir:
        return RunDir(self.cfg.output_dir)

    @property
    def weights(self) -> Path | None:
        return self.run.weights()


class FineTunes:
    """One fine-tune at a time on the lane, the rest in a FIFO queue."""

    def __init__(self, lane: Lane, out: Path) -> None:
        self.lane, self.out = lane, out
        self.jobs: dict[str, Job] = {}
        self._queue: collections.deque[str] = collections.deque()
        self._cv = threading.Condition()
        self._ids = itertools.count(1)
        threading.Thread(target=self._worker, name="fine-tune", daemon=True).start()

    def submit(self, values: dict) -> Job:
        """Validate (TrainConfig) and queue; raises ValueError before anything runs."""
        job_id = f"{time.strftime('%H%M%S')}-{next(self._ids)}"
        cfg = from_dict({**values, "output_dir": str(self.out / "runs" / job_id)})
        job = Job(job_id, cfg)
        with self._cv:
            self.jobs[job_id] = job
            self._queue.append(job_id)
            self._cv.notify_all()
        return job

    def position(self, job: Job) -> int:
        """0 when running or done, else the number of fine-tunes ahead of it (the running one included)."""
        with self._cv:
            if job.id not in self._queue:
                return 0
            running = any(j.state == "running" for j in self.jobs.values())
            return list(self._queue).index(job.id) + int(running)

    def cancel(self, job_id) -> Job:
        """A queued job is dropped; a running one stops after its current step, with a checkpoint."""
        if not isinstance(job_id, str) or not job_id:
            raise ValueError("no fine-tune of yours to cancel")
        with self._cv:
            job = self.jobs.get(job_id)
            if job is None:
                raise ValueError(f"no fine-tune {job_id[:40]!r} in this session")
            job.cancel.set()
            if job.state == "queued":
                self._queue.remove(job_id)
                job.state, job.ended = "cancelled", time.time()
        return job

    def _worker(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: bool(self._queue))
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
            job.state = (job.run.status() or {}).get("status", "failed")
        except Exception as err:  # shown in the UI; the run folder keeps what was written
            job.state, job.error = "failed", f"{type(err).__name__}: {err}"
        job.ended = time.time()


# ----- results ---------------------------------------------------------------------------------------
@dataclass
class CompareResult:
    labels: list[str]  # per model, the first is the base
    specs: list[str]
    images: list[list[Image.Image]]  # per model, per image
    scores: pd.DataFrame  # image, seed, "<scorer> | <label>" per scorer and model
    strips: list[Image.Image]  # per model: image 1's x0 predictions along the trajectory
    divergence: pd.DataFrame  # per tuned model: x0 distance from the base per DDIM step
    settings: dict
    seconds: float

    def mean_scores(self) -> dict[str, dict[str, float]]:
        """label -> scorer -> mean over the images."""
        out = {label: {} for label in self.labels}
        for col in self.scores.columns:
            if " | " in col:
                scorer, label = col.split(" | ", 1)
                out[label][scorer] = float(self.scores[col].mean())
        return out


class Runtime:
    """Everything the app does with models. ``backend``: toy, sd or sdxl; ``model``: the base model
    (None = the shipped toy base); ``tuned``: an extra default tuned model spec."""

    def __init__(self, *, backend: str = "toy", model: str | None = None, tuned: str | None = None,
                 out: str | Path = ROOT / "outputs" / "app", data: str | None = None,
                 scorers: dict[str, str | None] | None = None, allow: list[str] | None = None,
                 device: str | None = None) -> None:
        from dde.backends import default_guidance

        self.kind, self.model_path, self.data, self.device = backend, model, data, device
        self.paths = Paths(Path(out), allow)
        self.out = self.paths.out
        (self.out / "runs").mkdir(parents=True, exist_ok=True)
        self.tuned = tuned
        self.scorer_paths = scorers if scorers is not None else ({"judge": None} if backend == "toy" else {})
        self.lane = Lane(budget=APP["work"].hi)
        self.models = ModelCache(backend, model, device)
        self.finetunes = FineTunes(self.lane, self.out)
        self.default_guidance = default_guidance(backend, model)
        self._cache: dict = {}
        self.warm_task: Task | None = None
        self.warm_log: list[tuple[str, float]] = []  # (what, seconds) of the last warm-up

    # ----- names --------------------------------------------------------------------------------------
    def model_choices(self) -> list[tuple[str, str]]:
        """(label, spec) for the model menus: the base, the shipped LoRAs (toy), the --tuned model,
        this session's finished fine-tunes."""
        from dde.backends.spec import SHIPPED

        choices = [("base model", "base")]
        if self.kind == "toy":
            choices += [(SHIPPED_LABELS[name], name) for name, path in SHIPPED.items() if path.is_file()]
        if self.tuned and self.tuned not in ("tuned", *SHIPPED):
            choices.append((f"tuned: {self.paths.show(self.tuned)}", self.paths.show(self.tuned)))
        for job in self.finetunes.jobs.values():
            if job.weights is not None:
                label = f"run {job.id} ({job.cfg.variant}, {job.cfg.steps} steps)"
                choices.append((label, self.paths.show(job.run.path)))
        return choices

    def default_models(self) -> list[str]:
        """What Evaluate shows first: the base and the next listed models, three in all (toy: base,
        Diffusion-DPO and DDE)."""
        specs = [v for _, v in self.model_choices()]
        return specs[:MAX_COMPARE_MODELS]

    def compare_defaults(self) -> list[str]:
        """What Compare shows first, and what the warm-up loads: the base and the default tuned
        model (``--tuned``; on the embedded world the shipped DDE LoRA). A third model is one pick
        away in the menu; on 2 CPU cores it makes every Compare about 1.5x slower (bench.app_latency)."""
        from dde.backends.spec import ALIASES, SHIPPED

        listed = [v for _, v in self.model_choices()]
        if self.tuned in (*ALIASES, *SHIPPED):
            tuned = ALIASES.get(self.tuned, self.tuned)
        elif self.tuned:
            tuned = self.paths.show(self.tuned)
        else:
            tuned = "dde"
        return ["base"] + [tuned] * (tuned in listed)

    def run_choices(self) -> list[tuple[str, str]]:
        """(label, shown path) of runs with logs: the shipped runs and this session's fine-tunes."""
        from dde.backends.spec import SHIPPED

        shipped = ([(f"shipped {n} run", path.parent / "run") for n, path in SHIPPED.items()]
                   if self.kind == "toy" else [])
        choices = [(label, self.paths.show(p)) for label, p in shipped if RunDir.is_run(p)]
        choices += [(f"run {j.id} ({j.cfg.variant})", self.paths.show(j.run.path)) for j in self.finetunes.jobs.values()
                    if j.run.log("metrics").is_file()]
        return choices

    def resolve_run(self, text) -> RunDir:
        path = self.paths.resolve(text)
        if not RunDir.is_run(path):
            raise ValueError(f"{self.paths.show(path)} is not a run folder (no config.yaml with logs or weights)")
        return RunDir(path)

    def spec(self, text):
        """A model spec from the UI: a listed name, or a path inside the allowed roots."""
        from dde.backends.spec import SHIPPED, parse_model_spec

        if not isinstance(text, str):
            raise ValueError(f"a model must be given as text, got {shown(text)}")
        text = text.strip()
        if text in ("base", "tuned", *SHIPPED) and (self.kind == "toy" or text == "base"):
            return parse_model_spec(text, backend=self.kind, base=self.model_path)
        path = self.paths.resolve(text)
        spec = parse_model_spec(str(path), backend=self.kind, base=self.model_path)
        return type(spec)(spec.backend, spec.base, spec.weights, self.paths.show(path))

    # ----- work on the lane -----------------------------------------------------------------------------
    def warm(self) -> Task:
        """Load the default models (and run one tiny sample) in the background, so the first Compare
        after launch does not pay for loading."""
        specs = [self.spec(s) for s in self.compare_defaults()]

        def work(task: Task):
            import importlib

            t = time.time()
            importlib.import_module("dde.backends.toy" if self.kind == "toy" else "dde.backends.sd")
            self.warm_log = [("import the model libraries", time.time() - t)]  # diffusers, transformers, peft
            for spec in specs:
                t = time.time()
                model = self.models.get(spec)
                self.warm_log.append((f"load {spec.text or 'base'}", time.time() - t))
                t = time.time()
                model.sample(["a big red circle on a black background" if self.kind == "toy" else "a photo"], steps=1)
                self.warm_log.append((f"sample {spec.text or 'base'}", time.time() - t))
            return len(specs)

        self.warm_task = self.lane.submit("warm-up", work, cost=0)
        return self.warm_task

    def compare_task(self, prompt, negative, seed, steps, guidance, n, models,
                     progress: Callable[[float, str], None] | None = None) -> Task:
        """Validate and queue a Compare of up to three models from the same noise."""
        seed, steps = number(seed, APP["seed"]), number(steps, APP["steps"])
        n = number(n, APP["images"])
        guidance = self.default_guidance if guidance is None else number(guidance, APP["guidance"])
        if not isinstance(negative, (str, type(None))):
            raise ValueError("the negative prompt must be text")
        if not isinstance(models, (list, tuple)) or not models:
            raise ValueError("choose at least one model")
        texts = base_first(models)
        if len(texts) > MAX_COMPARE_MODELS:
            raise ValueError(f"compare at most {MAX_COMPARE_MODELS} models at once (the base and two more)")
        specs = [self.spec(t) for t in texts]
        from dde.backends.spec import unique_labels

        labels = unique_labels(specs)
        if not isinstance(prompt, str):
            raise ValueError(f"a prompt must be text, got {shown(prompt)}")
        cost = n * steps * len(specs)
        t0 = time.time()

        def work(task: Task) -> CompareResult:
            backends = [self.models.get(spec) for spec in specs]
            clean = backends[0].validate_prompt(prompt)  # every backend's sample() validates it again
            done = [0] * len(specs)

            def cb(k, i, total):
                task.check()
                done[k] = i
                if progress:
                    progress(sum(done) / (total * len(specs)), f"step {min(done)}/{total} of every model")

            results = sample_side_by_side(backends, [clean] * n, cb, seed=seed, steps=steps, guidance=guidance,
                                          negative_prompt=negative or "", return_x0=True)
            out = [r.images for r in results]
            strips = [_x0_strip(b, r) for b, r in zip(backends, results)]
            scores = self._score_table(out, labels, clean, seed)
            return CompareResult(labels, [str(t) for t in texts], [to_pil(im) for im in out], scores, strips,
                                 _divergence(results, labels),
                                 {"prompt": clean, "negative": negative or "", "seed": seed, "steps": steps,
                                  "guidance": guidance, "images": n, "models": dict(zip(labels, texts))},
                                 time.time() - t0)

        return self.lane.submit("compare", work, cost)

    def _score_table(self, images: list[torch.Tensor], labels: list[str], prompt: str, seed: int) -> pd.DataFrame:
        from analysis.scorers import get_scorer

        n = images[0].shape[0]
        table = pd.DataFrame({"image": range(1, n + 1), "seed": range(seed, seed + n)})
        for name, path in self.scorer_paths.items():
            scorer = get_scorer(name, path)
            for label, batch in zip(labels, images):
                try:
                    values = scorer.score(to_uint8(batch.numpy()), [prompt] * n)
                except ValueError:  # the judge reads only toy captions
                    values = [np.nan] * n
                table[f"{name} | {label}"] = np.round(np.asarray(values, dtype=float), 4)
        return table

    def estimation_task(self, text, samples, progress=None) -> Task:
        """The estimation-error curves of a model on held-back images (cached per model and size)."""
        from analysis.estimation import estimation_error_frame, held_back_images
        from dde.train import DEFAULT_PAIRS

        samples = number(samples, APP["estimation_images"])
        spec = self.spec(text)
        key = ("estimation", spec, samples)
        cost = samples * 10 * (1 + 5 + 20)  # 10 timesteps, single shot + 5- and 20-step DDIM

        def work(task: Task):
            if key not in self._cache:
                backend = self.models.get(spec)
                x0, captions = held_back_images(backend, self.data or DEFAULT_PAIRS, samples)

                def tick(i, total):
                    task.check()
                    if progress:
                        progress(i / total, f"t {i}/{total}")

                self._cache[key] = estimation_error_frame(backend, x0, captions, progress=tick)
            return self._cache[key]

        return self.lane.submit("estimation", work, 0 if key in self._cache else cost)

    def evaluate_task(self, prompts: list[str], models: list, scorers: list, seeds, steps, progress=None) -> Task:
        """Per-image table (analysis.evaluate) for ``models`` (specs; the base first)."""
        from analysis.evaluate import evaluate_models
        from analysis.scorers import get_scorer
        from dde.backends.spec import unique_labels

        if not prompts:
            raise ValueError("the prompt set is empty")
        if not isinstance(scorers, (list, tuple)) or not scorers:
            raise ValueError("choose at least one scorer")
        unknown = [s for s in scorers if not isinstance(s, str) or s not in self.scorer_paths]
        if unknown:
            raise ValueError(f"unknown scorer(s) {unknown}; this app has {', '.join(self.scorer_paths)}")
        if not isinstance(models, (list, tuple)):
            raise ValueError("choose the models to evaluate")
        seeds, steps = number(seeds, APP["eval_seeds"]), number(steps, APP["steps"])
        texts = base_first(models)
        specs = [self.spec(t) for t in texts]
        labels = unique_labels(specs)
        if "judge" in scorers:
            from analysis.prompts import check_judge_prompts

            check_judge_prompts(prompts)
        cost = len(prompts) * seeds * len(specs) * steps

        def work(task: Task):
            backends = {label: self.models.get(spec) for label, spec in zip(labels, specs)}
            for b in backends.values():
                for p in prompts:
                    b.validate_prompt(p)
            total, done = len(prompts) * seeds * len(backends), [0]

            def tick(k: int) -> None:
                done[0] += k
                if progress:
                    progress(done[0] / total, f"{done[0]}/{total} images")

            table = evaluate_models(backends, prompts, seeds=seeds, steps=steps, batch=32,
                                    scorers={s: get_scorer(s, self.scorer_paths.get(s)) for s in scorers},
                                    progress=tick, callback=lambda i, n: task.check())
            return table, dict(zip(labels, texts))

        return self.lane.submit("evaluate", work, cost)

    def images_for(self, text: str, prompts: list[str], seeds: list[int], steps: int) -> list[Image.Image]:
        """Re-sample chosen (prompt, seed) images of one model (the Evaluate tab's best/worst pairs)."""
        spec = self.spec(text)
        return self.lane.run("images", lambda: to_pil(self.models.get(spec).sample(prompts, seeds=seeds, steps=steps)
                                                      .images, size=128), cost=len(prompts) * steps)


def _x0_strip(backend, result) -> Image.Image:
    """Image 0's x0 predictions at up to STRIP_FRAMES evenly spaced steps, decoded, side by side."""
    n = len(result.timesteps)
    picks = np.unique(np.linspace(0, n - 1, min(STRIP_FRAMES, n)).round().astype(int))
    x0 = torch.cat([result.x0_latents[i][:1] for i in picks]).to(backend.device, backend.dtype)
    frames = to_pil(backend.latents_to_images(x0).float().cpu().clamp(-1, 1), size=96)
    return strip(frames, [f"t={result.timesteps[i]}" for i in picks])


def _divergence(results: list, labels: list[str]) -> pd.DataFrame:
    from analysis.divergence import COLUMNS, x0_divergence

    frames = [x0_divergence(results[0].x0_latents, r.x0_latents, results[0].timesteps, label)
              for r, label in zip(results[1:], labels[1:])]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
