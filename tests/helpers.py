"""Small builders shared by tests: tiny official-layout datasets, tiny checkpoints, test photos and audio."""
from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest
import torch
from PIL import Image

from talkingface.checkpoints.official import save_checkpoint
from talkingface.config import load_config
from talkingface.data.writer import DrivingFrame, IdentityRecord, write_official_dataset
from talkingface.models.build import build_discriminator, build_generator

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "talkingface" / "properties" / "model" / "meta_portrait_base_config" / "meta_portrait_64_tiny.yaml"
MEDIAPIPE_TINY_CONFIG = TINY_CONFIG.with_name("mediapipe478_64_tiny.yaml")  # the scheme animate drives
FACES = REPO / "tests" / "data" / "faces"


def photo(name: str) -> np.ndarray:
    """A real face photo (RGB uint8): "astronaut" (scikit-image) or one from tests/data/faces."""
    if name == "astronaut":
        from skimage import data

        return data.astronaut()
    return np.asarray(Image.open(FACES / f"{name}.jpg").convert("RGB"))


def write_tone(path: Path, seconds: float, rate: int = 16000) -> None:
    """A 440 Hz sine tone as AAC."""
    import av

    samples = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)).astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "mono"
        for start in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, start:start + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def smooth_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random colour image (blobs, not white noise), uint8 H x W x 3."""
    coarse = rng.random((8, 8, 3))
    y = np.linspace(0, 7, size)
    yi = np.clip(y.astype(int), 0, 6)
    t = (y - yi)[:, None]
    rows = coarse[yi] * (1 - t[..., None]) + coarse[yi + 1] * t[..., None]
    cols = rows[:, yi] * (1 - t[None, :, :]) + rows[:, yi + 1] * t[None, :, :]
    return (cols * 255).astype(np.uint8)


def random_landmarks(rng: np.random.Generator, num_points: int = 669) -> np.ndarray:
    return (0.25 + 0.5 * rng.random((num_points, 2))).astype(np.float32)


def make_tiny_dataset(root: Path, frames_per_identity=(3, 2), size: int = 64, identity_dim: int = 16,
                      names=None, seed: int = 0) -> Path:
    """Identities with smooth random images and random dense669 landmarks."""
    rng = np.random.default_rng(seed)
    records = []
    for k, count in enumerate(frames_per_identity):
        frame_names = names[k] if names else [f"{i:08d}.png" for i in range(count)]
        frames = [DrivingFrame(n, smooth_image(rng, size), random_landmarks(rng)) for n in frame_names]
        ident = rng.standard_normal(identity_dim).astype(np.float32)
        records.append(IdentityRecord(smooth_image(rng, size), random_landmarks(rng),
                                      ident / np.linalg.norm(ident), frames))
    return write_official_dataset(root, records)


def make_tiny_checkpoint(path: Path, config: Path = TINY_CONFIG, seed: int = 0) -> Path:
    cfg = load_config(config)
    torch.manual_seed(seed)
    generator, discriminator = build_generator(cfg), build_discriminator(cfg)
    save_checkpoint(path, cfg, generator, discriminator, epoch=0)
    return path


def make_tiny_video_dataset(root: Path, frames: int = 12, size: int = 64, identity_dim: int = 16,
                            seed: int = 0) -> Path:
    """One identity whose driving frames are the source moved by a few pixels (a coherent clip)."""
    rng = np.random.default_rng(seed)
    source = smooth_image(rng, size)
    points = random_landmarks(rng)
    records = []
    driving = []
    for i in range(frames):
        dx, dy = int(rng.integers(-3, 4)), int(rng.integers(-3, 4))
        image = np.roll(source, (dy, dx), axis=(0, 1))
        moved = (points + np.array([dx, dy], np.float32) / size).astype(np.float32)
        driving.append(DrivingFrame(f"{i:08d}.png", image, moved))
    ident = rng.standard_normal(identity_dim).astype(np.float32)
    records.append(IdentityRecord(source, points, ident / np.linalg.norm(ident), driving))
    return write_official_dataset(root, records)


def missing_requirement(message: str) -> NoReturn:
    """Something a test needs is not installed: under CI=true (which installs everything) the
    test fails, elsewhere it skips with the message."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_module(module: str, extra: str):
    """The module, imported; if the extra that provides it is missing, `missing_requirement`."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        missing_requirement(f"{module} is not installed (pip install -e \".[{extra}]\")")
