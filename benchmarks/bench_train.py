"""Training cost on this machine: official 256 architecture, full stage, batch 1 (CPU by default).

Prints samples/s of a complete training step (G step + D step), peak memory, and the
time share of its parts (forward + backward each): warping network, refinement
network, VGG19 perceptual losses, discriminator. Uses an untrained VGG19 (same cost as
the real one). Not a test: numbers only.

    python benchmarks/bench_train.py [--steps 3] [--config ...256_pretrain_full.yaml] [--device cpu] [--out FILE]

Writes benchmarks/results/bench_train.json by default.
"""
from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch

from talkingface.config import load_config
from talkingface.losses.metaportrait import MetaPortraitLoss
from talkingface.losses.vgg import VGG19Features
from talkingface.models.build import build_discriminator, build_generator
from talkingface.models.generator import GeneratorInputs

CONFIG = Path(__file__).resolve().parents[1] / "talkingface/properties/model/meta_portrait_base_config/meta_portrait_256_pretrain_full.yaml"


def inputs(size: int, identity_dim: int, device) -> tuple[GeneratorInputs, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(1, 1, size, size)
    mask[:, :, size // 2:, size // 4:3 * size // 4] = 1
    x = GeneratorInputs(source=torch.rand(1, 3, size, size, generator=g),
                        source_line=torch.rand(1, 3, size, size, generator=g),
                        driving_line=torch.rand(1, 3, size, size, generator=g),
                        driving_subset=torch.rand(1, 58, 2, generator=g) - 0.5, mouth_mask=mask,
                        identity=torch.nn.functional.normalize(torch.randn(1, identity_dim, generator=g), dim=1))
    return x.to(device), torch.rand(1, 3, size, size, generator=g).to(device), mask.to(device)


def timed(fn, steps: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(CONFIG))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None, help="JSON result file (default benchmarks/results/bench_train.json).")
    args = ap.parse_args()
    device = torch.device(args.device)
    from bench_common import result_header, result_path, write_result

    header = result_header(device)
    cfg = load_config(args.config)
    size = cfg.resolution[0]
    G, D = build_generator(cfg).to(device).train(), build_discriminator(cfg).to(device).train()
    loss = MetaPortraitLoss(cfg.train.loss_weights, cfg.train.scales, VGG19Features().to(device),
                            disc_scales=D.spec.scales).to(device)
    x, driving, eye = inputs(size, cfg.model.generator.class_dim, device)
    opt_g, opt_d = torch.optim.Adam(G.parameters(), 1e-5), torch.optim.Adam(D.parameters(), 1e-5)

    def full_step():
        D.requires_grad_(False)
        out = G(x)
        losses = loss.warp(out["deformed"], driving)
        losses.update(loss.generator(out["prediction"], driving, eye, x.mouth_mask, D))
        opt_g.zero_grad()
        sum(losses.values()).backward()
        opt_g.step()
        D.requires_grad_(True)
        opt_d.zero_grad()
        sum(loss.discriminator(out["prediction"], driving, D).values()).backward()
        opt_d.step()

    def warp_part():
        G.zero_grad()
        G.forward_warp(x)["deformed"].mean().backward()

    with torch.no_grad():
        warp_out = {k: v.detach() for k, v in G.forward_warp(x).items()}

    def refine_part():
        G.zero_grad()
        G.forward_refine(x, warp_out).mean().backward()

    pred = torch.rand(1, 3, size, size, device=device, requires_grad=True)

    def vgg_part():
        losses = loss.warp(pred, driving)
        if "warp_perceptual" not in losses:
            return
        w = cfg.train.loss_weights
        total = losses["warp_perceptual"] + (loss.generator(pred, driving, None, None, None).get("perceptual", 0)
                                             if sum(w.perceptual) else 0)
        total.backward()

    def disc_part():
        D.requires_grad_(True)
        D.zero_grad()
        g = loss.generator(pred, driving, None, None, D)
        (g.get("gen_gan", 0) + g.get("feature_matching", 0)).backward()
        sum(loss.discriminator(pred, driving, D).values()).backward()

    step = timed(full_step, args.steps)
    parts = {"warp": timed(warp_part, args.steps), "refine": timed(refine_part, args.steps),
             "vgg": timed(vgg_part, args.steps), "discriminator": timed(disc_part, args.steps)}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    total = sum(parts.values())
    print(f"config {Path(args.config).name}, {size}x{size}, batch 1, device {device}, "
          f"threads {torch.get_num_threads()}")
    print(f"training step: {step:.2f} s -> {1 / step:.3f} samples/s; peak memory {peak:.0f} MB")
    for name, seconds in parts.items():
        print(f"  {name:>13}: {seconds:6.2f} s  ({100 * seconds / total:4.1f}% of the parts)")
    out = write_result(args.out or result_path(__file__),
                       {"config": Path(args.config).name, "resolution": size, "batch": 1, "steps": args.steps,
                        "step_seconds": step, "samples_per_s": 1 / step, "peak_rss_mib": peak,
                        "parts_seconds": parts}, header)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
