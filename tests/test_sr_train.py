"""Temporal SR training recipe: make-sr-data, the clip dataset, the losses, training, resume, the seed entry.

Everything runs the tiny config (16 -> 32) on synthetic official-layout data with an
untrained VGG19 (--random-vgg), so it needs no downloads and stays fast on a CPU.
"""
from __future__ import annotations

import argparse
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from talkingface.checkpoints.sr import is_temporal_key, load_temporal_sr, save_temporal_sr
from talkingface.config.sr import PixelLossConfig, SchedulerConfig, load_sr_config, parse_sr_config
from talkingface.data.sr_clips import SRClipDataset, scan_sr_clips
from talkingface.errors import ConfigError, DataError, TalkingFaceError
from talkingface.losses.sr import SRLoss, gram_matrix
from talkingface.losses.vgg import VGG19Features
from talkingface.models.temporal_sr import TemporalSRNet
from talkingface.recipes.enhance import EnhanceOptions, run_enhance
from talkingface.recipes.make_sr_data import MakeSRDataOptions, run_make_sr_data
from talkingface.recipes.train_sr import SRTrainOptions, run_sr_training
from talkingface.seed_cli import run_seed_sr
from talkingface.training.sr_setup import build_networks, scheduled_lr

from conftest import CONFIG_DIR
from helpers import TINY_CONFIG, make_tiny_checkpoint, make_tiny_dataset

SR_CONFIG_DIR = CONFIG_DIR.parent / "temporal_sr"  # the SR YAMLs have their own folder
TINY_SR = SR_CONFIG_DIR / "temporal_sr_tiny.yaml"


def sr_config(tmp_path: Path, name: str = "sr.yaml", **changes) -> Path:
    """The tiny SR config with dotted-key changes, e.g. `**{"logger.use_tb_logger": False}`."""
    data = yaml.safe_load(TINY_SR.read_text())
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def sr_data(tmp_path_factory):
    """(source dataset at 32, its degraded SR pairs 16 -> 32): clips of 6 and 5 frames."""
    tmp = tmp_path_factory.mktemp("srdata")
    source = make_tiny_dataset(tmp / "source", frames_per_identity=(6, 5), size=32)
    out = tmp / "sr"
    result = run_make_sr_data(MakeSRDataOptions(data=str(source), out=str(out), seed=3))
    assert (result.mode, result.pairs, result.written, result.lq_size, result.gt_size) == ("degrade", 11, 11, 16, 32)
    return source, out


def quiet_options(config: Path, data: Path, out: Path, **kw) -> SRTrainOptions:
    return SRTrainOptions(config=str(config), data_root=str(data), out_dir=str(out), random_vgg=True, device="cpu",
                          **kw)


# --------------------------------------------------------------------------- make-sr-data
def test_degraded_pairs_match_and_rerun_resumes(sr_data, tmp_path):
    source, out = sr_data
    for k, count in ((0, 6), (1, 5)):
        lq = sorted(p.name for p in (out / str(k) / "lq").iterdir())
        gt = sorted(p.name for p in (out / str(k) / "gt").iterdir())
        assert lq == gt == [f"{i:08d}.png" for i in range(count)]
        assert Image.open(out / str(k) / "lq" / lq[0]).size == (16, 16)
        # GT is the dataset's own frame, byte for byte
        assert (out / str(k) / "gt" / gt[-1]).read_bytes() == (source / str(k) / "imgs" / gt[-1]).read_bytes()
    manifest = json.loads((out / "sr_data.json").read_text())
    assert manifest["mode"] == "degrade" and manifest["pairs"] == 11
    before = (out / "1" / "lq" / "00000002.png").read_bytes()
    (out / "1" / "lq" / "00000002.png").unlink()
    again = run_make_sr_data(MakeSRDataOptions(data=str(source), out=str(out), seed=3))
    assert again.written == 1 and (out / "1" / "lq" / "00000002.png").read_bytes() == before  # seeded per frame
    other = run_make_sr_data(MakeSRDataOptions(data=str(source), out=str(tmp_path / "s4"), seed=4))
    assert other.written == 11 and (tmp_path / "s4" / "1" / "lq" / "00000002.png").read_bytes() != before


def test_base_model_pairs(tmp_path):
    """LQ = the tiny (64 px) base model's self-reconstruction of the 128 px frames."""
    source = make_tiny_dataset(tmp_path / "source", frames_per_identity=(2, 1), size=128)
    ckpt = make_tiny_checkpoint(tmp_path / "base.pth.tar")
    out = tmp_path / "sr"
    result = run_make_sr_data(MakeSRDataOptions(data=str(source), out=str(out), ckpt=str(ckpt),
                                                config=str(TINY_CONFIG), device="cpu", batch_size=2))
    assert (result.mode, result.pairs, result.lq_size, result.gt_size) == ("base-model", 3, 64, 128)
    clips = scan_sr_clips(out, out, gt_side=128)
    assert [(c.name, len(c)) for c in clips] == [("0", 2), ("1", 1)]
    lq = clips[0].read_lq(0)
    gt_small = np.asarray(Image.open(source / "0" / "imgs" / "00000000.png").resize((64, 64), Image.BICUBIC))
    assert lq.shape == (64, 64, 3) and not np.array_equal(lq, gt_small)  # a rendering, not a resize

    with pytest.raises(DataError, match="twice the base model"):  # 64 px frames for a 64 px base model
        run_make_sr_data(MakeSRDataOptions(data=str(make_tiny_dataset(tmp_path / "small", (1,), size=64)),
                                           out=str(tmp_path / "x"), ckpt=str(ckpt), config=str(TINY_CONFIG)))
    with pytest.raises(TalkingFaceError, match="not both"):
        run_make_sr_data(MakeSRDataOptions(data=str(source), out=str(tmp_path / "y"), ckpt=str(ckpt),
                                           config=str(TINY_CONFIG), degrade=True))
    with pytest.raises(DataError, match="dataset folder not found"):
        run_make_sr_data(MakeSRDataOptions(data=str(tmp_path / "nope"), out=str(tmp_path / "z")))


# --------------------------------------------------------------------------- dataset
def _write_clip(root: Path, name: str, frames: int, side: int = 8, seed: int = 0) -> None:
    """GT at 2*side; LQ = the exact 2x2 mean of GT (so the pairing can be checked)."""
    rng = np.random.default_rng(seed)
    for i in range(frames):
        gt = (rng.integers(0, 64, (2 * side, 2 * side, 3)) * 4).astype(np.uint8)
        lq = gt.reshape(side, 2, side, 2, 3).astype(np.float64).mean((1, 3)).astype(np.uint8)
        for kind, px in (("gt", gt), ("lq", lq)):
            (root / name / kind).mkdir(parents=True, exist_ok=True)
            Image.fromarray(px).save(root / name / kind / f"{i:08d}.png")


def test_clip_items_flip_lq_and_gt_together(tmp_path):
    _write_clip(tmp_path, "a", 5)
    _write_clip(tmp_path, "b", 2, seed=1)  # shorter than a training clip: left out
    with pytest.warns(UserWarning, match="fewer than the 3"):
        ds = SRClipDataset(scan_sr_clips(tmp_path, tmp_path, gt_side=16), num_frame=3, use_hflip=True, repeats=2)
    assert [c.name for c in ds.clips] == ["a"] and len(ds) == 10
    plain = torch.stack([torch.from_numpy(np.array(Image.open(tmp_path / "a" / "lq" / f"{i:08d}.png")))
                         for i in range(5)]).permute(0, 3, 1, 2).float() / 255
    flips = set()
    for index in range(10):
        item = ds[index]
        assert item["lq"].shape == (3, 3, 8, 8) and item["gt"].shape == (3, 3, 16, 16)
        frames = item["frames"].tolist()
        assert frames == list(range(frames[0], frames[0] + 3)) and frames[-1] <= 4  # slid back at the end
        pooled = torch.nn.functional.avg_pool2d(item["gt"], 2)
        assert (pooled - item["lq"]).abs().max() < 1.5 / 255  # LQ and GT still pair up, pixel for pixel
        flipped = not torch.allclose(item["lq"], plain[frames], atol=1e-6)
        if flipped:
            assert torch.allclose(item["lq"], plain[frames].flip(-1), atol=1e-6)
        flips.add(flipped)
    assert flips == {True, False}


def test_dataset_errors_name_the_file(tmp_path):
    _write_clip(tmp_path, "a", 3)
    (tmp_path / "a" / "lq" / "00000001.png").unlink()
    with pytest.raises(DataError, match="no LQ partner") as e:
        scan_sr_clips(tmp_path, tmp_path)
    assert e.value.path.endswith("a/lq/00000001.png")
    _write_clip(tmp_path, "a", 3)
    Image.new("RGB", (9, 9)).save(tmp_path / "a" / "lq" / "00000000.png")
    with pytest.raises(DataError, match="expected 18x18") as e:
        scan_sr_clips(tmp_path, tmp_path)
    assert e.value.path.endswith("a/gt/00000000.png")
    _write_clip(tmp_path, "a", 3)
    with pytest.raises(DataError, match="network makes 32x32"):
        scan_sr_clips(tmp_path, tmp_path, gt_side=32)
    Image.new("RGB", (12, 12)).save(tmp_path / "a" / "gt" / "00000002.png")  # a bad frame mid-clip: found on read
    clip = scan_sr_clips(tmp_path, tmp_path)[0]
    with pytest.raises(DataError, match="this clip's frames are 16x16") as e:
        clip.read_gt(2)
    assert e.value.path.endswith("a/gt/00000002.png")
    with pytest.raises(DataError, match="no clip folders"):
        scan_sr_clips(tmp_path / "a" / "gt", tmp_path / "a" / "gt")


# --------------------------------------------------------------------------- config, losses, schedule
def test_configs_parse_and_errors_name_keys(tmp_path):
    official = load_sr_config(SR_CONFIG_DIR / "temporal_sr_512.yaml")
    assert official.network_g.out_size == 512 and official.gfpgan_init == "pretrained_ckpt/GFPGANv1.3.pth"
    p = official.train.perceptual_opt
    assert (official.train.pixel_opt.loss_weight, p.style_weight, p.layer_weights.conv1_2, p.layer_weights.conv5_4,
            p.layer_weights.relu5_4) == (0.1, 50, 0.1, 1, 0)
    assert (official.train.optim_g.lr, official.train.optim_g.betas, official.train.ema_decay) == (1e-4, [0.9, 0.99],
                                                                                                  0.999)
    assert parse_sr_config(yaml.safe_load(yaml.safe_dump(official.to_dict()))) == official
    # the reference's own spellings: num_gpu auto, metrics None, frame-folder globs, !!float frequencies
    ref = parse_sr_config(yaml.safe_load("""
num_gpu: auto
datasets: {val: {dataroot_lq: d, dataroot_gt: d, lq_temp: "*/final", gt_temp: "*/final", clean_hdtf_folder: false}}
network_g: {type: GFPGANv1Clean_UnetWindow, GFPGANv1_load_path: g.pth, out_size: 512, randomize_noise: zero}
path: {pretrain_network_g: t.pth, strict_load_g: true}
val: {val_freq: !!float 5e2, temp_psz: 16, metrics: None}
dist_params: {backend: nccl, port: 29500}
"""))
    assert ref.datasets.val.prefixes("v") == ("final", "final") and ref.val.metrics == {} and ref.val.val_freq == 500
    with pytest.raises(ConfigError, match=r"train\.perceptual_opt\.layer_weights\.conv6_1"):
        parse_sr_config({"train": {"perceptual_opt": {"layer_weights": {"conv6_1": 1}}}})
    with pytest.raises(ConfigError, match=r"datasets\.train\.gt_size 256 must equal network_g\.out_size 512"):
        parse_sr_config({"datasets": {"train": {"gt_size": 256}}})
    with pytest.raises(ConfigError, match=r"unknown temporal SR option.*narrowness"):
        parse_sr_config({"network_g": {"narrowness": 1}})
    with pytest.raises(ConfigError, match=r"val\.metrics\.fid\.type"):
        parse_sr_config({"val": {"metrics": {"fid": {"type": "calculate_fid"}}}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  total_iters: 5\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*train\.total_iters"):
        load_sr_config(bad)


def test_losses_and_schedule():
    torch.manual_seed(0)
    pred, gt = torch.rand(2, 3, 3, 32, 32), torch.rand(2, 3, 3, 32, 32)
    l1 = SRLoss(PixelLossConfig(), None, None)(pred, gt)
    assert list(l1) == ["l_pix"] and float(l1["l_pix"]) == pytest.approx(0.1 * float((pred - gt).abs().mean()))
    f = torch.randn(2, 4, 3, 5)
    assert torch.allclose(gram_matrix(f), torch.einsum("nchw,ndhw->ncd", f, f) / (4 * 15))
    vgg = VGG19Features()
    cfg = load_sr_config(TINY_SR).train
    losses = SRLoss(cfg.pixel_opt, cfg.perceptual_opt, vgg)(pred, gt)
    assert set(losses) == {"l_pix", "l_percep", "l_style"}
    # the perceptual term by hand: range_norm, ImageNet norm, pre-ReLU conv outputs, L1, the layer weights
    x, y = (pred.flatten(0, 1) + 1) / 2, (gt.flatten(0, 1) + 1) / 2
    names = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1, "conv4_4": 1, "conv5_4": 1}
    fx, fy = vgg.named_features(x, list(names)), vgg.named_features(y, list(names))
    assert (fx["conv1_2"] < 0).any()  # before the ReLU
    by_hand = sum(w * (fx[k] - fy[k]).abs().mean() for k, w in names.items())
    assert float(losses["l_percep"]) == pytest.approx(float(by_hand), rel=1e-5)
    taps = vgg(x)
    assert torch.equal(vgg.named_features(x, ["relu2_1"])["relu2_1"], taps[1])  # forward() unchanged
    s = SchedulerConfig(periods=[100], restart_weights=[1], eta_min=1e-7)
    assert scheduled_lr(0, 1e-4, s) == pytest.approx(1e-4) and scheduled_lr(100, 1e-4, s) == pytest.approx(1e-7)
    assert scheduled_lr(50, 1e-4, s) == pytest.approx((1e-4 + 1e-7) / 2)
    assert scheduled_lr(5, 1e-4, s, warmup_iter=10) == pytest.approx(0.5e-4)


# --------------------------------------------------------------------------- training
def _gfpgan_style_file(path: Path, cfg_path: Path) -> dict[str, torch.Tensor]:
    """A GFPGANv1.3-like file for the tiny architecture: every key but the temporal blocks."""
    torch.manual_seed(7)
    sd = {k: v for k, v in TemporalSRNet(load_sr_config(cfg_path).network_g).state_dict().items()
          if not is_temporal_key(k)}
    torch.save({"params_ema": sd}, path)
    return sd


def test_training_lowers_the_loss_and_enhance_loads_the_checkpoint(sr_data, tmp_path):
    _, data = sr_data
    cfg = sr_config(tmp_path, **{"logger.use_tb_logger": True, "logger.save_checkpoint_freq": 3})
    init = _gfpgan_style_file(tmp_path / "GFPGANv1.3.pth", cfg)
    result = run_sr_training(quiet_options(cfg, data, tmp_path / "run", max_steps=5, val_root=str(data),
                                           val_every=5, init_ckpt=str(tmp_path / "GFPGANv1.3.pth")))
    totals = [sum(h.values()) for h in result.history]
    assert len(totals) == 5 and all(math.isfinite(v) for v in totals)
    assert np.mean(totals[-2:]) < np.mean(totals[:2]), totals
    assert [p.name for p in sorted((tmp_path / "run").glob("net_g_*.pth"))] == ["net_g_3.pth", "net_g_5.pth"]
    assert result.last_checkpoint == tmp_path / "run" / "net_g_5.pth"
    assert list((tmp_path / "run" / "events").iterdir()) and (tmp_path / "run" / "config.yaml").is_file()
    assert result.validations and set(result.validations[0]) == {"iteration", "psnr", "ssim", "temp_warp"}

    ckpt = torch.load(result.last_checkpoint, map_location="cpu", weights_only=True)
    assert {"params", "params_ema", "resume"} <= set(ckpt) and ckpt["resume"]["iteration"] == 5
    raw, ema = ckpt["params"], ckpt["params_ema"]
    for key, value in init.items():
        if key.startswith("stylegan_decoder.") or key.startswith("toRGB."):
            assert torch.equal(raw[key], value) and torch.equal(ema[key], value), key  # frozen
    moved = [k for k in init if k.startswith("conv_body_first.")]
    assert all(not torch.equal(raw[k], init[k]) for k in moved)  # trained
    assert all(0 < (ema[k] - init[k]).abs().max() < (raw[k] - init[k]).abs().max() for k in moved)  # EMA lags
    assert any(not torch.equal(raw[k], torch.zeros_like(raw[k])) for k in raw if k.startswith("window_down.0.conv2"))

    frames = tmp_path / "enhanced"
    run_enhance(EnhanceOptions(input=str(data / "0" / "lq"), ckpt=str(result.last_checkpoint), out=str(frames),
                               device="cpu"))
    outputs = sorted(frames.iterdir())
    assert len(outputs) == 6 and Image.open(outputs[0]).size == (32, 32)
    assert load_temporal_sr(result.last_checkpoint, which="params").cfg.out_size == 32


def test_starting_checkpoint_gives_raw_and_ema_weights(tmp_path):
    cfg = load_sr_config(TINY_SR)
    torch.manual_seed(1)
    raw, ema = TemporalSRNet(cfg.network_g), TemporalSRNet(cfg.network_g)
    save_temporal_sr(tmp_path / "start.pth", params=raw, params_ema=ema)
    model, model_ema, origin = build_networks(cfg, str(tmp_path / "start.pth"), main=False)
    assert "temporal SR weights" in origin
    for key, value in raw.state_dict().items():
        assert torch.equal(model.state_dict()[key], value) and torch.equal(model_ema.state_dict()[key],
                                                                             ema.state_dict()[key])


def test_resume_continues_exactly(sr_data, tmp_path):
    """2 iterations in one run == 1, then (through the seed entry) 1 more resumed from the checkpoint."""
    _, data = sr_data
    cfg = sr_config(tmp_path, **{"logger.use_tb_logger": False, "logger.save_checkpoint_freq": 100})
    run_sr_training(quiet_options(cfg, data, tmp_path / "whole", max_steps=2, no_val=True))
    first = run_sr_training(quiet_options(cfg, data, tmp_path / "split", max_steps=1, no_val=True))
    assert first.last_checkpoint.name == "net_g_1.pth"
    seed_args = argparse.Namespace(model="metaportraitsr", task="Train", config=str(cfg), ckpt=None,
                                   out_dir=str(tmp_path / "split"), resume="auto", data_root=str(data), device="cpu",
                                   mixed_precision=False, max_steps=2, ckpt_every=None, log_every=None,
                                   image_every=None, vgg19=None, random_vgg=True, num_workers=None, warp_ckpt=None,
                                   epochs=None)
    run_seed_sr(seed_args)
    a = torch.load(tmp_path / "whole" / "net_g_2.pth", weights_only=True)
    b = torch.load(tmp_path / "split" / "net_g_2.pth", weights_only=True)
    for part in ("params", "params_ema"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key}"
    assert a["resume"]["iteration"] == b["resume"]["iteration"] == 2
    sa, sb = a["resume"]["optimizer"]["state"], b["resume"]["optimizer"]["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    with pytest.raises(TalkingFaceError, match="--epochs does not apply"):
        run_seed_sr(argparse.Namespace(**{**vars(seed_args), "epochs": 3}))


def test_seed_test_task_enhances_and_scores(sr_data, tmp_path):
    _, data = sr_data
    torch.manual_seed(0)
    net = TemporalSRNet(load_sr_config(TINY_SR).network_g)
    save_temporal_sr(tmp_path / "sr.pth", params_ema=net)
    cfg = sr_config(tmp_path, **{"datasets.val.dataroot_lq": str(data), "datasets.val.dataroot_gt": str(data)})
    run_seed_sr(argparse.Namespace(model="metaportraitsr", task="Test", config=str(cfg), ckpt=str(tmp_path / "sr.pth"),
                                   save_dir=str(tmp_path / "out"), data_root=None, device="cpu", batch_size=1))
    out = tmp_path / "out" / "temporal_sr_tiny"
    assert sorted(p.name for p in (out / "0").iterdir()) == [f"{i:08d}.png" for i in range(6)]  # max_clips 1
    report = json.loads((out / "metrics.json").read_text())
    assert set(report["metrics"]) == {"psnr", "ssim", "temp_warp"} and report["clips"] == 1


def test_training_input_errors(sr_data, tmp_path):
    _, data = sr_data
    cfg = sr_config(tmp_path, **{"logger.use_tb_logger": False})
    with pytest.raises(DataError, match="super-resolution dataset folder not found"):
        run_sr_training(quiet_options(cfg, tmp_path / "missing", tmp_path / "r1", max_steps=1, no_val=True))
    with pytest.raises(DataError, match="network makes 64x64"):
        big = sr_config(tmp_path, "big.yaml", **{"network_g.out_size": 64, "datasets.train.gt_size": 64})
        run_sr_training(quiet_options(big, data, tmp_path / "r2", max_steps=1, no_val=True))
    base = make_tiny_checkpoint(tmp_path / "base.pth.tar")
    with pytest.raises(TalkingFaceError, match="BasicSR-style"):
        run_sr_training(quiet_options(cfg, data, tmp_path / "r3", max_steps=1, no_val=True, init_ckpt=str(base)))
    with pytest.raises(TalkingFaceError, match="GFPGANv1.3 weights not found"):
        gf = sr_config(tmp_path, "gf.yaml", **{"network_g.GFPGANv1_load_path": str(tmp_path / "nope.pth")})
        run_sr_training(quiet_options(gf, data, tmp_path / "r4", max_steps=1, no_val=True))
    with pytest.raises(TalkingFaceError, match="has no resume state"):
        torch.manual_seed(0)
        save_temporal_sr(tmp_path / "plain.pth", params=TemporalSRNet(load_sr_config(cfg).network_g))
        run_sr_training(quiet_options(cfg, data, tmp_path / "r5", max_steps=1, no_val=True,
                                      resume=str(tmp_path / "plain.pth")))
    with pytest.raises(TalkingFaceError, match="--task must be Train or Test"):
        run_seed_sr(argparse.Namespace(task="Animate", config=str(cfg)))


def test_nan_steps_are_skipped_then_stop(sr_data, tmp_path, monkeypatch):
    _, data = sr_data
    cfg = sr_config(tmp_path, **{"logger.use_tb_logger": False})
    from talkingface.losses import sr as sr_losses

    real = sr_losses.SRLoss.forward
    calls = {"n": 0}

    def flaky(self, pred, gt):
        calls["n"] += 1
        losses = real(self, pred, gt)
        if calls["n"] == 2 or calls["n"] >= 4:  # 1, 3 train; 2 is skipped; 4, 5 are skipped, then it stops
            losses["l_pix"] = losses["l_pix"] * float("nan")
        return losses

    monkeypatch.setattr(sr_losses.SRLoss, "forward", flaky)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(TalkingFaceError, match="non-finite loss for 2 iterations in a row"):
            run_sr_training(quiet_options(cfg, data, tmp_path / "nan", max_steps=10, no_val=True, max_bad_steps=2))
    assert calls["n"] == 5
