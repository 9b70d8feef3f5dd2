"""The official 256 architecture end to end: parity weights in an official-format file,
the bundled sample dataset, the seed inference path. The optimised path (folded
spectral norm, source encoded once, batching) must give the straightforward path's pixels."""
from __future__ import annotations

import pytest
import numpy as np
import torch
from PIL import Image

from talkingface.checkpoints.official import load_generator
from talkingface.config import load_config
from talkingface.data.official import open_dataset
from talkingface.data.sample import install_sample_data
from talkingface.models.generator import batch_inputs
from talkingface.recipes.infer import InferOptions, run_inference
from talkingface.utils.images import to_uint8_truncate

from conftest import EVAL_CONFIG

pytestmark = pytest.mark.slow  # full-size or subprocess-heavy: left out of the fast subset (-m "not slow")


def test_sample_dataset_with_official_format_checkpoint(tmp_path, base_manifest, fill_state_dict):
    ckpt = tmp_path / "ckpt_base.pth.tar"
    torch.save({"generator": fill_state_dict(base_manifest["generator"]),
                "discriminator": fill_state_dict(base_manifest["discriminator"]), "epoch": 0}, ckpt)
    root, _ = install_sample_data(tmp_path / "data")
    for p in sorted((root / "0" / "imgs").glob("*.png"))[3:]:  # keep 3 frames: full size costs ~3 s a frame
        p.unlink()
    result = run_inference(InferOptions(config=str(EVAL_CONFIG), ckpt=str(ckpt), data_root=str(root),
                                        save_dir=str(tmp_path / "saved"), batch_size=2))
    assert result.frames == 3 and result.video.is_file()

    cfg = load_config(EVAL_CONFIG)
    model = load_generator(ckpt, cfg).model.eval()  # spectral norm applied at run time
    ds = open_dataset(cfg, root)
    worst = 0
    with torch.inference_mode():
        for i in range(2):
            batch = torch.utils.data.default_collate([ds[i]])
            want = to_uint8_truncate(model(batch_inputs(batch, torch.device("cpu")))["prediction"])[0].astype(int)
            got = np.asarray(Image.open(result.frames_dir / ds.frames[i].output_name)).astype(int)
            worst = max(worst, int(np.abs(got - want).max()))
            print(f"frame {i}: max diff {np.abs(got - want).max()} grey levels, "
                  f"{int((got != want).any(-1).sum())} pixels differ")
    assert worst <= 1
