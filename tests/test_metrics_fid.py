"""FID: the Fréchet distance against a scipy reference, and the Inception-v3 network on
generated weight files in torchvision's key layout."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from talkingface.errors import CheckpointError, DataError
from talkingface.metrics.fid import (GaussianStats, InceptionFeatureExtractor, InceptionV3Features, PoolKind,
                                     fid_from_features, find_inception_weights, frechet_distance, load_inception)


def reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with a general matrix square root."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(ca @ cb).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(ca + cb - 2 * root))


def test_frechet_distance_matches_reference():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 12))
    b = rng.normal(size=(250, 12)) @ rng.normal(size=(12, 12)) * 0.5 + 1.0
    assert fid_from_features(a, b) == pytest.approx(reference_fid(a, b), rel=1e-6)
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-8)
    shift = np.full(12, 0.5)
    assert fid_from_features(a + shift, a) == pytest.approx(12 * 0.25, rel=1e-9)


def test_fewer_samples_than_dimensions_stays_finite():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(20, 64)), rng.normal(size=(20, 64))
    value = frechet_distance(GaussianStats.of(a), GaussianStats.of(b))
    assert np.isfinite(value) and value > 0
    with pytest.raises(DataError, match="at least 2"):
        GaussianStats.of(a[:1])


def test_network_matches_torchvision_layout():
    model = InceptionV3Features(tf_variant=False)
    # torchvision's inception_v3 has 27,161,264 parameters; less the auxiliary head
    # (3,326,696) and the classifier (2,049,000) that leaves the feature trunk's count.
    assert sum(p.numel() for p in model.parameters()) == 21_785_568
    keys = model.state_dict().keys()
    assert "Mixed_7c.branch3x3dbl_3b.bn.running_var" in keys and "Conv2d_1a_3x3.conv.weight" in keys


@pytest.mark.parametrize("classes", [1008, 1000])
def test_loads_either_weight_file_and_extracts_features(tmp_path, classes):
    torch.manual_seed(0)
    model = InceptionV3Features(tf_variant=False)
    with torch.no_grad():  # He scaling keeps activations away from slow denormal floats
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    state = model.state_dict()
    for k, v in state.items():  # non-trivial batch-norm statistics
        if k.endswith("running_var"):
            state[k] = v.uniform_(0.5, 1.5)
    state["fc.weight"] = torch.zeros(classes, 2048)  # the classifier and aux head are ignored
    state["fc.bias"] = torch.zeros(classes)
    state["AuxLogits.conv0.conv.weight"] = torch.zeros(128, 768, 1, 1)
    path = tmp_path / "inception.pth"
    torch.save(state, path)
    extractor = InceptionFeatureExtractor(path)
    tf = classes == 1008
    assert extractor.model.Mixed_7c.pool is (PoolKind.MAX if tf else PoolKind.AVG)
    assert extractor.model.Mixed_7b.pool is (PoolKind.AVG_TF if tf else PoolKind.AVG)
    assert extractor.name.startswith("inception-v3-tf:" if tf else "inception-v3:")
    if tf:  # one forward pass is enough: Inception-v3 takes about a second an image on a CPU
        features = extractor.features(np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8))
        assert features.shape == (2, 2048) and np.isfinite(features).all()
        assert not np.allclose(features[0], features[1])


def test_weight_lookup_and_bad_files(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("TALKINGFACE_INCEPTION", raising=False)
    path, why = find_inception_weights()
    assert path is None and "--inception PATH" in why and "\n" not in why
    with pytest.raises(CheckpointError, match="not found"):
        find_inception_weights(tmp_path / "typo.pth")
    cached = tmp_path / "hub" / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth"
    cached.parent.mkdir(parents=True)
    torch.save({"fc.weight": torch.zeros(1008, 2048)}, cached)
    assert find_inception_weights() == (cached, "")
    with pytest.raises(CheckpointError, match="keys missing"):
        load_inception(cached)
