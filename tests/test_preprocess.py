"""`preprocess` end to end on videos synthesised from real photos, plus validate-data
and merge-data. The photos ship in installable packages (scikit-image's astronaut)
and in tests/data/faces (from the face_recognition sdist)."""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from talkingface.data.official import OfficialDataset
from talkingface.errors import ConfigError, DataError, TalkingFaceError
from talkingface.landmarks.scheme import ROLES, get_scheme
from talkingface.recipes.preprocess import (MergeOptions, PreprocessOptions, ValidateOptions, run_merge,
                                            run_preprocess, run_validate)

from helpers import make_tiny_dataset, photo, smooth_image

REPO = Path(__file__).resolve().parents[1]
FACES = REPO / "tests" / "data" / "faces"
CONFIGS = REPO / "talkingface" / "properties" / "model" / "meta_portrait_base_config"
ASTRO_FRAMES, ASTRO_BLANK = 30, 12
OBAMA_FRAMES = 24
BIDEN_FRAMES = 10


# face centres in the photos (pixels): the synthetic head motion turns about them
FACE_CENTRES = {"astronaut": (225, 125), "obama": (130, 125), "biden": (135, 125)}


def moving_photo(name: str, count: int, scale: float, canvas=(640, 480), blank=(), seed=0):
    """The photo on a grey canvas with its face near the middle, turning, nodding in scale
    and drifting like a talking head; frames in `blank` have no face."""
    image = photo(name)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi)
    w, h = canvas
    cx, cy = FACE_CENTRES[name]
    for i in range(count):
        if i in blank:
            yield np.full((h, w, 3), 110, np.uint8)
            continue
        t = i / count
        m = cv2.getRotationMatrix2D((cx, cy), 6 * np.sin(2 * np.pi * t + phase), scale * (1 + 0.06 * np.sin(np.pi * t)))
        m[0, 2] += w / 2 - cx + 12 * np.sin(2 * np.pi * t)
        m[1, 2] += h / 2 - cy + 6 * np.cos(2 * np.pi * t)
        yield cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_CONSTANT, borderValue=(110, 110, 110))


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    from talkingface.utils.video import write_video

    root = tmp_path_factory.mktemp("media")
    write_video(root / "astronaut.mp4", moving_photo("astronaut", ASTRO_FRAMES, 0.9, blank={ASTRO_BLANK}), 25)
    write_video(root / "obama.mp4", moving_photo("obama", OBAMA_FRAMES, 1.3, seed=1), 25)
    frames_dir = root / "biden_frames"
    frames_dir.mkdir()
    for i, frame in enumerate(moving_photo("biden", BIDEN_FRAMES, 1.3, seed=2)):
        Image.fromarray(frame).save(frames_dir / f"frame_{i:04d}.png")
    rng = np.random.default_rng(3)
    write_video(root / "noface.mp4", (cv2.resize(smooth_image(rng, 64), (320, 240)) for _ in range(8)), 25)
    (root / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + rng.bytes(3000))
    return root


@pytest.fixture(scope="module")
def dataset(media, tmp_path_factory):
    out = tmp_path_factory.mktemp("prep") / "data"
    report = run_preprocess(PreprocessOptions(
        inputs=[str(media / "astronaut.mp4"), str(media / "obama.mp4"), str(media / "biden_frames")],
        out=str(out), preview=True))
    return out, report


def identity_of(out: Path, source: Path) -> int:
    for folder in out.iterdir():
        if folder.name.isdigit() and json.loads((folder / "meta.json").read_text())["source_video"] == str(source):
            return int(folder.name)
    raise AssertionError(f"{source} not in {out}")


# ------------------------------------------------------------------ the main run
def test_output_is_read_by_the_base_dataset_reader(dataset, media):
    out, report = dataset
    assert len(report.processed) == 3 and not report.failed
    ds = OfficialDataset(out, get_scheme("mediapipe478"), 256, 128, with_theta=True)
    assert ds.identities == [0, 1, 2]
    assert len(ds) == (ASTRO_FRAMES - 1) + OBAMA_FRAMES + BIDEN_FRAMES
    item = ds[0]
    assert item["source"].shape == item["driving"].shape == (3, 256, 256)
    assert item["driving_subset"].shape == (58, 2) and item["identity"].shape == (128,)
    assert abs(float(item["identity"].norm()) - 1) < 1e-4
    assert item["eye_mask"].sum() > 0 and item["mouth_mask"].sum() > 0
    assert item["driving_theta"].shape == (2, 3)
    with open(out / "src_map_dict.pkl", "rb") as f:
        mapping = pickle.load(f)
    assert len(mapping) == len(ds)  # every frame listed, names unique across identities


def test_meta_records_fps_boxes_confidence_and_dropped_frames(dataset, media):
    out, _ = dataset
    k = identity_of(out, media / "astronaut.mp4")
    meta = json.loads((out / str(k) / "meta.json").read_text())
    assert meta["scheme"] == "mediapipe478" and meta["fps"] == pytest.approx(25)
    assert meta["frames_decoded"] == ASTRO_FRAMES and meta["frames_kept"] == ASTRO_FRAMES - 1
    assert meta["dropped"]["count"] == 1 and meta["dropped"]["frames"][0]["frame"] == ASTRO_BLANK
    assert len(meta["confidence"]) == ASTRO_FRAMES
    assert all(c > 0.5 for i, c in enumerate(meta["confidence"]) if i != ASTRO_BLANK)
    assert meta["crop"]["mode"] == "static" and len(meta["crop"]["box"]) == 3
    assert meta["source_frame"] != ASTRO_BLANK
    assert len(list((out / str(k) / "imgs").glob("*.png"))) == ASTRO_FRAMES - 1
    names = sorted(p.name for p in (out / str(k) / "imgs").glob("*.png"))
    assert all(n.startswith(meta["frame_name_prefix"]) for n in names)
    assert f"{meta['frame_name_prefix']}{ASTRO_BLANK:08d}.png" not in names
    top = json.loads((out / "meta.json").read_text())
    assert top["scheme"] == "mediapipe478" and top["identity_dim"] == 128 and len(top["identities"]) == 3
    images = json.loads((out / str(identity_of(out, media / "biden_frames")) / "meta.json").read_text())
    assert images["input_kind"] == "images" and images["frames_kept"] == BIDEN_FRAMES


def test_landmarks_agree_with_dlib_on_the_crops(dataset, media):
    from talkingface.preprocess.identity import dlib_landmarks_68

    out, _ = dataset
    scheme = get_scheme("mediapipe478")
    errors = []
    for source in ("astronaut.mp4", "obama.mp4"):
        folder = out / str(identity_of(out, media / source))
        for png in sorted((folder / "imgs").glob("*.png"))[::6]:
            image = np.asarray(Image.open(png).convert("RGB"))
            d = dlib_landmarks_68(image)
            assert d is not None
            sub = np.load(folder / "ldmks" / f"{png.stem}_ldmk.npy")[scheme.subset] * 256
            iod = np.linalg.norm(d[36:42].mean(0) - d[42:48].mean(0))
            r = ROLES
            for position, ref in ((r.left_eye[0], d[36]), (r.left_eye[1], d[39]), (r.right_eye[0], d[42]),
                                  (r.right_eye[1], d[45]), (r.mouth_corners[0], d[48]), (r.mouth_corners[1], d[54]),
                                  (r.mouth_lips[0], d[51]), (r.mouth_lips[1], d[57])):
                errors.append(np.linalg.norm(sub[position] - ref) / iod)
    assert np.median(errors) < 0.05 and np.max(errors) < 0.15


def test_identity_embeddings_tell_people_apart(dataset, media):
    from talkingface.preprocess.identity import identity_embedding

    out, _ = dataset
    ids = {name: np.load(out / f"src_{identity_of(out, media / name)}_id.npy")[0]
           for name in ("obama.mp4", "biden_frames", "astronaut.mp4")}
    for v in ids.values():
        assert v.shape == (128,) and abs(np.linalg.norm(v) - 1) < 1e-5
    other_obama = identity_embedding(photo("obama2"))
    same = float(ids["obama.mp4"] @ other_obama)
    assert same > float(ids["biden_frames"] @ other_obama) and same > float(ids["astronaut.mp4"] @ other_obama)


def test_theta_aligns_the_source_eyes_to_the_template(dataset):
    import torch
    import torch.nn.functional as F

    from talkingface.preprocess.align import ARCFACE_TEMPLATE_112

    out, _ = dataset
    points = np.load(out / "src_1_ldmk.npy")
    theta = torch.from_numpy(np.load(out / "src_1_theta.npy"))[None]
    # where do the template's eye centres sample the crop? at the iris centres
    grid = F.affine_grid(theta, [1, 3, 112, 112], align_corners=False)[0]
    for (tx, ty), iris in zip(ARCFACE_TEMPLATE_112[:2], (468, 473)):
        sampled = (grid[int(round(ty)), int(round(tx))].numpy() + 1) / 2
        assert np.linalg.norm(sampled - points[iris]) < 0.02


def test_preview_and_validate(dataset):
    from talkingface.utils.video import probe_video

    out, _ = dataset
    for k in range(3):
        kept = len(list((out / str(k) / "imgs").glob("*.png")))
        assert probe_video(out / str(k) / "preview.mp4").num_frames == kept
    report = run_validate(ValidateOptions(root=str(out)))
    assert report.scheme == "mediapipe478" and report.identity_dim == 128 and not report.problems
    assert report.resolution == (256, 256)


def test_validate_fails_on_a_broken_copy(dataset, tmp_path):
    out, _ = dataset
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    ldmk = sorted((broken / "0" / "ldmks").glob("*.npy"))[0]
    ldmk.unlink()
    theta = sorted((broken / "1" / "thetas").glob("*.npy"))[0]
    np.save(theta, np.full((2, 3), np.nan, np.float32))
    np.save(broken / "src_2_id.npy", np.zeros((1, 64), np.float32))
    with pytest.raises(DataError, match="problems found"):
        run_validate(ValidateOptions(root=str(broken)))
    from talkingface.preprocess.validate import validate_dataset

    text = "\n".join(validate_dataset(broken).problems)
    assert ldmk.name in text and theta.name in text and "src_2_id.npy" in text


def test_rerun_skips_done_inputs(dataset, media):
    out, _ = dataset
    before = {p: p.stat().st_mtime_ns for p in out.glob("src_[0-9]*")}
    report = run_preprocess(PreprocessOptions(
        inputs=[str(media / "astronaut.mp4"), str(media / "obama.mp4"), str(media / "biden_frames")], out=str(out)))
    assert len(report.skipped) == 3 and not report.processed
    assert {p: p.stat().st_mtime_ns for p in out.glob("src_[0-9]*")} == before


# ------------------------------------------------------------------ faults
def test_no_face_video_is_a_clear_error(media, tmp_path):
    with pytest.raises(TalkingFaceError, match="no face found in any of the 8 frames") as e:
        run_preprocess(PreprocessOptions(inputs=[str(media / "noface.mp4")], out=str(tmp_path / "d")))
    assert "noface.mp4" in str(e.value)
    assert not (tmp_path / "d").exists()  # nothing half-written left behind


def test_corrupt_file_error_names_it(media, tmp_path):
    with pytest.raises(TalkingFaceError) as e:
        run_preprocess(PreprocessOptions(inputs=[str(media / "corrupt.mp4")], out=str(tmp_path / "d")))
    assert "corrupt.mp4" in str(e.value)
    assert not (tmp_path / "d").exists()


def test_bad_inputs_are_reported_and_the_others_finish(media, tmp_path):
    out = tmp_path / "d"
    inputs = [str(media / "noface.mp4"), str(media / "corrupt.mp4"), str(media / "obama.mp4"),
              str(tmp_path / "missing.mp4")]
    with pytest.raises(TalkingFaceError, match="3 of 4 inputs failed"):
        run_preprocess(PreprocessOptions(inputs=inputs, out=str(out), max_frames=6))
    meta = json.loads((out / "meta.json").read_text())
    assert {Path(f["source"]).name for f in meta["failed"]} == {"noface.mp4", "corrupt.mp4", "missing.mp4"}
    assert len(meta["identities"]) == 1 and not (out / ".staging").exists()
    assert not run_validate(ValidateOptions(root=str(out))).problems


def test_a_failure_after_frames_were_written_leaves_nothing(media, tmp_path, monkeypatch):
    import talkingface.preprocess.pipeline as pipeline

    def no_identity(*args, **kwargs):
        raise TalkingFaceError("simulated identity failure")

    monkeypatch.setattr(pipeline, "identity_embedding", no_identity)
    out = tmp_path / "d"
    with pytest.raises(TalkingFaceError, match="simulated identity failure"):
        run_preprocess(PreprocessOptions(inputs=[str(media / "obama.mp4")], out=str(out), max_frames=4))
    assert not out.exists()


def test_an_interrupted_commit_is_cleaned_up_and_redone(media, tmp_path):
    out = tmp_path / "d"
    opts = PreprocessOptions(inputs=[str(media / "obama.mp4")], out=str(out), max_frames=4)
    run_preprocess(opts)
    # simulate a kill in the middle of moving identity 0 in: marker present, a source file missing
    (out / "0" / ".incomplete").touch()
    (out / "src_0_id.npy").unlink()
    report = run_preprocess(opts)
    assert len(report.processed) == 1 and not report.skipped
    assert sorted(p.name for p in out.iterdir() if p.name.isdigit()) == ["0"]
    assert not run_validate(ValidateOptions(root=str(out))).problems


# ------------------------------------------------------------------ options
def test_source_frame_option(media, tmp_path):
    out = tmp_path / "d"
    run_preprocess(PreprocessOptions(inputs=[str(media / "astronaut.mp4")], out=str(out), source_frame=7,
                                     max_frames=14))
    meta = json.loads((out / "0" / "meta.json").read_text())
    assert meta["source_frame"] == 7
    src = np.asarray(Image.open(out / "src_0.png"))
    frame = np.asarray(Image.open(out / "0" / "imgs" / f"{meta['frame_name_prefix']}00000007.png"))
    np.testing.assert_array_equal(src, frame)
    with pytest.raises(TalkingFaceError, match=f"--source-frame {ASTRO_BLANK}"):
        run_preprocess(PreprocessOptions(inputs=[str(media / "astronaut.mp4")], out=str(tmp_path / "e"),
                                         source_frame=ASTRO_BLANK, max_frames=14))


def test_moving_box_at_512(media, tmp_path):
    out = tmp_path / "d"
    run_preprocess(PreprocessOptions(inputs=[str(media / "astronaut.mp4")], out=str(out), moving_box=True, size=512,
                                     max_frames=16))
    meta = json.loads((out / "0" / "meta.json").read_text())
    assert meta["crop"]["mode"] == "moving" and len(meta["crop"]["boxes"]) == 16
    assert meta["crop"]["boxes"][ASTRO_BLANK] is None and len({tuple(b) for b in meta["crop"]["boxes"] if b}) > 1
    ds = OfficialDataset(out, get_scheme("mediapipe478"), 512, 128)
    assert len(ds) == 15 and ds[3]["driving"].shape == (3, 512, 512)
    # resuming into a 512 dataset with 256 crops would mix sizes
    with pytest.raises(DataError, match="512px"):
        run_preprocess(PreprocessOptions(inputs=[str(media / "obama.mp4")], out=str(out), max_frames=2))


def test_config_supplies_crop_settings_and_must_be_mediapipe(tmp_path, media):
    from talkingface.recipes.preprocess import video_settings

    s = video_settings(PreprocessOptions(inputs=[], out="x", config=str(CONFIGS / "mediapipe478_256_eval.yaml")))
    assert (s.size, s.crop_expand, s.crop_offset_y, s.static_box) == (256, 1.3, 0.2, True)
    with pytest.raises(ConfigError, match="landmark_scheme"):
        video_settings(PreprocessOptions(inputs=[], out="x", config=str(CONFIGS / "meta_portrait_256_eval.yaml")))


def test_mediapipe_configs_load_and_build():
    from talkingface.config import load_config
    from talkingface.models.build import build_generator

    names = ["pretrain_warp", "pretrain_full", "meta_train", "eval"]
    for name in names:
        cfg = load_config(CONFIGS / f"mediapipe478_256_{name}.yaml")
        assert cfg.model.landmark_scheme == "mediapipe478" and cfg.model.generator.class_dim == 128
        assert cfg.dataset.ldmk_idx is None
    model = build_generator(load_config(CONFIGS / "mediapipe478_256_eval.yaml"))
    assert model is not None


# ------------------------------------------------------------------ scale: workers, shards, merge
@pytest.mark.slow
def test_workers_shards_and_merge(media, tmp_path):
    inputs = [str(media / "astronaut.mp4"), str(media / "obama.mp4"), str(media / "biden_frames")]
    shard_roots = []
    for k in range(2):
        root = tmp_path / f"shard{k}"
        report = run_preprocess(PreprocessOptions(inputs=inputs, out=str(root), shard=f"{k}/2", max_frames=5,
                                                  workers=2))
        shard_roots.append(root)
        assert not report.failed
    sources = [{json.loads((r / d / "meta.json").read_text())["source_video"]
                for d in ("0", "1") if (r / d).is_dir()} for r in shard_roots]
    assert not sources[0] & sources[1] and sources[0] | sources[1] == set(inputs)
    assert [len(s) for s in sources] == [2, 1]

    merged = tmp_path / "merged"
    result = run_merge(MergeOptions(inputs=[str(r) for r in shard_roots], out=str(merged)))
    assert result.identities == 3 and result.frames == 15
    assert sorted(p.name for p in merged.iterdir() if p.name.isdigit()) == ["0", "1", "2"]
    ds = OfficialDataset(merged, get_scheme("mediapipe478"), 256, 128)
    assert len(ds) == 15
    assert not run_validate(ValidateOptions(root=str(merged))).problems
    # the same inputs again: duplicates are skipped, not doubled
    again = run_merge(MergeOptions(inputs=[str(merged), str(shard_roots[0])], out=str(tmp_path / "m2")))
    assert again.identities == 3 and len(again.duplicates) == 2
    with pytest.raises(DataError, match="already exists"):
        run_merge(MergeOptions(inputs=[str(r) for r in shard_roots], out=str(merged)))


def test_merge_renumbers_and_renames_colliding_frames_of_either_scheme(tmp_path):
    a = make_tiny_dataset(tmp_path / "a", frames_per_identity=(2, 2), seed=0)
    b = make_tiny_dataset(tmp_path / "b", frames_per_identity=(3,), seed=1)
    result = run_merge(MergeOptions(inputs=[str(a), str(b)], out=str(tmp_path / "m")))
    assert result.identities == 3 and result.frames == 7 and result.renamed == 4
    with open(tmp_path / "m" / "src_map_dict.pkl", "rb") as f:
        mapping = pickle.load(f)
    assert len(mapping) == 7 and sorted(set(mapping.values())) == [0, 1, 2]
    ds = OfficialDataset(tmp_path / "m", get_scheme("dense669"), 64, 16)
    assert len(ds) == 7 and len({f.output_name for f in ds.frames}) == 7
    report = run_validate(ValidateOptions(root=str(tmp_path / "m")))
    assert report.scheme == "dense669" and report.identity_dim == 16 and not report.warnings
    other = make_tiny_dataset(tmp_path / "c", frames_per_identity=(1,), identity_dim=8)
    with pytest.raises(DataError, match="identity size"):
        run_merge(MergeOptions(inputs=[str(a), str(other)], out=str(tmp_path / "m3")))


def test_the_base_model_runs_on_the_output(dataset, tmp_path):
    """The same model code on mediapipe478 data: the tiny config with the scheme and the
    identity size switched, fed by the base dataset reader and the inference helpers."""
    import torch
    import yaml

    from talkingface.config import load_config
    from talkingface.data.official import open_dataset
    from talkingface.models.build import build_generator
    from talkingface.models.generator import batch_inputs

    out, _ = dataset
    data = yaml.safe_load((CONFIGS / "meta_portrait_64_tiny.yaml").read_text())
    data["model"]["landmark_scheme"] = "mediapipe478"
    data["model"]["generator"]["class_dim"] = 128
    path = tmp_path / "tiny_mediapipe.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path)
    ds = open_dataset(cfg, out)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    torch.manual_seed(0)
    model = build_generator(cfg).eval()
    with torch.inference_mode():
        prediction = model(batch_inputs(batch, torch.device("cpu")))["prediction"]
    assert prediction.shape == (2, 3, 64, 64) and torch.isfinite(prediction).all()


def test_validate_accepts_names_repeated_across_identities(tmp_path):
    """A map cannot disambiguate repeated names; the reader uses the folder, so validate must not fail."""
    import sys
    from pathlib import Path as _P

    sys.path.insert(0, str(_P(__file__).resolve().parent))
    from helpers import make_tiny_dataset

    from talkingface.recipes.preprocess import ValidateOptions, run_validate

    root = make_tiny_dataset(tmp_path / "d", frames_per_identity=(3, 3))  # same names in both folders
    report = run_validate(ValidateOptions(root=str(root), scheme="dense669", identity_dim=16))
    assert not report.problems and report.warnings
