"""A low precision the hardware only emulates: one warning, then fp32 (issue 18); --force keeps it.

The hardware answer is forced (the CPU flags are replaced), so these tests behave the same
on an AVX2-only CPU and on an AMX one.
"""
from __future__ import annotations

import contextlib
import subprocess
import sys
import warnings

import pytest
import torch

import talkingface.inference.engine as engine_mod
import talkingface.recipes.train as train_mod
import talkingface.training.adaptation as adaptation_mod
from talkingface.cli import build_parser, main as cli_main
from talkingface.inference import EmulatedPrecisionWarning, fit_precision, native_precisions, resolve_precision
from talkingface.recipes.personalize import PersonalizeOptions, run_personalize
from talkingface.seed_cli import build_parser as seed_parser, main as seed_main
from talkingface.training.common import mixed_precision_dtype

from helpers import REPO, TINY_CONFIG, make_tiny_checkpoint, make_tiny_dataset, make_tiny_video_dataset

AVX2_ONLY = frozenset({"sse4_2", "avx", "avx2", "fma"})
CPU = torch.device("cpu")


@pytest.fixture()
def no_native_bf16(monkeypatch):
    """A CPU with AVX2 only: no avx512_bf16/amx_bf16, no avx512_fp16/amx_fp16."""
    monkeypatch.setattr(engine_mod, "cpu_flags", lambda: AVX2_ONLY)


@contextlib.contextmanager
def emulation_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found: list[str] = []
        yield found
    found.extend(str(w.message) for w in caught if issubclass(w.category, EmulatedPrecisionWarning))


# --------------------------------------------------------------------------- the decision
def test_bf16_on_a_cpu_without_native_bf16_falls_back_with_one_warning(no_native_bf16):
    assert native_precisions("cpu") == ()
    with emulation_warnings() as found:
        choice = resolve_precision("bf16", "cpu")
    assert choice.precision == "fp32"
    assert len(found) == 1 and "\n" not in found[0]
    assert "no avx512_bf16/amx_bf16" in found[0] and "100x slower" in found[0]
    assert "running in fp32 (--force keeps bf16)" in found[0]


def test_fp16_on_a_cpu_without_native_fp16_falls_back(no_native_bf16):
    with emulation_warnings() as found:
        assert resolve_precision("fp16", "cpu").precision == "fp32"
    assert len(found) == 1 and "no avx512_fp16/amx_fp16" in found[0] and "slower" in found[0]


def test_force_keeps_the_emulated_precision(no_native_bf16):
    with emulation_warnings() as found:
        assert resolve_precision("bf16", "cpu", force=True).precision == "bf16"
    assert len(found) == 1 and "keeping bf16 (--force)" in found[0]


def test_auto_and_fp32_do_not_warn(no_native_bf16):
    with emulation_warnings() as found:
        assert resolve_precision("auto", "cpu").precision == "fp32"
        assert resolve_precision("fp32", "cpu").precision == "fp32"
        assert mixed_precision_dtype(CPU, False) is None
    assert found == []


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch without oneDNN")
def test_native_bf16_is_kept_without_a_warning(monkeypatch):
    monkeypatch.setattr(engine_mod, "cpu_flags", lambda: AVX2_ONLY | {"avx512f", "avx512_bf16"})
    with emulation_warnings() as found:
        assert resolve_precision("bf16", "cpu").precision == "bf16"
        assert mixed_precision_dtype(CPU, True) is torch.bfloat16
    assert found == []


def test_bf16_on_a_gpu_without_bf16_falls_back(monkeypatch):
    monkeypatch.setattr(engine_mod, "_cuda_bf16_native", lambda device: False)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    with emulation_warnings() as found:
        assert resolve_precision("bf16", "cuda").precision == "fp32"
        assert resolve_precision("fp16", "cuda").precision == "fp16"  # native on every CUDA GPU
        assert mixed_precision_dtype(torch.device("cuda"), True) is torch.float16  # --fp16 on CUDA: fp16
    assert len(found) == 1 and "emulated on this GPU (compute capability 7.0)" in found[0]


def test_training_fp16_on_cpu_means_bf16_or_fp32(no_native_bf16):
    with emulation_warnings() as found:
        assert mixed_precision_dtype(CPU, True) is None
        assert mixed_precision_dtype(CPU, True, force=True) is torch.bfloat16
        assert mixed_precision_dtype(CPU, True, warn=False) is None  # the other ranks: silent
    assert len(found) == 2
    assert "per training step" in found[0] and "training in fp32 (--force keeps bf16)" in found[0]


def test_unknown_device_types_are_left_alone():
    with emulation_warnings() as found:
        assert fit_precision("bf16", "meta") == "bf16"
    assert found == []


# --------------------------------------------------------------------------- the commands
@pytest.mark.parametrize("argv", [
    ["infer", "--config", "c", "--ckpt", "k"], ["animate", "--source", "s", "--driving", "d"], ["demo"],
    ["enhance", "--input", "i", "--ckpt", "k", "--out", "o"], ["train", "--config", "c", "--stage", "warp", "--fp16"],
    ["meta-train", "--config", "c", "--fp16"], ["personalize", "--ckpt", "k", "--data", "d", "--steps", "1", "--fp16"],
    ["train-sr", "--config", "c", "--fp16"]])
def test_every_precision_verb_takes_force(argv):
    args = build_parser().parse_args([*argv, "--force"])
    assert args.force is True
    assert build_parser().parse_args(argv).force is False


def test_the_seed_front_door_takes_force_once():
    args = seed_parser().parse_args(["--model=metaportraitbasetrain", "--config", "c", "--fp16", "--force"])
    assert args.mixed_precision and args.force
    assert not seed_parser().parse_args(["--model=metaportraitbaseinference", "--config", "c"]).force


def test_animate_force_builds_the_engine_at_the_requested_precision(no_native_bf16, monkeypatch):
    from talkingface.animate.pipeline import prepare_engine
    from talkingface.inference import InferenceEngine

    built: list[str] = []

    def prepare(cls, model, device, precision):
        built.append(precision)

    monkeypatch.setattr(InferenceEngine, "prepare", classmethod(prepare))
    with emulation_warnings() as found:
        for force in (True, False):
            prepare_engine(None, CPU, "bf16", force=force)
    assert built == ["bf16", "fp32"] and len(found) == 2


@pytest.mark.slow
def test_infer_verb_falls_back_end_to_end(tmp_path):
    """`talkingface infer --precision bf16` in a fresh process on a CPU without native bf16:
    one `talkingface: warning:` line, and the fp32 path's pixels."""
    data = make_tiny_dataset(tmp_path / "data")
    ckpt = make_tiny_checkpoint(tmp_path / "ckpt.pth.tar")
    code = ("import sys, talkingface.inference.engine as e; e.cpu_flags = lambda: frozenset({'avx2'}); "
            "from talkingface.cli import main; sys.exit(main(sys.argv[1:]))")
    common = ["--config", str(TINY_CONFIG), "--ckpt", str(ckpt), "--data", str(data), "--no-video", "--device", "cpu"]
    runs = {}
    for name, extra in (("bf16", ["--precision", "bf16"]), ("fp32", [])):
        proc = subprocess.run([sys.executable, "-c", code, "infer", *common, "--out", str(tmp_path / name), *extra],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[name] = proc
    lines = [ln for ln in runs["bf16"].stderr.splitlines() if "emulated" in ln]
    assert len(lines) == 1, runs["bf16"].stderr
    assert lines[0].startswith("talkingface: warning: bf16 is emulated on this CPU (no avx512_bf16/amx_bf16)")
    assert "--force keeps bf16" in lines[0] and "warnings.warn" not in runs["bf16"].stderr
    assert "precision fp32: bf16 is emulated" in runs["bf16"].stdout
    assert "emulated" not in runs["fp32"].stderr
    for png in sorted((tmp_path / "fp32" / "output_64").glob("*.png")):
        assert (tmp_path / "bf16" / "output_64" / png.name).read_bytes() == png.read_bytes()


def _autocast_spy(monkeypatch, module, run_it: bool):
    """Record the dtype each autocast block gets; `run_it` False: run the block in fp32 anyway
    (checks a forced emulated choice without paying for it)."""
    used: list[torch.dtype | None] = []
    real = module.autocast

    def spy(device, dtype):
        used.append(dtype)
        return real(device, dtype) if run_it else contextlib.nullcontext()

    monkeypatch.setattr(module, "autocast", spy)
    return used


def test_train_fp16_on_a_cpu_without_bf16_warns_once_and_trains_in_fp32(no_native_bf16, tmp_path, monkeypatch):
    data = make_tiny_dataset(tmp_path / "data", frames_per_identity=(2, 2))
    used = _autocast_spy(monkeypatch, train_mod, run_it=True)
    with emulation_warnings() as found:
        code = cli_main(["train", "--config", str(TINY_CONFIG), "--stage", "warp", "--fp16", "--data", str(data),
                         "--out", str(tmp_path / "out"), "--random-vgg", "--max-steps", "2", "--device", "cpu"])
    assert code == 0
    assert len(found) == 1 and "training in fp32" in found[0]
    assert len(used) == 2 and set(used) == {None}  # two steps, neither under autocast


def test_seed_fp16_force_keeps_bf16_autocast(no_native_bf16, tmp_path, monkeypatch):
    data = make_tiny_dataset(tmp_path / "data", frames_per_identity=(2, 2))
    used = _autocast_spy(monkeypatch, train_mod, run_it=False)
    monkeypatch.chdir(tmp_path)
    with emulation_warnings() as found:
        code = seed_main(["--model==metaportraitbasetrain", "--config", str(TINY_CONFIG), "--fp16", "--force",
                          "--stage", "Warp", "--task", "Pretrain", "--data", str(data), "--random-vgg",
                          "--max-steps", "1", "--device", "cpu"])
    assert code == 0
    assert len(found) == 1 and "keeping bf16 (--force)" in found[0]
    assert used == [torch.bfloat16]


def test_personalize_fp16_falls_back(no_native_bf16, tmp_path, monkeypatch):
    person = make_tiny_video_dataset(tmp_path / "person", frames=6, seed=3)
    base = make_tiny_checkpoint(tmp_path / "base.pth.tar")
    used = _autocast_spy(monkeypatch, adaptation_mod, run_it=True)
    with emulation_warnings() as found:
        run_personalize(PersonalizeOptions(ckpt=str(base), data=str(person), out=str(tmp_path / "p.pth.tar"),
                                           steps=1, holdout=2, random_vgg=True, batch_size=2, device="cpu",
                                           mixed_precision=True))
    assert len(found) == 1 and used == [None]
