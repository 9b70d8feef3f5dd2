"""The optimised inference path (talkingface.inference) against the straightforward one.

No timings here (benchmarks/bench_infer.py prints those): only that the optimised
path's output matches the reference's — fp32 within 1e-4 and one grey level, bf16 at
40 dB PSNR or more. Tiny config for everything but one full-size check.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from talkingface.checkpoints.official import load_official_state
from talkingface.config import load_config
from talkingface.data.official import open_dataset
from talkingface.inference import engine as engine_mod
from talkingface.inference.engine import (InferenceEngine, LowPrecisionConv, SourceCache, choose_precision,
                                          generator_psnr_check, lower_conv_precision, psnr_uint8)
from talkingface.inference.fused import FusedSPADEResBlock, fuse_spade_blocks
from talkingface.models.build import build_generator
from talkingface.models.generator import GeneratorInputs, batch_inputs
from talkingface.models.refinement import SPADEResBlock
from talkingface.utils.images import to_uint8_round, to_uint8_truncate

from conftest import EVAL_CONFIG
from helpers import TINY_CONFIG, make_tiny_dataset, make_tiny_video_dataset

FP32_TOL = 1e-4
MIN_PSNR = 40.0


@pytest.fixture(scope="module")
def tiny_cfg():
    return load_config(TINY_CONFIG)


@pytest.fixture(scope="module")
def tiny_model(tiny_cfg):
    """Random init, spectral norm attached (as a checkpoint loads), eval mode."""
    torch.manual_seed(0)
    return build_generator(tiny_cfg).eval()


@pytest.fixture(scope="module")
def tiny_inputs(tiny_cfg, tmp_path_factory) -> GeneratorInputs:
    """Four driving frames of one identity (a coherent clip of smooth images)."""
    root = make_tiny_video_dataset(tmp_path_factory.mktemp("clip"), frames=4)
    dataset = open_dataset(tiny_cfg, root)
    batch = torch.utils.data.default_collate([dataset[i] for i in range(4)])
    return batch_inputs(batch, torch.device("cpu"))


def frames(x: GeneratorInputs, start: int, stop: int) -> GeneratorInputs:
    return GeneratorInputs(**{k: v[start:stop] for k, v in vars(x).items()})


def reference_path(model: nn.Module, x: GeneratorInputs) -> torch.Tensor:
    """What the reference does: one frame at a time, the whole model each time."""
    with torch.inference_mode():
        return torch.cat([model(frames(x, i, i + 1))["prediction"] for i in range(x.source.shape[0])])


def prepare(model: nn.Module, **options) -> InferenceEngine:
    """A copy of the model prepared, leaving glibc's allocator settings alone (process-wide)."""
    return InferenceEngine.prepare(copy.deepcopy(model), "cpu", keep_freed_memory=False, **options)


def engine_path(model: nn.Module, x: GeneratorInputs, batch: int, **options) -> torch.Tensor:
    engine = prepare(model, **options)
    cache = SourceCache(engine)
    count = x.source.shape[0]
    return torch.cat([engine.render(frames(x, i, i + batch), cache.features([0] * min(batch, count - i),
                                                                             x.source[i:i + batch]))
                      for i in range(0, count, batch)])


def assert_exact(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert (got - want).abs().max().item() <= FP32_TOL
    assert np.abs(to_uint8_truncate(got).astype(int) - to_uint8_truncate(want).astype(int)).max() <= 1


@pytest.mark.parametrize("options", [
    dict(batch=1, fuse=False, channels_last=False),
    dict(batch=1, channels_last=False),
    dict(batch=4, channels_last=False),
    dict(batch=1),
    dict(batch=4),
    dict(batch=3),  # a short last batch
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_fp32_engine_matches_reference(tiny_model, tiny_inputs, options):
    want = reference_path(tiny_model, tiny_inputs)
    got = engine_path(tiny_model, tiny_inputs, **options)
    assert_exact(got, want)


@pytest.mark.slow
@pytest.mark.parametrize("channels_last", [False, True])
def test_bf16_engine_stays_above_40_db(tiny_model, tiny_inputs, channels_last):
    want = to_uint8_truncate(reference_path(tiny_model, tiny_inputs))
    got = to_uint8_truncate(engine_path(tiny_model, tiny_inputs, batch=4, precision="bf16", channels_last=channels_last))
    assert psnr_uint8(got, want) >= MIN_PSNR


@pytest.mark.parametrize("in_ch,out_ch", [(16, 8), (8, 8)], ids=["with-skip", "identity-skip"])
def test_fused_spade_block_matches_original(in_ch, out_ch):
    torch.manual_seed(0)
    block = SPADEResBlock(in_ch, out_ch, condition_channels=12, identity_dim=16, instance_norm=True,
                          spectral_norm=False, hidden=24).eval()
    with torch.no_grad():  # non-trivial biases, so that every term of the blend matters
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x, cond, ident = torch.randn(2, in_ch, 16, 16), torch.rand(2, 12, 16, 16), torch.randn(2, 16)
    assert FusedSPADEResBlock.supports(block)
    fused = FusedSPADEResBlock(block)
    with torch.inference_mode():
        want = block(x, cond, ident)
        got = fused(x, cond, ident)
    assert (got - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())


def test_batch_norm_spade_blocks_are_left_alone():
    block = SPADEResBlock(8, 8, condition_channels=4, identity_dim=4, instance_norm=False, spectral_norm=False)
    assert not FusedSPADEResBlock.supports(block)
    holder = nn.Sequential(block)
    assert fuse_spade_blocks(holder) == 0 and holder[0] is block


def test_every_decoder_block_is_fused_and_every_conv_lowered(tiny_model):
    engine = prepare(tiny_model, precision="bf16")
    blocks = list(engine.model.refine.decoder.blocks)
    assert blocks and all(isinstance(b, FusedSPADEResBlock) for b in blocks)
    assert not any(type(m) in (nn.Conv2d, nn.ConvTranspose2d) for m in engine.model.modules())
    assert all(m.weight.dtype == torch.bfloat16 for m in engine.model.modules() if isinstance(m, LowPrecisionConv))
    assert not any(hasattr(m, "weight_u") for m in engine.model.modules())  # spectral norm folded


def test_low_precision_conv_is_float32_in_and_out():
    torch.manual_seed(0)
    holder = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ConvTranspose2d(6, 5, 4))
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        want = holder(x)
        assert lower_conv_precision(holder, torch.bfloat16) == 2
        got = holder(x)
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert (got - want).abs().max().item() < 0.05 * want.abs().max().item()


def test_source_cache_encodes_each_identity_once(tiny_cfg, tmp_path):
    torch.manual_seed(1)
    model = build_generator(tiny_cfg).eval()
    root = make_tiny_dataset(tmp_path / "data", frames_per_identity=(2, 2))
    dataset = open_dataset(tiny_cfg, root)
    batch = torch.utils.data.default_collate([dataset[i] for i in range(4)])
    x = batch_inputs(batch, torch.device("cpu"))
    keys = batch["identity_index"].tolist()
    assert len(set(keys)) == 2
    want = reference_path(model, x)
    engine = prepare(model)
    calls = []
    encode = engine.encode_source
    engine.encode_source = lambda s: calls.append(s.shape[0]) or encode(s)
    cache = SourceCache(engine)
    got = torch.cat([engine.render(frames(x, i, i + 2), cache.features(keys[i:i + 2], x.source[i:i + 2]))
                     for i in (0, 2)] + [engine.render(x, cache.features(keys, x.source))])
    assert calls == [1, 1] and len(cache) == 2
    assert_exact(got, torch.cat([want, want]))


def test_compiled_engine_pads_short_batches(tiny_model, tiny_inputs, monkeypatch):
    """A compiled graph serves one batch size: shorter batches are padded, then cut."""
    seen = []

    def fake_compile(module, **kwargs):
        def run(features, *tensors):
            seen.append(tensors[0].shape[0])
            return module(features, *tensors)
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    want = reference_path(tiny_model, tiny_inputs)
    got = engine_path(tiny_model, tiny_inputs, batch=3, compile=True)
    assert seen == [3, 3]
    assert_exact(got, want)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_render_traces_as_one_graph(tiny_model, tiny_inputs, precision):
    """torch.compile sees the whole per-frame model: no graph breaks (tracing only, no compile)."""
    engine = prepare(tiny_model, precision=precision)
    features = [f.expand(2, *f.shape[1:]).contiguous(memory_format=torch.channels_last)
                for f in engine.encode_source(tiny_inputs.source[:1])]
    tensors = [engine._layout(getattr(frames(tiny_inputs, 0, 2), name)) for name in engine_mod._INPUT_NAMES]
    torch._dynamo.reset()
    with torch.inference_mode():
        explained = torch._dynamo.explain(engine._render)(features, *tensors)
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]


def test_choose_precision(monkeypatch):
    monkeypatch.setattr(engine_mod, "native_precisions", lambda device: ("bf16", "fp16"))
    assert choose_precision("cpu", check=lambda p: 45.0).precision == "bf16"
    assert choose_precision("cpu", check=lambda p: {"bf16": 35.0, "fp16": 52.0}[p]).precision == "fp16"
    assert choose_precision("cpu", check=lambda p: 20.0).precision == "fp32"
    choice = choose_precision("cpu", check=lambda p: {"bf16": 35.0, "fp16": 38.5}[p])
    assert choice.precision == "fp32" and "bf16 35.0 dB" in choice.reason and "fp16 38.5 dB" in choice.reason
    assert choose_precision("cpu").precision == "fp32"  # nothing to measure on: nothing assumed
    monkeypatch.setattr(engine_mod, "native_precisions", lambda device: ())
    assert choose_precision("cpu", check=lambda p: 99.0).precision == "fp32"


def test_auto_measures_lazily_and_only_where_a_low_precision_is_native(monkeypatch, tiny_model, tiny_inputs):
    """The sample (and its fp32 reference) is made only when a precision is checked, so `auto`
    costs nothing on a CPU without native bf16; where bf16 is native it is measured on the model."""
    made = []

    def sample():
        made.append(1)
        return frames(tiny_inputs, 0, 1)

    check = generator_psnr_check(copy.deepcopy(tiny_model), sample)
    monkeypatch.setattr(engine_mod, "native_precisions", lambda device: ())
    assert choose_precision("cpu", check).precision == "fp32" and made == []
    monkeypatch.setattr(engine_mod, "native_precisions", lambda device: ("bf16",))
    choice = choose_precision("cpu", check, min_psnr=0.0)
    assert made == [1] and choice.precision == "bf16" and choice.psnr_db is not None and 0 < choice.psnr_db < 200
    assert f"{choice.psnr_db:.1f} dB" in choice.reason


def test_psnr_check_leaves_the_model_untouched(tiny_model, tiny_inputs):
    model = copy.deepcopy(tiny_model)
    before = reference_path(model, frames(tiny_inputs, 0, 1))
    check = generator_psnr_check(model, frames(tiny_inputs, 0, 2))
    value = check("bf16")
    assert MIN_PSNR <= value < float("inf")
    assert not any("forward" in vars(m) for m in model.modules())
    assert torch.equal(reference_path(model, frames(tiny_inputs, 0, 1)), before)


def test_unknown_precision_is_refused(tiny_model):
    with pytest.raises(ValueError, match="precision"):
        prepare(tiny_model, precision="int8")


def test_keep_freed_memory_can_be_undone():
    from talkingface.inference.cpu import keep_freed_memory

    state = keep_freed_memory(True)
    try:
        assert state.applied or state.reason == "not glibc"
    finally:
        keep_freed_memory(False)


# --------------------------------------------------------------------------- temporal SR
@pytest.fixture(scope="module")
def tiny_sr():
    from talkingface.models.temporal_sr import TemporalSRConfig, TemporalSRNet

    torch.manual_seed(0)  # zero_out_init off: the temporal windows take part
    return TemporalSRNet(TemporalSRConfig(out_size=64, narrow=0.125, zero_out_init=False)).eval()


@pytest.fixture(scope="module")
def sr_clip() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)  # smooth frames, 1 clip of 5
    return torch.nn.functional.interpolate(torch.rand(5, 3, 8, 8, generator=g), size=32, mode="bilinear")[None]


@pytest.mark.parametrize("channels_last", [False, True])
def test_sr_fp32_prepared_matches(tiny_sr, sr_clip, channels_last):
    from talkingface.inference.sr import prepare_sr

    with torch.inference_mode():
        want = tiny_sr(sr_clip)
        model = prepare_sr(copy.deepcopy(tiny_sr), channels_last=channels_last, keep_freed_memory=False)
        got = model(sr_clip)
    assert got.dtype == torch.float32 and (got - want).abs().max().item() <= FP32_TOL


@pytest.mark.slow
def test_sr_bf16_stays_above_40_db_and_keeps_the_model_interface(tiny_sr, sr_clip):
    from talkingface.inference.sr import prepare_sr, sr_psnr_check

    with torch.inference_mode():
        want = to_uint8_round(tiny_sr(sr_clip))
    assert sr_psnr_check(tiny_sr, sr_clip)("bf16") >= MIN_PSNR
    model = prepare_sr(copy.deepcopy(tiny_sr), precision="bf16", keep_freed_memory=False)
    model = prepare_sr(model, precision="bf16", keep_freed_memory=False)  # twice: replaces, not stacks
    assert model.temporal_radius == tiny_sr.temporal_radius and model.input_size == tiny_sr.input_size
    with torch.inference_mode():
        got = model(sr_clip)
    assert got.dtype == torch.float32
    assert psnr_uint8(to_uint8_round(got), want) >= MIN_PSNR


@pytest.mark.slow
def test_official_size_with_parity_weights(base_manifest, fill_state_dict, tmp_path):
    """The 256 architecture, parity weights, two sample frames: fp32 optimised within one
    grey level of the reference path, bf16 at 40 dB or more."""
    from talkingface.data.sample import install_sample_data

    cfg = load_config(EVAL_CONFIG)
    model = build_generator(cfg)
    load_official_state(model, fill_state_dict(base_manifest["generator"]), cfg.model.generator.spade_num_blocks,
                        "parity", "generator")
    model.eval()
    root, _ = install_sample_data(tmp_path / "data")
    dataset = open_dataset(cfg, root)
    x = batch_inputs(torch.utils.data.default_collate([dataset[i] for i in (0, 5)]), torch.device("cpu"))
    want = reference_path(model, x)
    fp32 = engine_path(model, x, batch=2)
    assert_exact(fp32, want)
    bf16 = engine_path(model, x, batch=2, precision="bf16")
    value = psnr_uint8(to_uint8_truncate(bf16), to_uint8_truncate(want))
    print(f"bf16 against the reference path: {value:.2f} dB")
    assert value >= MIN_PSNR
