"""torchrun with 2 CPU processes (gloo): ranks stay identical and logged losses are rank means."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import make_tiny_dataset, require_module

pytestmark = pytest.mark.slow  # full-size or subprocess-heavy: left out of the fast subset (-m "not slow")

WORKER = Path(__file__).resolve().parent / "ddp_worker.py"


@pytest.mark.parametrize("stage", ["full"])
def test_two_rank_gloo_training(tmp_path, stage):
    root = make_tiny_dataset(tmp_path / "data", frames_per_identity=(4, 4))
    two_rank_run(root, tmp_path / "run", stage)


def test_two_rank_gloo_training_from_shards(tmp_path):
    """A shard set: each rank streams its own shard (one identity each here), in lock-step."""
    require_module("webdataset", "scale")
    from talkingface.recipes.preprocess import PackOptions, run_pack

    root = make_tiny_dataset(tmp_path / "data", frames_per_identity=(4, 4))
    run_pack(PackOptions(root=str(root), out=str(tmp_path / "shards"), shard_bytes=30_000))
    two_rank_run(tmp_path / "shards", tmp_path / "run", "warp")


def two_rank_run(root, out, stage):
    torchrun = shutil.which("torchrun")
    cmd = ([torchrun] if torchrun else [sys.executable, "-m", "torch.distributed.run"]) + [
        "--nproc_per_node=2", "--rdzv-backend=c10d", "--rdzv-endpoint=localhost:0",
        str(WORKER), str(root), str(out), stage]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for part in ("generator", "discriminator"):
        for key, value in r0[part].items():
            assert torch.equal(value, r1[part][key]), f"{part}.{key} differs between ranks"
    assert len(r0["history"]) == 2
    for step in range(2):
        for name, logged in r0["history"][step].items():
            mean = (r0["local"][step][name] + r1["local"][step][name]) / 2
            assert logged == pytest.approx(mean, rel=1e-6), name
        # Each rank saw different data, so their own losses differ.
        assert r0["local"][step] != r1["local"][step]
    assert list(out.glob("ckpt_*.pth.tar"))  # rank 0 wrote the checkpoint
