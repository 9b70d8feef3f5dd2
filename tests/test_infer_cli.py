"""The seed's inference command, verbatim, on a tiny official-layout dataset; and its errors."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from talkingface.checkpoints.official import load_generator
from talkingface.config import load_config
from talkingface.data.official import open_dataset
from talkingface.models.generator import batch_inputs
from talkingface.seed_cli import main as seed_main
from talkingface.utils.images import to_uint8_truncate

from helpers import REPO, TINY_CONFIG, make_tiny_checkpoint, make_tiny_dataset
from talkingface.utils.video import iter_frames, probe_video

pytestmark = pytest.mark.slow  # full-size or subprocess-heavy: left out of the fast subset (-m "not slow")

SEED_CONFIG = "./talkingface/properties/model/meta_portrait_base_config/meta_portrait_256_eval.yaml"


@pytest.fixture()
def workdir(tmp_path):
    """A working directory laid out like the seed repo, with the tiny model in the eval config's place."""
    cfg_path = tmp_path / SEED_CONFIG
    cfg_path.parent.mkdir(parents=True)
    shutil.copy(TINY_CONFIG, cfg_path)
    text = cfg_path.read_text().replace("dataset/meta_portrait_tiny_data", "dataset/meta_portrait_base_data")
    cfg_path.write_text(text)
    names = [["00000000.png", "00000001.png", "sframe.png"], ["00000000.png", "x.png"]]
    make_tiny_dataset(tmp_path / "dataset" / "meta_portrait_base_data", names=names)
    make_tiny_checkpoint(tmp_path / "saved" / "ckpt_base.pth.tar")
    return tmp_path


def run_seed(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "run_talkingface.py"), *args], cwd=workdir,
                          capture_output=True, text=True, timeout=300)


def reference_path_pixels(workdir: Path) -> dict[str, np.ndarray]:
    """The straightforward path: spectral norm at run time, one frame at a time, source re-encoded."""
    cfg = load_config(workdir / SEED_CONFIG)
    model = load_generator(workdir / "saved" / "ckpt_base.pth.tar", cfg).model.eval()
    ds = open_dataset(cfg, workdir / "dataset" / "meta_portrait_base_data")
    out = {}
    with torch.inference_mode():
        for i in range(len(ds)):
            batch = torch.utils.data.default_collate([ds[i]])
            out[ds.frames[i].output_name] = to_uint8_truncate(model(batch_inputs(batch, torch.device("cpu")))["prediction"])[0]
    return out


def test_seed_inference_command_verbatim(workdir):
    proc = run_seed(workdir, "--model==metaportraitbaseinference", "--save_dir", "./saved", "--config",
                    SEED_CONFIG, "--ckpt", "./saved/ckpt_base.pth.tar")
    assert proc.returncode == 0, proc.stderr
    frames_dir = workdir / "saved" / "output_64"
    written = sorted(p.name for p in frames_dir.iterdir())
    # Flat names; the name both identities use gets the identity prefix.
    assert written == sorted(["0_00000000.png", "00000001.png", "sframe.png", "1_00000000.png", "x.png"])
    expected = reference_path_pixels(workdir)
    for name, pixels in expected.items():
        got = np.asarray(Image.open(frames_dir / name))
        assert got.shape == (64, 64, 3)
        assert np.array_equal(got, pixels), name  # the README: "batch 1: identical" (measured: 0 grey levels)
    info = probe_video(workdir / "saved" / "out_64.mp4")
    assert info.num_frames == 5 and abs(info.fps - 23.98) < 1e-3
    # The video holds the PNGs' frames in the dataset's order (H.264 yuv420p on a noisy 64 px
    # frame is several grey levels off; one identity's frames are too alike to tell apart,
    # the two identities' are not).
    cfg = load_config(workdir / SEED_CONFIG)
    frames = open_dataset(cfg, workdir / "dataset" / "meta_portrait_base_data").frames
    pngs = [np.asarray(Image.open(frames_dir / f.output_name)).astype(float) for f in frames]
    decoded = [f.astype(float) for f in iter_frames(workdir / "saved" / "out_64.mp4")]
    assert all(np.abs(d - png).mean() < 12 for d, png in zip(decoded, pngs, strict=True))
    nearest = [frames[int(np.argmin([np.abs(d - png).mean() for png in pngs]))].identity for d in decoded]
    assert nearest == [f.identity for f in frames]
    assert not list((workdir / "saved").glob(".*partial*"))  # nothing half-written left


def test_model_equals_spelling_and_batching_give_same_pixels(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    code = seed_main(["--model=metaportraitbaseinference", "--save_dir", "./out_b3", "--config", SEED_CONFIG,
                      "--ckpt", "./saved/ckpt_base.pth.tar", "--batch_size", "3"])
    assert code == 0
    expected = reference_path_pixels(workdir)
    for name, pixels in expected.items():
        got = np.asarray(Image.open(workdir / "out_b3" / "output_64" / name))
        assert np.abs(got.astype(int) - pixels.astype(int)).max() <= 1  # "batched: within 1 grey level" (measured 1)


@pytest.mark.parametrize("batch", ["1", "3"])
def test_seed_inference_bf16_stays_above_40_db(workdir, monkeypatch, batch):
    """The seed command at --precision bf16 (the inference engine) against the reference path
    (--force: bf16 even on a CPU that only emulates it, where it would fall back to fp32)."""
    from talkingface.inference import psnr_uint8

    monkeypatch.chdir(workdir)
    code = seed_main(["--model=metaportraitbaseinference", "--save_dir", "./out_bf16", "--config", SEED_CONFIG,
                      "--ckpt", "./saved/ckpt_base.pth.tar", "--batch_size", batch, "--precision", "bf16",
                      "--force"])
    assert code == 0
    expected = reference_path_pixels(workdir)
    got = np.stack([np.asarray(Image.open(workdir / "out_bf16" / "output_64" / n)) for n in expected])
    want = np.stack(list(expected.values()))
    assert 40.0 <= psnr_uint8(got, want) < float("inf")  # bf16 really ran: not bit-identical


def test_talkingface_infer_verb_with_eval(workdir):
    proc = subprocess.run([sys.executable, "-m", "talkingface", "infer", "--config", SEED_CONFIG, "--ckpt",
                           "saved/ckpt_base.pth.tar", "--out", "runs/a", "--no-video", "--eval"], cwd=workdir,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(list((workdir / "runs" / "a" / "output_64").glob("*.png"))) == 5
    assert not (workdir / "runs" / "a" / "out_64.mp4").exists()
    import json

    summary = json.loads((workdir / "runs" / "a" / "eval" / "summary.json").read_text())
    assert "psnr" in json.dumps(summary).lower()
    assert (workdir / "runs" / "a" / "eval" / "per_frame.csv").read_text().count("\n") >= 6


def _one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _seed_infer(workdir, ckpt="./saved/ckpt_base.pth.tar", config=SEED_CONFIG, *extra):
    return run_seed(workdir, "--model=metaportraitbaseinference", "--save_dir", "./saved", "--config", config,
                    "--ckpt", ckpt, *extra)


def test_missing_checkpoint_says_where_to_get_it(workdir):
    line = _one_line_error(_seed_infer(workdir, "./saved/nope.pth.tar"), "nope.pth.tar")
    assert "Meta-Portrait/MetaPortrait" in line


def test_checkpoint_of_another_model(workdir):
    torch.save({"state_dict": {"conv.weight": torch.zeros(3, 3)}}, workdir / "other.pth")
    _one_line_error(_seed_infer(workdir, "other.pth"), "other.pth", "not a MetaPortrait checkpoint")
    torch.save({"generator": {"fc.weight": torch.zeros(3, 3)}}, workdir / "other2.pth")
    _one_line_error(_seed_infer(workdir, "other2.pth"), "other2.pth", "keys match")


def test_truncated_checkpoint(workdir):
    data = (workdir / "saved" / "ckpt_base.pth.tar").read_bytes()
    (workdir / "cut.pth.tar").write_bytes(data[: len(data) // 2])
    _one_line_error(_seed_infer(workdir, "cut.pth.tar"), "cut.pth.tar", "truncated or corrupt")


def test_official_checkpoint_with_tiny_config_is_a_clear_mismatch(workdir):
    """A file without our metadata is official (256x256): the 64x64 config cannot use it."""
    ckpt = torch.load(workdir / "saved" / "ckpt_base.pth.tar", weights_only=True)
    del ckpt["talkingface"]
    torch.save(ckpt, workdir / "official_like.pth.tar")
    _one_line_error(_seed_infer(workdir, "official_like.pth.tar"), "official_like.pth.tar", "identity_dim")


def test_wrong_config_key(workdir):
    cfg = workdir / "bad.yaml"
    cfg.write_text((workdir / SEED_CONFIG).read_text().replace("  use_IN: true", "  use_In: true"))
    _one_line_error(_seed_infer(workdir, config="bad.yaml"), "bad.yaml", "model.generator.use_In")


def test_wrong_config_type(workdir):
    cfg = workdir / "bad.yaml"
    cfg.write_text((workdir / SEED_CONFIG).read_text().replace("  conv_dim: 4", "  conv_dim: wide"))
    _one_line_error(_seed_infer(workdir, config="bad.yaml"), "bad.yaml", "conv_dim", "integer")


def test_dataset_without_map(workdir):
    (workdir / "dataset" / "meta_portrait_base_data" / "src_map_dict.pkl").unlink()
    _one_line_error(_seed_infer(workdir), "src_map_dict.pkl")


def test_debug_shows_traceback(workdir):
    proc = _seed_infer(workdir, "./saved/nope.pth.tar", SEED_CONFIG, "--debug")
    assert proc.returncode != 0 and "Traceback" in proc.stderr
