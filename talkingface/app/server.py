"""The page of `talkingface app`: three tabs (Animate, Personalize, Enhance) over `jobs`.

Only the app verb imports this module, so Gradio loads only when the app runs.
Errors never reach Gradio as exceptions of ours: user errors become a one-line
`gr.Error` (a message box on the page that stays until closed), unexpected ones the
same plus a traceback in the server log; the server keeps serving either way.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator

from talkingface.app.jobs import (BUNDLED_CHOICE, AnimateRequest, AppSettings, SessionModel, animate_job,
                                  enhance_job, personalize_job, plural, resolve_model)
from talkingface.errors import TalkingFaceError

try:
    import gradio as gr
except ImportError as e:  # an optional extra: say how to get it instead of a traceback
    raise TalkingFaceError('the web app needs Gradio: pip install -e ".[app]"') from e

log = logging.getLogger("talkingface.app")
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


class PortraitImage(gr.Image):
    """gr.Image that passes the uploaded file on undecoded: a file that is not an image then gets the recipe's
    one-line message instead of Gradio's own decoding error (several lines of internals). The recipe decodes it,
    EXIF orientation included."""

    is_template = True  # drawn by the frontend's Image component

    def preprocess(self, payload):
        return None if payload is None else payload.path


def model_choices(models: list[SessionModel]) -> list[str]:
    return [BUNDLED_CHOICE, *(m.label for m in models)]


class AppHandlers:
    """The buttons' functions; arguments in the order of the page's input components."""

    def __init__(self, settings: AppSettings):
        self.settings = settings

    def animate(self, portrait_image: str | None, portrait_video: str | None, driving: str | None,
                model_choice: str | None, ckpt_path: str | None, relative: bool, paste_back: bool, enhance: bool,
                sr_ckpt: str | None, personalize_steps: float | None, models: list[SessionModel] | None,
                full_resolution: bool = True, progress=gr.Progress(track_tqdm=True)) -> tuple[str, str, str]:
        """-> (video to play, file to download, summary)."""
        with shown_on_page("Animate"):
            progress(0, desc="checking the uploads")
            request = AnimateRequest(
                portrait_image=portrait_image, portrait_video=portrait_video, driving=driving,
                ckpt=resolve_model(model_choice, ckpt_path, models or []), relative=relative, paste_back=paste_back,
                full_resolution=full_resolution, enhance=enhance, sr_ckpt=sr_ckpt, personalize_steps=personalize_steps or 0)
            result = animate_job(self.settings, request)
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

    def personalize(self, video: str | None, steps: float | None, model_choice: str | None, ckpt_path: str | None,
                    models: list[SessionModel] | None, progress=gr.Progress(track_tqdm=True)):
        """-> (summary, loss curve PNG, checkpoint file, session models, Animate's menu, this tab's menu)."""
        models = list(models or [])
        with shown_on_page("Personalize"):
            progress(0, desc="checking the upload")
            base = resolve_model(model_choice, ckpt_path, models)
            result, model = personalize_job(self.settings, video, steps, base, models)
        models.append(model)
        summary = (f"Held-out PSNR {result.psnr_before:.2f} dB before, {result.psnr_after:.2f} dB after "
                   f"{plural(result.steps, 'step')} ({result.psnr_after - result.psnr_before:+.2f} dB). "
                   f"**{model.label}** is now in the Animate tab's model menu (for this browser session).")
        choices = model_choices(models)
        return (summary, str(result.curve_png), str(result.checkpoint), models,
                gr.Dropdown(choices=choices, value=model.label), gr.Dropdown(choices=choices))

    def enhance(self, video: str | None, sr_ckpt: str | None,
                progress=gr.Progress(track_tqdm=True)) -> tuple[str, str, str]:
        """-> (video to play, file to download, summary)."""
        with shown_on_page("Enhance"):
            progress(0, desc="checking the upload")
            result = enhance_job(self.settings, video, sr_ckpt)
        summary = f"{plural(result.frames, 'frame')} super-resolved in {result.seconds:.1f} s."
        return str(result.out), str(result.out), summary


def build_app(settings: AppSettings | None = None) -> gr.Blocks:
    settings = settings or AppSettings()
    handlers = AppHandlers(settings)
    limit = f"Videos up to {settings.max_seconds:g} s."
    # Gradio's cache (uploads and the copies of results it serves): files older than a day go, hourly.
    with gr.Blocks(title="talkingface", analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        models = gr.State([])  # this browser session's personalised models (list[SessionModel])
        gr.Markdown("# talkingface\nMake a portrait talk like a driving video (MetaPortrait). " + limit)
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
                    model = gr.Dropdown(model_choices([]), value=BUNDLED_CHOICE, label="Model",
                                        info="Models you personalise appear here.", elem_id="animate-model")
                    ckpt = gr.Textbox(label="...or a checkpoint path on the server (overrides the menu)",
                                      placeholder="saved/ckpt_full/my_model/ckpt_10_1000.pth.tar",
                                      elem_id="animate-ckpt")
                    relative = gr.Checkbox(True, label="Relative motion (off: absolute landmarks)")
                    paste_back = gr.Checkbox(True, label="Paste back into the portrait (off: the face crop only)")
                    full_resolution = gr.Checkbox(True, label="Full resolution: the portrait's own pixels move "
                                                              "(off: the model's output, upsampled)")
                    steps = gr.Number(0, precision=0, minimum=0, maximum=settings.max_steps,
                                      label="Personalise first: steps on the portrait video (0: none)")
                    enhance = gr.Checkbox(False, label="Enhance: 2x temporal super-resolution of the face")
                    sr_ckpt = gr.Textbox(label="Super-resolution checkpoint path on the server (not bundled)",
                                         placeholder="temporal_gfpgan.pth")
                    run = gr.Button("Generate", variant="primary", elem_id="animate-run")
                with gr.Column():
                    video = gr.Video(label="Result", interactive=False, height=RESULT_HEIGHT,
                                     elem_id="animate-result")
                    download = gr.File(label="Download", elem_id="animate-download")
                    summary = gr.Markdown(elem_id="animate-summary")
            run.click(handlers.animate,
                      [portrait, portrait_video, driving, model, ckpt, relative, paste_back, enhance, sr_ckpt, steps,
                       models, full_resolution], [video, download, summary], concurrency_id=JOBS,
                      concurrency_limit=1)

        with gr.Tab("Personalize"):
            with gr.Row(equal_height=False):
                with gr.Column():
                    person = gr.Video(label="A short video of one person", sources=["upload"], include_audio=True,
                                      height=HEIGHT, elem_id="personalize-video")
                    person_steps = gr.Number(100, precision=0, minimum=1, maximum=settings.max_steps,
                                             label="Fine-tuning steps")
                    base = gr.Dropdown(model_choices([]), value=BUNDLED_CHOICE, label="Base model")
                    base_ckpt = gr.Textbox(label="...or a checkpoint path on the server (overrides the menu)")
                    tune = gr.Button("Personalize", variant="primary", elem_id="personalize-run")
                with gr.Column():
                    tuned = gr.Markdown(elem_id="personalize-summary")
                    curve = gr.Image(label="Loss curve", type="filepath", interactive=False, height=RESULT_HEIGHT)
                    tuned_file = gr.File(label="Personalised checkpoint")
            tune.click(handlers.personalize, [person, person_steps, base, base_ckpt, models],
                       [tuned, curve, tuned_file, models, model, base], concurrency_id=JOBS, concurrency_limit=1)

        with gr.Tab("Enhance"):
            with gr.Row(equal_height=False):
                with gr.Column():
                    clip = gr.Video(label="A 256x256 face clip (e.g. an Animate result with paste-back off)",
                                    sources=["upload"], include_audio=True, height=HEIGHT, elem_id="enhance-video")
                    clip_ckpt = gr.Textbox(label="Super-resolution checkpoint path on the server (not bundled)",
                                           placeholder="temporal_gfpgan.pth")
                    sharpen = gr.Button("Enhance", variant="primary", elem_id="enhance-run")
                with gr.Column():
                    sharp = gr.Video(label="512x512 result", interactive=False, height=RESULT_HEIGHT,
                                     elem_id="enhance-result")
                    sharp_file = gr.File(label="Download")
                    sharp_summary = gr.Markdown()
            sharpen.click(handlers.enhance, [clip, clip_ckpt], [sharp, sharp_file, sharp_summary],
                          concurrency_id=JOBS, concurrency_limit=1)
    return demo


def serve(settings: AppSettings, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
          block: bool = True) -> gr.Blocks:
    """Build the page and serve it: until Ctrl-C, or in the background with block=False (close() stops it)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)  # our job errors; not every HTTP request Gradio's client makes
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    demo = build_app(settings).queue()
    try:
        # quiet: Gradio's own banner would tell users to edit launch() instead of using --share
        demo.launch(server_name=host, server_port=port, share=share, show_error=True, quiet=True,
                    allowed_paths=[str(settings.work_dir)], prevent_thread_lock=True)
    except OSError as e:  # typically the port is taken
        reason = one_line(str(e)).split(". ")[0].rstrip(".")
        raise TalkingFaceError(f"cannot serve on {host}:{port} ({reason}); choose another --port") from None
    print(f"talkingface app: serving on {demo.local_url}" + (f" and {demo.share_url}" if demo.share_url else "")
          + f"; jobs write to {settings.work_dir / 'jobs'}" + ("; Ctrl-C stops it" if block else ""), flush=True)
    if block:
        demo.block_thread()
    return demo
