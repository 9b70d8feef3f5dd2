"""LPIPS on generated weight files (random tensors in the real key layouts), checked
against a plain functional re-computation written here."""
from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F

from talkingface.errors import CheckpointError
from talkingface.metrics.lpips import LpipsMetric, LpipsWeights, find_lpips_weights

# torchvision AlexNet's convolutions: (index in `features`, in, out, kernel, stride, padding).
ALEX_CONVS = [(0, 3, 64, 11, 4, 2), (3, 64, 192, 5, 1, 2), (6, 192, 384, 3, 1, 1), (8, 384, 256, 3, 1, 1),
              (10, 256, 256, 3, 1, 1)]


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lpips")
    g = torch.Generator().manual_seed(0)
    alex = {}
    for idx, cin, cout, k, _, _ in ALEX_CONVS:
        alex[f"features.{idx}.weight"] = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5
        alex[f"features.{idx}.bias"] = torch.randn(cout, generator=g) * 0.1
    alex["classifier.1.weight"] = torch.randn(10, 9216, generator=g)  # present in real files; ignored
    lin = {f"lin{i}.model.1.weight": torch.rand(1, cout, 1, 1, generator=g)
           for i, (_, _, cout, _, _, _) in enumerate(ALEX_CONVS)}
    torch.save(alex, folder / "alexnet-owt-7be5be79.pth")
    torch.save(lin, folder / "alex.pth")
    return LpipsWeights(folder / "alexnet-owt-7be5be79.pth", folder / "alex.pth"), alex, lin


def reference_lpips(a: np.ndarray, b: np.ndarray, alex: dict, lin: dict) -> float:
    """LPIPS v0.1 written out step by step for one pair of uint8 images."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def taps(image):
        x = torch.from_numpy(image).permute(2, 0, 1)[None].double() / 255 * 2 - 1
        x = (x - shift.double()) / scale.double()
        out = []
        for n, (idx, _, _, _, stride, pad) in enumerate(ALEX_CONVS):
            if n in (1, 2):  # max-pool before the 2nd and 3rd convolutions
                x = F.max_pool2d(x, 3, 2)
            x = F.relu(F.conv2d(x, alex[f"features.{idx}.weight"].double(), alex[f"features.{idx}.bias"].double(),
                                stride=stride, padding=pad))
            out.append(x)
        return out

    total = 0.0
    for n, (fa, fb) in enumerate(zip(taps(a), taps(b))):
        fa = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        fb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        w = lin[f"lin{n}.model.1.weight"].double().view(1, -1, 1, 1)
        total += float(((fa - fb) ** 2 * w).sum(1).mean())
    return total


def test_matches_reference_computation(weight_files):
    weights, alex, lin = weight_files
    metric = LpipsMetric(weights)
    rng = np.random.default_rng(0)
    gt = skimage.data.astronaut()[::4, ::4].copy()  # 128 x 128
    preds = [gt, np.clip(gt + rng.normal(0, 20, gt.shape), 0, 255).astype(np.uint8), gt[:, ::-1].copy()]
    got = metric.distances(np.stack(preds), np.stack([gt] * 3))
    expected = [reference_lpips(p, gt, alex, lin) for p in preds]
    assert got[0] == pytest.approx(0.0, abs=1e-7)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)
    assert got[2] > got[1] > 0


def test_weight_lookup(tmp_path, monkeypatch, weight_files):
    weights, _, _ = weight_files
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("TALKINGFACE_LPIPS_ALEXNET", raising=False)
    monkeypatch.delenv("TALKINGFACE_LPIPS_LIN", raising=False)
    found, why = find_lpips_weights()
    assert found is None
    assert "--lpips-alexnet PATH" in why and "--lpips-lin PATH" in why and "hub/checkpoints" in why
    assert "\n" not in why
    # Environment variables, then the torch hub cache for AlexNet.
    monkeypatch.setenv("TALKINGFACE_LPIPS_LIN", str(weights.lin))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "alexnet-owt-7be5be79.pth").write_bytes(weights.alexnet.read_bytes())
    found, why = find_lpips_weights()
    assert why == "" and found == LpipsWeights(cache / "alexnet-owt-7be5be79.pth", weights.lin)
    with pytest.raises(CheckpointError, match="not found"):
        find_lpips_weights(alexnet=tmp_path / "typo.pth")


def test_wrong_files_are_checkpoint_errors(tmp_path, weight_files):
    weights, _, lin = weight_files
    with pytest.raises(CheckpointError, match="features.0.weight"):
        LpipsMetric(LpipsWeights(weights.lin, weights.lin))  # the linear file where AlexNet belongs
    bad = tmp_path / "bad.pth"
    torch.save({k: v[:, :5] for k, v in lin.items()}, bad)
    with pytest.raises(CheckpointError, match="shape"):
        LpipsMetric(LpipsWeights(weights.alexnet, bad))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="cannot read"):
        LpipsMetric(LpipsWeights(junk, weights.lin))
