"""Bad inputs give one clear line and exit 2: damaged (NaN) weights, an output that would
overwrite an input, operating-system errors (read-only folder, full disk, a file where a
folder belongs), half-written results and misleading messages (issue 22, items 1, 2, 4, 5 and 6)."""
from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from talkingface.checkpoints.official import load_generator, read_checkpoint, save_checkpoint
from talkingface.checkpoints.sr import save_temporal_sr
from talkingface.cli import main, run_guarded
from talkingface.config import load_config
from talkingface.errors import CheckpointError, NonFiniteError, TalkingFaceError, TrainingError
from talkingface.models.temporal_sr import TemporalSRConfig, TemporalSRNet
from talkingface.utils.atomic import atomic_path
from talkingface.utils.video import write_video

from helpers import MEDIAPIPE_TINY_CONFIG, REPO, TINY_CONFIG, make_tiny_checkpoint, make_tiny_dataset, smooth_image

SR_TINY = TemporalSRConfig(out_size=32, num_style_feat=32, num_mlp=2, narrow=0.0625, zero_out_init=False)
SR_CONFIG = REPO / "talkingface" / "properties" / "model" / "temporal_sr" / "temporal_sr_tiny.yaml"


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Tiny checkpoints (good, NaN, super-resolution, ...), a dataset, an image and a video."""
    root = tmp_path_factory.mktemp("reliability")
    f = {"ckpt": make_tiny_checkpoint(root / "tiny.pth.tar"),
         "mp_ckpt": make_tiny_checkpoint(root / "mp_tiny.pth.tar", MEDIAPIPE_TINY_CONFIG),
         "data": make_tiny_dataset(root / "data", frames_per_identity=(3, 3))}
    for name, source in (("nan", "ckpt"), ("mp_nan", "mp_ckpt")):
        ckpt = torch.load(f[source], weights_only=True)
        ckpt["generator"]["SPDAE_G.conv_img.weight"].fill_(float("nan"))  # the decoder's last layer
        torch.save(ckpt, root / f"{name}.pth.tar")
        f[name] = root / f"{name}.pth.tar"
    torch.manual_seed(0)
    f["sr"] = root / "sr.pth"
    save_temporal_sr(f["sr"], params_ema=TemporalSRNet(SR_TINY))
    f["image"] = root / "face.png"
    Image.fromarray(smooth_image(np.random.default_rng(0), 64)).save(f["image"])
    f["video"] = root / "clip.mp4"
    frames = [smooth_image(np.random.default_rng(i), 64) for i in range(3)]
    write_video(f["video"], iter(frames), 25)
    f["frames"] = root / "frames"
    f["frames"].mkdir()
    for i, px in enumerate(frames):
        Image.fromarray(px[:16, :16]).save(f["frames"] / f"{i:03d}.png")
    return f


def one_error_line(capsys, code: int, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("talkingface: error:")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def digest(path: Path) -> str:
    """Bytes of a file, or of every file under a folder (names included)."""
    h = hashlib.sha256()
    for p in sorted([path] if path.is_file() else path.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(path.parent)).encode() + p.read_bytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- 1. non-finite weights
def test_nan_checkpoint_is_named_at_load(files):
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(files["nan"])
    assert str(err.value) == (f"{files['nan']}: has non-finite values (NaN/inf) in generator key "
                              "'SPDAE_G.conv_img.weight'; the weights are damaged")
    ckpt = torch.load(files["sr"], weights_only=True)
    ckpt["params_ema"][sorted(ckpt["params_ema"])[0]].view(-1)[0] = float("inf")
    torch.save(ckpt, files["sr"].with_name("inf_sr.pth"))
    from talkingface.checkpoints.sr import load_temporal_sr

    with pytest.raises(CheckpointError, match=r"non-finite values \(NaN/inf\) in params_ema key"):
        load_temporal_sr(files["sr"].with_name("inf_sr.pth"))


@pytest.mark.slow
def test_personalize_with_a_nan_checkpoint_is_one_line_not_a_segfault(files, tmp_path):
    """It crashed in a backward pass (exit 139) before: NaN reached a native kernel."""
    run = subprocess.run([sys.executable, "-m", "talkingface", "personalize", "--ckpt", str(files["nan"]),
                          "--data", str(files["data"]), "--out", str(tmp_path / "p.pth.tar"), "--steps", "1",
                          "--random-vgg", "--config", str(TINY_CONFIG), "--device", "cpu"],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 2, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("talkingface: error:")]
    assert len(errors) == 1 and "non-finite values (NaN/inf)" in errors[0] and str(files["nan"]) in errors[0]
    assert not (tmp_path / "p.pth.tar").exists()


@pytest.mark.parametrize("verb", ["animate", "export", "infer"])
def test_nan_checkpoint_is_one_line_for(verb, files, tmp_path, capsys):
    argv = {"animate": ["animate", "--source", str(files["image"]), "--driving", str(files["video"]),
                        "--ckpt", str(files["mp_nan"]), "--out", str(tmp_path / "a.mp4"), "--device", "cpu"],
            "export": ["export", "--ckpt", str(files["nan"]), "--out", str(tmp_path / "e.pth.tar")],
            "infer": ["infer", "--config", str(TINY_CONFIG), "--ckpt", str(files["nan"]), "--data",
                      str(files["data"]), "--out", str(tmp_path / "saved"), "--device", "cpu"]}[verb]
    one_error_line(capsys, main(argv), "non-finite values (NaN/inf) in generator key", "weights are damaged")
    assert not any(tmp_path.iterdir())


def _nan_model(path: Path, config: Path = TINY_CONFIG):
    """A model whose weights turned NaN after loading (the load check cannot see it)."""
    model = load_generator(path, load_config(config)).model
    with torch.no_grad():
        model.state_dict()["refine.decoder.to_rgb.weight"].fill_(float("nan"))
    return model.eval()


def test_rendering_stops_on_non_finite_output(files):
    from talkingface.data.official import open_dataset
    from talkingface.inference import InferenceEngine
    from talkingface.inference.reconstruct import iter_reconstruct

    cfg = load_config(TINY_CONFIG)
    model = _nan_model(files["ckpt"])
    dataset = open_dataset(cfg, files["data"])
    with pytest.raises(NonFiniteError, match="weights or the inputs are damaged"):  # fp32, the exact path
        next(iter_reconstruct(model, dataset, 1, torch.device("cpu")))
    engine = InferenceEngine.prepare(model, "cpu", "fp32")
    with pytest.raises(NonFiniteError, match=r"turned non-finite \(NaN/inf\)"):  # the engine (animate, bf16)
        next(iter_reconstruct(model, dataset, 2, torch.device("cpu"), engine))


def test_enhance_stops_on_non_finite_output():
    from talkingface.inference.sr import enhance_clip

    torch.manual_seed(0)
    model = TemporalSRNet(SR_TINY).eval()
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if n.endswith("weight")).fill_(float("nan"))
    with pytest.raises(NonFiniteError, match="super-resolution output"):
        enhance_clip(model, torch.rand(3, 3, 16, 16))


def test_personalize_stops_when_the_loss_turns_non_finite(files, tmp_path, monkeypatch, capsys):
    import talkingface.recipes.personalize as recipe

    monkeypatch.setattr(recipe, "load_generator", lambda path, cfg: type("L", (), {"model": _nan_model(path)}))
    with pytest.raises(TrainingError, match=r"NaN/inf for 3 steps in a row \(at step 1\)"):
        recipe.run_personalize(recipe.PersonalizeOptions(ckpt=str(files["ckpt"]), data=str(files["data"]),
                                                         out=str(tmp_path / "p.pth.tar"), steps=2, random_vgg=True,
                                                         config=str(TINY_CONFIG), device="cpu", holdout=1))
    assert not (tmp_path / "p.pth.tar").exists()


# --------------------------------------------------------------------------- 2. never overwrite an input
def _overwrite_argv(verb: str, f: dict[str, Path], tmp: Path) -> tuple[list[str], Path]:
    """(argv whose output is one of its inputs, that input), on copies in `tmp`."""
    def copy(key: str) -> Path:
        src, dst = f[key], tmp / f[key].name
        if src.is_dir():
            import shutil

            shutil.copytree(src, dst)
        else:
            dst.write_bytes(src.read_bytes())
        return dst

    if verb == "enhance":
        v = copy("video")
        return ["enhance", "--input", str(v), "--ckpt", str(f["sr"]), "--out", str(v)], v
    if verb == "enhance-folder":
        d = copy("frames")
        return ["enhance", "--input", str(d), "--ckpt", str(f["sr"]), "--out", str(d)], d
    if verb == "personalize":
        c = copy("ckpt")
        return ["personalize", "--ckpt", str(c), "--data", str(f["data"]), "--out", str(c), "--steps", "1"], c
    if verb == "export":
        c = copy("ckpt")
        return ["export", "--ckpt", str(c), "--out", str(tmp / "." / c.name)], c
    if verb == "export-link":
        c = copy("ckpt")
        (tmp / "link.pth.tar").symlink_to(c)
        return ["export", "--ckpt", str(c), "--out", str(tmp / "link.pth.tar")], c
    if verb == "animate":
        v = copy("video")
        return ["animate", "--source", str(f["image"]), "--driving", str(v), "--out", str(v)], v
    if verb == "merge-data":
        d = copy("data")
        return ["merge-data", str(d), "--out", str(d.parent), "--force"], d  # --out holds the input
    if verb == "preprocess":
        v = copy("video")
        return ["preprocess", str(v), "--out", str(v)], v
    if verb == "infer":
        d = copy("data")
        return ["infer", "--config", str(TINY_CONFIG), "--ckpt", str(f["ckpt"]), "--data", str(d), "--out", str(d)], d
    if verb == "evaluate":
        v = copy("video")
        return ["evaluate", "--pred", str(v), "--gt", str(f["video"]), "--out", str(v)], v
    if verb in ("train", "meta-train"):
        c = copy("ckpt")
        flag = ["--stage", "warp", "--init"] if verb == "train" else ["--ckpt"]
        return [verb, "--config", str(TINY_CONFIG), *flag, str(c), "--out", str(c)], c
    if verb == "train-sr":
        c = copy("sr")
        return ["train-sr", "--config", str(SR_CONFIG), "--data", str(tmp), "--init-ckpt", str(c),
                "--out", str(c)], c
    if verb == "make-sr-data":
        d = copy("data")
        return ["make-sr-data", "--data", str(d), "--out", str(d)], d
    if verb == "synth":
        p = copy("image")
        return ["synth", "--portrait", str(p), "--out", str(p)], p
    raise AssertionError(verb)


OVERWRITE_VERBS = ["enhance", "enhance-folder", "personalize", "export", "export-link", "animate", "merge-data",
                   "preprocess", "infer", "evaluate", "train", "meta-train", "train-sr", "make-sr-data", "synth"]


@pytest.mark.parametrize("verb", OVERWRITE_VERBS)
def test_output_equal_to_an_input_is_refused(verb, files, tmp_path, capsys):
    argv, victim = _overwrite_argv(verb, files, tmp_path)
    before = digest(victim)
    one_error_line(capsys, main(argv), "output would overwrite an input")
    assert digest(victim) == before


# --------------------------------------------------------------------------- 5. operating-system errors
def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write in: chmod where that binds, else (root) one under /sys."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o500)
    if not os.access(folder, os.W_OK):
        return folder
    folder.chmod(0o700)
    probe = Path("/sys/talkingface-test-readonly")
    try:
        probe.mkdir()
    except OSError:
        return probe
    probe.rmdir()
    pytest.skip("no unwritable folder available here (root, and /sys is writable)")


def test_read_only_output_folder_is_a_user_error(files, tmp_path, capsys):
    folder = _unwritable_folder(tmp_path)
    try:
        code = main(["export", "--ckpt", str(files["ckpt"]), "--out", str(folder / "e.pth.tar")])
        line = one_error_line(capsys, code, str(folder))
        assert "permission denied" in line or "operation not permitted" in line or "read-only" in line
    finally:
        if folder.is_relative_to(tmp_path):
            folder.chmod(0o700)


def test_a_file_where_a_folder_belongs_is_a_user_error(files, tmp_path, capsys):
    blocker = tmp_path / "report.txt"
    blocker.write_text("not a folder")
    code = main(["export", "--ckpt", str(files["ckpt"]), "--out", str(blocker / "e.pth.tar")])
    one_error_line(capsys, code, f"{blocker}: exists and is a file, not a folder")
    code = main(["evaluate", "--pred", str(files["video"]), "--gt", str(files["video"]), "--out", str(blocker),
                 "--no-video", "--no-face-metrics", "--no-temporal", "--device", "cpu"])
    one_error_line(capsys, code, f"{blocker}: exists and is a file, not a folder")
    assert blocker.read_text() == "not a folder"


def test_a_full_disk_names_the_file_and_the_cause(tmp_path, capsys):
    target = tmp_path / "out.png"

    def write_to_full_disk() -> None:
        with atomic_path(target) as tmp, open("/dev/full", "wb") as full:
            tmp.write_bytes(b"x")
            full.write(b"x" * 4096)
            full.flush()  # ENOSPC, with no file name: the error is about `target`

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    assert run_guarded(write_to_full_disk, debug=False) == 2
    assert capsys.readouterr().err.strip() == f"talkingface: error: {target}: no space left on device"
    assert list(tmp_path.iterdir()) == []  # no partial file left


def test_a_full_disk_during_a_checkpoint_write_says_so(files, tmp_path, monkeypatch):
    def full(*_args, **_kw):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full)
    cfg = load_config(TINY_CONFIG)
    model = load_generator(files["ckpt"], cfg).model
    with pytest.raises(TalkingFaceError, match="disk may be full") as err:
        save_checkpoint(tmp_path / "c.pth.tar", cfg, model)
    assert str(err.value).startswith(f"{tmp_path / 'c.pth.tar'}: could not write the checkpoint")
    assert list(tmp_path.iterdir()) == []


def test_os_errors_without_a_user_cause_stay_internal(capsys):
    def bug() -> None:
        raise OSError("something odd")

    assert run_guarded(bug, debug=False) == 1
    assert "internal error: OSError" in capsys.readouterr().err
    assert run_guarded(lambda: (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only file system")), False) == 2
    assert capsys.readouterr().err.strip() == "talkingface: error: read-only file system"


# --------------------------------------------------------------------------- 6. messages
def test_empty_config_file(files, tmp_path, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing here\n")
    code = main(["infer", "--config", str(empty), "--ckpt", str(files["ckpt"]), "--data", str(files["data"]),
                 "--out", str(tmp_path / "saved")])
    one_error_line(capsys, code, f"{empty}: empty config file")
    code = main(["train-sr", "--config", str(empty), "--out", str(tmp_path / "sr")])
    one_error_line(capsys, code, f"{empty}: empty config file")


@pytest.mark.parametrize("verb", ["animate", "infer", "export", "personalize"])
def test_super_resolution_checkpoint_as_a_base_model(verb, files, tmp_path, capsys):
    sr = str(files["sr"])
    argv = {"animate": ["animate", "--source", str(files["image"]), "--driving", str(files["video"]), "--ckpt", sr,
                        "--out", str(tmp_path / "a.mp4")],
            "infer": ["infer", "--config", str(TINY_CONFIG), "--ckpt", sr, "--data", str(files["data"]),
                      "--out", str(tmp_path / "saved")],
            "export": ["export", "--ckpt", sr, "--out", str(tmp_path / "e.pth.tar")],
            "personalize": ["personalize", "--ckpt", sr, "--data", str(files["data"]), "--steps", "1",
                            "--out", str(tmp_path / "p.pth.tar")]}[verb]
    one_error_line(capsys, main(argv), sr, "this is a super-resolution checkpoint, not a base model")


def test_base_model_given_to_enhance(files, tmp_path, capsys):
    code = main(["enhance", "--input", str(files["video"]), "--ckpt", str(files["ckpt"]),
                 "--out", str(tmp_path / "sr.mp4")])
    one_error_line(capsys, code, "this is a base model checkpoint, not a super-resolution one")


def test_checkpoint_without_generator(files, tmp_path, capsys):
    ckpt = torch.load(files["mp_ckpt"], weights_only=True)
    del ckpt["generator"]
    torch.save(ckpt, tmp_path / "nogen.pth.tar")
    code = main(["animate", "--source", str(files["image"]), "--driving", str(files["video"]),
                 "--ckpt", str(tmp_path / "nogen.pth.tar"), "--out", str(tmp_path / "a.mp4")])
    line = one_error_line(capsys, code, "has no generator weights")
    assert "dense669" not in line


@pytest.mark.parametrize("content", [b"hello, I am a text file\n", b"", b"\x89PNG\r\n\x1a\n0000"])
def test_a_file_that_is_not_a_checkpoint(content, files, tmp_path, capsys):
    bad = tmp_path / "notes.pth.tar"
    bad.write_bytes(content)
    code = main(["export", "--ckpt", str(bad), "--out", str(tmp_path / "e.pth.tar")])
    line = one_error_line(capsys, code, str(bad), "not a PyTorch checkpoint")
    assert "pop from empty list" not in line


@pytest.mark.parametrize("key,value", [("resolution", "abc"), ("identity_dim", None), ("resolution", 2.5)])
def test_a_non_number_in_checkpoint_metadata(key, value, files, tmp_path, capsys):
    ckpt = torch.load(files["ckpt"], weights_only=True)
    ckpt["talkingface"][key] = value
    torch.save(ckpt, tmp_path / "meta.pth.tar")
    code = main(["export", "--ckpt", str(tmp_path / "meta.pth.tar"), "--out", str(tmp_path / "e.pth.tar")])
    one_error_line(capsys, code, f"its metadata has {key}={value!r}, not a whole number")


# --------------------------------------------------------------------------- 4. all or nothing
def _data_with_an_unreadable_frame(files, tmp_path: Path) -> Path:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(files["data"], data)
    (data / "1" / "imgs" / "00000001.png").write_bytes(b"not a png")  # the 5th of 6 frames
    return data


def test_infer_that_fails_mid_dataset_leaves_no_frames_and_no_video(files, tmp_path, capsys):
    data = _data_with_an_unreadable_frame(files, tmp_path)
    saved = tmp_path / "saved"
    code = main(["infer", "--config", str(TINY_CONFIG), "--ckpt", str(files["ckpt"]), "--data", str(data),
                 "--out", str(saved), "--device", "cpu"])
    one_error_line(capsys, code, "cannot read image", "00000001.png")
    assert not saved.exists()  # no PNG folder, no video, no hidden temporary, not even the empty --out


def test_infer_keep_partial_keeps_the_frames_written_as_partial(files, tmp_path, capsys):
    data = _data_with_an_unreadable_frame(files, tmp_path)
    saved = tmp_path / "saved"
    code = main(["infer", "--config", str(TINY_CONFIG), "--ckpt", str(files["ckpt"]), "--data", str(data),
                 "--out", str(saved), "--device", "cpu", "--keep-partial"])
    one_error_line(capsys, code, "cannot read image", f"the 4 frames written before the failure are kept in "
                                                       f"{saved / 'output_64.partial'}")
    assert sorted(p.name for p in saved.iterdir()) == ["output_64.partial"]
    assert len(list((saved / "output_64.partial").glob("*.png"))) == 4


def test_infer_replaces_an_earlier_result_only_when_complete(files, tmp_path, capsys):
    saved = tmp_path / "saved"
    argv = ["infer", "--config", str(TINY_CONFIG), "--ckpt", str(files["ckpt"]), "--out", str(saved),
            "--device", "cpu", "--data"]
    assert main([*argv, str(files["data"])]) == 0
    before = digest(saved)
    one_error_line(capsys, main([*argv, str(_data_with_an_unreadable_frame(files, tmp_path))]), "cannot read image")
    assert digest(saved) == before and sorted(p.name for p in saved.iterdir()) == ["out_64.mp4", "output_64"]


def test_evaluate_that_fails_leaves_no_report_folder(files, tmp_path, capsys):
    pred = tmp_path / "pred"
    pred.mkdir()
    for i in range(3):
        (pred / f"{i:03d}.png").write_bytes(b"not a png")
    out = tmp_path / "new" / "report"
    code = main(["evaluate", "--pred", str(pred), "--gt", str(files["video"]), "--out", str(out),
                 "--no-face-metrics", "--no-temporal", "--device", "cpu"])
    one_error_line(capsys, code, "cannot read as an image")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred"]  # neither report/ nor its new parent


def test_train_on_a_dataset_of_another_scheme_creates_nothing(files, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--config", str(MEDIAPIPE_TINY_CONFIG), "--stage", "warp", "--data", str(files["data"]),
                 "--out", str(out), "--random-vgg", "--max-steps", "1", "--device", "cpu"])
    one_error_line(capsys, code, "mediapipe478 landmarks has shape")
    assert not out.exists()


def _old(path: Path) -> Path:
    """Back-date `path` to before this test process started (as a leftover of a killed run)."""
    t = path.stat().st_mtime - 3600 * 24
    os.utime(path, (t, t))
    return path


def test_stale_partials_of_our_naming_are_removed_by_the_next_write(tmp_path):
    import talkingface.utils.atomic as atomic

    atomic._candidates.clear()  # the folder listing is cached per process; this folder is new anyway
    stale = tmp_path / ".out.k3j_9x2a.partial.mp4"
    stale.write_bytes(b"half a video")
    _old(stale)
    keep = [tmp_path / ".out.mp4.bak", tmp_path / ".out.K3J9X2AB.partial.mp4", tmp_path / "out.partial.mp4",
            tmp_path / ".other.k3j_9x2a.partial.mp4", tmp_path / ".out.k3j_9x2a.partial.png"]
    for p in keep:
        p.write_bytes(b"user file")
        _old(p)
    fresh = tmp_path / ".out.abcdefgh.partial.mp4"  # of our naming but newer than this process: a write in progress
    fresh.write_bytes(b"in progress")
    write_video(tmp_path / "out.mp4", iter([np.zeros((16, 16, 3), np.uint8)] * 2), 25)
    assert not stale.exists()
    assert all(p.read_bytes() == b"user file" for p in keep) and fresh.exists()
    assert (tmp_path / "out.mp4").is_file()


def test_stale_partial_folders_are_removed_by_the_next_folder_write(tmp_path):
    from talkingface.utils.atomic import atomic_dir

    stale = tmp_path / ".output_64.ab12cd34.partial"
    stale.mkdir()
    (stale / "0.png").write_bytes(b"x")
    _old(stale)
    other = tmp_path / "output_64.partial"  # what --keep-partial keeps: the user's, never removed
    other.mkdir()
    _old(other)
    with atomic_dir(tmp_path / "output_64") as tmp:
        (tmp / "1.png").write_bytes(b"y")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["output_64", "output_64.partial"]


def test_a_write_killed_with_sigkill_is_cleaned_by_the_next_run(tmp_path):
    """A real `kill -9` in one process, the next write in another."""
    target = tmp_path / "out.mp4"
    kill = ("import os, signal, sys\nfrom talkingface.utils.atomic import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_bytes(b'half')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    run = subprocess.run([sys.executable, "-c", kill, str(target)], capture_output=True, timeout=60)
    assert run.returncode == -9
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".out.") and left[0].endswith(".partial.mp4"), left
    (tmp_path / "notes.txt").write_text("mine")
    write = ("import sys\nfrom talkingface.utils.atomic import atomic_path\n"
             "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_bytes(b'whole')\n")
    subprocess.run([sys.executable, "-c", write, str(target)], check=True, timeout=60)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "out.mp4"]
    assert target.read_bytes() == b"whole"
