"""Windowed temporal SR equals a whole-clip pass; checkpoint errors; the enhance recipe's inputs and outputs.

All on a tiny variant of the network (same code, 16x16 in, 32x32 out) with random weights,
temporal blocks included (zero_out_init off, so they actually mix frames).
"""
from __future__ import annotations

import dataclasses
import math
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from talkingface.checkpoints.sr import (TEMPORAL_KEY_PATTERNS, init_from_gfpgan_v13, is_temporal_key,
                                        load_temporal_sr, read_sr_weights, save_temporal_sr)
from talkingface.errors import CheckpointError, ConfigError, DataError, TalkingFaceError
from talkingface.models.temporal_sr import TemporalSRConfig, TemporalSRNet
from talkingface.inference.sr import InputResizedWarning, enhance_clip
from talkingface.recipes.enhance import EnhanceOptions, run_enhance
from talkingface.utils.images import to_tensor, to_uint8_round
from talkingface.utils.video import probe_video

from helpers import make_tiny_checkpoint, smooth_image

OUT, IN = 32, 16  # tiny output / input sides
TINY = TemporalSRConfig(out_size=OUT, num_style_feat=32, num_mlp=2, narrow=0.0625, zero_out_init=False)


def tiny_model(seed: int = 0, cfg: TemporalSRConfig = TINY) -> TemporalSRNet:
    torch.manual_seed(seed)
    return TemporalSRNet(cfg).eval()


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def clip():
    """60 smooth random frames, IN x IN, 0..1 (exact multiples of 1/255)."""
    rng = np.random.default_rng(0)
    return torch.stack([to_tensor(smooth_image(rng, IN)) for _ in range(60)])


@pytest.fixture(scope="module")
def whole(model, clip):
    with torch.inference_mode():
        return model(clip[None])[0]  # 60 x 3 x OUT x OUT


# --------------------------------------------------------------------------- the network
def test_tiny_network_shapes(model, whole):
    assert model.temporal_radius == 6  # 3 encoder + 3 decoder windows at out_size 32
    assert whole.shape == (60, 3, OUT, OUT)
    assert torch.isfinite(whole).all()


def test_temporal_radius_is_exact(model, clip, whole):
    """Changing frame k changes outputs k-R .. k+R and nothing else."""
    k, r = 30, model.temporal_radius
    changed = clip.clone()
    changed[k] = 1 - changed[k]
    with torch.inference_mode():
        out = model(changed[None])[0]
    per_frame = (out - whole).abs().flatten(1).amax(1)
    assert torch.all(per_frame[:k - r] == 0) and torch.all(per_frame[k + r + 1:] == 0)
    assert per_frame[k - r] > 0 and per_frame[k + r] > 0


def test_batch_of_clips_equals_clips_one_by_one(model, clip):
    a, b = clip[:5], clip[10:15]
    with torch.inference_mode():
        both = model(torch.stack([a, b]))
        alone = model(b[None])
    assert (both[1] - alone[0]).abs().max() < 1e-5


def test_config_rejects_unknown_and_mistyped_options():
    with pytest.raises(ConfigError, match="unknown"):
        TemporalSRConfig.from_dict({"out_size": 512, "bogus": 1})
    with pytest.raises(ConfigError, match="sft_half"):
        TemporalSRConfig.from_dict({"sft_half": "yes"})
    with pytest.raises(ConfigError, match="temp_type"):
        TemporalSRConfig(temp_type="recurrent")


# --------------------------------------------------------------------------- windows
@pytest.mark.parametrize("window,batch_size", [(17, 1), (26, 3), (20, 2)])
def test_windowed_equals_whole_clip(model, clip, whole, window, batch_size):
    got = enhance_clip(model, clip, window=window, batch_size=batch_size)
    diff = (got - whole).abs().max().item()
    print(f"\nwindow {window}, batch {batch_size}: max abs diff vs whole clip {diff:.2e}")
    assert got.shape == whole.shape
    assert diff < 1e-5


def test_too_little_overlap_is_visible(model, clip, whole):
    with pytest.warns(UserWarning, match="temporal radius"):
        got = enhance_clip(model, clip, window=20, overlap=2)
    # Influence fades with distance, but stays far above float noise (< 1e-6 when exact).
    assert (got - whole).abs().max() > 2e-5


def test_window_without_new_frames_is_an_error(model, clip):
    with pytest.raises(TalkingFaceError, match="at least 13"):
        enhance_clip(model, clip, window=12)


def test_reference_chunking_differs_at_chunk_borders(model, clip, whole):
    got = enhance_clip(model, clip, chunking="reference")  # independent 16-frame chunks
    per_frame = (got - whole).abs().flatten(1).amax(1)
    r = model.temporal_radius
    print(f"\nreference chunking: max diff at frames 15/16 {per_frame[15]:.3e}/{per_frame[16]:.3e}")
    assert per_frame[15] > 1e-3 and per_frame[16] > 1e-3  # the chunk border
    assert per_frame[:16 - r].max() < 1e-5  # far enough from the border: the same as whole-clip


# --------------------------------------------------------------------------- checkpoints
@pytest.fixture()
def tiny_ckpt(tmp_path, model):
    path = tmp_path / "tiny_sr.pth"
    save_temporal_sr(path, params_ema=model)
    return path


def test_roundtrip_and_weight_selection(tmp_path, model, clip):
    other = tiny_model(seed=1)
    path = tmp_path / "both.pth"
    save_temporal_sr(path, params=other, params_ema=model)
    assert read_sr_weights(path)[1] == "params_ema"  # preferred for inference
    loaded_ema = load_temporal_sr(path).eval()
    loaded_params = load_temporal_sr(path, which="params").eval()
    assert loaded_ema.cfg == TINY
    with torch.inference_mode():
        x = clip[None, :3]
        assert torch.equal(loaded_ema(x), model(x))
        assert torch.equal(loaded_params(x), other(x))
    only_params = tmp_path / "params.pth"
    save_temporal_sr(only_params, params=other)
    with pytest.raises(CheckpointError, match=re.escape(str(only_params)) + ".*no 'params_ema'"):
        load_temporal_sr(only_params, which="params_ema")


def test_truncated_file(tmp_path, tiny_ckpt):
    data = tiny_ckpt.read_bytes()
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=re.escape(str(bad)) + ".*truncated or corrupt"):
        load_temporal_sr(bad)
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=re.escape(str(text))):
        load_temporal_sr(text)


def test_base_model_checkpoint_is_rejected(tmp_path):
    path = make_tiny_checkpoint(tmp_path / "ckpt_base.pth.tar")
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + ".*no 'params_ema' or 'params'"):
        load_temporal_sr(path)


def test_other_network_params_are_rejected(tmp_path):
    path = tmp_path / "esrgan.pth"
    torch.save({"params_ema": {"conv_first.weight": torch.zeros(64, 3, 3, 3),
                               "body.0.rdb1.conv1.weight": torch.zeros(32, 64, 3, 3)}}, path)
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + ".*not a temporal GFPGAN"):
        load_temporal_sr(path)


def test_missing_and_unexpected_keys_are_listed(tmp_path, model):
    sd = model.state_dict()
    del sd["final_conv.bias"]
    sd["extra.weight"] = torch.zeros(1)
    path = tmp_path / "edited.pth"
    save_temporal_sr(path, params_ema=sd, config=TINY)
    with pytest.raises(CheckpointError) as err:
        load_temporal_sr(path)
    msg = str(err.value)
    print("\n" + msg)
    assert str(path) in msg and "\n" not in msg
    assert "1 missing keys: final_conv.bias" in msg and "1 unexpected keys: extra.weight" in msg


def test_wrong_shape_is_reported(tmp_path, model):
    path = tmp_path / "tiny.pth"
    save_temporal_sr(path, params_ema=model)
    wider = TemporalSRConfig(out_size=OUT, num_style_feat=32, num_mlp=2, narrow=0.125)
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + ".*wrong shape"):
        load_temporal_sr(path, config=wider)


def _gfpgan_file(tmp_path: Path, sd: dict) -> Path:
    path = tmp_path / "GFPGANv1.3.pth"
    torch.save({"params_ema": sd}, path)
    return path


def test_init_from_gfpgan_v13(tmp_path, clip):
    cfg = dataclasses.replace(TINY, zero_out_init=True)
    source = tiny_model(seed=3, cfg=TINY)
    gfpgan_sd = {k: v for k, v in source.state_dict().items() if not is_temporal_key(k)}
    removed = set(source.state_dict()) - set(gfpgan_sd)
    assert removed and all(k.split(".")[0] in ("window_down", "recurrent_forward") for k in removed)
    path = _gfpgan_file(tmp_path, gfpgan_sd)

    model = init_from_gfpgan_v13(path, config=cfg).eval()
    for k, v in gfpgan_sd.items():
        assert torch.equal(model.state_dict()[k], v)
    # Temporal blocks start as the identity: each frame is restored on its own, as GFPGAN would.
    with torch.inference_mode():
        together = model(clip[None, :4])[0]
        alone = torch.cat([model(clip[None, t:t + 1])[0] for t in range(4)])
    assert (together - alone).abs().max() < 1e-5

    # The same file is not a temporal SR checkpoint: strict loading says what it is.
    with pytest.raises(CheckpointError, match="missing keys: recurrent_forward.*GFPGANv1.3"):
        load_temporal_sr(path, config=cfg)


def test_init_from_gfpgan_v13_fails_on_other_mismatches(tmp_path):
    cfg = dataclasses.replace(TINY, zero_out_init=True)
    sd = {k: v for k, v in tiny_model(cfg=cfg).state_dict().items() if not is_temporal_key(k)}
    del sd["condition_scale.0.0.weight"]
    path = _gfpgan_file(tmp_path, sd)
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + ".*missing keys: condition_scale.0.0.weight$"):
        init_from_gfpgan_v13(path, config=cfg)
    assert [p.pattern.split("\\")[0].strip("^") for p in TEMPORAL_KEY_PATTERNS] == ["window_down",
                                                                                  "recurrent_forward"]


# --------------------------------------------------------------------------- the recipe
def _write_frames(folder: Path, count: int, size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(count):
        px = smooth_image(rng, max(size))[: size[1], : size[0]]
        Image.fromarray(px).save(folder / f"{i}.png")  # unpadded names: natural order matters
        frames.append(px)
    return frames


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_frames_folder_matches_library(tmp_path, model, tiny_ckpt, precision):
    """fp32: within 1 grey level of the library's whole-clip pass; bf16 (what "auto"
    picks on CPUs with native bf16; forced where it is emulated): 40 dB or more against it."""
    from talkingface.inference import psnr_uint8

    frames = _write_frames(tmp_path / "in", 20, (IN, IN))
    result = run_enhance(EnhanceOptions(input=str(tmp_path / "in"), ckpt=str(tiny_ckpt), out=str(tmp_path / "out"),
                                        window=20, device="cpu", precision=precision, force=True))
    assert result.frames == 20
    expected = enhance_clip(model, torch.stack([to_tensor(f) for f in frames]))
    got = np.stack([np.asarray(Image.open(tmp_path / "out" / f"{i}.png")) for i in range(20)])
    want = np.stack([to_uint8_round(expected[i]) for i in range(20)])
    assert got.shape == (20, OUT, OUT, 3)
    if precision == "fp32":
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    else:
        assert 40.0 <= psnr_uint8(got, want) < float("inf")


def test_empty_folder_is_an_error(tmp_path, tiny_ckpt):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty.*no frames"):
        run_enhance(EnhanceOptions(input=str(tmp_path / "empty"), ckpt=str(tiny_ckpt), out=str(tmp_path / "o")))


def test_non_square_frames_are_an_error(tmp_path, tiny_ckpt):
    _write_frames(tmp_path / "wide", 3, (24, 16))
    with pytest.raises(DataError, match="24x16.*square"):
        run_enhance(EnhanceOptions(input=str(tmp_path / "wide"), ckpt=str(tiny_ckpt), out=str(tmp_path / "o")))


def test_other_size_is_resized_with_a_warning(tmp_path, tiny_ckpt):
    _write_frames(tmp_path / "big", 3, (128, 128))
    with pytest.warns(InputResizedWarning, match=f"128x128.*{IN}x{IN}"):
        result = run_enhance(EnhanceOptions(input=str(tmp_path / "big"), ckpt=str(tiny_ckpt),
                                            out=str(tmp_path / "o"), device="cpu"))
    assert result.frames == 3
    assert Image.open(tmp_path / "o" / "0.png").size == (OUT, OUT)


def _video_with_audio(path: Path, frames: list[np.ndarray], fps: int) -> None:
    """H.264 video plus a 440 Hz AAC tone, written with PyAV."""
    import av

    with av.open(str(path), mode="w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        audio = out.add_stream("aac", rate=16000)
        for px in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(px, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        samples = int(16000 * len(frames) / fps)
        tone = (0.2 * np.sin(2 * math.pi * 440 * np.arange(samples) / 16000)).astype(np.float32)
        for start in range(0, samples, 1024):
            chunk = tone[start:start + 1024]
            frame = av.AudioFrame.from_ndarray(chunk[None], format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 16000, start, Fraction(1, 16000)
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode():
            out.mux(packet)


def test_video_keeps_fps_and_audio(tmp_path, tiny_ckpt):
    rng = np.random.default_rng(1)
    src = tmp_path / "clip.mp4"
    _video_with_audio(src, [smooth_image(rng, IN) for _ in range(12)], fps=10)
    assert probe_video(src).has_audio
    out = tmp_path / "clip_sr.mp4"
    result = run_enhance(EnhanceOptions(input=str(src), ckpt=str(tiny_ckpt), out=str(out), device="cpu"))
    info = probe_video(out)
    assert result.frames == 12
    assert (info.width, info.height) == (OUT, OUT)
    assert info.fps == pytest.approx(10)
    assert info.has_audio


def test_frames_folder_to_video(tmp_path, tiny_ckpt):
    _write_frames(tmp_path / "in", 5, (IN, IN))
    out = tmp_path / "out.mp4"
    run_enhance(EnhanceOptions(input=str(tmp_path / "in"), ckpt=str(tiny_ckpt), out=str(out), fps=12.5,
                               device="cpu"))
    info = probe_video(out)
    assert info.fps == pytest.approx(12.5) and not info.has_audio


def test_missing_checkpoint_names_the_file(tmp_path):
    _write_frames(tmp_path / "in", 2, (IN, IN))
    with pytest.raises(CheckpointError, match="nope.pth.*temporal_gfpgan.pth"):
        run_enhance(EnhanceOptions(input=str(tmp_path / "in"), ckpt=str(tmp_path / "nope.pth"),
                                   out=str(tmp_path / "o")))

