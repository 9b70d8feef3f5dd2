"""`talkingface animate`: make a portrait (photo or video) talk like a driving video.

Options and wiring; the work is in talkingface.animate. Order: check the options and
that both inputs decode; find the source face and track the driving video (so a
missing face fails before anything slow); personalise (optional) into a temporary
checkpoint that is loaded and deleted; then render, paste back and write the video in
one stream, with the driving video's fps and audio. The output appears only when
complete (utils.video.write_video writes a temporary file and renames it).
"""
from __future__ import annotations

import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
from tqdm import tqdm

from talkingface.animate.motion import HeadLimits
from talkingface.errors import CheckpointError, ConfigError, DataError
from talkingface.utils.audio import audio_decodes
from talkingface.utils.options import (device_option, force_option, option, precision_option, render_option,
                                       vgg19_option)
from talkingface.utils.paths import refuse_overwrite
from talkingface.utils.video import write_video

if TYPE_CHECKING:
    from talkingface.animate.fullres import FullResSettings

# the default model: 128 px, trained with head turns (docs/bundled_model.md)
BUNDLED_MODEL = Path(__file__).resolve().parents[1] / "assets" / "models" / "bundled_128.pth.tar"
# the previous default: 64 px, in-plane motion only, a quarter of the compute (`--ckpt` it for speed)
BUNDLED_64_MODEL = BUNDLED_MODEL.with_name("bundled_64.pth.tar")
OUTPUT_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv"}  # containers that take H.264 and AAC
RENDER_MODES = ("full", "model")  # as talkingface.animate.pipeline.RENDER_MODES (kept import-light here)


@dataclass
class AnimateOptions:
    source: str = option(help="The portrait: a photo (.jpg, .png, ...) or a video of the person.")
    driving: str = option(help="The video whose motion and audio are transferred.")
    out: str = option("animated.mp4", "Output video (.mp4, .mov, .mkv or .m4v).")
    ckpt: str | None = option(None, "A mediapipe478 model checkpoint (default: the bundled model).")
    config: str | None = option(None, "Model config (default: the one stored in the checkpoint).")
    relative: bool = option(True, "Absolute motion: use the driving landmarks as they are (default: relative "
                                  "motion).", flag="--absolute")
    find_best_frame: bool = option(False, "Measure motion from the driving frame most like the source (default: "
                                          "the first with a face).")
    head_limit: bool = option(True, "Follow the driving head however far it moves (default: relative head motion "
                                    "bends smoothly towards the range the model was trained on; "
                                    "animate.motion.HeadLimits).", flag="--no-head-limit")
    crop_only: bool = option(False, "Write the generated face crops at the model's size, no paste-back.")
    render: str = render_option()
    batch_size: int = option(8, "Driving frames per forward pass.")
    personalize: int = option(0, "First fine-tune N steps on the source (a video of the person).", metavar="N")
    enhance: bool = option(False, "Temporal super-resolution of the crops (needs --sr-ckpt).")
    sr_ckpt: str | None = option(None, "Temporal super-resolution weights (not bundled).")
    device: str = device_option()
    precision: str = precision_option("auto", "Default auto (checked on the source before rendering)")
    force: bool = force_option()
    feather: float = 0.1  # paste-back blend band, fraction of the crop side
    smooth: bool = True  # temporal smoothing of the driving landmarks
    vgg19: str | None = vgg19_option("--personalize: ")
    random_vgg: bool = False  # --personalize smoke tests only: an untrained VGG19
    seed: int = 0
    progress: bool = True
    fullres: FullResSettings | None = None  # full rendering's settings (Python API only; None: the defaults)


@dataclass
class AnimateResult:
    out: Path
    frames: int
    fps: float
    width: int
    height: int
    audio: bool  # the driving video's audio was muxed in
    frames_without_face: int  # driving frames that held the last good pose
    reference_frame: int  # the driving frame relative motion is measured from
    scene_cuts: list[int]  # driving frames that start a new shot (relative motion restarts there)
    source_frame: int  # the frame used from a source video (0 for a photo)
    several_faces: bool  # in the source or the driving video; the largest was used
    personalized_steps: int
    seconds: float


def default_checkpoint() -> Path:
    if not BUNDLED_MODEL.is_file():
        raise CheckpointError("the bundled model is not installed in this copy of talkingface; pass --ckpt MODEL "
                              "(a mediapipe478 checkpoint, e.g. one from `talkingface train` or `personalize`)",
                              BUNDLED_MODEL)
    return BUNDLED_MODEL


def _check_options(opts: AnimateOptions) -> tuple[Path, Path, Path]:
    if opts.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {opts.batch_size}")
    if opts.personalize < 0:
        raise ConfigError(f"--personalize takes a number of steps >= 0, got {opts.personalize}")
    if opts.precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ConfigError(f"--precision must be auto, fp32, bf16 or fp16, got {opts.precision!r}")
    if opts.render not in RENDER_MODES:
        raise ConfigError(f"--render must be one of {', '.join(RENDER_MODES)}, got {opts.render!r}")
    if not 0 <= opts.feather < 0.5:
        raise ConfigError(f"feather must be in [0, 0.5), got {opts.feather}")
    if opts.enhance and not opts.sr_ckpt:
        raise ConfigError("--enhance needs --sr-ckpt FILE (the super-resolution weights are not bundled)")
    if opts.sr_ckpt and not opts.enhance:
        raise ConfigError("--sr-ckpt is only used with --enhance")
    source, driving, out = Path(opts.source), Path(opts.driving), Path(opts.out)
    for path, what in ((source, "source"), (driving, "driving video")):
        if not path.exists():
            raise DataError(f"{what} not found", path)
    if out.suffix.lower() not in OUTPUT_EXTENSIONS:
        raise DataError(f"output must be a video file ({', '.join(sorted(OUTPUT_EXTENSIONS))})", out)
    if out.is_dir():
        raise DataError("output is a folder; give a video file path", out)
    refuse_overwrite(out, source, driving, opts.ckpt, opts.sr_ckpt, opts.config)
    return source, driving, out


def _personalize(opts: AnimateOptions, ckpt: Path, source: Path, workdir: Path) -> Path:
    # lazy: torch (this module stays torch-free: `talkingface animate --help`, speak, demo, app)
    from talkingface.animate.pipeline import is_image_path
    from talkingface.recipes.personalize import PersonalizeOptions, run_personalize

    if is_image_path(source) or source.is_dir():
        raise ConfigError("--personalize needs a video file of the source person (it fine-tunes on its frames)",
                          source)
    print(f"Personalising {ckpt.name} on {source} for {opts.personalize} steps")
    result = run_personalize(PersonalizeOptions(
        ckpt=str(ckpt), data=str(source), out=str(workdir / "personalized.pth.tar"), steps=opts.personalize,
        config=opts.config, device=opts.device, vgg19=opts.vgg19, random_vgg=opts.random_vgg, seed=opts.seed))
    return result.checkpoint


def _enhancer(sr_ckpt: str, device, source_crop: np.ndarray, precision: str = "auto", force: bool = False):
    """A crops -> super-resolved crops stream function (loaded now, to fail before any rendering).
    `precision` auto is checked on the source's own crop (only where a low precision is native)."""
    import cv2

    # lazy: torch (as in _personalize)
    from talkingface.checkpoints.sr import load_temporal_sr
    from talkingface.inference import resolve_precision
    from talkingface.inference.sr import (InputResizedWarning, iter_planned, plan_windows, prepare_sr, sample_clip,
                                          sr_psnr_check)
    from talkingface.utils.images import to_tensor, to_uint8_round

    model = load_temporal_sr(sr_ckpt).eval().to(device)
    size = model.input_size

    def sample():  # the source crop at the SR input size, as a still clip
        crop = source_crop if source_crop.shape[0] == size else cv2.resize(source_crop, (size, size),
                                                                           interpolation=cv2.INTER_AREA)
        return sample_clip([crop], 2 * model.temporal_radius + 1, device)

    choice = resolve_precision(precision, device, sr_psnr_check(model, sample), force=force)
    model = prepare_sr(model, device, choice.precision)
    print(f"super-resolution precision {choice.reason}")
    plan = plan_windows(model)

    def enhance(crops: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        import cv2

        def tensors():
            warned = False
            for crop in crops:
                if crop.shape[0] != model.input_size:
                    if not warned:
                        warnings.warn(f"the model's {crop.shape[0]}px crops are resized to {model.input_size}px, "
                                      "the super-resolution network's input size", InputResizedWarning, stacklevel=2)
                        warned = True
                    crop = cv2.resize(crop, (model.input_size, model.input_size), interpolation=cv2.INTER_CUBIC)
                yield to_tensor(crop)

        for frame in iter_planned(model, tensors(), plan):
            yield to_uint8_round(frame)

    return enhance


def _check_decodes(path: Path) -> None:
    # lazy: torch (as in _personalize)
    from talkingface.animate.pipeline import close_frames, is_image_path, open_video, read_image

    if is_image_path(path):
        read_image(path)
        return
    stream = open_video(path)
    try:
        if next(iter(stream.frames), None) is None:
            raise DataError("no frames could be decoded", path)
    finally:
        close_frames(stream)


def run_animate(opts: AnimateOptions) -> AnimateResult:
    # lazy: torch (as in _personalize)
    from talkingface.animate.driving import driving_poses, track_driving
    from talkingface.animate.fullres import FullResSettings
    from talkingface.animate.pipeline import (CropRenderer, check_model_config, load_source, model_scheme,
                                              prepare_engine, reference_frame, render_frames, settings_for_model)
    from talkingface.checkpoints.official import config_for_checkpoint, load_generator
    from talkingface.utils.device import resolve_device

    began = time.perf_counter()
    source_path, driving_path, out = _check_options(opts)
    for path in (source_path, driving_path):  # input errors first: both inputs must open and decode
        _check_decodes(path)
    # the driving audio is checked now too: audio that does not decode is left out (a warning), before rendering
    has_audio = not driving_path.is_dir() and audio_decodes(driving_path)
    ckpt = Path(opts.ckpt) if opts.ckpt else default_checkpoint()
    cfg = config_for_checkpoint(str(ckpt), opts.config)
    check_model_config(cfg, opts.config or ckpt)
    device = resolve_device(opts.device)
    settings = settings_for_model(cfg, relative=opts.relative, find_best_frame=opts.find_best_frame,
                                  head_limits=HeadLimits() if opts.head_limit else None, crop_only=opts.crop_only,
                                  batch_size=opts.batch_size, feather=opts.feather,
                                  smooth=opts.smooth, render=opts.render, fullres=opts.fullres or FullResSettings())

    # Faces before the slow steps (personalisation, model loads): a missing face fails in seconds.
    source = load_source(source_path, settings)
    # a bad SR file fails now, before the driving video is tracked
    enhance = _enhancer(opts.sr_ckpt, device, source.crop, opts.precision, opts.force) if opts.enhance else None
    track, fps, several_driving = track_driving(driving_path, settings, opts.progress)
    with track:
        if track.missing:
            print(f"{track.missing} of {track.count} driving frames have no face: they hold the last good pose")
        with tempfile.TemporaryDirectory(prefix="talkingface-animate-") as work:
            if opts.personalize:
                ckpt = _personalize(opts, ckpt, source_path, Path(work))
            model = load_generator(ckpt, cfg).model  # personalised weights stay in memory; the file goes
        scheme = model_scheme(cfg)
        renderer = CropRenderer(prepare_engine(model, device, opts.precision, source, scheme, force=opts.force),
                                source, scheme)

        reference = reference_frame(track, source.points, settings.find_best_frame)
        if track.cuts:
            print(f"{len(track.cuts)} scene cut(s) in the driving video (frames "
                  f"{', '.join(map(str, track.cuts[:10]))}{', ...' if len(track.cuts) > 10 else ''}): "
                  "motion is measured afresh from each new shot")
        poses = driving_poses(source, track, settings, reference)
        frames = render_frames(renderer, poses, source, settings, transform=enhance)
        shape: list[int] = []

        def counted() -> Iterator[np.ndarray]:
            with tqdm(total=track.count, unit="frame", desc="animate", dynamic_ncols=True,
                      disable=not opts.progress) as bar:
                for frame in frames:
                    if not shape:
                        shape.extend(frame.shape[:2])
                    bar.update(1)
                    yield frame

        count = write_video(out, counted(), fps, audio_from=driving_path if has_audio else None)

    result = AnimateResult(
        out=out, frames=count, fps=fps, width=shape[1], height=shape[0], audio=has_audio,
        frames_without_face=track.missing, reference_frame=reference, scene_cuts=list(track.cuts),
        source_frame=source.frame_index,
        several_faces=source.several_faces or several_driving, personalized_steps=opts.personalize,
        seconds=time.perf_counter() - began)
    print(f"Wrote {out}: {count} frames, {result.width}x{result.height} at {fps:g} fps"
          + (", with the driving video's audio" if has_audio else "") + f", in {result.seconds:.1f} s")
    return result
