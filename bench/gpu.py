"""The GPU path in one command: step time, memory and whether the mixed-precision paths run, for
UNets of SD1.5 and SDXL size built from their public configs with random weights (no download).

    python -m bench.gpu                 # on a GPU: full sizes, writes docs/GPU.md (under 8 minutes)
    python -m bench.gpu --out x.md      # anywhere; without a GPU it runs tiny sizes on the CPU and says so

Measured, per model (SD1.5, SDXL) and precision (fp16, bf16):
- a LoRA (rank 8, the trainer's targets) preference step with dpo and with dde (calibrated weight,
  its table updated every step) at 1, 2 and 4 pairs and 64x64 / 128x128 latents: the median step
  time, the DDE/DPO ratio and the peak memory; the step is the trainer's: one policy and one
  reference (adapters off) evaluation per image, the shared loss, AdamW;
- a full SD1.5 fine-tune with gradient checkpointing and Adafactor (a frozen reference copy);
- DDIM sampling, 25 steps with classifier-free guidance: seconds per image;
- next to each, bench.memory_estimate's prediction of the persistent state;
- the app on the SD backend with a tiny random pipeline on the same device, and one Compare
  through gradio_client.
"""

from __future__ import annotations

import argparse
import gc
import shlex
import sys
import time
from pathlib import Path

import torch

from bench.common import machine, md_table, median_seconds
from bench.memory_estimate import GIB, SD15_UNET, SDXL_UNET, count

ROOT = Path(__file__).resolve().parents[1]
SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1}
TINY = {"sd15": dict(SD15_UNET, block_out_channels=(32, 64, 64, 64), cross_attention_dim=32, attention_head_dim=4,
                     norm_num_groups=32),
        "sdxl": dict(SDXL_UNET, block_out_channels=(32, 64, 64), cross_attention_dim=64, attention_head_dim=(2, 4, 4),
                     transformer_layers_per_block=(1, 1, 1), addition_time_embed_dim=8,
                     projection_class_embeddings_input_dim=6 * 8 + 32, norm_num_groups=32)}


def bare_backend(name: str, config: dict, device: torch.device, dtype: torch.dtype, size: int):
    """A real SD / SDXL backend around a bare UNet built from ``config`` (random weights): its
    prompt encodings are random tensors of the right shapes and its "images" the latents, so no VAE
    or text-encoder weights are needed; everything a training or sampling step runs is the library's."""
    from diffusers import UNet2DConditionModel

    from dde.backends.base import Backend
    from dde.backends.sd import SDBackend, SDXLBackend

    class Bare(SDXLBackend if name == "sdxl" else SDBackend):
        def __init__(self) -> None:
            Backend.__init__(self)
            self.unet = UNet2DConditionModel(**config).to(device, dtype)
            self.scheduler_config, self.device, self.dtype = dict(SCHEDULE), device, dtype

        def validate_prompt(self, prompt: str) -> str:
            return prompt

        def latent_shape(self):
            return (4, size, size)

        def latents_to_images(self, latents):
            return latents[:, :3]

        def encode_prompts(self, prompts):
            n, unet = len(prompts), self.unet
            gen = torch.Generator().manual_seed(len(prompts[0]))  # a fixed encoding per prompt length
            states = torch.randn(n, 77, unet.config.cross_attention_dim, generator=gen).to(device, dtype)
            if name != "sdxl":
                return states
            pooled = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
            px = size * 8
            return {"prompt_embeds": states, "text_embeds": torch.randn(n, pooled, generator=gen).to(device, dtype),
                    "time_ids": torch.tensor([[px, px, 0, 0, px, px]] * n, device=device, dtype=dtype)}

    return Bare()


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak(device) -> float:
    return torch.cuda.max_memory_allocated() / GIB if device.type == "cuda" else float("nan")


def preference_step_timer(backend, pairs: int, size: int, variant: str, precision: torch.dtype, full: bool):
    """A function running one trainer-style preference step (policy and reference evaluation of
    [winners; losers], the shared loss with the variant's weight, the calibration update, the optimizer)."""
    from dde import credit, ddim
    from dde.losses import per_sample_error, preference_loss, split_pairs
    from dde.timesteps import UniformSampler, pair_timesteps

    device = backend.device
    schedule = backend.schedule
    table = credit.CalibrationTable.gaussian_ideal(schedule) if variant == "dde" else None
    if full:
        from transformers.optimization import Adafactor

        backend.unet.enable_gradient_checkpointing()
        params = backend.prepare_full_finetune()
        optimizer = Adafactor(params, lr=1e-5, relative_step=False, scale_parameter=False, warmup_init=False)
    else:
        params = backend.attach_lora(rank=8)
        for p in params:  # trainable LoRA weights in fp32, the frozen base in half precision
            p.data = p.data.float()
        optimizer = torch.optim.AdamW(params, lr=1e-5)
    x0 = torch.randn(2 * pairs, 4, size, size, device=device)
    cond = backend.encode_prompts(["a prompt"] * 2 * pairs)
    sampler = UniformSampler(schedule.T)
    gen = torch.Generator().manual_seed(0)

    def step():
        draw = sampler.sample(pairs, gen)
        t = pair_timesteps(draw.t)
        eps = torch.randn_like(x0)
        x_t = ddim.add_noise(x0, eps, schedule.alpha_bar_at(t))
        with torch.autocast(device.type, dtype=precision):
            e_theta = per_sample_error(backend.predict_eps(x_t, t, cond), eps)
            with backend.reference():
                e_ref = per_sample_error(backend.predict_eps(x_t, t, cond), eps)
        w = None
        if table is not None:
            w = credit.weights("dde", schedule, table)[draw.t].float().to(device)
        loss, _ = preference_loss(*split_pairs(e_theta), *split_pairs(e_ref), beta=5000.0, weights=w)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if table is not None:
            table.update(t.cpu(), e_ref.detach().cpu())
            table.update_variance(credit.conditional_variance(x0.float().cpu(), list(range(pairs)) * 2), 2 * pairs)
        _sync(device)

    return step


def timed(fn, repeats: int, warmup: int = 2) -> float:
    return median_seconds(fn, repeats, warmup)[0]


def measure_lora(name, configs, device, precisions, sizes, batches, repeats) -> list[dict]:
    rows = []
    for precision in precisions:
        for size in sizes:
            for pairs in batches:
                row = {"model": name, "precision": str(precision).split(".")[-1], "latents": f"{size}x{size}",
                       "pairs": pairs}
                for variant in ("dpo", "dde"):
                    model = bare_backend(name, configs[name], device, precision, size)
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats()
                    try:
                        seconds = timed(preference_step_timer(model, pairs, size, variant, precision, False), repeats)
                        row[f"{variant}_s"], row[f"{variant}_peak_gib"] = seconds, _peak(device)
                    except torch.cuda.OutOfMemoryError:
                        row[f"{variant}_s"], row[f"{variant}_peak_gib"] = float("nan"), float("inf")
                    del model
                    gc.collect()
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                row["dde/dpo"] = row["dde_s"] / row["dpo_s"]
                rows.append(row)
                print(row, flush=True)
    return rows


def measure_full(configs, device, precision, size, batches, repeats) -> list[dict]:
    rows = []
    for pairs in batches:
        model = bare_backend("sd15", configs["sd15"], device, torch.float32, size)  # fp32 master weights, autocast
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        try:
            seconds = timed(preference_step_timer(model, pairs, size, "dde", precision, True), repeats)
            peak = _peak(device)
        except torch.cuda.OutOfMemoryError:
            seconds, peak = float("nan"), float("inf")
        rows.append({"model": "sd15 full (grad ckpt, Adafactor)", "precision": str(precision).split(".")[-1],
                     "latents": f"{size}x{size}", "pairs": pairs, "step_s": seconds, "peak_gib": peak})
        print(rows[-1], flush=True)
        del model
        gc.collect()
    return rows


@torch.no_grad()
def measure_sampling(name, configs, device, precision, size, images: int) -> dict:
    backend = bare_backend(name, configs[name], device, precision, size)

    def run():
        backend.sample(["x"] * images, steps=25, guidance=5.0)
        _sync(device)

    return {"model": name, "precision": str(precision).split(".")[-1], "latents": f"{size}x{size}",
            "images": images, "seconds_per_image": timed(run, 2, warmup=1) / images}


def app_compare(device: torch.device, workdir: Path) -> dict:
    """The app on the SD backend with a tiny random pipeline on ``device``, one Compare through
    gradio_client."""
    import os
    import socket

    from gradio_client import Client

    from app.__main__ import launch
    from app.main import build_app
    from app.runtime import Runtime
    from dde.testing import tiny_sd_pipeline

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    model = tiny_sd_pipeline(workdir / "tiny-sd")
    rt = Runtime(backend="sd", model=str(model), out=workdir / "app", device=device.type)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = build_app(rt)
    launch(demo, rt, port=port, block=False)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        t0 = time.time()
        out = client.predict("a red cat", "", 0, 10, 5.0, 2, ["base"], api_name="/compare")
        seconds = time.time() - t0
        return {"compare_s": seconds, "images": len(out[0]), "device": device.type}
    finally:
        demo.close()


def estimates() -> dict:
    """bench.memory_estimate's persistent-state predictions (GiB)."""
    out = {}
    for name in ("sd15", "sdxl"):
        n = count(name, 8)
        out[name] = {"frozen_unet_fp16": 2 * n["unet"] / GIB, "lora_adamw": 16 * n["lora"] / GIB,
                     "full_ft": (16 * n["unet"] + 2 * n["unet"]) / GIB}
    return out


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="the report (default: docs/GPU.md on a GPU, outputs/gpu/GPU-cpu.md "
                                                "without one)")
    ap.add_argument("--repeats", type=int, default=5, help="timed steps per configuration (median)")
    ap.add_argument("--no-app", action="store_true", help="skip the app check")
    args = ap.parse_args(argv)
    t_start = time.time()
    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    if gpu:
        configs, sizes, batches, precisions = {"sd15": SD15_UNET, "sdxl": SDXL_UNET}, (64, 128), (1, 2, 4), (
            torch.float16, torch.bfloat16)
        full_size, sample_sizes = 64, {"sd15": 64, "sdxl": 128}
        note = f"GPU: {torch.cuda.get_device_name(0)}; full-size UNets from the public configs, random weights."
    else:
        configs, sizes, batches, precisions = TINY, (8, 16), (1, 2), (torch.bfloat16,)
        full_size, sample_sizes = 8, {"sd15": 8, "sdxl": 16}
        note = ("**No GPU was found**: this ran tiny UNets (the public configs narrowed) at tiny latent sizes on the "
                "CPU, in bf16 only, to check that every path runs. These numbers say nothing about GPU speed.")
        args.repeats = min(args.repeats, 2)
    print(note, flush=True)
    lora = [r for name in configs for r in measure_lora(name, configs, device, precisions, sizes, batches,
                                                        args.repeats)]
    full = measure_full(configs, device, precisions[-1], full_size, batches[:2], args.repeats)
    sampling = [measure_sampling(name, configs, device, precisions[-1], sample_sizes[name], 2) for name in configs]
    app = None
    if not args.no_app:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            app = app_compare(device, Path(tmp))
    est = estimates()
    out = Path(args.out) if args.out else (ROOT / "docs" / "GPU.md" if gpu else ROOT / "outputs" / "gpu" / "GPU-cpu.md")
    command = "python -m bench.gpu " + shlex.join(argv if argv is not None else sys.argv[1:])
    est_rows = [{"model": n, **{k: round(v, 3) for k, v in e.items()}} for n, e in est.items()]
    text = f"""# The GPU path, measured

Written by `{command}` on {time.strftime('%F %T %Z')} in {(time.time() - t_start) / 60:.1f} min; machine: {machine()}.

{note}

## LoRA rank 8 preference steps (median seconds per step, peak memory in GiB)

{md_table(lora)}
## Full SD1.5 fine-tune (gradient checkpointing, Adafactor, frozen reference copy)

{md_table(full)}
## DDIM sampling, 25 steps with classifier-free guidance

{md_table(sampling)}
## bench.memory_estimate's prediction of the persistent state (GiB; activations not included)

{md_table(est_rows)}
## The app on the SD backend (tiny random pipeline on {device.type}), one Compare through gradio_client

{md_table([app]) if app else "(skipped)"}
"""
    from dde.io import atomic_write_text

    atomic_write_text(text, out)
    print(out)
    return out


if __name__ == "__main__":
    main()
