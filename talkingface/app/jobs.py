"""What the web demo's buttons do, without Gradio: check the uploads, then call a recipe.

Each job writes into a fresh folder (`tempfile.mkdtemp` under the work dir), so two
people using the page at once never share a file. A failed job's folder is removed;
finished ones stay until they are `keep_hours` old (the page serves their files, and
personalised checkpoints are reused by later jobs of the same browser session).
Every problem a user can cause is a `TalkingFaceError` with a one-line message.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from talkingface.errors import CheckpointError, ConfigError, DataError
from talkingface.recipes import animate as animate_recipe  # modules (torch-free): run_* looked up per job
from talkingface.recipes import speak as speak_recipe
from talkingface.utils.options import device_option, option, vgg19_option
from talkingface.utils.video import VIDEO_EXTENSIONS, first_video_frame, iter_frames, probe_video

BUNDLED_CHOICE = "bundled default"  # the model menu's entry for AnimateOptions(ckpt=None)
SR_HINT = ("none is bundled; the operator puts temporal_gfpgan.pth or one from train-sr in --models-dir "
           "and it appears in the menu")


def default_work_dir() -> Path:
    return Path(tempfile.gettempdir()) / "talkingface-app"


@dataclass
class AppSettings:
    work_dir: Path = option(default_factory=default_work_dir,  # job folders go to work_dir/jobs
                            help="Folder for the jobs' files, a new subfolder per job (default: <system "
                                 "temp>/talkingface-app).")
    max_seconds: float = option(60.0, "Longest video accepted (driving, portrait, personalise and enhance "
                                      "uploads), in seconds.")
    max_steps: int = 1000  # most personalisation steps one request may ask for
    max_text: int = 1000  # longest text the Speak tab speaks, in characters
    keep_hours: float = 24.0  # finished job folders older than this are deleted when a new job starts
    device: str = device_option()
    vgg19: str | None = vgg19_option("Personalisation: ")  # default: $TALKINGFACE_VGG19 or the torch hub cache
    random_vgg: bool = False  # smoke tests only: personalise with an untrained VGG19
    models_dir: Path | None = option(None, "Folder of checkpoints (*.pth, *.pth.tar, *.pt; subfolders too) offered in "
                                           "the page's model and super-resolution menus, besides the bundled model and "
                                           "the session's personalised ones.")
    allow_server_paths: bool = option(False, "Also accept checkpoint paths typed on the page: any file the server "
                                             "can read. Only for people you trust.")
    max_upload_mb: float = option(200.0, "Largest upload accepted, in MB (10^6 bytes).")
    max_image_side: int = option(4096, "Longest side of an uploaded image or video frame, in pixels.")
    job_timeout: float = option(600.0, "Seconds a job may run; past it the job is stopped and the page says so.")
    queue_size: int = option(8, "Jobs that may wait while one runs; past it the page says the server is busy.")

    def __post_init__(self) -> None:
        self.work_dir = Path(self.work_dir)
        self.models_dir = None if self.models_dir is None else Path(self.models_dir)
        for flag, value in (("--max-seconds", self.max_seconds), ("--max-upload-mb", self.max_upload_mb),
                            ("--job-timeout", self.job_timeout)):
            if value <= 0:
                raise ConfigError(f"{flag} must be > 0, got {value:g}")
        for flag, count in (("--max-image-side", self.max_image_side), ("--queue-size", self.queue_size)):
            if count < 1:
                raise ConfigError(f"{flag} must be >= 1, got {count}")
        if self.max_steps < 1:
            raise ConfigError(f"the step limit must be >= 1, got {self.max_steps}")
        if self.models_dir is not None and not self.models_dir.is_dir():
            raise ConfigError(f"--models-dir {self.models_dir}: not a folder")

    def limits_text(self) -> str:
        """The limits as the page states them."""
        return (f"Limits on this server: uploads up to {self.max_upload_mb:g} MB, images and video frames up to "
                f"{self.max_image_side} px a side, videos up to {self.max_seconds:g} s, {self.job_timeout:g} s per "
                f"job; at most {self.queue_size} jobs wait in line (past that the server is busy: try again later).")


@dataclass
class SessionModel:
    """A checkpoint personalised in one browser session (kept in that session's state only)."""

    label: str  # what the model menus show; unique within the session
    path: str
    steps: int
    psnr_before: float
    psnr_after: float


@dataclass
class AnimateRequest:
    portrait_image: str | None  # a photo, or ...
    portrait_video: str | None  # ... a video of the person (needed to personalise)
    driving: str | None
    ckpt: str | None  # None: the bundled model
    relative: bool = True
    paste_back: bool = True
    full_resolution: bool = True  # the model's motion on the portrait's own pixels; off: its output upsampled
    enhance: bool = False
    sr_ckpt: str | None = None  # resolved from the menu or an allowed path
    personalize_steps: int = 0


def plural(number: int, noun: str) -> str:
    """'1 step', '2 steps'."""
    return f"{number} {noun}" + ("" if number == 1 else "s")


# --------------------------------------------------------------------------- uploads
def clean_path(text: str | None) -> str | None:
    """A path typed into a text box: surrounding blanks and quotes dropped, ~ expanded; None when empty."""
    text = (text or "").strip().strip("'\"").strip()
    return os.path.expanduser(text) if text else None


def check_image(path: str | None, what: str, max_side: int = 4096) -> Path:
    from talkingface.utils.images import is_image_path  # lazy: torch (`talkingface app --help` loads no torch)

    if not path:
        raise DataError(f"upload the {what}")
    if not is_image_path(path):
        raise DataError(f"the {what} must be an image (.png, .jpg, .webp, ...)", path)
    check_side(image_size(path), what, max_side, path)
    return Path(path)


def image_size(path: str) -> tuple[int, int] | None:
    """(width, height) from the image's header without decoding it; None when Pillow cannot tell (the
    recipe then says what is wrong with the file). Too many pixels for Pillow is (0, 0)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except Image.DecompressionBombError:
        return 0, 0
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def check_side(size: tuple[int, int] | None, what: str, max_side: int, path: str | Path) -> None:
    if size is None:
        return
    if size == (0, 0):
        raise DataError(f"the {what} has too many pixels; this server takes up to {max_side} px a side", path)
    if max(size) > max_side:
        raise DataError(f"the {what} is {size[0]}x{size[1]}; this server takes up to {max_side} px a side", path)


def check_video(path: str | None, what: str, max_seconds: float, max_side: int = 4096) -> Path:
    """An uploaded video that decodes, is at most `max_seconds` long and `max_side` px a side (damaged
    packets are skipped when it is read; a video of which no frame decodes is refused now)."""
    if not path:
        raise DataError(f"upload the {what}")
    video = Path(path)
    if video.suffix.lower() not in VIDEO_EXTENSIONS:
        raise DataError(f"the {what} must be a video ({', '.join(sorted(VIDEO_EXTENSIONS))})", video)
    info = probe_video(video)  # a DataError for files that are not videos, whatever their name
    check_side((info.width, info.height), what, max_side, video)
    if first_video_frame(video) is None:
        raise DataError("no video frame could be decoded (damaged file?)", video)
    fps = info.fps if info.fps > 0 else 25.0
    if info.num_frames > 0:
        seconds = info.num_frames / fps
        length = f"{seconds:.1f} s long"
    else:  # the container does not say (mkv, webm): count frames, stopping just past the limit
        count = 0
        with contextlib.closing(iter_frames(video)) as frames:
            for _ in frames:
                count += 1
                if count / fps > max_seconds:
                    break
        seconds = count / fps
        length = f"longer than {max_seconds:g} s"
    if seconds > max_seconds:
        raise DataError(f"the {what} is {length}; this server takes videos up to {max_seconds:g} s", video)
    return video


def check_steps(steps: float | int | None, settings: AppSettings, minimum: int) -> int:
    count = int(steps or 0)
    if count != (steps or 0) or not minimum <= count <= settings.max_steps:
        raise ConfigError(f"personalisation steps must be a whole number from {minimum} to {settings.max_steps}, "
                          f"got {steps}")
    return count


# --------------------------------------------------------------------------- job folders
def prune_jobs(root: Path, keep_hours: float) -> None:
    cutoff = time.time() - keep_hours * 3600
    for folder in root.iterdir():
        with contextlib.suppress(OSError):  # another job may be pruning the same folder
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def job_folder(settings: AppSettings, kind: str) -> Iterator[Path]:
    """A new, empty folder for one job; removed again if the job fails."""
    root = settings.work_dir / "jobs"
    root.mkdir(parents=True, exist_ok=True)
    prune_jobs(root, settings.keep_hours)
    folder = Path(tempfile.mkdtemp(prefix=f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-", dir=root))
    try:
        yield folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


# --------------------------------------------------------------------------- jobs
def animate_job(settings: AppSettings, request: AnimateRequest):
    """run_animate on the uploads; returns its AnimateResult (the video is in a new job folder)."""
    if request.portrait_image and request.portrait_video:
        raise DataError("give a portrait photo or a portrait video, not both (clear one of them)")
    if request.portrait_video:
        source = check_video(request.portrait_video, "portrait video", settings.max_seconds, settings.max_image_side)
    elif request.portrait_image:
        source = check_image(request.portrait_image, "portrait photo", settings.max_image_side)
    else:
        raise DataError("upload a portrait: a photo, a webcam picture or a video")
    driving = check_video(request.driving, "driving video", settings.max_seconds, settings.max_image_side)
    steps = check_steps(request.personalize_steps, settings, minimum=0)
    if steps and not request.portrait_video:
        raise ConfigError("personalising needs a portrait video (it fine-tunes on its frames): upload one, "
                          "or set the steps to 0")
    sr_ckpt = request.sr_ckpt if request.enhance else None
    if request.enhance and not sr_ckpt:
        raise CheckpointError(f"enhance needs a super-resolution checkpoint: {SR_HINT}")
    with job_folder(settings, "animate") as folder:
        return animate_recipe.run_animate(animate_recipe.AnimateOptions(
            source=str(source), driving=str(driving), out=str(folder / "animated.mp4"), ckpt=request.ckpt,
            relative=request.relative, crop_only=not request.paste_back, personalize=steps,
            render="full" if request.full_resolution else "model",
            enhance=request.enhance, sr_ckpt=sr_ckpt, device=settings.device, vgg19=settings.vgg19,
            random_vgg=settings.random_vgg))


def check_audio(path: str | None, max_seconds: float) -> Path:
    """An uploaded speech file that opens, has sound and is at most `max_seconds` long (by its header;
    the recipe decodes it, and says so in one line when it cannot)."""
    import av

    if not path:
        raise DataError("upload the speech audio, or type the text to speak")
    audio = Path(path)
    try:
        with av.open(str(audio)) as container:
            if not container.streams.audio:
                raise DataError("the speech audio has no sound track", audio)
            stream = container.streams.audio[0]
            seconds = (container.duration / 1e6 if container.duration else
                       float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot open as audio ({e})", audio) from None
    if seconds > max_seconds:
        raise DataError(f"the speech audio is {seconds:.1f} s long; this server takes up to {max_seconds:g} s", audio)
    return audio


def speak_job(settings: AppSettings, portrait: str | None, audio: str | None, text: str | None,
              ckpt: str | None = None):
    """run_speak on an uploaded portrait and speech audio, or text; returns its SpeakResult."""
    source = check_image(portrait, "portrait photo", settings.max_image_side)
    text = (text or "").strip() or None
    if audio and text:
        raise DataError("give speech audio or text, not both (clear one of them)")
    if text is not None and len(text) > settings.max_text:
        raise DataError(f"the text is {len(text)} characters long; this server speaks up to {settings.max_text}")
    speech = None if text is not None else str(check_audio(audio, settings.max_seconds))
    with job_folder(settings, "speak") as folder:
        return speak_recipe.run_speak(speak_recipe.SpeakOptions(
            source=str(source), out=str(folder / "speak.mp4"), audio=speech, text=text, ckpt=ckpt,
            device=settings.device))


def personalize_job(settings: AppSettings, video: str | None, steps: float | int | None, base_ckpt: str | None,
                    models: list[SessionModel]):
    """run_personalize on an uploaded video; returns (PersonalizeResult, the SessionModel to add)."""
    from talkingface.recipes.personalize import PersonalizeOptions, run_personalize  # lazy: torch (as check_image)

    person = check_video(video, "video of the person", settings.max_seconds, settings.max_image_side)
    step_count = check_steps(steps, settings, minimum=1)
    base = base_ckpt or str(animate_recipe.default_checkpoint())
    with job_folder(settings, "personalize") as folder:
        result = run_personalize(PersonalizeOptions(
            ckpt=base, data=str(person), out=str(folder / "personalized.pth.tar"), steps=step_count,
            device=settings.device, vgg19=settings.vgg19, random_vgg=settings.random_vgg))
    label = f"personalised {len(models) + 1}: {person.stem} ({plural(result.steps, 'step')})"
    return result, SessionModel(label, str(result.checkpoint), result.steps, result.psnr_before, result.psnr_after)


def enhance_job(settings: AppSettings, video: str | None, sr_ckpt: str | None):
    """run_enhance on an uploaded clip of square face crops; returns its EnhanceResult."""
    from talkingface.recipes.enhance import EnhanceOptions, run_enhance  # lazy: torch (as check_image)

    clip = check_video(video, "clip", settings.max_seconds, settings.max_image_side)
    ckpt = sr_ckpt
    if not ckpt:
        raise CheckpointError(f"choose the super-resolution checkpoint: {SR_HINT}")
    with job_folder(settings, "enhance") as folder:
        return run_enhance(EnhanceOptions(input=str(clip), ckpt=ckpt, out=str(folder / "enhanced.mp4"),
                                          device=settings.device))
