"""One trainer for DDE, Diffusion-DPO and the ablations: ``train(cfg) -> run directory``.

    python -m dde.train --config configs/toy-dde.yaml [--set steps=100 --set variant=dpo]
    accelerate launch --num_processes 2 -m dde.train --config ...      (several processes / GPUs)

Each step, for a micro-batch of P pairs laid out [winners; losers]:
  1. draw t per pair (uniform on t_range, or from the weights in importance mode) and one eps per
     pair, shared by winner and loser; x_t = sqrt(ab) x0 + sqrt(1 - ab) eps;
  2. one policy and one reference evaluation per image -> per-sample errors;
  3. the preference loss with the variant's credit weight w(t) (dde.losses.preference_loss);
  4. the calibration table takes the reference errors (EMA, all processes' errors gathered);
  5. clip, step; a step whose loss or gradient is not finite is skipped and reported.
The run directory holds config.yaml, metrics.jsonl, credit.jsonl, calibration.jsonl, val.jsonl,
checkpoints/ (atomic; resume by running the same command) and final/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors.torch import load_file
from tqdm import tqdm

from dde import credit, ddim
from dde.config import TrainConfig, from_dict, load_config, parse_yaml, save_config
from dde.data import PairData, read_pairs
from dde.io import (
    atomic_save_safetensors,
    atomic_write_json,
    load_optimizer_state,
    optimizer_state_tensors,
)
from dde.losses import per_sample_error, preference_loss, sft_loss, split_pairs
from dde.run import CALIBRATION, CONFIG, LORA, OPTIMIZER, STATE, UNET, RunDir
from dde.timesteps import ImportanceSampler, StratifiedSampler, UniformSampler, pair_timesteps
from dde.toy import ASSETS

DEFAULT_PAIRS = ASSETS / "toy-pairs.parquet"
# settings that only change how a run is watched or kept, so a resume may change them
RESUME_MAY_CHANGE = ("checkpoint_every", "keep_checkpoints_every", "judge_prompts", "log_every", "max_skipped_steps")


class Cancelled(Exception):  # noqa: N818 - reads as a state, not an error
    """Raised inside a step callback to stop a run; the trainer checkpoints and returns."""


# ----- set-up --------------------------------------------------------------------------------
CPU_MIXED_PRECISION = False  # tests turn this on to check the mixed-precision path on a CPU


def _check_precision(cfg: TrainConfig) -> None:
    """fp16 / bf16 need a GPU here: on a CPU they are slow and imprecise (and fp16 autocast is not
    supported), so they are refused with a message rather than accepted silently."""
    on_cpu = (cfg.device or "").startswith("cpu") or not torch.cuda.is_available()
    if cfg.mixed_precision != "no" and on_cpu and not CPU_MIXED_PRECISION:
        raise ValueError(f"mixed_precision={cfg.mixed_precision} needs a GPU; on a CPU use --set mixed_precision=no")
    if cfg.backend != "toy" and cfg.data is None:
        raise ValueError(f"the {cfg.backend} backend needs preference pairs: --set data=<a Pick-a-Pic parquet file or "
                         "folder, or a pairs.jsonl folder>")


def _load_backend(cfg: TrainConfig):
    from dde.backends import load_backend

    kwargs = {"device": cfg.device} if cfg.device else {}
    if cfg.backend in ("sd", "sdxl") and cfg.mixed_precision != "no":
        kwargs["dtype"] = "fp32"  # master weights fp32; accelerate autocasts
    return load_backend(cfg.backend, cfg.model, **kwargs)


def _optimizer(cfg: TrainConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.optimizer == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=cfg.lr, relative_step=False, scale_parameter=False, warmup_init=False,
                         weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _step_generator(cfg: TrainConfig, step: int, micro: int, rank: int) -> torch.Generator:
    """Timesteps and noise of a micro-batch depend only on (seed, step, micro, rank)."""
    seed = np.random.SeedSequence([cfg.seed, step + 1_000_000, micro, rank]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(seed))


class CreditState:
    """The calibration table (for calibrated variants), the weight vector and the timestep sampler
    built from it: uniform over the variant's support ("inside"), or proportional to the weight
    ("importance", where each pair's loss carries the factor p(t) / q(t))."""

    def __init__(self, cfg: TrainConfig, schedule, table: credit.CalibrationTable | None) -> None:
        self.cfg, self.schedule, self.table = cfg, schedule, table
        self.refresh()

    @property
    def calibrated(self) -> bool:
        return credit.REGISTRY[self.cfg.variant].calibrated

    def refresh(self) -> None:
        cfg = self.cfg
        w, support = credit.weights_and_support(cfg.variant, self.schedule, self.table if self.calibrated else None,
                                                t_range=tuple(cfg.t_range), **cfg.variant_params)
        self.w = w.float()
        if cfg.weight_mode == "importance":
            self.sampler = ImportanceSampler(w, tuple(cfg.t_range), support)
        else:
            self.sampler = UniformSampler(self.schedule.T, tuple(cfg.t_range), support)

    def observe(self, t: torch.Tensor, e_ref: torch.Tensor, v_batch: float | None, n_images: int) -> None:
        """Fold a step's reference errors (and its images' conditional variance) into the table."""
        if self.calibrated and self.table is not None:
            self.table.update(t, e_ref, mode="ema")
            if v_batch is not None:
                self.table.update_variance(v_batch, n_images, mode="ema")
            self.refresh()


# ----- the loop ---------------------------------------------------------------------------------
@dataclass
class Session:
    """Everything a training step needs, built once by :func:`setup`."""

    cfg: TrainConfig
    accelerator: Any
    backend: Any
    optimizer: torch.optim.Optimizer
    params: list
    data: PairData
    schedule: Any
    state: CreditState | None = None
    started: float = field(default_factory=time.time)
    prior_seconds: float = 0.0  # wall time of the run before this invocation (resume)


def setup(cfg: TrainConfig, *, start: int = 0, run: Path | None = None) -> Session:
    """Load the backend, attach LoRA (or prepare a full fine-tune), build the optimizer and the data,
    and initialise the calibration table (from the checkpoint at ``start`` when resuming)."""
    from accelerate import Accelerator

    _check_precision(cfg)
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision,
                              cpu=(cfg.device or "").startswith("cpu") or not torch.cuda.is_available())
    torch.manual_seed(cfg.seed)
    backend = _load_backend(cfg)
    if cfg.gradient_checkpointing:
        backend.unet.enable_gradient_checkpointing()
    if cfg.lora_rank > 0:
        params = backend.attach_lora(cfg.lora_rank, cfg.lora_alpha)
    else:
        params = backend.prepare_full_finetune()
    optimizer = _optimizer(cfg, params)
    backend.policy_module, optimizer = accelerator.prepare(backend.unet, optimizer)
    if backend.frozen_reference is not None:  # a full fine-tune's reference runs under the same autocast
        backend.frozen_reference = accelerator.prepare_model(backend.frozen_reference, evaluation_mode=True)
    session = Session(cfg, accelerator, backend, optimizer, params, _load_data(cfg, backend), backend.schedule)
    if start > 0:
        table = _load_checkpoint(run, start, session)
    elif credit.REGISTRY[cfg.variant].calibrated:
        table = _calibrate(session)
    else:
        table = None
    session.state = CreditState(cfg, session.schedule, table)
    return session


def train(cfg: TrainConfig, on_step: Callable[[dict], None] | None = None,
          cancel: threading.Event | None = None, progress: bool = True) -> Path:
    """Train (or resume) the run in ``cfg.output_dir``; returns the run directory.

    ``on_step(metrics)`` is called after every logged step (it may raise :class:`Cancelled`);
    ``cancel`` is checked between steps. Either way the run checkpoints before returning.
    """
    run = RunDir(cfg.output_dir)
    existed, fresh = run.path.exists(), run.latest_step() is None
    start = _prepare_run_dir(cfg, run, _is_main_process())
    try:
        session = setup(cfg, start=start, run=run)
    except BaseException:  # bad data or model: leave no half-made run behind
        if fresh and _is_main_process():
            run.config_path.unlink(missing_ok=True)
            if not existed:
                shutil.rmtree(run.path, ignore_errors=True)
        raise
    main = session.accelerator.is_main_process
    if main:  # the schedule of the run, for its calibrated weights in analysis
        run.write_scheduler_config(session.backend.scheduler_config)
        if start == 0:
            _probe(run, 0, session)
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=f"train {cfg.variant}",
               disable=not (progress and main), dynamic_ncols=True)
    status, t0, done, skipped_in_a_row, error = "finished", time.time(), start, 0, None
    session.prior_seconds, session.started = _checkpoint_seconds(run, start), t0
    try:
        for step in bar:
            if cancel is not None and cancel.is_set():
                raise Cancelled
            metrics = train_step(session, step)
            done = step + 1
            skipped_in_a_row = skipped_in_a_row + 1 if metrics["skipped"] else 0
            metrics["seconds"] = round(time.time() - t0, 3)
            if main:
                _log(run, cfg, done, metrics, session.state)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}", acc=f"{metrics['implicit_acc']:.2f}")
            if done % cfg.checkpoint_every == 0 and done < cfg.steps:
                _checkpoint(run, done, session)
            if on_step is not None and main:
                on_step({"step": done, "steps": cfg.steps, **metrics})
            if skipped_in_a_row >= cfg.max_skipped_steps:
                status = "failed"
                error = (f"{skipped_in_a_row} steps in a row had a non-finite loss or gradient (last: step {done}); "
                         "the run stopped instead of diverging. Lower the learning rate or beta, or check the data.")
                break
    except (Cancelled, KeyboardInterrupt):
        status = "cancelled"
    # the last step's checkpoint; its validation and judge probe only when no earlier one logged them
    # (a cancel right after a periodic checkpoint, at the start, or a resume of a finished run)
    periodic = done % cfg.checkpoint_every == 0 and done < cfg.steps
    _checkpoint(run, done, session, log_eval=done != start and not periodic)
    report = {"status": status, "step": done, "steps": cfg.steps,
              "seconds": round(session.prior_seconds + time.time() - t0, 1), **_replica_check(session),
              **({"error": error} if error else {})}
    if main:
        if status == "finished":
            _finalise(run, session)
        run.write_status(report)
    session.accelerator.wait_for_everyone()
    if error:
        raise RuntimeError(error)
    return run.path


def _is_main_process() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def _replica_check(session: Session) -> dict:
    """With several processes, every one holds a replica: they must agree to the last bit."""
    acc = session.accelerator
    if acc.num_processes == 1:
        return {}
    flat = torch.cat([p.detach().float().flatten() for p in session.params]).to(acc.device)
    gathered = acc.gather(flat[None])
    return {"processes": acc.num_processes, "replica_max_abs_diff": float((gathered - gathered[:1]).abs().max())}


def train_step(session: Session, step: int) -> dict:
    """One optimizer step (``grad_accum`` micro-batches); returns its metrics."""
    cfg, acc, backend, optimizer = session.cfg, session.accelerator, session.backend, session.optimizer
    lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    rows, finite = [], True
    P, rank, world = cfg.batch_pairs, acc.process_index, acc.num_processes  # noqa: N806
    for micro in range(cfg.grad_accum):
        start = ((step * cfg.grad_accum + micro) * world + rank) * P
        batch = session.data.batch(session.data.train_indices(start, P), flip_seed=start)
        gen = _step_generator(cfg, step, micro, rank)
        sync = contextlib.nullcontext() if micro == cfg.grad_accum - 1 else acc.no_sync(backend.policy_module)
        with sync:
            row = _micro_step(session, batch, gen)
        finite &= row.pop("finite")
        rows.append(row)
    grad_norm = _clip(session.params, cfg.max_grad_norm)
    ok = torch.tensor([float(finite and math.isfinite(grad_norm))], device=acc.device)
    finite_all = bool(acc.gather(ok).min().item() > 0)
    if finite_all:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    # calibration from the reference errors and images of every process (identical tables everywhere)
    t_all = acc.gather(torch.cat([r.pop("t") for r in rows]).to(acc.device)).cpu()
    e_all = acc.gather(torch.cat([r.pop("e_ref") for r in rows]).to(acc.device)).cpu()
    v_all = acc.gather(torch.tensor([r.pop("v") for r in rows], dtype=torch.float64, device=acc.device)).cpu()
    credit_rows = [(r.pop("t_pairs"), r.pop("credit")) for r in rows]
    if finite_all and torch.isfinite(e_all).all():
        v_ok = v_all[torch.isfinite(v_all) & (v_all > 0)]
        session.state.observe(t_all, e_all, float(v_ok.mean()) if len(v_ok) else None, len(e_all))
    metrics = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    metrics.update(grad_norm=grad_norm, lr=lr, skipped=not finite_all)
    metrics["_credit"] = credit_rows
    return metrics


def _pair_errors(backend, schedule, batch, t_pairs: torch.Tensor, gen: torch.Generator):
    """Latents x0, policy prediction and per-sample policy / reference errors (``[2P]``) of a
    [winners; losers] batch at per-pair timesteps, winner and loser sharing t and eps."""
    P = len(batch.captions)  # noqa: N806
    x0 = backend.images_to_latents(batch.images, generator=gen)
    t = pair_timesteps(t_pairs)
    eps_pairs = torch.randn((P, *x0.shape[1:]), generator=gen)
    eps = torch.cat([eps_pairs, eps_pairs]).to(x0.device, x0.dtype)
    x_t = ddim.add_noise(x0, eps, schedule.alpha_bar_at(t))
    cond_pairs = backend.encode_prompts(batch.captions)
    cond = backend.cat_cond(cond_pairs, cond_pairs)
    pred = backend.predict_eps(x_t, t, cond)
    with backend.reference():
        ref = backend.predict_eps(x_t, t, cond)
    return x0, t, pred, per_sample_error(pred, eps), per_sample_error(ref, eps)


def _micro_step(session: Session, batch, gen: torch.Generator) -> dict:
    cfg, backend, state, schedule = session.cfg, session.backend, session.state, session.schedule
    P = len(batch.captions)  # noqa: N806
    draw = state.sampler.sample(P, gen)
    x0, t, pred, e_theta, e_ref = _pair_errors(backend, schedule, batch, draw.t, gen)
    finite = bool(torch.isfinite(e_theta).all() and torch.isfinite(e_ref).all())
    (e_tw, e_tl), (e_rw, e_rl) = split_pairs(e_theta), split_pairs(e_ref)
    w, f = state.w[draw.t], draw.factor
    if finite and cfg.objective == "preference":
        loss, diag = preference_loss(e_tw, e_tl, e_rw, e_rl, beta=cfg.beta, weights=w, factors=f)
    elif finite:
        loss = sft_loss(e_tw, weights=w, factors=f)
        _, diag = preference_loss(e_tw.detach(), e_tl.detach(), e_rw, e_rl, beta=cfg.beta, weights=w, factors=f)
    else:  # keep processes in step: a zero-valued backward, then the step is skipped
        loss, diag = pred.sum() * 0.0, None
    session.accelerator.backward(loss / cfg.grad_accum)
    row = {"loss": loss.item() if finite else float("nan"), "finite": finite, "t": t.cpu(),
           "e_ref": e_ref.detach().cpu(), "t_pairs": draw.t.cpu(), "v": _pair_variance(x0),
           "credit": diag["credit"].cpu() if diag else torch.full((P,), float("nan"))}
    keys = ("implicit_acc", "reward_margin", "e_theta_w", "e_theta_l", "e_ref_w", "e_ref_l")
    row.update({k: float(diag[k]) if diag else float("nan") for k in keys})
    row["t_mean"] = float(draw.t.float().mean())
    return row


def _pair_variance(x0: torch.Tensor) -> float:
    """The prompt-conditional variance of a [winners; losers] batch (pairs share a prompt)."""
    P = x0.shape[0] // 2  # noqa: N806
    return credit.conditional_variance(x0.float(), list(range(P)) * 2) if P > 0 else float("nan")


def _clip(params, max_norm: float) -> float:
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return 0.0
    if max_norm > 0:
        return float(torch.nn.utils.clip_grad_norm_(grads, max_norm))
    return float(torch.norm(torch.stack([g.grad.detach().norm() for g in grads])))


# ----- data and calibration -----------------------------------------------------------------------
def _load_data(cfg: TrainConfig, backend) -> PairData:
    frame = read_pairs(cfg.data or DEFAULT_PAIRS)
    size = cfg.resolution or backend.latent_shape()[-1] * getattr(backend, "vae_scale", 1)
    data = PairData(frame, size=size, val_fraction=cfg.val_fraction, seed=cfg.seed, random_flip=cfg.random_flip)
    data.check_images(limit=256 if len(frame) > 10_000 else None)
    return data


@torch.no_grad()
def _calibrate(session: Session) -> credit.CalibrationTable:
    """Initial table: ``calibration_batches`` batches, t stratified over all bins, reference only."""
    cfg, backend, data, schedule, accelerator = (session.cfg, session.backend, session.data, session.schedule,
                                                 session.accelerator)
    if cfg.calibration_batches == 0:
        return credit.CalibrationTable.gaussian_ideal(schedule, cfg.calibration_bins, decay=cfg.calibration_decay)
    table = credit.CalibrationTable(schedule.T, cfg.calibration_bins, decay=cfg.calibration_decay)
    sampler = StratifiedSampler(schedule.T, tuple(cfg.t_range))
    for b in range(cfg.calibration_batches):
        gen = _step_generator(cfg, -1 - b, 0, accelerator.process_index)
        batch = data.batch(data.train_indices(b * cfg.batch_pairs, cfg.batch_pairs), flip_seed=b)
        x0 = backend.images_to_latents(batch.images, generator=gen)
        draw = sampler.sample(x0.shape[0], gen)
        eps = torch.randn(x0.shape, generator=gen).to(x0.device, x0.dtype)
        x_t = ddim.add_noise(x0, eps, schedule.alpha_bar_at(draw.t))
        cond = backend.encode_prompts(batch.captions)
        with backend.reference():
            e_ref = per_sample_error(backend.predict_eps(x_t, draw.t, backend.cat_cond(cond, cond)), eps)
        t_all = accelerator.gather(draw.t.to(accelerator.device)).cpu()
        table.update(t_all, accelerator.gather(e_ref).cpu(), mode="mean")
        v = accelerator.gather(torch.tensor([_pair_variance(x0)], dtype=torch.float64, device=accelerator.device))
        table.update_variance(float(v.mean()), len(t_all), mode="mean")  # the same images as r
    return table


# ----- run directory: logs, checkpoints, resume -----------------------------------------------------
def _prepare_run_dir(cfg: TrainConfig, run: RunDir, main: bool) -> int:
    """Create or resume ``run``; returns the step to start from."""
    step = run.latest_step()
    if step is not None:
        saved = run.config_dict()
        differs = {k for k, v in cfg.to_dict().items()
                   if saved.get(k) != v and k not in ("steps", "output_dir") + RESUME_MAY_CHANGE}
        if differs:
            raise ValueError(f"{run.path} holds a run with a different config ({sorted(differs)}); "
                             "choose another output_dir or the same settings to resume")
        _check_checkpoint(run.checkpoint(step))  # before anything is rewritten
        if main:
            run.truncate_logs(step)
            run.write_config(cfg)
        return step
    if main:  # a run that never reached its first checkpoint starts over; other files are left alone
        run.clear()
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_config(cfg)
    return 0


def _checkpoint_seconds(run: RunDir, step: int) -> float:
    """Training wall time recorded with the checkpoint a run resumes from (0 for a fresh run)."""
    try:
        return float(json.loads((run.checkpoint(step) / STATE).read_text()).get("seconds", 0.0))
    except (OSError, ValueError):
        return 0.0


def _check_checkpoint(folder: Path) -> None:
    """Every file of a checkpoint is present and readable (safetensors headers and sizes, JSON), or
    ValueError naming it, so a failed resume changes nothing in the run directory."""
    from safetensors import safe_open

    problem = None
    if not (folder / STATE).is_file():
        problem = f"{STATE} is missing"
    elif not list(folder.glob("*.safetensors")):
        problem = "it holds no weights"
    else:
        try:
            json.loads((folder / STATE).read_text())
            for path in sorted(folder.glob("*.safetensors")):
                with safe_open(str(path), framework="pt") as handle:  # checks the header covers the file
                    handle.keys()
        except Exception as err:  # truncated or garbled files raise several exception types
            problem = f"{type(err).__name__}: {err}"
    if problem:
        raise ValueError(f"checkpoint {folder} is missing or corrupt ({problem}); remove it or latest.json to "
                         "resume from an earlier one")


def _log(run: RunDir, cfg: TrainConfig, step: int, metrics: dict, state: CreditState) -> None:
    credit_rows = metrics.pop("_credit")
    if step % cfg.log_every and step != cfg.steps:
        return
    run.append("metrics", {"step": step, **{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                                             for k, v in metrics.items()}})
    t = torch.cat([c[0] for c in credit_rows]).tolist()
    values = torch.cat([c[1] for c in credit_rows]).tolist()
    run.append("credit", {"step": step, "t": t, "credit": [None if not math.isfinite(v) else v for v in values]})
    if state.table is not None:
        clipped = state.table.clipped(state.schedule).nonzero().flatten()
        run.append("calibration", {"step": step, "r": state.table.r.tolist(), "v": state.table.v,
                                   "v_count": state.table.v_count, "counts": state.table.counts.tolist(),
                                   "clipped_from": int(clipped.min()) if len(clipped) else None,
                                   "clipped_count": len(clipped)})


def _checkpoint(run: RunDir, step: int, session: Session, log_eval: bool = True) -> None:
    cfg, backend, optimizer, state, accelerator = (session.cfg, session.backend, session.optimizer, session.state,
                                                   session.accelerator)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    folder = run.checkpoint(step)
    folder.mkdir(parents=True, exist_ok=True)
    _save_weights(backend, cfg, folder)
    tensors, groups = optimizer_state_tensors(optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer)
    atomic_save_safetensors(tensors, folder / OPTIMIZER)
    if state.table is not None:
        atomic_save_safetensors(state.table.state_dict(), folder / "calibration.safetensors")
    seconds = session.prior_seconds + time.time() - session.started
    atomic_write_json({"step": step, "seconds": round(seconds, 1), **groups}, folder / "state.json")
    run.mark_latest(step, keep_every=cfg.keep_checkpoints_every)
    if not log_eval:
        return
    if step > 0:
        val = _validate(session)
        if val:
            run.append("val", {"step": step, **val})
    _probe(run, step, session)


def _probe(run: RunDir, step: int, session: Session) -> None:
    """Toy world: the judge score of fixed training-split prompts on fixed noise (the reward the
    fine-tune chases), logged at step 0 and at every checkpoint."""
    cfg = session.cfg
    if cfg.backend == "toy" and cfg.judge_prompts > 0:
        from dde.toy.report import probe_judge

        run.append("judge", {"step": step, **probe_judge(session.backend, cfg.judge_prompts)})


def _save_weights(backend, cfg: TrainConfig, folder: Path) -> None:
    meta = {"variant": cfg.variant, "config": json.dumps(cfg.to_dict())}
    if cfg.lora_rank > 0:
        backend.save_lora(folder / LORA, metadata=meta)
    else:
        unet = {k: v.detach().contiguous().cpu() for k, v in backend.unet.state_dict().items()}
        atomic_save_safetensors(unet, folder / UNET, metadata=meta)


def _load_checkpoint(run: RunDir, step: int, session: Session) -> credit.CalibrationTable | None:
    cfg, backend, optimizer = session.cfg, session.backend, session.optimizer
    folder = run.checkpoint(step)
    try:
        if cfg.lora_rank > 0:
            backend.set_lora_state(load_file(folder / LORA), where=str(folder / LORA))
        else:
            backend.unet.load_state_dict(load_file(folder / UNET))
        groups = json.loads((folder / STATE).read_text())
        inner = optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer
        load_optimizer_state(inner, load_file(folder / OPTIMIZER), groups)
        cal = folder / CALIBRATION
        return credit.CalibrationTable.from_state_dict(load_file(cal)) if cal.is_file() else None
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"checkpoint {folder} is missing or corrupt ({err}); remove it or latest.json to "
                         "resume from an earlier one") from err


@torch.no_grad()
def _validate(session: Session) -> dict | None:
    """Implicit accuracy and loss on held-back pairs, with fixed t and noise."""
    backend, data, cfg, state = session.backend, session.data, session.cfg, session.state
    if len(data.val_index) == 0:
        return None
    idx = data.val_index[: max(cfg.batch_pairs, 32)]
    gen = torch.Generator().manual_seed(cfg.seed + 99991)
    draw = UniformSampler(state.schedule.T, tuple(cfg.t_range)).sample(len(idx), gen)
    *_, e_theta, e_ref = _pair_errors(backend, state.schedule, data.batch(idx), draw.t, gen)
    if not (torch.isfinite(e_theta).all() and torch.isfinite(e_ref).all()):
        return {"val_loss": None, "val_implicit_acc": None}
    loss, diag = preference_loss(*split_pairs(e_theta), *split_pairs(e_ref), beta=cfg.beta)
    return {"val_loss": loss.item(), "val_implicit_acc": float(diag["implicit_acc"]),
            "val_reward_margin": float(diag["reward_margin"])}


def _finalise(run: RunDir, session: Session) -> None:
    backend, state, cfg = session.backend, session.state, session.cfg
    folder = run.final
    folder.mkdir(exist_ok=True)
    _save_weights(backend, cfg, folder)
    if state.table is not None:
        atomic_save_safetensors(state.table.state_dict(), folder / CALIBRATION)
    save_config(cfg, folder / CONFIG)


# ----- command line ------------------------------------------------------------------------------
def parse_overrides(pairs: list[str]) -> dict:
    """``key=value`` strings -> dict, values parsed as YAML 1.2 scalars (numbers in any float
    notation, lists, true/false); each is then read as its field's type by :func:`dde.config.from_dict`."""
    out = {}
    for item in pairs:
        if "=" not in item:
            raise ValueError(f"--set takes key=value, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = parse_yaml(value)
        except yaml.YAMLError as err:
            raise ValueError(f"--set {key.strip()}: cannot read {value!r} ({err})") from err
    return out


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(prog="python -m dde.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="YAML preset (configs/*.yaml); omitted = the defaults")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    args = ap.parse_args(argv)
    try:
        overrides = parse_overrides(args.set)
        cfg = load_config(args.config, **overrides) if args.config else from_dict(overrides)
    except ValueError as err:
        ap.exit(2, f"error: {err}\n")
    try:
        run = train(cfg)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from err
    except RuntimeError as err:  # the run stopped itself (non-finite steps); status.json says why
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from err
    print(run)
    return run


if __name__ == "__main__":
    main()
