"""Scene cuts: the streaming detector on synthetic shots of real photos, and `preprocess`
splitting a video that cuts between two people into one identity per person."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from talkingface.data.official import OfficialDataset
from talkingface.data.synthetic import MotionSpec, synthesize_clip
from talkingface.errors import ConfigError, DataError
from talkingface.landmarks.scheme import get_scheme
from talkingface.preprocess.portrait import detect_landmarks
from talkingface.preprocess.scenes import SceneCutDetector, SceneCutSettings, find_cuts
from talkingface.preprocess.segments import group_by_distance
from talkingface.recipes.preprocess import (MergeOptions, PreprocessOptions, ValidateOptions, run_merge,
                                            run_preprocess, run_validate)

from helpers import photo

SHOT = 25  # frames per synthetic shot
SIZE = 128  # crop size of the preprocess runs (small: fast)


def _clip(name: str, seed: int) -> list[np.ndarray]:
    """A 256x256 talking-head shot of a real photo: head motion, mouth motion, blinks."""
    image = photo(name)
    spec = MotionSpec(num_frames=SHOT, seed=seed, blink_every=12)
    return list(synthesize_clip(image, detect_landmarks(image), get_scheme("mediapipe478"), spec).frames)


@pytest.fixture(scope="module")
def shots():
    # A and A2 are two different photos of one man, B is another man
    return {"a": _clip("obama", 1), "b": _clip("biden", 2), "a2": _clip("obama3", 3)}


def _scaled(frames, gain):
    return [np.clip(f.astype(np.float32) * g, 0, 255).astype(np.uint8) for f, g in zip(frames, gain)]


# ------------------------------------------------------------------ the detector
def test_hard_cuts_are_found_at_the_exact_frame_at_any_frame_size(shots):
    frames = shots["a"] + shots["b"] + shots["a2"]
    assert find_cuts(frames) == [SHOT, 2 * SHOT]
    wide = [cv2.resize(f, (400, 224), interpolation=cv2.INTER_AREA) for f in frames]
    assert find_cuts(wide) == [SHOT, 2 * SHOT]
    grey = [np.repeat(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2) for f in frames]
    assert find_cuts(grey) == [SHOT, 2 * SHOT]  # black-and-white footage: structure alone
    detector = SceneCutDetector()
    scores = []
    for f in frames:
        detector.push(f)
        scores.append(detector.score)
    assert scores[0] is None
    within = [sc for i, sc in enumerate(scores[1:], 1) if i not in (SHOT, 2 * SHOT)]
    assert max(within) < 0.1 and min(scores[SHOT], scores[2 * SHOT]) > 0.45  # a wide margin each side of 0.3


def test_one_shot_with_motion_brightness_drift_and_flat_frames_has_no_cut(shots):
    drift = _scaled(shots["a"], np.linspace(0.6, 1.4, SHOT))  # slow exposure change
    drift[8] = np.zeros_like(drift[8])  # a black frame
    drift[16] = np.full_like(drift[16], 255)  # a white flash
    step = _scaled(shots["b"], [1.0] * 12 + [1.3] * (SHOT - 12))  # sudden exposure step
    assert find_cuts(drift) == [] and find_cuts(step) == []


def test_a_fade_through_black_cuts_at_the_first_frame_of_the_new_shot(shots):
    fade = _scaled(shots["a"][20:], [0.7, 0.45, 0.2, 0.0, 0.0])
    frames = shots["a"][:20] + fade + shots["b"]
    assert find_cuts(frames) == [25]


def test_min_shot_frames_and_reset(shots):
    frames = shots["a"][:20] + shots["b"][:3] + shots["a2"]
    assert find_cuts(frames) == [20, 23]  # default: every cut, so a 3-frame insert is its own shot
    assert find_cuts(frames, SceneCutSettings(min_shot_frames=5)) == [20]
    assert find_cuts(frames, SceneCutSettings(threshold=0.9)) == []
    detector = SceneCutDetector()
    assert [detector.push(f) for f in (shots["a"][0], shots["b"][0])] == [False, True]
    detector.reset()
    assert detector.push(shots["a"][0]) is False  # a new stream: nothing to cut from


def test_settings_and_frames_are_checked():
    for bad in ({"threshold": 0}, {"ratio": 0.5}, {"window": 0}, {"min_shot_frames": 0}, {"thumb_size": 4}):
        with pytest.raises(ConfigError):
            SceneCutSettings(**bad)
    detector = SceneCutDetector()
    for frame in (np.zeros((32, 32), np.uint8), np.zeros((32, 32, 3), np.float32)):
        with pytest.raises(DataError, match="uint8 RGB"):
            detector.push(frame)


def test_grouping_is_average_linkage():
    # 0 and 2 close, 1 far from both; 3 sits between the two groups and joins neither
    d = [np.array([0.0, 0.0]), np.array([1.0, 0.0]), np.array([0.05, 0.0]), np.array([0.5, 0.0])]
    assert group_by_distance(d, 0.4) == [0, 1, 0, 2]
    assert group_by_distance(d, 0.6) == [0, 1, 0, 0]
    assert group_by_distance([], 0.4) == [] and group_by_distance(d[:1], 0.4) == [0]


# ------------------------------------------------------------------ preprocess
def _frames_folder(path: Path, frames) -> Path:
    path.mkdir(parents=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(path / f"{i:04d}.png")
    return path


def _meta(out: Path, k: int) -> dict:
    return json.loads((out / str(k) / "meta.json").read_text())


def _frame_indices(out: Path, k: int) -> list[int]:
    return sorted(int(p.stem.rsplit("_", 1)[1]) for p in (out / str(k) / "imgs").glob("*.png"))


@pytest.fixture(scope="module")
def aba(shots, tmp_path_factory):
    """A video cutting A -> B -> A (the second A another photo of the same man), preprocessed."""
    from talkingface.utils.video import write_video

    root = tmp_path_factory.mktemp("scenes")
    video = root / "aba.mp4"
    write_video(video, shots["a"] + shots["b"] + shots["a2"], 25)
    out = root / "data"
    report = run_preprocess(PreprocessOptions(inputs=[str(video)], out=str(out), size=SIZE))
    return video, out, report


def test_a_b_a_video_gives_one_identity_per_person(aba):
    video, out, report = aba
    assert report.processed == [(str(video), [0, 1])] and not report.failed
    assert sorted(p.name for p in out.iterdir() if p.name.isdigit()) == ["0", "1"]
    a, b = _meta(out, 0), _meta(out, 1)
    for meta in (a, b):
        assert meta["scene_cuts"] == [SHOT, 2 * SHOT] and meta["identities_of_input"] == [0, 1]
        assert meta["source_video"] == str(video) and meta["input_identities"] == 2
        assert [(s["start"], s["end"], s["identity"]) for s in meta["shots"]] == [
            (0, SHOT, 0), (SHOT, 2 * SHOT, 1), (2 * SHOT, 3 * SHOT, 0)]
    assert [(s["start"], s["end"]) for s in a["segments"]] == [(0, SHOT), (2 * SHOT, 3 * SHOT)]
    assert [(s["start"], s["end"]) for s in b["segments"]] == [(SHOT, 2 * SHOT)]
    # every frame of its shots, minus those dropped for no face, and nothing else
    for k, meta in ((0, a), (1, b)):
        ranges = [range(s["start"], s["end"]) for s in meta["segments"]]
        dropped = {d["frame"] for d in meta["dropped"]["frames"]}
        expected = [i for r in ranges for i in r if i not in dropped]
        assert _frame_indices(out, k) == expected and meta["frames_kept"] == len(expected)
        assert len(dropped) <= 2 and all(any(i in r for r in ranges) for i in dropped)
        assert any(meta["source_frame"] in r for r in ranges)
    # each shot found its own face: a static box per shot
    assert a["crop"]["box"] == a["segments"][0]["box"] != a["segments"][1]["box"]
    ids = [np.load(out / f"src_{k}_id.npy")[0] for k in (0, 1)]
    assert np.linalg.norm(ids[0] - ids[1]) > a["scene_split"]["same_person_distance"]
    assert not run_validate(ValidateOptions(root=str(out))).problems
    ds = OfficialDataset(out, get_scheme("mediapipe478"), SIZE, 128, with_theta=True)
    assert ds.identities == [0, 1] and len(ds) == a["frames_kept"] + b["frames_kept"]


@pytest.mark.slow
def test_a_new_shot_starts_from_scratch(shots, tmp_path):
    """The last shot of A -> B -> A gives exactly what that shot alone gives: no box, Face
    Mesh track or smoothing carries over a cut. Image folders, so both see the same pixels."""
    both = _frames_folder(tmp_path / "aba", shots["a"] + shots["b"] + shots["a2"])
    alone = _frames_folder(tmp_path / "a2", shots["a2"])
    out = tmp_path / "d"
    run_preprocess(PreprocessOptions(inputs=[str(both), str(alone)], out=str(out), size=SIZE))
    metas = {k: _meta(out, k) for k in range(3)}
    split = next(k for k, m in metas.items() if m["source_video"] == str(both) and m["input_identity"] == 0)
    single = next(k for k, m in metas.items() if m["source_video"] == str(alone))
    assert _meta(out, single)["segments"][0]["box"] == _meta(out, split)["segments"][1]["box"]
    for i in _frame_indices(out, single):
        name = f"{_meta(out, single)['frame_name_prefix']}{i:08d}_ldmk.npy"
        other = f"{_meta(out, split)['frame_name_prefix']}{2 * SHOT + i:08d}_ldmk.npy"
        np.testing.assert_array_equal(np.load(out / str(single) / "ldmks" / name),
                                      np.load(out / str(split) / "ldmks" / other))


def test_resume_redoes_an_input_killed_between_its_identities(aba, tmp_path):
    video, done, _ = aba
    out = tmp_path / "d"
    shutil.copytree(done, out)
    assert run_preprocess(PreprocessOptions(inputs=[str(video)], out=str(out), size=SIZE)).skipped == [str(video)]
    # a kill after identity 0 was complete and before identity 1 was moved in
    shutil.rmtree(out / "1")
    for path in out.glob("src_1*"):
        path.unlink()
    report = run_preprocess(PreprocessOptions(inputs=[str(video)], out=str(out), size=SIZE))
    assert report.processed == [(str(video), [0, 1])] and not report.skipped
    assert sorted(p.name for p in out.iterdir() if p.name.isdigit()) == ["0", "1"]
    for k in (0, 1):
        assert _frame_indices(out, k) == _frame_indices(done, k)
    assert not run_validate(ValidateOptions(root=str(out))).problems


def test_merge_keeps_every_identity_of_a_split_input(aba, tmp_path):
    _, out, _ = aba
    merged = run_merge(MergeOptions(inputs=[str(out)], out=str(tmp_path / "m")))
    assert merged.identities == 2 and not merged.duplicates
    twice = run_merge(MergeOptions(inputs=[str(out), str(tmp_path / "m")], out=str(tmp_path / "m2")))
    assert twice.identities == 2 and len(twice.duplicates) == 2


def test_no_scene_split_and_threshold_flags(aba, tmp_path):
    from talkingface.cli import main

    video, _, _ = aba
    out = tmp_path / "d"
    assert main(["preprocess", str(video), "--out", str(out), "--size", str(SIZE), "--no-scene-split"]) == 0
    meta = _meta(out, 0)
    assert not (out / "1").exists() and meta["scene_cuts"] == [] and meta["scene_split"] == {"enabled": False}
    assert meta["input_identities"] == 1 and meta["frames_decoded"] == 3 * SHOT
    assert main(["preprocess", str(video), "--out", str(tmp_path / "e"), "--scene-threshold", "1.5"]) == 2


def test_a_short_insert_is_dropped_and_the_shots_around_it_joined(shots, tmp_path):
    from talkingface.utils.video import write_video

    video = tmp_path / "insert.mp4"
    write_video(video, shots["a"][:20] + shots["b"][:4] + shots["a2"][:20], 25)
    out = tmp_path / "d"
    report = run_preprocess(PreprocessOptions(inputs=[str(video)], out=str(out), size=SIZE))
    assert report.processed == [(str(video), [0])]
    meta = _meta(out, 0)
    assert meta["scene_cuts"] == [20, 24]
    assert [(s["start"], s["end"], s["identity"]) for s in meta["shots"]] == [(0, 20, 0), (20, 24, None), (24, 44, 0)]
    assert "fewer than 8" in meta["shots"][1]["discarded"]
    assert all(i < 20 or i >= 24 for i in _frame_indices(out, 0))
    assert meta["frames_kept"] == 40 - meta["dropped"]["count"]
    assert report.frames_dropped == 4 + meta["dropped"]["count"]


def test_two_people_in_one_shot_keep_one_and_say_so(shots, tmp_path, capsys):
    """Two faces side by side in every frame: one person per shot is kept, with one warning line
    naming the frame, and meta.json records where the search saw several faces."""
    from talkingface.utils.video import write_video

    video = tmp_path / "two.mp4"
    write_video(video, [np.concatenate([a, b], axis=1) for a, b in zip(shots["a"], shots["b"])], 25)
    report = run_preprocess(PreprocessOptions(inputs=[str(video)], out=str(tmp_path / "data"), size=SIZE,
                                              scene_split=False))
    assert report.processed == [(str(video), [0])] and not report.failed
    assert _meta(tmp_path / "data", 0)["several_faces_at"] == [0]
    err = capsys.readouterr()
    lines = [line for line in (err.out + err.err).splitlines() if "more than one face" in line]
    assert len(lines) == 1 and str(video) in lines[0] and "frame(s) 0" in lines[0]
