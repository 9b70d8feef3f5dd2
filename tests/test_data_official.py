"""The official-layout reader: ordering, any frame names, duplicates, validation errors."""
from __future__ import annotations

import numpy as np
import pytest

from talkingface.data.official import OfficialDataset
from talkingface.errors import DataError
from talkingface.landmarks.scheme import get_scheme

from helpers import make_tiny_dataset


def open_tiny(root):
    return OfficialDataset(root, get_scheme("dense669"), 64, 16)


def test_reads_frames_in_path_order_with_encodings(tmp_path):
    root = make_tiny_dataset(tmp_path / "d", frames_per_identity=(3, 2))
    ds = open_tiny(root)
    assert len(ds) == 5 and ds.identities == [0, 1]
    assert [f.image.relative_to(root).as_posix() for f in ds.frames] == sorted(
        f.image.relative_to(root).as_posix() for f in ds.frames)
    item = ds[4]
    assert item["identity_index"] == 1
    assert item["source"].shape == (3, 64, 64) and item["driving_line"].shape == (3, 64, 64)
    assert item["driving_subset"].shape == (58, 2) and item["identity"].shape == (16,)
    assert item["mouth_mask"].shape == (1, 64, 64) and item["mouth_mask"].sum() > 0
    assert 0 <= item["source"].min() and item["source"].max() <= 1
    assert item["driving_line"].max() > 0  # lines were drawn


def test_any_frame_names_and_duplicates_across_identities(tmp_path):
    # The reference glob `[!src_]*` would drop 'sample' and '_x'; duplicates break its name map.
    names = [["sample.png", "_x.png", "a.png"], ["a.png", "c.png"]]
    root = make_tiny_dataset(tmp_path / "d", frames_per_identity=(3, 2), names=names)
    ds = open_tiny(root)
    got = {(f.identity, f.output_name) for f in ds.frames}
    assert got == {(0, "sample.png"), (0, "_x.png"), (0, "0_a.png"), (1, "1_a.png"), (1, "c.png")}


def test_missing_map_is_a_clear_error(tmp_path):
    root = make_tiny_dataset(tmp_path / "d")
    (root / "src_map_dict.pkl").unlink()
    with pytest.raises(DataError, match="src_map_dict.pkl"):
        open_tiny(root)


def test_missing_source_file_names_it(tmp_path):
    root = make_tiny_dataset(tmp_path / "d")
    (root / "src_1_id.npy").unlink()
    with pytest.raises(DataError) as e:
        open_tiny(root)
    assert "src_1_id.npy" in str(e.value)


def test_wrong_landmark_shape_names_the_file(tmp_path):
    root = make_tiny_dataset(tmp_path / "d")
    bad = root / "0" / "ldmks" / "00000001_ldmk.npy"
    np.save(bad, np.zeros((68, 2), np.float32))
    ds = open_tiny(root)
    with pytest.raises(DataError) as e:
        ds[1]
    assert "00000001_ldmk.npy" in str(e.value) and "68x2" in str(e.value)


def test_unreadable_image_names_the_file(tmp_path):
    root = make_tiny_dataset(tmp_path / "d")
    bad = root / "0" / "imgs" / "00000002.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match="00000002.png"):
        open_tiny(root)[2]


def test_wrong_identity_size_is_an_error(tmp_path):
    root = make_tiny_dataset(tmp_path / "d", identity_dim=8)
    with pytest.raises(DataError, match="identity embedding"):
        open_tiny(root)[0]


def test_empty_dataset_is_an_error(tmp_path):
    root = make_tiny_dataset(tmp_path / "d")
    for p in root.glob("*/imgs/*"):
        p.unlink()
    with pytest.raises(DataError, match="no driving frames"):
        open_tiny(root)


def test_map_with_numpy_ints_loads_but_pickled_code_is_refused(tmp_path):
    import os
    import pickle

    root = make_tiny_dataset(tmp_path / "d", names=[["a.png", "b.png", "c.png"], ["d.png", "e.png"]])
    (root / "src_map_dict.pkl").write_bytes(pickle.dumps({f"{n}.png": np.int64(1) for n in "abcde"}))
    assert {f.identity for f in open_tiny(root).frames} == {1}  # the map decides for unique names

    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())

    (root / "src_map_dict.pkl").write_bytes(pickle.dumps({"a.png": Evil()}))
    with pytest.raises(DataError, match="refusing"):
        open_tiny(root)
