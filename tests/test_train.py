"""Training recipe on the tiny config: stages, checkpoints, resume after kill -9, faults."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from talkingface.checkpoints.official import load_generator
from talkingface.config import load_config
from talkingface.errors import CheckpointError, DataError
from talkingface.losses.metaportrait import MetaPortraitLoss
from talkingface.recipes.train import TrainOptions, TrainingError, run_training

from helpers import TINY_CONFIG, make_tiny_dataset
from test_checkpoints import tiny_inputs


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("train") / "data", frames_per_identity=(4, 4))


def opts(data_root, out, **kw) -> TrainOptions:
    base = dict(config=str(TINY_CONFIG), data_root=str(data_root), out_dir=str(out), random_vgg=True,
                batch_size=2, max_steps=2, ckpt_every=1000)
    base.update(kw)
    return TrainOptions(**base)


def test_warp_then_full_stage_and_checkpoint_loads_for_inference(data_root, tmp_path):
    warp = run_training(opts(data_root, tmp_path / "warp", stage="warp"))
    assert warp.last_checkpoint.name == "ckpt_1_2.pth.tar"
    assert (tmp_path / "warp" / "config.yaml").is_file() and list((tmp_path / "warp" / "events").iterdir())
    full = run_training(opts(data_root, tmp_path / "full", stage="full", warp_ckpt=str(warp.last_checkpoint)))
    assert {"warp_perceptual", "perceptual", "mouth", "gen_gan", "feature_matching", "disc_gan"} <= set(full.history[0])
    # The trained file is an official-layout checkpoint; the inference loader reproduces the trained model.
    raw = torch.load(full.last_checkpoint, weights_only=True)
    assert {"generator", "discriminator", "optimizer_generator", "optimizer_discriminator", "epoch"} <= set(raw)
    assert "SPDAE_G.conv_img.weight" in raw["generator"]
    cfg = load_config(TINY_CONFIG)
    loaded = load_generator(full.last_checkpoint, cfg).model.eval()
    trained = full.generator.eval()
    x = tiny_inputs()
    with torch.inference_mode():
        assert torch.allclose(loaded(x)["prediction"], trained(x)["prediction"], atol=1e-6)


def test_full_stage_loads_only_warp_keys_from_warp_ckpt(data_root, tmp_path):
    warp = run_training(opts(data_root, tmp_path / "warp", stage="warp", max_steps=1))
    full = run_training(opts(data_root, tmp_path / "full", stage="full", warp_ckpt=str(warp.last_checkpoint),
                             max_steps=1, epochs=1))
    assert full.iterations == 1


@pytest.mark.slow
def test_loss_falls_on_a_tiny_overfit(tmp_path):
    root = make_tiny_dataset(tmp_path / "one", frames_per_identity=(2,))
    result = run_training(opts(root, tmp_path / "run", stage="full", max_steps=16, epochs=100))
    def generator_total(h):
        return sum(v for k, v in h.items() if k != "disc_gan")

    first = sum(generator_total(h) for h in result.history[:3]) / 3
    last = sum(generator_total(h) for h in result.history[-3:]) / 3
    print(f"generator loss: first 3 steps {first:.3f}, last 3 steps {last:.3f}")
    assert last < 0.7 * first


def test_missing_warp_ckpt_fails_before_training(data_root, tmp_path):
    with pytest.raises(CheckpointError, match="nope.pth"):
        run_training(opts(data_root, tmp_path / "x", stage="full", warp_ckpt=str(tmp_path / "nope.pth")))
    assert not list((tmp_path).glob("x/ckpt_*"))


def test_missing_vgg_weights_says_where_to_put_them(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("TALKINGFACE_VGG19", raising=False)
    with pytest.raises(CheckpointError, match="vgg19-dcbb9e9d.pth"):
        run_training(opts(data_root, tmp_path / "x", stage="warp", random_vgg=False))


def test_corrupt_frame_is_an_error_or_skipped(tmp_path):
    root = make_tiny_dataset(tmp_path / "d", frames_per_identity=(4,))
    (root / "0" / "imgs" / "00000001.png").write_bytes(b"broken")
    with pytest.raises(DataError, match="00000001.png"):
        run_training(opts(root, tmp_path / "a", stage="warp", batch_size=4, max_steps=1))
    with pytest.warns(UserWarning, match="00000001.png"):
        result = run_training(opts(root, tmp_path / "b", stage="warp", batch_size=4, max_steps=1, skip_bad=True))
    assert result.iterations == 1


def test_nan_losses_are_skipped_then_stop(data_root, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_warp = MetaPortraitLoss.warp

    def flaky(self, deformed, driving):
        calls["n"] += 1
        out = real_warp(self, deformed, driving)
        return out if calls["n"] <= 2 else {k: v * float("nan") for k, v in out.items()}

    monkeypatch.setattr(MetaPortraitLoss, "warp", flaky)
    with pytest.raises(TrainingError, match="ckpt_1_2.pth.tar"):
        run_training(opts(data_root, tmp_path / "r", stage="warp", max_steps=50, epochs=50, ckpt_every=2,
                          max_bad_steps=3))
    ckpt = torch.load(tmp_path / "r" / "ckpt_1_2.pth.tar", weights_only=True)  # the last good one is intact
    assert ckpt["resume"]["iteration"] == 2


def _train_cmd(data_root, out, *extra):
    return [sys.executable, "-m", "talkingface", "train", "--config", str(TINY_CONFIG), "--stage", "warp",
            "--data", str(data_root), "--out", str(out), "--random-vgg", "--batch-size", "2", "--epochs", "3",
            "--ckpt-every", "2", *extra]


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted_run(data_root, tmp_path):
    """kill -9 after a checkpoint; resuming loses nothing before it and ends on the same weights."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    ref = subprocess.run(_train_cmd(data_root, tmp_path / "ref", "--max-steps", "6"), env=env,
                         capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-2000:]

    out = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(data_root, out, "--max-steps", "6"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "ckpt_1_2.pth.tar").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "ckpt_1_2.pth.tar").exists()
    for ckpt in out.glob("ckpt_*.pth.tar"):  # whatever was written is complete
        torch.load(ckpt, weights_only=True)

    resumed = subprocess.run(_train_cmd(data_root, out, "--max-steps", "6", "--resume", "auto"), env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming from" in resumed.stdout
    a = torch.load(tmp_path / "ref" / "ckpt_2_6.pth.tar", weights_only=True)
    b = torch.load(out / "ckpt_2_6.pth.tar", weights_only=True)
    for key, value in a["generator"].items():
        assert torch.allclose(value, b["generator"][key], atol=1e-6), key
    assert a["resume"]["iteration"] == b["resume"]["iteration"] == 6


class TinyRecogniser(torch.nn.Module):
    input_size: int = 16

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 16, 4, stride=4)

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3))


@pytest.mark.parametrize("kind", ["torch.export", "torchscript"])
def test_identity_loss_runs_when_a_network_is_configured(data_root, tmp_path, kind):
    if kind == "torch.export":
        net = tmp_path / "recogniser.pt2"
        batch = torch.export.Dim("batch", min=1)
        program = torch.export.export(TinyRecogniser(), (torch.rand(2, 3, 64, 64),), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(net))
    else:
        net = tmp_path / "recogniser.pt"
        torch.jit.script(TinyRecogniser()).save(str(net))
    cfg_text = TINY_CONFIG.read_text().replace("    eye_enhance: 50", "    id: 20\n    eye_enhance: 50")
    cfg_text = cfg_text.replace("  ckpt_save_iter_freq: 10", f"  id_network: {net}\n  ckpt_save_iter_freq: 10")
    cfg = tmp_path / "tiny_id.yaml"
    cfg.write_text(cfg_text)
    result = run_training(opts(data_root, tmp_path / "run", stage="full", config=str(cfg), max_steps=1))
    assert math.isfinite(result.history[0]["id"]) and result.history[0]["id"] > 0  # the term was computed and logged


def test_validation_uses_the_evaluation_metrics(data_root, tmp_path):
    val = make_tiny_dataset(tmp_path / "val", frames_per_identity=(3,), seed=5)
    result = run_training(opts(data_root, tmp_path / "v", stage="full", max_steps=2, val_data=str(val)))
    assert set(result.validation) == {"psnr", "ssim", "l1"}
    assert 0 < result.validation["psnr"] < 100 and -1 <= result.validation["ssim"] <= 1


def test_identity_network_files(tmp_path):
    """The recogniser's input size comes from the archive's traced shape; broken files are one-line errors."""
    from talkingface.errors import CheckpointError
    from talkingface.losses.identity import IdentityLoss

    net = tmp_path / "r.pt2"
    program = torch.export.export(TinyRecogniser(), (torch.rand(2, 3, 96, 96),),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    torch.export.save(program, str(net))
    loss = IdentityLoss(net, 20.0)
    assert loss.size == 96 and not any(p.requires_grad for p in loss.net.parameters())
    theta = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(3, 2, 3)  # batch 3: not the traced 2
    image = torch.rand(3, 3, 64, 64, requires_grad=True)
    embedding = torch.rand(3, 16)
    value = loss(image, theta, embedding)
    value.backward()
    # a real loss: positive, it reaches the image through the resize to the traced 96 px, and it depends on
    # which identity embedding the image is compared with
    assert float(value) > 0 and image.grad is not None and float(image.grad.abs().sum()) > 0
    assert abs(float(loss(image.detach(), theta, -embedding)) - float(value)) > 1e-4
    for name, content in [("bad.pt2", b"not an archive"), ("bad.pt", b"not torchscript")]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match="identity network"):
            IdentityLoss(tmp_path / name, 20.0)
