"""Run by torchrun in tests/test_ddp.py: a few DDP training steps, then dump this rank's results."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import TINY_CONFIG  # noqa: E402

from talkingface.recipes.train import TrainOptions, run_training  # noqa: E402


def main(data_root: str, out_dir: str, stage: str) -> None:
    warnings.simplefilter("ignore")
    rank = int(__import__("os").environ["RANK"])
    if stage == "meta":
        from talkingface.recipes.meta_train import MetaTrainOptions, run_meta_training

        result = run_meta_training(MetaTrainOptions(config=str(TINY_CONFIG), data_root=data_root, out_dir=out_dir,
                                                    random_vgg=True, max_steps=1, ckpt_every=1000))
        torch.save({"generator": result.generator.state_dict(), "discriminator": result.discriminator.state_dict(),
                    "history": result.history, "local": result.history}, Path(out_dir) / f"rank{rank}.pt")
        return
    result = run_training(TrainOptions(config=str(TINY_CONFIG), stage=stage, data_root=data_root, out_dir=out_dir,
                                       random_vgg=True, batch_size=4, max_steps=2, ckpt_every=1000))
    torch.save({"generator": result.generator.state_dict(), "discriminator": result.discriminator.state_dict(),
                "history": result.history, "local": result.local_history},
               Path(out_dir) / f"rank{rank}.pt")


if __name__ == "__main__":
    main(*sys.argv[1:4])
