"""`talkingface app` hardening (issue 22, item 7): models only from the allow-list (bundled, the
session's own, --models-dir) unless --allow-server-paths; refusals that do not tell whether a
path exists; personalised models for their session only; upload, image, video, time and queue
limits; a NaN checkpoint that is one line on the page while the server goes on serving.
Handlers are called directly; one live server checks what reaches Gradio's launch."""
from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import gradio as gr
import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from talkingface.app.jobs import BUNDLED_CHOICE, AppSettings
from talkingface.app.models import PATHS_OFF, model_choices, sr_choices
from talkingface.app.server import AppHandlers, build_app, serve, served_folders
from talkingface.cli import main
from talkingface.recipes.animate import BUNDLED_MODEL
from talkingface.utils.video import iter_frames, write_video

from test_app import FRAMES, animate_args, app_settings, free_port, media, models_dir  # noqa: F401 - fixtures

OUTSIDE = ["/etc/passwd", "/etc/no-such-file", "~/.ssh/id_rsa", "../../../../etc/shadow"]  # exist or not


@pytest.fixture(scope="module")
def guarded_models(models_dir, tmp_path_factory) -> Path:
    """--models-dir with the bundled model's weights, one of them filled with NaN, beside the tiny ones."""
    root = tmp_path_factory.mktemp("guarded_models")
    for name in ("tiny.pth.tar", "sr.pth"):
        shutil.copy(models_dir / name, root / name)
    checkpoint = torch.load(BUNDLED_MODEL, map_location="cpu", weights_only=False)
    weight = next(v for v in checkpoint["generator"].values() if v.is_floating_point())
    weight.fill_(float("nan"))
    torch.save(checkpoint, root / "nan.pth.tar")
    (root / "notes.txt").write_text("not a checkpoint: left out of the menus")
    return root


@pytest.fixture(scope="module")
def handlers(tmp_path_factory, guarded_models) -> AppHandlers:
    return AppHandlers(app_settings(tmp_path_factory.mktemp("guarded_work"), guarded_models))


def refusal(call) -> str:
    with pytest.raises(gr.Error) as error:
        call()
    return error.value.message


# --------------------------------------------------------------------------- the allow-list
def test_the_menus_list_the_bundled_model_the_models_dir_and_the_sessions_own(handlers):
    settings = handlers.settings
    assert model_choices(settings, []) == [BUNDLED_CHOICE, "nan.pth.tar", "sr.pth", "tiny.pth.tar"]
    assert sr_choices(settings) == ["nan.pth.tar", "sr.pth", "tiny.pth.tar"]
    page = build_app(settings)
    boxes = {b.elem_id: b for b in page.blocks.values() if getattr(b, "elem_id", None)}
    assert not boxes["animate-ckpt"].visible and not boxes["speak-ckpt"].visible  # no typed paths by default


@pytest.mark.parametrize("where", ["typed", "menu"])
def test_outside_paths_are_refused_with_one_message_whether_they_exist_or_not(where, handlers, media):
    messages = set()
    for path in OUTSIDE:
        given = dict(ckpt_path=path) if where == "typed" else dict(model_choice=path)
        messages.add(refusal(lambda: handlers.animate(**animate_args(media, **given))))
        messages.add(refusal(lambda: handlers.personalize(str(media / "person.mp4"), 1, given.get("model_choice"),
                                                          given.get("ckpt_path"), [])))
        messages.add(refusal(lambda: handlers.speak(str(media / "portrait.png"), None, "Hi.", given.get("ckpt_path"),
                                                    given.get("model_choice"), [])))
    if where == "typed":
        assert messages == {PATHS_OFF}
    else:
        assert len(messages) == 1 and "not on this server's menu" in messages.pop()


def test_outside_super_resolution_paths_are_refused_alike(handlers, media):
    messages = {refusal(lambda: handlers.enhance(str(media / "crops.mp4"), choice, typed))
                for path in OUTSIDE for choice, typed in ((None, path), (path, None))}
    messages |= {refusal(lambda: handlers.animate(**animate_args(media, enhance=True, sr_ckpt=path)))
                 for path in OUTSIDE}
    assert messages == {PATHS_OFF, "that super-resolution model is not on this server's menu"}


def test_allow_server_paths_opens_typed_paths_again(tmp_path, media, models_dir):
    handlers = AppHandlers(app_settings(tmp_path, allow_server_paths=True))
    message = refusal(lambda: handlers.animate(**animate_args(media, ckpt_path=str(tmp_path / "nope.pth.tar"))))
    assert message == "nope.pth.tar: checkpoint file not found"  # the file was looked for: the operator's choice
    video, _, summary = handlers.animate(**animate_args(media, model_choice=BUNDLED_CHOICE,
                                                        ckpt_path=str(models_dir / "tiny.pth.tar")))
    assert len(list(iter_frames(video))) == FRAMES
    boxes = {b.elem_id: b for b in build_app(handlers.settings).blocks.values() if getattr(b, "elem_id", None)}
    assert boxes["animate-ckpt"].visible and boxes["speak-ckpt"].visible


@pytest.mark.slow  # 1.9-4.6 s: among the fast subset's slowest (issue 20: under 3 minutes)
def test_personalised_models_are_only_the_sessions_own(handlers, media):
    summary, _, ckpt, mine, *_ = handlers.personalize(str(media / "person.mp4"), 1, "tiny.pth.tar", "", [])
    assert Path(ckpt).is_file() and mine[0].path == ckpt
    # another session names it in the menu or by its path: refused, so it never gets a copy by personalising it
    assert "nor a model of this browser session" in refusal(
        lambda: handlers.personalize(str(media / "person.mp4"), 1, mine[0].label, "", []))
    assert refusal(lambda: handlers.personalize(str(media / "person.mp4"), 1, BUNDLED_CHOICE, ckpt, [])) == PATHS_OFF
    assert mine[0].label not in model_choices(handlers.settings, [])  # no global listing


# --------------------------------------------------------------------------- limits
def test_an_image_wider_than_the_limit_is_refused(handlers, media, tmp_path):
    wide = tmp_path / "wide.png"
    Image.fromarray(np.zeros((8, 4100, 3), np.uint8)).save(wide)  # 4100 px wide, a few kB on disk
    assert refusal(lambda: handlers.animate(**animate_args(media, portrait_image=str(wide)))) == (
        "wide.png: the portrait photo is 4100x8; this server takes up to 4096 px a side")


def test_video_frames_larger_and_videos_longer_than_the_limits_are_refused(tmp_path, media, guarded_models):
    handlers = AppHandlers(app_settings(tmp_path, guarded_models, max_image_side=300))  # the portrait is 256 px
    big = tmp_path / "big.mp4"
    write_video(big, (np.full((320, 320, 3), 90, np.uint8) for _ in range(3)), 25)
    assert refusal(lambda: handlers.animate(**animate_args(media, driving=str(big)))) == (
        "big.mp4: the driving video is 320x320; this server takes up to 300 px a side")
    assert "long.mp4: the driving video is 3.0 s long; this server takes videos up to 2 s" == refusal(
        lambda: handlers.animate(**animate_args(media, driving=str(media / "long.mp4"))))


def test_a_job_past_the_timeout_is_stopped_and_reported(tmp_path, media, monkeypatch):
    handlers = AppHandlers(app_settings(tmp_path, job_timeout=0.5))
    stopped = threading.Event()

    def endless(*args, **kwargs):
        try:
            while True:
                time.sleep(0.01)
        finally:
            stopped.set()

    monkeypatch.setattr("talkingface.app.server.animate_job", endless)
    start = time.monotonic()
    message = refusal(lambda: handlers.animate(**animate_args(media, model_choice=BUNDLED_CHOICE)))
    assert message == ("the job ran longer than this server's limit of 0.5 s and was stopped; try a shorter video "
                       "or fewer steps")
    assert time.monotonic() - start < 5  # measured 0.5 s: the request stopped waiting
    assert stopped.wait(5)  # and the job itself stopped (measured at once)


# --------------------------------------------------------------------------- a NaN model
def test_a_nan_checkpoint_is_one_line_and_the_next_job_runs(handlers, media):
    for call in (lambda: handlers.animate(**animate_args(media, model_choice="nan.pth.tar")),
                 lambda: handlers.personalize(str(media / "person.mp4"), 1, "nan.pth.tar", "", [])):
        message = refusal(call)
        assert message.startswith("nan.pth.tar: has non-finite values (NaN/inf) in generator key '")
        assert "\n" not in message and str(handlers.settings.models_dir) not in message  # no server folder
    video, _, _ = handlers.animate(**animate_args(media))
    assert len(list(iter_frames(video))) == FRAMES


# --------------------------------------------------------------------------- the verb and the live server
def test_the_options_reach_the_settings(monkeypatch, tmp_path, guarded_models):
    seen = []
    monkeypatch.setattr("talkingface.app.server.serve", lambda settings, **kwargs: seen.append(settings))
    assert main(["app", "--work-dir", str(tmp_path), "--models-dir", str(guarded_models), "--allow-server-paths",
                 "--max-upload-mb", "5", "--max-image-side", "1024", "--job-timeout", "30", "--queue-size", "3"]) == 0
    settings = seen[0]
    assert (settings.models_dir, settings.allow_server_paths, settings.max_upload_mb, settings.max_image_side,
            settings.job_timeout, settings.queue_size) == (guarded_models, True, 5, 1024, 30, 3)
    assert main(["app", "--work-dir", str(tmp_path)]) == 0
    assert (seen[1].allow_server_paths, seen[1].max_upload_mb, seen[1].max_image_side, seen[1].max_seconds,
            seen[1].queue_size) == (False, 200, 4096, 60, 8)
    assert main(["app", "--queue-size", "0"]) == 2 and main(["app", "--models-dir", str(tmp_path / "no")]) == 2


def test_the_live_server_caps_uploads_and_the_queue_and_serves_no_job_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "cache"))
    settings = AppSettings(work_dir=tmp_path / "work", device="cpu", max_upload_mb=1, queue_size=3)
    port = free_port()
    demo = serve(settings, port=port, block=False)
    try:
        assert demo._queue.max_size == 3 and demo.max_file_size == 1_000_000
        url = f"http://127.0.0.1:{port}/gradio_api"
        small = httpx.post(f"{url}/upload", files={"files": ("a.bin", b"x" * 1000)})
        big = httpx.post(f"{url}/upload", files={"files": ("b.bin", b"x" * 1_500_000)})
        assert small.status_code == 200 and big.status_code == 413
        secret = settings.work_dir / "jobs" / "animate-x" / "animated.mp4"  # another session's result, by its path
        secret.parent.mkdir(parents=True)
        secret.write_bytes(b"private")
        assert httpx.get(f"{url}/file={secret}").status_code == 403
        page = httpx.get(f"http://127.0.0.1:{port}/").text
        assert "uploads up to 1 MB" in page and "at most 3 jobs wait" in page
    finally:
        demo.close()


def test_job_folders_are_listed_for_gradio_only_outside_the_temp_folder(tmp_path):
    assert served_folders(AppSettings(work_dir=tmp_path)) == []  # results reach the page through Gradio's cache
    assert served_folders(AppSettings(work_dir="/srv/talkingface-jobs")) == ["/srv/talkingface-jobs"]
