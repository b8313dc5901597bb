"""Training memory of the SD-1.5-size LEGO model at 256 px: what fits a 24 GB card, measured on a CPU.

One LEGO training step (8-channel UNet with SD 1.5's layout, LegoConditioning with LLaVA-1.5-13B sizes:
C = 410 x 768) runs forward + backward at the requested batch, with and without gradient checkpointing,
on random weights. The activation memory of the step is measured as the process RSS high-water mark
above the RSS before the step, minus the gradients' bytes (gradients are allocated by the same backward).
The rest of the budget is exact arithmetic on the parameter count: fp32 weights, gradients, AdamW's two
moments, the EMA copy, and the frozen VAE + CLIP text encoder in bf16.

CPU and GPU hold the same tensors for the same step; allocator slack differs (the CPU figure, an RSS
high-water mark, includes glibc's), so the activation number is an estimate of what a GPU needs, not a GPU
measurement. Ratios are printed against the no-checkpointing step measured in the same run.

    python benchmarks/bench_train_memory.py --quick               # tiny model, seconds (CI)
    python benchmarks/bench_train_memory.py --batch 8             # SD-1.5 size, 256 px: a few minutes, ~12 GB RAM
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from _common import PeakMemory, machine_line  # noqa: E402

GIB = 1024 ** 3


def parts_for(size: str, resolution: int):
    if size == "sd15":
        from bench_inference import sd15_components

        parts = sd15_components(resolution)
        return parts["unet"], parts["lego_conditioning"], parts["vae"], parts["text_encoder"]
    from egoframe.models.tiny import TinyConfig, tiny_components

    parts = tiny_components(TinyConfig(resolution=resolution), ablation="lego")
    return parts["unet"], parts["conditioning"], parts["vae"], parts["text_encoder"]


def one_step(unet, conditioning, batch: int, latent: int, checkpointing: bool) -> int:
    """Forward + backward of the LEGO loss; returns the step's peak extra bytes minus the gradients."""
    c = conditioning.config
    g = torch.Generator().manual_seed(0)
    psi = torch.randn(batch, 77, c.cross_attention_dim, generator=g)  # ψ(R): the frozen CLIP text states
    h_i = torch.randn(batch, c.num_image_tokens, c.d_llm, generator=g) if c.use_image_tokens else None
    h_t = torch.randn(batch, c.num_text_tokens, c.d_llm, generator=g) if c.use_text_tokens else None
    mask = torch.ones(batch, c.num_text_tokens) if c.use_text_tokens else None
    x = torch.randn(batch, 8, latent, latent, generator=g)  # [noisy target latent; input image latent]
    t = torch.randint(0, 1000, (batch,), generator=g)
    target = torch.randn(batch, 4, latent, latent, generator=g)
    if checkpointing:
        unet.enable_gradient_checkpointing()
    else:
        unet.disable_gradient_checkpointing()
    unet.train()
    grad_bytes = sum(p.numel() * p.element_size() for m in (unet, conditioning) for p in m.parameters())
    for module in (unet, conditioning):
        module.zero_grad(set_to_none=True)
    gc.collect()
    with PeakMemory() as peak:
        cond, cond_mask = conditioning(psi, h_i, h_t, mask)
        pred = unet(x, t, encoder_hidden_states=cond, encoder_attention_mask=cond_mask).sample
        torch.nn.functional.mse_loss(pred, target).backward()
    for module in (unet, conditioning):
        module.zero_grad(set_to_none=True)
    return max(peak.peak_bytes - grad_bytes, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model, 64 px, batch 2")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    size, batch, res = ("tiny", 2, 64) if args.quick else ("sd15", args.batch, args.resolution)
    print(machine_line())
    unet, conditioning, vae, text_encoder = parts_for(size, res)
    latent = unet.config.sample_size
    trained = sum(p.numel() for m in (unet, conditioning) for p in m.parameters())
    frozen = sum(p.numel() for m in (vae, text_encoder) for p in m.parameters())
    del vae, text_encoder
    acts = {}
    for checkpointing in (False, True):
        acts[checkpointing] = one_step(unet, conditioning, batch, latent, checkpointing)
    weights = trained * 4
    fixed = {"weights (fp32)": weights, "gradients (fp32)": weights, "AdamW moments (fp32)": 2 * weights,
             "EMA copy (fp32)": weights, "frozen VAE + text encoder (bf16)": frozen * 2}
    print(f"\n{size} LEGO, {res} px (latent {latent}x{latent}), batch {batch}: {trained / 1e6:.1f} M trained "
          f"parameters, {frozen / 1e6:.1f} M frozen")
    for name, value in fixed.items():
        print(f"  {name:36s} {value / GIB:8.2f} GiB")
    base = sum(fixed.values())
    print(f"  {'activations, measured (no ckpt)':36s} {acts[False] / GIB:8.2f} GiB  1.00x")
    ratio = acts[True] / acts[False] if acts[False] else float("nan")
    print(f"  {'activations, measured (grad ckpt)':36s} {acts[True] / GIB:8.2f} GiB  {ratio:.2f}x")
    for checkpointing in (False, True):
        total = base + acts[checkpointing]
        label = "with gradient checkpointing" if checkpointing else "without checkpointing"
        fits = "fits" if total < 24 * GIB else "does NOT fit"
        print(f"total {label}: {total / GIB:.1f} GiB -> {fits} a 24 GB card "
              f"(8-bit Adam: {(total - 1.5 * weights) / GIB:.1f} GiB)")


if __name__ == "__main__":
    main()
