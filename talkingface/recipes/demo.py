"""`talkingface demo`: animate a portrait with the bundled model and inputs that ship.

The source is Grace Hopper's portrait, which matplotlib (a dependency) ships as sample
data; the driving video is talkingface/assets/demo/driving.mp4, another person, with
synthetic head, mouth and blink motion and a voice-like audio track (made by
scripts/make_demo_driving.py). The bundled model saw neither person in training
(docs/bundled_model.md). Everything else is `animate`.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from talkingface.errors import DataError
from talkingface.recipes.animate import AnimateOptions, AnimateResult, run_animate
from talkingface.utils.options import device_option, force_option, option, precision_option, render_option

DEMO_DRIVING = Path(__file__).resolve().parents[1] / "assets" / "demo" / "driving.mp4"


@dataclass
class DemoOptions:
    out: str = option("demo.mp4", "Output video.")
    source: str | None = option(None, "Your own portrait instead of the Grace Hopper photo (matplotlib ships it).")
    driving: str | None = option(None, "Your own driving video instead of the bundled one (DEMO_DRIVING).")
    ckpt: str | None = option(None, "A mediapipe478 model instead of the bundled one.")
    precision: str = precision_option("auto", "Default auto")
    force: bool = force_option()
    device: str = device_option()
    render: str = render_option()


def demo_portrait() -> np.ndarray:
    """Grace Hopper's portrait from matplotlib's sample data, H x W x 3 uint8 (512 x 600)."""
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as image:
        return np.asarray(image.convert("RGB"))


def run_demo(opts: DemoOptions) -> AnimateResult:
    driving = Path(opts.driving) if opts.driving else DEMO_DRIVING
    if not driving.is_file():
        raise DataError("the demo's driving video is missing from this copy of talkingface", driving)
    with tempfile.TemporaryDirectory(prefix="talkingface-demo-") as work:
        source = opts.source
        if source is None:
            source = str(Path(work) / "grace_hopper.png")
            Image.fromarray(demo_portrait()).save(source)
        print(f"Demo: animating {'the Grace Hopper portrait' if opts.source is None else source} with {driving}")
        return run_animate(AnimateOptions(source=source, driving=str(driving), out=opts.out, ckpt=opts.ckpt,
                                          precision=opts.precision, force=opts.force, device=opts.device,
                                          render=opts.render))
