"""Reptile meta-training, the meta dataset, and personalisation (tiny config)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from talkingface.checkpoints.official import load_generator
from talkingface.config import load_config
from talkingface.data.meta import MetaTaskDataset, TaskSpec
from talkingface.data.official import OfficialDataset
from talkingface.landmarks.scheme import get_scheme
from talkingface.recipes.personalize import PersonalizeOptions, config_for_checkpoint, run_personalize
from talkingface.seed_cli import main as seed_main

from helpers import REPO, TINY_CONFIG, make_tiny_checkpoint, make_tiny_dataset
from test_checkpoints import tiny_inputs

WORKER = Path(__file__).resolve().parent / "ddp_worker.py"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("meta") / "data", frames_per_identity=(5, 4, 3))


def test_meta_tasks_are_one_identity_and_deterministic(data_root):
    frames = OfficialDataset(data_root, get_scheme("dense669"), 64, 16)
    tasks = MetaTaskDataset(frames, TaskSpec(num_support=3, num_target=2, seed=7))
    assert len(tasks) == 12
    (support, target), = tasks[5]
    assert support["driving"].shape == (3, 3, 64, 64) and target["driving"].shape == (2, 3, 64, 64)
    assert len(set(support["identity_index"].tolist() + target["identity_index"].tolist())) == 1
    # The source is one of the identity's own frames, shared by the whole task.
    assert torch.equal(support["source"][0], support["source"][-1]) and torch.equal(support["source"][0], target["source"][0])
    (again, _), = tasks[5]
    assert torch.equal(again["driving"], support["driving"])
    others = [tasks[i][0][0]["index"].tolist() for i in range(12)]
    assert len({tuple(o) for o in others}) > 1  # different items draw different frames


@pytest.mark.slow
def test_seed_meta_command_writes_a_loadable_checkpoint(data_root, tmp_path, monkeypatch):
    start = make_tiny_checkpoint(tmp_path / "saved" / "ckpt_full.pth.tar")
    monkeypatch.chdir(tmp_path)
    code = seed_main(["--model==metaportraitbasetrain", "--config", str(TINY_CONFIG), "--fp16", "--stage", "Full",
                      "--task", "Meta", "--remove_sn", "--ckpt", str(start), "--data", str(data_root),
                      "--random-vgg", "--max-steps", "2"])
    assert code == 0
    ckpts = list((tmp_path / "saved" / "ckpt_meta_train" / "meta_portrait_tiny").glob("ckpt_*.pth.tar"))
    assert len(ckpts) == 1
    raw = torch.load(ckpts[0], weights_only=True)
    assert not any(k.endswith("weight_u") for k in raw["generator"])  # --remove_sn
    model = load_generator(ckpts[0], load_config(TINY_CONFIG)).model.eval()
    with torch.inference_mode():
        assert torch.isfinite(model(tiny_inputs())["prediction"]).all()
    # Reptile moved the weights away from the start.
    before = torch.load(start, weights_only=True)["generator"]
    assert not torch.equal(before["fuse_high_res.weight"], raw["generator"]["fuse_high_res.weight"])


def test_remove_sn_keeps_outputs(tmp_path):
    from talkingface.models.layers import fold_spectral_norm

    path = make_tiny_checkpoint(tmp_path / "c.pth.tar")
    cfg = load_config(TINY_CONFIG)
    model = load_generator(path, cfg).model.eval()
    x = tiny_inputs()
    with torch.inference_mode():
        want = model(x)["prediction"]
        got = fold_spectral_norm(model)(x)["prediction"]
    assert torch.allclose(want, got, atol=1e-6)


@pytest.mark.slow
def test_two_rank_meta_step_keeps_ranks_identical(data_root, tmp_path):
    out = tmp_path / "run"
    torchrun = shutil.which("torchrun")
    cmd = ([torchrun] if torchrun else [sys.executable, "-m", "torch.distributed.run"]) + [
        "--nproc_per_node=2", "--rdzv-backend=c10d", "--rdzv-endpoint=localhost:0", str(WORKER), str(data_root),
        str(out), "meta"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for part in ("generator", "discriminator"):
        for key, value in r0[part].items():
            assert torch.equal(value, r1[part][key]), f"{part}.{key}"


@pytest.mark.slow
def test_personalize_improves_heldout_psnr_on_unseen_identity(tmp_path, capsys):
    """The bundled 64 px model (pretrained on other people) adapts to a person it never saw:
    held-out frames of that person's clip gain several dB in 25 steps."""
    from talkingface.recipes.animate import BUNDLED_64_MODEL
    from talkingface.recipes.synth import SynthOptions, run_synth

    person = run_synth(SynthOptions(portraits=[str(REPO / "tests" / "data" / "faces" / "biden.jpg")],
                                    out=str(tmp_path / "person"), frames=16, seed=123, size=64, identity="dlib"))
    result = run_personalize(PersonalizeOptions(ckpt=str(BUNDLED_64_MODEL), data=str(person.root),
                                                out=str(tmp_path / "p.pth.tar"), steps=25, holdout=4,
                                                random_vgg=True, batch_size=4, lr=3e-4))
    print(f"held-out PSNR {result.psnr_before:.2f} -> {result.psnr_after:.2f} dB")
    assert result.psnr_after >= result.psnr_before + 5.0  # measured 21.02 -> 28.31 dB (+7.3)
    assert result.curve_csv.read_text().count("\n") == 26 and result.curve_png.stat().st_size > 1000
    progress = capsys.readouterr().err  # the step bar (the web app shows it as well)
    assert "personalize: 100%" in progress and "25/25" in progress
    load_generator(result.checkpoint, config_for_checkpoint(str(result.checkpoint), None))  # usable by infer


@pytest.mark.slow  # fp16 is emulated on a CPU: 5-10 s for each tiny step
@pytest.mark.parametrize("dtype, scaled", [(torch.float16, True), (torch.bfloat16, False)])
def test_the_inner_loop_scales_the_loss_in_fp16_only(data_root, monkeypatch, dtype, scaled):
    """Reptile's inner loop and personalize (`adapt`) in fp16 (`--fp16` on CUDA) scale the loss so
    small gradients do not underflow, as `train` does; bf16 and fp32 need no scaler. Run on the CPU
    with the autocast dtype set directly (the CLI would fall back to fp32 here)."""
    from dataclasses import replace

    from talkingface.models.build import build_generator
    from talkingface.recipes.personalize import fine_tuning, training_batches
    from talkingface.training.adaptation import adapt

    made = []

    class SpyScaler(torch.amp.GradScaler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(torch.amp, "GradScaler", SpyScaler)
    cfg = load_config(TINY_CONFIG)
    t = cfg.train  # no perceptual term: VGG19 in emulated fp16 would take most of a minute here
    cfg = replace(cfg, train=replace(t, loss_weights=replace(t.loss_weights, perceptual=[0.0] * len(
        t.loss_weights.perceptual))))
    torch.manual_seed(0)
    generator = build_generator(cfg)
    before = [p.detach().clone() for p in generator.parameters()]
    device = torch.device("cpu")
    criterion, settings = fine_tuning(cfg, PersonalizeOptions(ckpt="-", data="-"), device)
    dataset = OfficialDataset(data_root, get_scheme(cfg.model.landmark_scheme), cfg.resolution[0],
                              cfg.model.generator.class_dim, subset=cfg.dataset.ldmk_idx)
    history = adapt(generator, criterion, training_batches(dataset, list(range(len(dataset))), 1, 0), device,
                    replace(settings, autocast_dtype=dtype), steps=1)
    assert len(history) == 1 and all(torch.isfinite(torch.tensor(list(h.values()))).all() for h in history)
    assert made[0].is_enabled() is scaled  # the generator's scaler (no discriminator here: its scaler is off)
    if scaled:  # this random model overflows fp16 at 2^8 (measured: activation gradients up to 1.8e5 > 65504)
        assert made[0].get_scale() < 2 ** 8  # the scale backed off and the step was still taken
    # the step was taken: the starting scale does not overflow (a skipped step would leave the weights as they were)
    assert any(not torch.equal(a, b) for a, b in zip(before, generator.parameters()))
