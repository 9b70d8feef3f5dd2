"""What the rows of `benchmarks/gpu_check.py` share: options, sizes, the model weights, a
checkpoint file, datasets made from the bundled sample, and the generator inputs.

Everything is built lazily, on first use by a row, so a failure in it fails (and names)
the rows that need it instead of the whole run.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from bench_common import PARITY, RESULTS
from bench_infer import BenchOptions, ModelFactory, rebatch
from talkingface.inference.engine import emulation_reason, native_precisions, psnr_uint8
from talkingface.models.generator import GeneratorInputs
from talkingface.utils.device import resolve_device
from talkingface.utils.images import to_uint8_truncate

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "talkingface" / "properties" / "model" / "meta_portrait_base_config"
SR_CONFIGS = REPO / "talkingface" / "properties" / "model" / "temporal_sr"


@dataclass(frozen=True)
class CheckOptions:
    device: str = "auto"  # auto: cuda where present, else cpu
    quick: bool = False  # the tiny configs, small sizes, few iterations (CI)
    out: Path | None = None  # the JSON; None: benchmarks/results/gpu_check[_<device>][_quick].json
    parity_dir: Path = PARITY
    budget_s: float = 420.0  # no row starts after this many seconds (the whole run stays within 8 minutes)
    force: bool = False  # also time precisions the device only emulates (else those rows are skipped)
    only: tuple[str, ...] = ()  # run only the rows whose name contains one of these
    verbose: bool = False  # show each row's own output (progress bars, prints)


@dataclass(frozen=True)
class Sizes:
    """How big each row's work is: the official 256 model on a GPU, or the tiny one (--quick)."""
    eval_config: Path
    full_config: Path
    warp_config: Path
    meta_config: Path
    sr_config: Path | None  # None: the official temporal SR (parity weights when present)
    weights: str  # "auto" (parity weights when present, else random) or "random"
    batches: tuple[int, ...]  # generator throughput
    warmup: int  # untimed calls before timing
    min_iters: int  # timed calls, at least
    min_seconds: float  # and at least this long
    seed_frames: int  # frames the seed inference command renders
    sr_frames: int  # frames in the super-resolution clip
    train_batch: int
    train_steps: int  # timed training steps (after one untimed)
    train_workers: int  # DataLoader workers for the training rows
    onnx_batch: int
    onnx_export: bool  # the ONNX row (its export takes about 45 s even for the tiny model on 2 CPU cores)
    animate_frames: int | None  # driving frames of the demo animate renders (None: all of them)
    compile_on_cpu: bool  # torch.compile rows on a CPU (minutes of C++ compilation)


FULL = Sizes(eval_config=CONFIGS / "meta_portrait_256_eval.yaml",
             full_config=CONFIGS / "meta_portrait_256_pretrain_full.yaml",
             warp_config=CONFIGS / "meta_portrait_256_pretrain_warp.yaml",
             meta_config=CONFIGS / "meta_portrait_256_meta_train.yaml",
             sr_config=None, weights="auto", batches=(1, 16, 64), warmup=3, min_iters=5, min_seconds=1.0,
             seed_frames=32, sr_frames=8, train_batch=8, train_steps=10, train_workers=4, onnx_batch=16,
             onnx_export=True, animate_frames=None, compile_on_cpu=True)
TINY = CONFIGS / "meta_portrait_64_tiny.yaml"
QUICK = Sizes(eval_config=TINY, full_config=TINY, warp_config=TINY, meta_config=TINY,
              sr_config=SR_CONFIGS / "temporal_sr_tiny.yaml", weights="random", batches=(1, 2), warmup=1, min_iters=2,
              min_seconds=0.0, seed_frames=4, sr_frames=8, train_batch=2, train_steps=2, train_workers=0,
              onnx_batch=2, onnx_export=False, animate_frames=6, compile_on_cpu=False)


class Skipped(Exception):
    """A row that does not apply here (the device, the installation, the time budget): its reason."""


@dataclass
class Result:
    """What a row measured."""
    rate: float | None = None
    unit: str = ""  # of `rate`: frames/s, steps/s
    peak_mib: float | None = None  # CUDA: torch.cuda.max_memory_allocated; CPU: the process's peak RSS
    psnr_db: float | None = None  # uint8 frames against fp32
    max_abs_diff: float | None = None
    precision: str = ""  # the precision it ran in
    note: str = ""
    status: str = "ok"  # or "failed" (it ran, and its figures are wrong: the note says why)
    extra: dict[str, float | int | str | None] = field(default_factory=dict)


def default_out(opts: CheckOptions, device: torch.device) -> Path:
    tag = ("" if device.type == "cuda" else f"_{device.type}") + ("_quick" if opts.quick else "")
    return RESULTS / f"gpu_check{tag}.json"


def sample_records(cfg, frames: int):
    """The bundled sample (one identity) as an IdentityRecord at the config's resolution and
    identity size, its driving frames cycled to `frames`."""
    from importlib import resources

    from PIL import Image

    from talkingface.data.writer import DrivingFrame, IdentityRecord

    size, dim = cfg.resolution[0], cfg.model.generator.class_dim
    with resources.as_file(resources.files("talkingface") / "assets" / "sample_data") as root:
        root = Path(root)

        def image(path: Path) -> np.ndarray:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC))

        names = sorted(p.stem for p in (root / "0" / "imgs").glob("*.png"))
        driving = [(image(root / "0" / "imgs" / f"{n}.png"), np.load(root / "0" / "ldmks" / f"{n}_ldmk.npy"))
                   for n in names]
        source = image(root / "src_0.png"), np.load(root / "src_0_ldmk.npy")
        identity = np.load(root / "src_0_id.npy").reshape(-1)
    identity = np.resize(identity, dim)  # the sample's embedding, cut (or tiled) to the model's size
    identity = (identity / np.linalg.norm(identity)).astype(np.float32)
    frames_out = [DrivingFrame(f"{i:08d}.png", *driving[i % len(driving)]) for i in range(frames)]
    return IdentityRecord(source[0], source[1], identity, frames_out)


class Context:
    """Shared state of one run: the device, the sizes, and what rows build once and reuse."""

    def __init__(self, opts: CheckOptions, work: Path):
        self.opts = opts
        self.work = work
        self.device = resolve_device(opts.device)
        self.sizes = QUICK if opts.quick else FULL
        self.started = time.perf_counter()
        self.fp32_predictions: dict[int, torch.Tensor] = {}  # batch -> the fp32 (NCHW) engine's output, on CPU
        self.seed_fp32_frames: np.ndarray | None = None  # the fp32 seed command's frames
        self.sr = None  # (SR network factory, input clip), made by the first SR row
        self.sr_fp32: torch.Tensor | None = None  # the fp32 SR network's output, on CPU
        self.trained = False  # a training run has warmed this process up
        self.compile_seconds = 0.0  # the longest torch.compile so far (budgets the next one)
        self._engine: tuple[tuple, object] | None = None
        self._datasets: dict[tuple[str, int], Path] = {}

    # ---------------------------------------------------------------- time
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def remaining(self) -> float:
        return self.opts.budget_s - self.elapsed()

    # ---------------------------------------------------------------- precision
    @cached_property
    def best_precision(self) -> str:
        """The fastest precision this device computes natively (fp32 where it has none)."""
        native = native_precisions(self.device)
        return native[0] if native else "fp32"

    def usable(self, precision: str) -> str:
        """`precision` ("best": `best_precision`), or Skipped where the device only emulates it
        (unless --force)."""
        precision = self.best_precision if precision == "best" else precision
        reason = emulation_reason(precision, self.device)
        if reason is not None and not self.opts.force:
            raise Skipped(f"{reason} (--force times it anyway)")
        return precision

    # ---------------------------------------------------------------- models and files
    @cached_property
    def factory(self) -> ModelFactory:
        """Fresh generators of the eval config with fixed weights (parity weights when present)."""
        return ModelFactory(BenchOptions(config=self.sizes.eval_config, weights=self.sizes.weights,
                                         parity_dir=self.opts.parity_dir))

    @cached_property
    def cfg(self):
        return self.factory.cfg

    @cached_property
    def checkpoint(self) -> Path:
        """The factory's generator as an official-layout checkpoint file (no discriminator)."""
        from talkingface.checkpoints.official import save_checkpoint

        path = self.work / "model.pth.tar"
        save_checkpoint(path, self.cfg, self.factory())
        return path

    def dataset(self, config: Path, frames: int) -> Path:
        """An official-layout dataset of the bundled sample for `config`, `frames` driving frames."""
        from talkingface.config import load_config
        from talkingface.data.writer import write_official_dataset

        key = (str(config), frames)
        if key not in self._datasets:
            cfg = load_config(config)
            root = self.work / f"data_{cfg.resolution[0]}_{cfg.model.generator.class_dim}_{frames}"
            self._datasets[key] = write_official_dataset(root, [sample_records(cfg, frames)])
        return self._datasets[key]

    @cached_property
    def sample(self) -> GeneratorInputs:
        """The sample's 8 driving frames as generator inputs (CPU)."""
        from talkingface.recipes.infer import batch_inputs, open_dataset

        data = open_dataset(self.cfg, self.dataset(self.sizes.eval_config, 8))
        batch = torch.utils.data.default_collate([data[i] for i in range(len(data))])
        return batch_inputs(batch, torch.device("cpu"))

    def inputs(self, batch: int) -> GeneratorInputs:
        """`batch` driving frames (the sample's, cycled) on the device."""
        count = self.sample.source.shape[0]
        repeats = -(-batch // count)
        whole = rebatch([self.sample] * repeats, batch)[0]
        return whole.to(self.device)

    def engine(self, key: tuple, build: Callable[[], object]):
        """One prepared engine at a time, kept while consecutive rows ask for the same `key`."""
        if self._engine is None or self._engine[0] != key:
            self._engine = None
            self.release()
            self._engine = (key, build())
        return self._engine[1]

    def release(self) -> None:
        """Free what the last row left on the device."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def drop_engine(self) -> None:
        self._engine = None
        self.release()


def scored(pixels: np.ndarray, reference: np.ndarray | None) -> tuple[float | None, int | None]:
    """(PSNR dB, largest grey-level difference) of uint8 frames against the reference's."""
    if reference is None or reference.shape != pixels.shape:
        return None, None
    return psnr_uint8(pixels, reference), int(np.abs(pixels.astype(np.int16) - reference.astype(np.int16)).max())


def compared(out: torch.Tensor, reference: torch.Tensor | None,
             pixels: Callable[[torch.Tensor], np.ndarray] = to_uint8_truncate) -> tuple[float | None, float | None]:
    """(PSNR dB of the uint8 frames, largest absolute difference) of an output against the
    reference's, both on the CPU; (None, None) without a reference."""
    if reference is None or reference.shape != out.shape:
        return None, None
    return psnr_uint8(pixels(out), pixels(reference)), float((out - reference).abs().max())
