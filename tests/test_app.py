"""`talkingface app`, the web demo: its handlers on small synthetic media with a tiny
mediapipe478 model (good runs, bad uploads as one-line gr.Error messages, job folders
that never mix, personalised models per browser session, enhance), the CLI verb, and
the page itself driven in headless Chromium (upload, Generate, a video that plays; a
bad upload shows its message and the server keeps serving)."""
from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from talkingface.app.jobs import AppSettings, BUNDLED_CHOICE, prune_jobs
from talkingface.app.server import AppHandlers, serve
from talkingface.cli import main
from talkingface.errors import TalkingFaceError
from talkingface.recipes.animate import BUNDLED_MODEL
from talkingface.utils.video import iter_frames, probe_video, write_video

from helpers import make_tiny_checkpoint, MEDIAPIPE_TINY_CONFIG, missing_requirement, photo, smooth_image, write_tone

FRAMES = 8  # driving frames: a short clip keeps every run to seconds on a CPU
FPS = 25
MAX_SECONDS = 2.0
PERSON_FRAMES = 3  # personalisation holds 1 out and trains on 2: enough to exercise it, cheap on a CPU


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    from talkingface.data.synthetic import MotionSpec, synthesize_clip
    from talkingface.landmarks.scheme import get_scheme
    from talkingface.preprocess.portrait import detect_landmarks

    root = tmp_path_factory.mktemp("app_media")
    Image.fromarray(photo("obama")).save(root / "portrait.png")
    biden = photo("biden")
    clip = synthesize_clip(biden, detect_landmarks(biden), get_scheme("mediapipe478"),
                           MotionSpec(num_frames=FRAMES, max_shift=0.08, max_rotation_deg=5, seed=3))
    write_tone(root / "tone.m4a", FRAMES / FPS + 0.2)
    write_video(root / "driving.mp4", clip.frames, FPS, audio_from=root / "tone.m4a")
    write_video(root / "person.mp4", clip.frames[:PERSON_FRAMES], FPS)
    write_video(root / "crops.mp4", (cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in clip.frames[:4]),
                FPS)
    grey = np.full((32, 32, 3), 110, np.uint8)
    for name in ("long.mp4", "long.mkv"):  # mkv does not store its frame count: the frames are counted
        write_video(root / name, (grey for _ in range(int((MAX_SECONDS + 1) * FPS))), FPS)
    Image.fromarray(smooth_image(np.random.default_rng(0), 128)).save(root / "noface.png")
    (root / "fake.mp4").write_text("a text file renamed .mp4")
    (root / "notes.txt").write_text("not a video")
    (root / "notes.png").write_text("not an image")
    make_tiny_checkpoint(root / "tiny.pth.tar", MEDIAPIPE_TINY_CONFIG)
    return root


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, media) -> Path:
    """The operator's --models-dir: the tiny model and a tiny temporal super-resolution model (64 -> 128)."""
    from talkingface.checkpoints.sr import save_temporal_sr
    from talkingface.models.temporal_sr import TemporalSRConfig, TemporalSRNet

    root = tmp_path_factory.mktemp("app_models")
    shutil.copy(media / "tiny.pth.tar", root / "tiny.pth.tar")
    torch.manual_seed(0)
    save_temporal_sr(root / "sr.pth", params_ema=TemporalSRNet(TemporalSRConfig(
        out_size=128, num_style_feat=32, num_mlp=2, narrow=0.0625, zero_out_init=False)))
    return root


@pytest.fixture(scope="module")
def sr_ckpt(models_dir) -> Path:
    return models_dir / "sr.pth"


def app_settings(work_dir: Path, models_dir: Path | None = None, **overrides) -> AppSettings:
    return AppSettings(work_dir=work_dir, max_seconds=MAX_SECONDS, device="cpu", random_vgg=True,
                       models_dir=models_dir, **overrides)


@pytest.fixture(scope="module")
def handlers(tmp_path_factory, models_dir) -> AppHandlers:
    return AppHandlers(app_settings(tmp_path_factory.mktemp("app_work"), models_dir))


def animate_args(media: Path, **overrides) -> dict:
    """Arguments of AppHandlers.animate as the page sends them: photo, driving video, the tiny model from the
    menu (--models-dir), no typed path."""
    args = dict(portrait_image=str(media / "portrait.png"), portrait_video=None, driving=str(media / "driving.mp4"),
                model_choice="tiny.pth.tar", ckpt_path="", relative=True, paste_back=True,
                enhance=False, sr_choice=None, sr_ckpt="", personalize_steps=0, models=[])
    args.update(overrides)
    return args


def job_folders(handlers: AppHandlers) -> set[Path]:
    root = handlers.settings.work_dir / "jobs"
    return set(root.iterdir()) if root.is_dir() else set()


@pytest.fixture(scope="module")
def two_runs(handlers, media):
    """Two people press Generate at the same moment with the same uploads."""
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(handlers.animate, **animate_args(media)) for _ in range(2)]
        return [f.result() for f in futures]


# --------------------------------------------------------------------------- handlers: good runs
def test_animate_returns_a_video_with_the_driving_frames_fps_and_audio(two_runs, media):
    video, download, summary = two_runs[0]
    assert video == download and Path(video).name == "animated.mp4"
    info = probe_video(video)
    assert info.has_audio and info.fps == pytest.approx(FPS) and (info.width, info.height) == (256, 256)
    assert len(list(iter_frames(video))) == FRAMES
    assert f"{FRAMES} frames, 256x256" in summary and "audio" in summary


def test_simultaneous_jobs_write_to_their_own_folders(two_runs, handlers):
    outputs = [Path(video) for video, _, _ in two_runs]
    assert outputs[0].parent != outputs[1].parent
    for out in outputs:
        assert out.parent.parent == handlers.settings.work_dir / "jobs"
        assert sorted(p.name for p in out.parent.iterdir()) == ["animated.mp4"]
        assert len(list(iter_frames(out))) == FRAMES
    frames = [np.stack(list(iter_frames(out))) for out in outputs]
    assert np.array_equal(frames[0], frames[1])  # same inputs, same model: neither job saw the other's files


@pytest.mark.slow  # 1.9-4.6 s: among the fast subset's slowest (issue 20: under 3 minutes)
def test_personalised_models_belong_to_the_browser_session(handlers, media):
    summary, curve, ckpt, models, animate_menu, personalize_menu, speak_menu = handlers.personalize(
        str(media / "person.mp4"), 1, "tiny.pth.tar", "", [])
    assert "Held-out PSNR" in summary and "after 1 step " in summary
    assert Path(curve).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and Path(ckpt).is_file()
    assert len(models) == 1 and models[0].path == ckpt and models[0].label in summary
    for menu in (animate_menu, personalize_menu, speak_menu):
        assert [label for label, _ in menu.choices] == [BUNDLED_CHOICE, "sr.pth", "tiny.pth.tar", models[0].label]
    assert animate_menu.value == models[0].label

    # the new model animates in that session (the menu's choice, no typed path) ...
    video, _, _ = handlers.animate(**animate_args(media, model_choice=models[0].label, ckpt_path="", models=models))
    assert len(list(iter_frames(video))) == FRAMES
    # ... and is unknown to another session
    with pytest.raises(gr.Error, match="nor a model of this browser session"):
        handlers.animate(**animate_args(media, model_choice=models[0].label, ckpt_path="", models=[]))


@pytest.mark.slow  # 1.9-4.6 s: among the fast subset's slowest (issue 20: under 3 minutes)
def test_enhance_super_resolves_an_uploaded_clip(handlers, media, sr_ckpt):
    video, download, summary = handlers.enhance(str(media / "crops.mp4"), "sr.pth")
    info = probe_video(video)
    assert (info.width, info.height) == (128, 128) and len(list(iter_frames(video))) == 4
    assert "4 frames" in summary
    with pytest.raises(gr.Error, match="choose the super-resolution checkpoint: none is bundled"):
        handlers.enhance(str(media / "crops.mp4"), None)


@pytest.mark.slow  # 1.9-4.6 s: among the fast subset's slowest (issue 20: under 3 minutes)
def test_animate_options_reach_the_recipe_crop_only_and_enhanced(handlers, media, sr_ckpt):
    video, _, summary = handlers.animate(**animate_args(media, paste_back=False, relative=False, enhance=True,
                                                        sr_choice="sr.pth"))
    info = probe_video(video)
    assert (info.width, info.height) == (128, 128)  # the model's 64px crop, super-resolved; no paste-back
    assert len(list(iter_frames(video))) == FRAMES and "128x128" in summary


# --------------------------------------------------------------------------- handlers: faults
BAD_UPLOADS = {
    "text renamed .mp4": (dict(driving="fake.mp4"), "fake.mp4: cannot open as a video"),
    "not a video file": (dict(driving="notes.txt"), "notes.txt: the driving video must be a video"),
    "too long": (dict(driving="long.mp4"), f"long.mp4: the driving video is 3.0 s long; this server takes videos "
                                           f"up to {MAX_SECONDS:g} s"),
    "too long, uncounted": (dict(driving="long.mkv"), f"long.mkv: the driving video is longer than {MAX_SECONDS:g} s"),
    "no driving video": (dict(driving=None), "upload the driving video"),
    "no portrait": (dict(portrait_image=None), "upload a portrait: a photo, a webcam picture or a video"),
    "portrait of another type": (dict(portrait_image="notes.txt"), "notes.txt: the portrait photo must be an image"),
    "no face": (dict(portrait_image="noface.png"), "noface.png: no face found in the source"),
    "text renamed .png": (dict(portrait_image="notes.png"), "notes.png: cannot read this image"),
    "photo and video": (dict(portrait_video="driving.mp4"), "not both"),
    "personalise a photo": (dict(personalize_steps=3), "personalising needs a portrait video"),
    "too many steps": (dict(portrait_image=None, portrait_video="driving.mp4", personalize_steps=10 ** 6),
                       "steps must be a whole number from 0 to 1000"),
    "enhance without weights": (dict(enhance=True), "enhance needs a super-resolution checkpoint"),
    "a typed checkpoint path": (dict(ckpt_path="nope.pth.tar"), "this server takes models from its menus only"),
}


@pytest.mark.parametrize("full_resolution", [True, False])
def test_the_rendering_choice_reaches_the_recipe(full_resolution, handlers, media, monkeypatch):
    import talkingface.recipes.animate as recipe

    seen = []

    def fake(opts):
        seen.append(opts.render)
        raise TalkingFaceError("stop here")

    monkeypatch.setattr(recipe, "run_animate", fake)
    with pytest.raises(gr.Error):
        handlers.animate(**animate_args(media, full_resolution=full_resolution))
    assert seen == ["full" if full_resolution else "model"]


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_uploads_are_one_line_messages_and_leave_no_job_folder(case, handlers, media, caplog):
    overrides, message = BAD_UPLOADS[case]
    files = {k: v if v is None or not isinstance(v, str) else str(media / v) for k, v in overrides.items()}
    before = job_folders(handlers)
    with pytest.raises(gr.Error) as error:
        handlers.animate(**animate_args(media, **files))
    text = error.value.message
    assert message in text and "\n" not in text
    assert str(media) not in text  # the server's folders stay off the page
    assert error.value.duration is None  # stays on the page until closed
    assert job_folders(handlers) == before
    assert not any(r.exc_info for r in caplog.records)  # user errors: no traceback in the log


def test_a_missing_bundled_model_is_a_message_on_the_page(handlers, media, tmp_path, monkeypatch):
    import talkingface.recipes.animate as recipe

    monkeypatch.setattr(recipe, "BUNDLED_MODEL", tmp_path / "bundled_64.pth.tar")
    with pytest.raises(gr.Error, match="bundled_64.pth.tar: the bundled model is not installed"):
        handlers.animate(**animate_args(media, model_choice=BUNDLED_CHOICE))
    with pytest.raises(gr.Error, match="the bundled model is not installed"):
        handlers.personalize(str(media / "person.mp4"), 1, BUNDLED_CHOICE, "", [])


def test_unexpected_errors_are_one_line_messages_with_the_traceback_in_the_log(handlers, media, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr("talkingface.app.server.animate_job", broken)
    with caplog.at_level(logging.ERROR, logger="talkingface.app"):
        with pytest.raises(gr.Error) as error:
            handlers.animate(**animate_args(media))
    assert error.value.message == "internal error: RuntimeError: boom second line (the traceback is in the server log)"
    assert any(r.exc_info and r.exc_info[0] is RuntimeError for r in caplog.records)


def test_old_job_folders_are_pruned(tmp_path):
    old, new = tmp_path / "animate-old", tmp_path / "animate-new"
    for folder in (old, new):
        folder.mkdir()
        (folder / "animated.mp4").write_bytes(b"x")
    stale = time.time() - 25 * 3600
    os.utime(old, (stale, stale))
    prune_jobs(tmp_path, keep_hours=24)
    assert not old.exists() and new.exists()


# --------------------------------------------------------------------------- the verb
def test_importing_talkingface_does_not_import_gradio():
    code = "import sys, talkingface, talkingface.cli, talkingface.app.jobs; sys.exit('gradio' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_app_verb_reports_bad_settings_and_a_taken_port_in_one_line(capsys, tmp_path):
    assert main(["app", "--max-seconds", "0", "--work-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "talkingface: error: --max-seconds must be > 0, got 0"
    with pytest.raises(SystemExit):
        main(["app", "--share", "maybe"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(TalkingFaceError, match="cannot serve on 127.0.0.1"):
            serve(app_settings(tmp_path), port=taken.getsockname()[1], block=False)


# --------------------------------------------------------------------------- the page, in a browser
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through Selenium, with the system's chromedriver (nothing is downloaded)."""
    chromium = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver_path = shutil.which("chromedriver")
    if not (chromium and driver_path):
        missing_requirement("the browser test needs chromium and chromedriver "
                            "(apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1000", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(tmp_path_factory, models_dir):
    port = free_port()
    # the default limits, as users get them (the page shows them, and docs/images/app.png with them)
    settings = AppSettings(work_dir=tmp_path_factory.mktemp("app_server"), device="cpu", models_dir=models_dir)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio_cache")))  # not the shared /tmp/gradio
        demo = serve(settings, port=port, block=False)
        yield f"http://127.0.0.1:{port}/"
        demo.close()


def open_page(driver, url: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#animate-run"))
    return By


def fill_animate(driver, portrait: Path, driving: Path, model: str | None) -> None:
    """Upload through the page's own (hidden) file inputs, choose the model in the menu (None: the bundled
    default), press Generate."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element(By.CSS_SELECTOR, "#animate-portrait input[type=file]").send_keys(str(portrait))
    driver.find_element(By.CSS_SELECTOR, "#animate-driving input[type=file]").send_keys(str(driving))
    assert not driver.find_elements(By.CSS_SELECTOR, "#animate-ckpt textarea")  # no typed paths by default
    if model is not None:
        driver.find_element(By.CSS_SELECTOR, "#animate-model input").click()
        WebDriverWait(driver, 30).until(lambda d: next(
            iter(d.find_elements(By.CSS_SELECTOR, f"li[role=option][aria-label={model!r}]")), None)).click()
        WebDriverWait(driver, 30).until(lambda d: d.find_element(
            By.CSS_SELECTOR, "#animate-model input").get_attribute("value") == model)
    # both uploads finished: the image shows and the driving box holds a player
    WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#animate-portrait img")
                                    and d.find_elements(By.CSS_SELECTOR, "#animate-driving video"))
    driver.find_element(By.CSS_SELECTOR, "#animate-run").click()


@pytest.mark.slow
def test_the_page_animates_in_a_browser_and_shows_bad_uploads(browser, server, media):
    from selenium.webdriver.support.ui import WebDriverWait

    # bad uploads: each message is on the page, visible, in one line
    for portrait, driving, message in (("portrait.png", "fake.mp4", "fake.mp4: cannot open as a video"),
                                       ("notes.png", "driving.mp4", "notes.png: cannot read this image")):
        By = open_page(browser, server)
        fill_animate(browser, media / portrait, media / driving, "tiny.pth.tar")
        shown = WebDriverWait(browser, 60).until(lambda d: [
            e for e in d.find_elements(By.XPATH, f"//*[contains(text(), {message!r})]") if e.is_displayed()])
        assert "\n" not in shown[0].text and str(media) not in shown[0].text

    # the server kept serving: a fresh page, a good run, a video that plays
    screenshot = os.environ.get("TALKINGFACE_SCREENSHOT")  # docs/images/app.png is made this way
    # the README's picture shows the page as a user sees it: the bundled model (when installed), not a random one
    model = None if screenshot and BUNDLED_MODEL.is_file() else "tiny.pth.tar"
    open_page(browser, server)
    assert "uploads up to 200 MB" in browser.find_element(By.CSS_SELECTOR, "#limits").text
    fill_animate(browser, media / "portrait.png", media / "driving.mp4", model)
    video = WebDriverWait(browser, 180).until(lambda d: next(
        (e for e in d.find_elements(By.CSS_SELECTOR, "#animate-result video") if e.get_attribute("src")), None))
    state = WebDriverWait(browser, 30).until(lambda d: d.execute_script(
        "const v = arguments[0]; return v.readyState >= 1 ? {duration: v.duration, width: v.videoWidth} : null;",
        video))
    assert state["duration"] > 0 and state["width"] == 256
    played = browser.execute_async_script(
        "const [v, done] = arguments; v.muted = true;"
        "v.addEventListener('timeupdate', () => { if (v.currentTime > 0) done(v.currentTime); });"
        "v.play().catch(e => done('play failed: ' + e));", video)
    assert isinstance(played, (int, float)) and played > 0, played
    summary = browser.find_element(By.CSS_SELECTOR, "#animate-summary").text
    assert f"{FRAMES} frames, 256x256" in summary
    link = browser.find_element(By.CSS_SELECTOR, "#animate-download a")
    assert link.get_attribute("href").endswith("animated.mp4")

    if screenshot:
        browser.execute_script("window.scrollTo(0, 0); arguments[0].pause(); arguments[0].currentTime = 0.2;", video)
        time.sleep(1)
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(screenshot)
