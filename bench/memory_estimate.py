"""Analytical GPU memory of the persistent training state for SD1.5 and SDXL (no GPU needed).

    python -m bench.memory_estimate [--rank 8]

Builds each UNet from its public config on the meta device (no weights, no download), counts the
parameters and those of a LoRA of the given rank on the attention projections (the trainer's
targets), and prints the bytes of: the frozen UNet in fp16, the LoRA in fp32 with its AdamW states
(or a full fine-tune: fp32 master weights, AdamW states and a frozen fp16 reference copy). The
text encoders (fp16) and the VAE (fp32, as the backends keep it) are built from their public
configs the same way. Activations are NOT
included: they depend on batch, resolution and gradient checkpointing; measure them with
``python -m bench.step_cost`` on the GPU (CUDA peak memory per variant).
"""

from __future__ import annotations

import argparse

SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                   "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))
SDXL_UNET = dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280), cross_attention_dim=2048, attention_head_dim=(5, 10, 20),
                 transformer_layers_per_block=(1, 2, 10), use_linear_projection=True,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816)
# CLIP text encoders (ViT-L/14 text tower; OpenCLIP bigG text tower with projection) and the SD VAE
TEXT_AND_VAE = {"sd15": dict(text=[dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12)]),
                "sdxl": dict(text=[dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12),
                                   dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                                        num_attention_heads=20, projection_dim=1280)])}
GIB = 2**30


def count(model_name: str, rank: int) -> dict:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from peft import LoraConfig, get_peft_model_state_dict
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from dde.backends.base import Backend

    with init_empty_weights():
        unet = UNet2DConditionModel(**(SD15_UNET if model_name == "sd15" else SDXL_UNET))
        vae = sum(p.numel() for p in AutoencoderKL(
            block_out_channels=(128, 256, 512, 512), latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4).parameters())
        others = 0
        for i, cfg in enumerate(TEXT_AND_VAE[model_name]["text"]):
            cls = CLIPTextModelWithProjection if i == 1 else CLIPTextModel
            others += sum(p.numel() for p in cls(CLIPTextConfig(vocab_size=49408, **cfg)).parameters())
        n_unet = sum(p.numel() for p in unet.parameters())
        unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=list(Backend.lora_target_modules)))
        n_lora = sum(v.numel() for v in get_peft_model_state_dict(unet).values())
    return {"unet": n_unet, "lora": n_lora, "text": others, "vae": vae}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.memory_estimate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rank", type=int, default=8)
    args = ap.parse_args(argv)
    out = {}
    print(f"persistent training state (GiB), LoRA rank {args.rank}; activations not included")
    print(f"{'model':6} {'UNet params':>12} {'LoRA params':>12} {'frozen model':>18} {'LoRA+AdamW':>11} "
          f"{'full FT (fp32+AdamW+fp16 ref)':>30}")
    for name in ("sd15", "sdxl"):
        n = count(name, args.rank)
        rest = 2 * n["text"] + 4 * n["vae"]  # text encoders fp16, VAE fp32 (as the backends load them)
        frozen = (2 * n["unet"] + rest) / GIB
        lora = 16 * n["lora"] / GIB  # fp32 weights + grads + two AdamW moments
        full = (16 * n["unet"] + 2 * n["unet"] + rest) / GIB
        print(f"{name:6} {n['unet'] / 1e6:>11.0f}M {n['lora'] / 1e6:>11.2f}M {frozen:>18.2f} {lora:>11.3f} "
              f"{full:>30.2f}")
        out[name] = {**n, "frozen_gib": frozen, "lora_gib": lora, "full_gib": full}
    return out


if __name__ == "__main__":
    main()
