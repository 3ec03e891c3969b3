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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors.torch import load_file
from tqdm import tqdm

from dde import credit, ddim
from dde.config import TrainConfig, from_dict, load_config, save_config
from dde.data import PairData, read_pairs
from dde.io import (
    atomic_save_safetensors,
    atomic_write_json,
    atomic_write_text,
    load_optimizer_state,
    optimizer_state_tensors,
)
from dde.losses import per_sample_error, preference_loss, sft_loss, split_pairs
from dde.timesteps import ImportanceSampler, StratifiedSampler, UniformSampler, pair_timesteps

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEFAULT_PAIRS = ASSETS / "toy-pairs.parquet"
LOG_FILES = ("metrics.jsonl", "credit.jsonl", "calibration.jsonl", "val.jsonl")


class Cancelled(Exception):  # noqa: N818 - reads as a state, not an error
    """Raised inside a step callback to stop a run; the trainer checkpoints and returns."""


# ----- set-up --------------------------------------------------------------------------------
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
    """The calibration table (for calibrated variants) and the weight vector / sampler from it."""

    def __init__(self, cfg: TrainConfig, schedule, table: credit.CalibrationTable | None) -> None:
        self.cfg, self.schedule, self.table = cfg, schedule, table
        self.refresh()

    @property
    def calibrated(self) -> bool:
        return credit.REGISTRY[self.cfg.variant].calibrated

    def refresh(self) -> None:
        cfg = self.cfg
        self.w = credit.weights(cfg.variant, self.schedule, self.table if self.calibrated else None,
                                t_range=tuple(cfg.t_range), **cfg.variant_params).float()
        if cfg.weight_mode == "importance":
            self.sampler = ImportanceSampler(self.w.double(), tuple(cfg.t_range))
        else:
            self.sampler = UniformSampler(self.schedule.T, tuple(cfg.t_range))

    def loss_weights(self, t: torch.Tensor) -> torch.Tensor | None:
        return None if self.cfg.weight_mode == "importance" else self.w[t]

    def observe(self, t: torch.Tensor, e_ref: torch.Tensor) -> None:
        if self.calibrated and self.table is not None:
            self.table.update(t, e_ref, mode="ema")
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


def setup(cfg: TrainConfig, *, start: int = 0, run: Path | None = None) -> Session:
    """Load the backend, attach LoRA (or prepare a full fine-tune), build the optimizer and the data,
    and initialise the calibration table (from the checkpoint at ``start`` when resuming)."""
    from accelerate import Accelerator

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
    run = Path(cfg.output_dir)
    existed, fresh = run.exists(), not (run / "checkpoints" / "latest.json").is_file()
    start = _prepare_run_dir(cfg, run, _is_main_process())
    try:
        session = setup(cfg, start=start, run=run)
    except BaseException:  # bad data or model: leave no half-made run behind
        if fresh and _is_main_process():
            (run / "config.yaml").unlink(missing_ok=True)
            if not existed:
                shutil.rmtree(run, ignore_errors=True)
        raise
    main = session.accelerator.is_main_process
    if main:  # the schedule of the run, for its calibrated weights in analysis
        atomic_write_json(dict(session.backend.scheduler_config), run / "scheduler_config.json")
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=f"train {cfg.variant}",
               disable=not (progress and main), dynamic_ncols=True)
    status, t0, done, skipped_in_a_row, error = "finished", time.time(), start, 0, None
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
    _checkpoint(run, done, session)
    report = {"status": status, "step": done, "steps": cfg.steps, **_replica_check(session),
              **({"error": error} if error else {})}
    if main:
        if status == "finished":
            _finalise(run, session)
        atomic_write_json(report, run / "status.json")
    session.accelerator.wait_for_everyone()
    if error:
        raise RuntimeError(error)
    return run


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
    # calibration from the reference errors of every process (identical tables everywhere)
    t_all = acc.gather(torch.cat([r.pop("t") for r in rows]).to(acc.device)).cpu()
    e_all = acc.gather(torch.cat([r.pop("e_ref") for r in rows]).to(acc.device)).cpu()
    credit_rows = [(r.pop("t_pairs"), r.pop("credit")) for r in rows]
    if finite_all and torch.isfinite(e_all).all():
        session.state.observe(t_all, e_all)
    metrics = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    metrics.update(grad_norm=grad_norm, lr=lr, skipped=not finite_all)
    metrics["_credit"] = credit_rows
    return metrics


def _pair_errors(backend, schedule, batch, t_pairs: torch.Tensor, gen: torch.Generator):
    """Policy prediction and per-sample policy / reference errors (``[2P]``) of a [winners; losers]
    batch at per-pair timesteps, winner and loser sharing t and eps."""
    P = len(batch.captions)  # noqa: N806
    x0 = backend.images_to_latents(batch.images)
    t = pair_timesteps(t_pairs)
    eps_pairs = torch.randn((P, *x0.shape[1:]), generator=gen)
    eps = torch.cat([eps_pairs, eps_pairs]).to(x0.device, x0.dtype)
    x_t = ddim.add_noise(x0, eps, schedule.alpha_bar_at(t))
    cond_pairs = backend.encode_prompts(batch.captions)
    cond = backend.cat_cond(cond_pairs, cond_pairs)
    pred = backend.predict_eps(x_t, t, cond)
    with backend.reference():
        ref = backend.predict_eps(x_t, t, cond)
    return t, pred, per_sample_error(pred, eps), per_sample_error(ref, eps)


def _micro_step(session: Session, batch, gen: torch.Generator) -> dict:
    cfg, backend, state, schedule = session.cfg, session.backend, session.state, session.schedule
    P = len(batch.captions)  # noqa: N806
    draw = state.sampler.sample(P, gen)
    t, pred, e_theta, e_ref = _pair_errors(backend, schedule, batch, draw.t, gen)
    finite = bool(torch.isfinite(e_theta).all() and torch.isfinite(e_ref).all())
    (e_tw, e_tl), (e_rw, e_rl) = split_pairs(e_theta), split_pairs(e_ref)
    w = state.loss_weights(draw.t)
    if finite and cfg.objective == "preference":
        loss, diag = preference_loss(e_tw, e_tl, e_rw, e_rl, beta=cfg.beta, weights=w)
    elif finite:
        loss = sft_loss(e_tw, weights=w)
        _, diag = preference_loss(e_tw.detach(), e_tl.detach(), e_rw, e_rl, beta=cfg.beta, weights=w)
    else:  # keep processes in step: a zero-valued backward, then the step is skipped
        loss, diag = pred.sum() * 0.0, None
    session.accelerator.backward(loss / cfg.grad_accum)
    row = {"loss": loss.item() if finite else float("nan"), "finite": finite, "t": t.cpu(),
           "e_ref": e_ref.detach().cpu(), "t_pairs": draw.t.cpu(),
           "credit": diag["credit"].cpu() if diag else torch.full((P,), float("nan"))}
    keys = ("implicit_acc", "reward_margin", "e_theta_w", "e_theta_l", "e_ref_w", "e_ref_l")
    row.update({k: float(diag[k]) if diag else float("nan") for k in keys})
    row["t_mean"] = float(draw.t.float().mean())
    return row


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
    sq_sum, count = 0.0, 0
    for b in range(cfg.calibration_batches):
        gen = _step_generator(cfg, -1 - b, 0, accelerator.process_index)
        batch = data.batch(data.train_indices(b * cfg.batch_pairs, cfg.batch_pairs), flip_seed=b)
        x0 = backend.images_to_latents(batch.images)
        draw = sampler.sample(x0.shape[0], gen)
        eps = torch.randn(x0.shape, generator=gen).to(x0.device, x0.dtype)
        x_t = ddim.add_noise(x0, eps, schedule.alpha_bar_at(draw.t))
        cond = backend.encode_prompts(batch.captions)
        with backend.reference():
            e_ref = per_sample_error(backend.predict_eps(x_t, draw.t, backend.cat_cond(cond, cond)), eps)
        t_all = accelerator.gather(draw.t.to(accelerator.device)).cpu()
        table.update(t_all, accelerator.gather(e_ref).cpu(), mode="mean")
        x0f = x0.float()
        sq_sum += float(((x0f - x0f.mean()) ** 2).sum())
        count += x0f.numel()
    table.v = float(accelerator.reduce(torch.tensor([sq_sum / count], device=accelerator.device), "mean").item())
    return table


# ----- run directory: logs, checkpoints, resume -----------------------------------------------------
def _prepare_run_dir(cfg: TrainConfig, run: Path, main: bool) -> int:
    """Create or resume ``run``; returns the step to start from."""
    latest = run / "checkpoints" / "latest.json"
    if latest.is_file():
        saved = yaml.safe_load((run / "config.yaml").read_text())
        differs = {k for k, v in cfg.to_dict().items() if saved.get(k) != v and k not in ("steps", "output_dir")}
        if differs:
            raise ValueError(f"{run} holds a run with a different config ({sorted(differs)}); "
                             "choose another output_dir or the same settings to resume")
        step = int(json.loads(latest.read_text())["step"])
        _check_checkpoint(run / "checkpoints" / f"step-{step:07d}")  # before anything is rewritten
        if main:
            _truncate_logs(run, step)
            save_config(cfg, run / "config.yaml")
        return step
    if main:  # a run that never reached its first checkpoint starts over; other files are left alone
        for name in (*LOG_FILES, "status.json"):
            (run / name).unlink(missing_ok=True)
        shutil.rmtree(run / "final", ignore_errors=True)
        run.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run / "config.yaml")
    return 0


def _check_checkpoint(folder: Path) -> None:
    """Every file of a checkpoint is present and readable (safetensors headers and sizes, JSON), or
    ValueError naming it, so a failed resume changes nothing in the run directory."""
    from safetensors import safe_open

    problem = None
    if not (folder / "state.json").is_file():
        problem = "state.json is missing"
    elif not list(folder.glob("*.safetensors")):
        problem = "it holds no weights"
    else:
        try:
            json.loads((folder / "state.json").read_text())
            for path in sorted(folder.glob("*.safetensors")):
                with safe_open(str(path), framework="pt") as handle:  # checks the header covers the file
                    handle.keys()
        except Exception as err:  # truncated or garbled files raise several exception types
            problem = f"{type(err).__name__}: {err}"
    if problem:
        raise ValueError(f"checkpoint {folder} is missing or corrupt ({problem}); remove it or latest.json to "
                         "resume from an earlier one")


def _truncate_logs(run: Path, step: int) -> None:
    """Drop log rows past the checkpoint being resumed (they will be written again)."""
    for name in LOG_FILES:
        path = run / name
        if path.is_file():
            keep = []
            for line in path.read_text().splitlines():
                try:
                    if json.loads(line)["step"] <= step:
                        keep.append(line)
                except (json.JSONDecodeError, KeyError):
                    continue  # a torn last line from a killed process
            atomic_write_text("".join(line + "\n" for line in keep), path)


def _append(path: Path, row: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(row) + "\n")
        handle.flush()


def _log(run: Path, cfg: TrainConfig, step: int, metrics: dict, state: CreditState) -> None:
    credit_rows = metrics.pop("_credit")
    if step % cfg.log_every and step != cfg.steps:
        return
    _append(run / "metrics.jsonl", {"step": step, **{k: (None if isinstance(v, float) and not math.isfinite(v)
                                                           else v) for k, v in metrics.items()}})
    t = torch.cat([c[0] for c in credit_rows]).tolist()
    values = torch.cat([c[1] for c in credit_rows]).tolist()
    values = [None if not math.isfinite(v) else v for v in values]
    _append(run / "credit.jsonl", {"step": step, "t": t, "credit": values})
    if state.table is not None:
        _append(run / "calibration.jsonl", {"step": step, "r": state.table.r.tolist(), "v": state.table.v,
                                            "counts": state.table.counts.tolist()})


def _checkpoint(run: Path, step: int, session: Session) -> None:
    cfg, backend, optimizer, state, accelerator = (session.cfg, session.backend, session.optimizer, session.state,
                                                   session.accelerator)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    folder = run / "checkpoints" / f"step-{step:07d}"
    folder.mkdir(parents=True, exist_ok=True)
    _save_weights(backend, cfg, folder)
    tensors, groups = optimizer_state_tensors(optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer)
    atomic_save_safetensors(tensors, folder / "optimizer.safetensors")
    if state.table is not None:
        atomic_save_safetensors(state.table.state_dict(), folder / "calibration.safetensors")
    atomic_write_json({"step": step, **groups}, folder / "state.json")
    atomic_write_json({"step": step, "folder": folder.name}, run / "checkpoints" / "latest.json")
    for old in sorted((run / "checkpoints").glob("step-*"))[:-2]:
        shutil.rmtree(old, ignore_errors=True)
    if step > 0:
        val = _validate(session)
        if val:
            _append(run / "val.jsonl", {"step": step, **val})


def _save_weights(backend, cfg: TrainConfig, folder: Path) -> None:
    meta = {"variant": cfg.variant, "config": json.dumps(cfg.to_dict())}
    if cfg.lora_rank > 0:
        backend.save_lora(folder / "lora.safetensors", metadata=meta)
    else:
        unet = {k: v.detach().contiguous().cpu() for k, v in backend.unet.state_dict().items()}
        atomic_save_safetensors(unet, folder / "unet.safetensors", metadata=meta)


def _load_checkpoint(run: Path, step: int, session: Session) -> credit.CalibrationTable | None:
    cfg, backend, optimizer = session.cfg, session.backend, session.optimizer
    folder = run / "checkpoints" / f"step-{step:07d}"
    try:
        if cfg.lora_rank > 0:
            from peft.utils import set_peft_model_state_dict

            set_peft_model_state_dict(backend.unet, load_file(folder / "lora.safetensors"))
        else:
            backend.unet.load_state_dict(load_file(folder / "unet.safetensors"))
        groups = json.loads((folder / "state.json").read_text())
        inner = optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer
        load_optimizer_state(inner, load_file(folder / "optimizer.safetensors"), groups)
        cal = folder / "calibration.safetensors"
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
    _, _, e_theta, e_ref = _pair_errors(backend, state.schedule, data.batch(idx), draw.t, gen)
    if not (torch.isfinite(e_theta).all() and torch.isfinite(e_ref).all()):
        return {"val_loss": None, "val_implicit_acc": None}
    loss, diag = preference_loss(*split_pairs(e_theta), *split_pairs(e_ref), beta=cfg.beta)
    return {"val_loss": loss.item(), "val_implicit_acc": float(diag["implicit_acc"]),
            "val_reward_margin": float(diag["reward_margin"])}


def _finalise(run: Path, session: Session) -> None:
    backend, state, cfg = session.backend, session.state, session.cfg
    folder = run / "final"
    folder.mkdir(exist_ok=True)
    _save_weights(backend, cfg, folder)
    if state.table is not None:
        atomic_save_safetensors(state.table.state_dict(), folder / "calibration.safetensors")
    save_config(cfg, folder / "config.yaml")


# ----- command line ------------------------------------------------------------------------------
def parse_overrides(pairs: list[str]) -> dict:
    """``key=value`` strings -> dict, values parsed as YAML (numbers, lists, booleans)."""
    out = {}
    for item in pairs:
        if "=" not in item:
            raise ValueError(f"--set takes key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
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
