"""The page of `talkingface app`: four tabs (Animate, Speak, Personalize, Enhance) over `jobs`.

Only the app verb imports this module, so Gradio loads only when the app runs.
Errors never reach Gradio as exceptions of ours: user errors become a one-line
`gr.Error` (a message box on the page that stays until closed), unexpected ones the
same plus a traceback in the server log; the server keeps serving either way. Each job
runs in a thread of its own under the --job-timeout; Gradio's queue holds at most
--queue-size waiting jobs and answers the rest that the app is busy.
"""
from __future__ import annotations

import contextlib
import contextvars
import ctypes
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from talkingface.app.jobs import (BUNDLED_CHOICE, AnimateRequest, AppSettings, SessionModel, animate_job, enhance_job,
                                  personalize_job, plural, speak_job)
from talkingface.app.models import model_choices, resolve_model, resolve_sr, sr_choices
from talkingface.errors import TalkingFaceError

try:
    import gradio as gr
except ImportError as e:  # an optional extra: say how to get it instead of a traceback
    raise TalkingFaceError('the web app needs Gradio: pip install -e ".[app]"') from e

log = logging.getLogger("talkingface.app")
T = TypeVar("T")
JOBS = "talkingface-jobs"  # one queue for all buttons: jobs use every core, so they run one at a time
HEIGHT, RESULT_HEIGHT = 240, 360  # px: upload boxes stay small enough for the page to fit a laptop screen


def one_line(text: str) -> str:
    return " ".join(text.split())


def page_message(error: TalkingFaceError) -> str:
    """The error without the server's folders: the file's own name tells the user which upload it was."""
    if not error.path:
        return one_line(error.message)
    name = Path(error.path).name
    return one_line(f"{name}: {error.message.replace(error.path, name)}")


@contextlib.contextmanager
def shown_on_page(action: str) -> Iterator[None]:
    """Turn any failure of a job into a message on the page (gr.Error), never a dead server."""
    try:
        yield
    except gr.Error:
        raise
    except TalkingFaceError as e:
        log.info("%s: %s", action, e)
        raise gr.Error(page_message(e), title=f"{action} failed", duration=None, print_exception=False) from None
    except Exception as e:  # noqa: BLE001 - a bug must not take the page down: one line there, traceback here
        log.exception("%s: unexpected error", action)
        raise gr.Error(one_line(f"internal error: {type(e).__name__}: {e} (the traceback is in the server log)"),
                       title=f"{action} failed", duration=None, print_exception=False) from None


class JobStopped(BaseException):
    """Raised inside a job's thread when its time is up; the job unwinds (its folder is removed). Not an
    Exception, like KeyboardInterrupt, so that no `except Exception` on the way catches it and goes on."""


def stop_thread(thread: threading.Thread) -> None:
    """Raise JobStopped in `thread` at its next Python instruction (a running torch call finishes first)."""
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(JobStopped))


def run_with_timeout(job: Callable[[], T], seconds: float, action: str) -> T:
    """`job()` in a thread of its own; after `seconds` the request stops waiting, the job is stopped
    and the page says so. The thread keeps Gradio's context, so tqdm progress still reaches the page."""
    outcome: dict[str, object] = {}
    context = contextvars.copy_context()

    def work() -> None:
        try:
            outcome["value"] = context.run(job)
        except JobStopped:  # the request has told the page already
            log.info("%s: the stopped job has unwound", action)
        except Exception as e:  # noqa: BLE001 - handed to the waiting request, which raises it there
            outcome["error"] = e

    thread = threading.Thread(target=work, name=f"talkingface-{action.lower()}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        stop_thread(thread)
        log.warning("%s: stopped after %g s (--job-timeout)", action, seconds)
        raise TalkingFaceError(f"the job ran longer than this server's limit of {seconds:g} s and was stopped; "
                               "try a shorter video or fewer steps")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    if "value" not in outcome:
        raise RuntimeError("the job ended without a result")
    return outcome["value"]  # type: ignore[return-value]


class PortraitImage(gr.Image):
    """gr.Image that passes the uploaded file on undecoded: a file that is not an image then gets the recipe's
    one-line message instead of Gradio's own decoding error (several lines of internals). The recipe decodes it,
    EXIF orientation included."""

    is_template = True  # drawn by the frontend's Image component

    def preprocess(self, payload):
        return None if payload is None else payload.path


class AppHandlers:
    """The buttons' functions; arguments in the order of the page's input components. Checkpoints come
    from the menus (see `models`); each job runs under the settings' timeout."""

    def __init__(self, settings: AppSettings):
        self.settings = settings

    def run(self, action: str, job: Callable[[], T]) -> T:
        return run_with_timeout(job, self.settings.job_timeout, action)

    def animate(self, portrait_image: str | None, portrait_video: str | None, driving: str | None,
                model_choice: str | None, ckpt_path: str | None, relative: bool, paste_back: bool, enhance: bool,
                sr_choice: str | None, sr_ckpt: str | None, personalize_steps: float | None,
                models: list[SessionModel] | None, full_resolution: bool = True,
                progress=gr.Progress(track_tqdm=True)) -> tuple[str, str, str]:
        """-> (video to play, file to download, summary)."""
        with shown_on_page("Animate"):
            progress(0, desc="checking the uploads")
            request = AnimateRequest(
                portrait_image=portrait_image, portrait_video=portrait_video, driving=driving,
                ckpt=resolve_model(self.settings, model_choice, ckpt_path, models or []), relative=relative,
                paste_back=paste_back, full_resolution=full_resolution, enhance=enhance,
                sr_ckpt=resolve_sr(self.settings, sr_choice, sr_ckpt) if enhance else None,
                personalize_steps=personalize_steps or 0)
            result = self.run("Animate", lambda: animate_job(self.settings, request))
        notes = [f"{plural(result.frames, 'frame')}, {result.width}x{result.height} at {result.fps:g} fps, "
                 + ("with the driving video's audio" if result.audio else "no audio") + f", in {result.seconds:.1f} s."]
        if result.frames_without_face:
            notes.append(f"{plural(result.frames_without_face, 'driving frame')} without a face held the last good "
                         "pose.")
        if result.several_faces:
            notes.append("Several faces were seen; the largest was used.")
        if result.personalized_steps:
            notes.append(f"Personalised for {plural(result.personalized_steps, 'step')} on the portrait video first.")
        return str(result.out), str(result.out), " ".join(notes)

    def speak(self, portrait: str | None, audio: str | None, text: str | None, ckpt_path: str | None,
              model_choice: str | None = BUNDLED_CHOICE, models: list[SessionModel] | None = None,
              progress=gr.Progress(track_tqdm=True)) -> tuple[str, str, str]:
        """-> (video to play, file to download, summary)."""
        with shown_on_page("Speak"):
            progress(0, desc="checking the uploads")
            ckpt = resolve_model(self.settings, model_choice, ckpt_path, models or [])
            result = self.run("Speak", lambda: speak_job(self.settings, portrait, audio, text, ckpt))
        summary = (f"{plural(result.frames, 'frame')}, {result.width}x{result.height} at {result.fps:g} fps, "
                   f"with the speech ({result.audio_seconds:.1f} s), in {result.seconds:.1f} s. ")
        summary += (f"{plural(result.phonemes, 'phoneme')} by {result.method}." if result.method != "none" else
                    "No speech found in the audio: the portrait stays still, with blinks.")
        return str(result.out), str(result.out), summary

    def personalize(self, video: str | None, steps: float | None, model_choice: str | None, ckpt_path: str | None,
                    models: list[SessionModel] | None, progress=gr.Progress(track_tqdm=True)):
        """-> (summary, loss curve PNG, checkpoint file, session models, the Animate, Personalize and Speak
        menus). The checkpoint goes to this session only: its state and its download box."""
        models = list(models or [])
        with shown_on_page("Personalize"):
            progress(0, desc="checking the upload")
            base = resolve_model(self.settings, model_choice, ckpt_path, models)
            result, model = self.run("Personalize",
                                     lambda: personalize_job(self.settings, video, steps, base, models))
        models.append(model)
        summary = (f"Held-out PSNR {result.psnr_before:.2f} dB before, {result.psnr_after:.2f} dB after "
                   f"{plural(result.steps, 'step')} ({result.psnr_after - result.psnr_before:+.2f} dB). "
                   f"**{model.label}** is now in the model menus (for this browser session).")
        choices = model_choices(self.settings, models)
        return (summary, str(result.curve_png), str(result.checkpoint), models,
                gr.Dropdown(choices=choices, value=model.label), gr.Dropdown(choices=choices),
                gr.Dropdown(choices=choices))

    def enhance(self, video: str | None, sr_choice: str | None, sr_ckpt: str | None = None,
                progress=gr.Progress(track_tqdm=True)) -> tuple[str, str, str]:
        """-> (video to play, file to download, summary)."""
        with shown_on_page("Enhance"):
            progress(0, desc="checking the upload")
            ckpt = resolve_sr(self.settings, sr_choice, sr_ckpt)
            result = self.run("Enhance", lambda: enhance_job(self.settings, video, ckpt))
        summary = f"{plural(result.frames, 'frame')} super-resolved in {result.seconds:.1f} s."
        return str(result.out), str(result.out), summary


def build_app(settings: AppSettings | None = None) -> gr.Blocks:
    settings = settings or AppSettings()
    handlers = AppHandlers(settings)
    paths = settings.allow_server_paths  # the typed-path boxes exist either way (one API), shown only then
    menu = model_choices(settings, [])
    sr_menu = sr_choices(settings)
    sr_info = "Checkpoints in the server's --models-dir." if sr_menu else "None on this server (--models-dir)."
    # Gradio's cache (uploads and the copies of results it serves): files older than a day go, hourly.
    with gr.Blocks(title="talkingface", analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        models = gr.State([])  # this browser session's personalised models (list[SessionModel])
        gr.Markdown("# talkingface\nMake a portrait talk like a driving video (MetaPortrait).")
        gr.Markdown(settings.limits_text(), elem_id="limits")
        with gr.Tab("Animate"):
            with gr.Row(equal_height=False):
                with gr.Column():
                    portrait = PortraitImage(label="Portrait photo (upload or webcam)", sources=["upload", "webcam"],
                                             type="filepath", height=HEIGHT, elem_id="animate-portrait")
                    portrait_video = gr.Video(label="...or a portrait video (needed to personalise)",
                                              sources=["upload"], include_audio=True, height=HEIGHT,
                                              elem_id="animate-portrait-video")
                    driving = gr.Video(label="Driving video (its motion and audio are used)", sources=["upload"],
                                       include_audio=True, height=HEIGHT, elem_id="animate-driving")
                with gr.Column():
                    model = gr.Dropdown(menu, value=BUNDLED_CHOICE, label="Model",
                                        info="Models you personalise appear here.", elem_id="animate-model")
                    ckpt = gr.Textbox(label="...or a checkpoint path on the server (overrides the menu)",
                                      placeholder="saved/ckpt_full/my_model/ckpt_10_1000.pth.tar",
                                      visible=paths, elem_id="animate-ckpt")
                    relative = gr.Checkbox(True, label="Relative motion (off: absolute landmarks)")
                    paste_back = gr.Checkbox(True, label="Paste back into the portrait (off: the face crop only)")
                    full_resolution = gr.Checkbox(True, label="Full resolution: the portrait's own pixels move "
                                                              "(off: the model's output, upsampled)")
                    steps = gr.Number(0, precision=0, minimum=0, maximum=settings.max_steps,
                                      label="Personalise first: steps on the portrait video (0: none)")
                    enhance = gr.Checkbox(False, label="Enhance: 2x temporal super-resolution of the face")
                    sr_model = gr.Dropdown(sr_menu, value=sr_menu[0] if sr_menu else None,
                                           label="Super-resolution model", info=sr_info, elem_id="animate-sr")
                    sr_ckpt = gr.Textbox(label="...or a super-resolution checkpoint path on the server",
                                         placeholder="temporal_gfpgan.pth", visible=paths)
                    run = gr.Button("Generate", variant="primary", elem_id="animate-run")
                with gr.Column():
                    video = gr.Video(label="Result", interactive=False, height=RESULT_HEIGHT,
                                     elem_id="animate-result")
                    download = gr.File(label="Download", elem_id="animate-download")
                    summary = gr.Markdown(elem_id="animate-summary")
            run.click(handlers.animate,
                      [portrait, portrait_video, driving, model, ckpt, relative, paste_back, enhance, sr_model, sr_ckpt,
                       steps, models, full_resolution], [video, download, summary], concurrency_id=JOBS,
                      concurrency_limit=1)

        with gr.Tab("Speak"):
            with gr.Row(equal_height=False):
                with gr.Column():
                    speaker = PortraitImage(label="Portrait photo (upload or webcam)", sources=["upload", "webcam"],
                                            type="filepath", height=HEIGHT, elem_id="speak-portrait")
                    speech = gr.Audio(label="Speech audio (upload or record)", sources=["upload", "microphone"],
                                      type="filepath", elem_id="speak-audio")
                    words = gr.Textbox(label="...or text to speak (English, with espeak-ng)", lines=3,
                                       placeholder="Hello, this is a test.", elem_id="speak-text")
                    speak_model = gr.Dropdown(menu, value=BUNDLED_CHOICE, label="Model", elem_id="speak-model")
                    speak_ckpt = gr.Textbox(label="...or a checkpoint path on the server (overrides the menu)",
                                            visible=paths, elem_id="speak-ckpt")
                    talk = gr.Button("Generate", variant="primary", elem_id="speak-run")
                with gr.Column():
                    spoken = gr.Video(label="Result (with its sound)", interactive=False, height=RESULT_HEIGHT,
                                      elem_id="speak-result")
                    spoken_file = gr.File(label="Download", elem_id="speak-download")
                    spoken_summary = gr.Markdown(elem_id="speak-summary")
            talk.click(handlers.speak, [speaker, speech, words, speak_ckpt, speak_model, models],
                       [spoken, spoken_file, spoken_summary], concurrency_id=JOBS, concurrency_limit=1)

        with gr.Tab("Personalize"):
            with gr.Row(equal_height=False):
                with gr.Column():
                    person = gr.Video(label="A short video of one person", sources=["upload"], include_audio=True,
                                      height=HEIGHT, elem_id="personalize-video")
                    person_steps = gr.Number(100, precision=0, minimum=1, maximum=settings.max_steps,
                                             label="Fine-tuning steps")
                    base = gr.Dropdown(menu, value=BUNDLED_CHOICE, label="Base model")
                    base_ckpt = gr.Textbox(label="...or a checkpoint path on the server (overrides the menu)",
                                           visible=paths)
                    tune = gr.Button("Personalize", variant="primary", elem_id="personalize-run")
                with gr.Column():
                    tuned = gr.Markdown(elem_id="personalize-summary")
                    curve = gr.Image(label="Loss curve", type="filepath", interactive=False, height=RESULT_HEIGHT)
                    tuned_file = gr.File(label="Personalised checkpoint")
            tune.click(handlers.personalize, [person, person_steps, base, base_ckpt, models],
                       [tuned, curve, tuned_file, models, model, base, speak_model], concurrency_id=JOBS,
                       concurrency_limit=1)

        with gr.Tab("Enhance"):
            with gr.Row(equal_height=False):
                with gr.Column():
                    clip = gr.Video(label="A 256x256 face clip (e.g. an Animate result with paste-back off)",
                                    sources=["upload"], include_audio=True, height=HEIGHT, elem_id="enhance-video")
                    clip_model = gr.Dropdown(sr_menu, value=sr_menu[0] if sr_menu else None,
                                             label="Super-resolution model", info=sr_info, elem_id="enhance-sr")
                    clip_ckpt = gr.Textbox(label="...or a super-resolution checkpoint path on the server",
                                           placeholder="temporal_gfpgan.pth", visible=paths)
                    sharpen = gr.Button("Enhance", variant="primary", elem_id="enhance-run")
                with gr.Column():
                    sharp = gr.Video(label="512x512 result", interactive=False, height=RESULT_HEIGHT,
                                     elem_id="enhance-result")
                    sharp_file = gr.File(label="Download")
                    sharp_summary = gr.Markdown()
            sharpen.click(handlers.enhance, [clip, clip_model, clip_ckpt], [sharp, sharp_file, sharp_summary],
                          concurrency_id=JOBS, concurrency_limit=1)
    return demo


M_ARENA_MAX = -8  # glibc's mallopt parameter for the number of malloc arenas (malloc.h)
MALLOC_ARENAS = 2  # measured over 4 bursts of 8 sessions (benchmarks/bench_app_load.py): RSS +6 to +12 MiB with 2, +254
# with glibc's default of 8 per core, which Gradio's worker threads and the job threads fill one after another


def limit_malloc_arenas() -> None:
    """Fewer glibc malloc arenas, so that memory freed by one job's thread serves the next one's. Skipped
    where MALLOC_ARENA_MAX is set (the operator's choice) or the C library is not glibc."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)
    except (OSError, AttributeError):  # not glibc (macOS, musl): its own allocator, left as it is
        return


def served_folders(settings: AppSettings) -> list[str]:
    """Folders Gradio may serve by path. None when the job folders are under the system temp folder
    (the default): Gradio then copies each result into its cache under a name only that request
    learns, and no job folder can be fetched by its path. Elsewhere Gradio needs --work-dir listed."""
    work = os.path.realpath(settings.work_dir)
    inside = [os.path.realpath(tempfile.gettempdir()), os.path.realpath(os.getcwd())]
    return [] if any(work == root or work.startswith(root + os.sep) for root in inside) else [work]


def serve(settings: AppSettings, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
          block: bool = True) -> gr.Blocks:
    """Build the page and serve it: until Ctrl-C, or in the background with block=False (close() stops it)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)  # our job errors; not every HTTP request Gradio's client makes
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    limit_malloc_arenas()
    # past queue_size waiting jobs Gradio refuses new ones ("the queue is full, try again")
    demo = build_app(settings).queue(max_size=settings.queue_size)
    try:
        # quiet: Gradio's own banner would tell users to edit launch() instead of using --share
        demo.launch(server_name=host, server_port=port, share=share, show_error=True, quiet=True,
                    allowed_paths=served_folders(settings), max_file_size=int(settings.max_upload_mb * 1e6),
                    prevent_thread_lock=True)
    except OSError as e:  # typically the port is taken
        reason = one_line(str(e)).split(". ")[0].rstrip(".")
        raise TalkingFaceError(f"cannot serve on {host}:{port} ({reason}); choose another --port") from None
    print(f"talkingface app: serving on {demo.local_url}" + (f" and {demo.share_url}" if demo.share_url else "")
          + f"; jobs write to {settings.work_dir / 'jobs'}" + ("; Ctrl-C stops it" if block else ""), flush=True)
    if block:
        demo.block_thread()
    return demo
