"""Sizes the docs quote: each bundled model's generator parameters and file size, and how
much `talkingface export` saves on a training checkpoint of the default model's config.

    python benchmarks/model_facts.py [--out FILE]

The export ratio is measured on a training checkpoint written the way `train` writes
one (generator, discriminator, both Adam optimisers with their moment buffers) for the
128 px bundled config, with fixed random weights: sizes depend on shapes, not values.
Result: benchmarks/results/model_facts.json. Takes a few seconds.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import REPO, result_header, result_path, write_result  # noqa: E402

MODELS = REPO / "talkingface" / "assets" / "models"


def bundled_models() -> dict[str, dict[str, object]]:
    from talkingface.checkpoints.official import config_for_checkpoint, load_generator

    facts = {}
    for path in sorted(MODELS.glob("*.pth.tar")):
        cfg = config_for_checkpoint(str(path), None)
        model = load_generator(path, cfg).model
        facts[path.name] = {"generator_parameters": sum(p.numel() for p in model.parameters()),
                            "bytes": path.stat().st_size, "mib": path.stat().st_size / 2 ** 20,
                            "resolution": list(cfg.resolution)}
    return facts


def _adam_state(module: torch.nn.Module) -> dict:
    """An Adam optimiser's state after one step (both moment buffers per parameter)."""
    opt = torch.optim.Adam(module.parameters(), lr=1e-4)
    for p in module.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    return opt.state_dict()


def export_ratio(config: Path) -> dict[str, object]:
    from talkingface.checkpoints.official import save_checkpoint
    from talkingface.config import load_config
    from talkingface.models.build import build_discriminator, build_generator
    from talkingface.recipes.export import export_generator

    cfg = load_config(config)
    torch.manual_seed(0)
    generator, discriminator = build_generator(cfg), build_discriminator(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        training, snapshot = Path(tmp) / "training.pth.tar", Path(tmp) / "snapshot.pth.tar"
        save_checkpoint(training, cfg, generator, discriminator, epoch=1,
                        optimizer_generator=_adam_state(generator), optimizer_discriminator=_adam_state(discriminator))
        export_generator(str(training), str(snapshot))
        sizes = {"training_bytes": training.stat().st_size, "snapshot_bytes": snapshot.stat().st_size}
    return {"config": str(config.relative_to(REPO)), **sizes,
            "snapshot_share": sizes["snapshot_bytes"] / sizes["training_bytes"]}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="model_facts", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/model_facts.json)")
    args = p.parse_args(argv)
    header = result_header()
    models = bundled_models()
    for name, f in models.items():
        print(f"{name}: {f['generator_parameters'] / 1e6:.2f} M generator parameters, {f['mib']:.1f} MiB")
    export = export_ratio(REPO / "talkingface" / "properties" / "model" / "bundled" / "mediapipe478_128_bundled.yaml")
    print(f"export: training checkpoint {export['training_bytes'] / 2 ** 20:.1f} MiB -> snapshot "
          f"{export['snapshot_bytes'] / 2 ** 20:.1f} MiB ({export['snapshot_share']:.2f} of it)")
    out = write_result(args.out or result_path(__file__), {"bundled_models": models, "export": export}, header)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
