"""Reconstructing an official-layout dataset with a base model: the model (or the inference
engine) over every frame in the dataset's order. Used by `infer`, make-sr-data and the
benchmarks. (The dataset for a config is `talkingface.data.official.open_dataset`; a batch as
generator inputs `talkingface.models.generator.batch_inputs`.)"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from talkingface.data.official import OfficialDataset
from talkingface.inference.cpu import keep_freed_memory
from talkingface.models.generator import batch_inputs
from talkingface.utils.finite import precision_hint, require_finite
from talkingface.utils.images import to_uint8_truncate

__all__ = ["iter_reconstruct", "reconstruct"]


def iter_reconstruct(model, dataset: OfficialDataset, batch_size: int, device: torch.device,
                     engine=None) -> Iterator[tuple[list[int], np.ndarray]]:
    """Run the model over the dataset in its order, yielding (dataset indices, uint8 frames)
    per batch.

    Without `engine`, the plain fp32 generator (exact); with one (an InferenceEngine made
    from `model`), the engine renders."""
    if engine is None and device.type == "cpu":
        # The engine sets this when it is prepared; the exact path needs it too, or every large
        # activation is faulted in afresh (docs/performance.md: the fp32 command 0.33 -> 0.47 frames/s).
        keep_freed_memory()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    encode = engine.encode_source if engine is not None else model.refine.encode_source
    feature_cache: dict[int, list[torch.Tensor]] = {}
    with tqdm(total=len(dataset), unit="frame", desc="infer", dynamic_ncols=True) as bar:
        for batch in loader:
            with torch.inference_mode():
                x = batch_inputs(batch, device)
                ids = batch["identity_index"].tolist()
                for i, k in enumerate(ids):  # the source pyramid depends on the source only
                    if k not in feature_cache:
                        feature_cache[k] = encode(x.source[i:i + 1])
                if engine is not None and len(set(ids)) == 1:
                    features = feature_cache[ids[0]]  # batch 1: the engine repeats it once per batch size
                else:
                    features = [torch.cat([feature_cache[k][s] for k in ids])
                                for s in range(len(feature_cache[ids[0]]))]
                if engine is not None:
                    prediction = engine.render(x, features)
                else:
                    prediction = model.forward_refine(x, model.forward_warp(x), source_features=features)
                    require_finite(prediction, hint=precision_hint("fp32"))  # (the engine checks its own)
            yield batch["index"].tolist(), to_uint8_truncate(prediction)
            bar.update(len(ids))


def reconstruct(model, dataset: OfficialDataset, batch_size: int, device: torch.device, on_batch,
                engine=None) -> int:
    """`iter_reconstruct` with `on_batch(indices, uint8 frames)` called per batch; returns
    the number of frames."""
    done = 0
    for indices, pixels in iter_reconstruct(model, dataset, batch_size, device, engine):
        on_batch(indices, pixels)
        done += len(indices)
    return done
