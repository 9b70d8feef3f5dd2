"""The training rows of `benchmarks/gpu_check.py`: steps/s of the training recipe with
`--fp16`, one Reptile outer step, and a one-process DDP initialisation.

The rows run the recipes themselves (`run_training`, `run_meta_training`), so what is
timed is the loop users run: autocast, the GradScaler on CUDA, the guards, the logging.
"""
from __future__ import annotations

import shutil
import time

import torch

from gpu_check_setup import Context, Result, Skipped
from bench_common import PeakMemory, synchronize

NEVER = 10 ** 9  # checkpoint / log intervals that do not come up in a short run


def _amp_label(ctx: Context) -> str:
    """What `--fp16` trains in on this device (`mixed_precision_dtype`)."""
    from talkingface.training.common import mixed_precision_dtype

    dtype = mixed_precision_dtype(ctx.device, True, ctx.opts.force, warn=False)
    if dtype is None:
        return "fp32"
    return {torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]


def training(ctx: Context, stage: str) -> Result:
    """Steps/s of `talkingface train --stage STAGE --fp16` at `train_batch` frames a step,
    from the parity weights (the discriminator starts random). Two runs, of 1 and of
    1 + `train_steps` steps: the difference of their wall times is the steps alone
    (set-up, the first step's warm-up and the final checkpoint cancel out), after one
    untimed run of 1 step in the first training row of the process."""
    from talkingface.recipes.train import TrainOptions, run_training

    ctx.drop_engine()
    s = ctx.sizes
    config = s.warp_config if stage == "warp" else s.full_config
    data = ctx.dataset(config, s.train_batch * (s.train_steps + 1))
    amp = _amp_label(ctx)

    def run(steps: int) -> float:
        opts = TrainOptions(config=str(config), stage=stage, out_dir=str(ctx.work / f"train_{stage}_{steps}"),
                            init_ckpt=str(ctx.checkpoint), warp_ckpt=str(ctx.checkpoint) if stage == "full" else None,
                            data_root=str(data), mixed_precision=True, force=ctx.opts.force, device=str(ctx.device),
                            max_steps=steps, batch_size=s.train_batch, ckpt_every=NEVER, log_every=NEVER,
                            image_every=NEVER, random_vgg=True, num_workers=s.train_workers)
        start = time.perf_counter()
        result = run_training(opts)
        synchronize(ctx.device)
        seconds = time.perf_counter() - start
        shutil.rmtree(opts.out_dir, ignore_errors=True)  # a 256 run's checkpoint is about 2 GB
        if result.iterations != steps:
            raise RuntimeError(f"trained {result.iterations} steps, expected {steps}")
        return seconds

    if not ctx.trained:  # the first run in a process pays for imports and first-use set-up: not timed
        run(1)
        ctx.trained = True
    memory = PeakMemory(ctx.device)
    memory.reset()
    one = run(1)
    more = run(1 + s.train_steps)
    if amp == "fp32":
        mode = "fp32 (bf16 is emulated here)"
    else:
        mode = f"{amp} autocast" + (" + GradScaler" if amp == "fp16" else "")
    note = f"--fp16: {mode}; batch {s.train_batch}, {s.train_steps} steps timed, untrained VGG19"
    if more <= one:  # a noisy machine and a tiny model: the difference says nothing
        return Result(peak_mib=memory.peak_mib(), precision=amp, extra={"run_1_step_s": one, "run_more_s": more},
                      note=f"{note}; too fast to time ({one:.2f} s for 1 step, {more:.2f} s for {1 + s.train_steps})")
    return Result(rate=s.train_steps / (more - one), unit="steps/s", peak_mib=memory.peak_mib(), precision=amp,
                  note=note, extra={"run_1_step_s": one, "run_more_s": more})


def reptile(ctx: Context) -> Result:
    """One outer step of `talkingface meta-train --fp16` (the config's inner steps on one
    task, the Reptile update), from the parity weights; wall time of the whole call."""
    from talkingface.recipes.meta_train import MetaTrainOptions, run_meta_training

    ctx.drop_engine()
    config = ctx.sizes.meta_config
    data = ctx.dataset(config, 8)
    memory = PeakMemory(ctx.device)
    memory.reset()
    start = time.perf_counter()
    result = run_meta_training(MetaTrainOptions(config=str(config), ckpt=str(ctx.checkpoint),
                                                out_dir=str(ctx.work / "meta"), data_root=str(data),
                                                device=str(ctx.device), mixed_precision=True, force=ctx.opts.force,
                                                max_steps=1, ckpt_every=NEVER, log_every=NEVER, random_vgg=True))
    synchronize(ctx.device)
    seconds = time.perf_counter() - start
    shutil.rmtree(ctx.work / "meta", ignore_errors=True)
    if result.iterations != 1:
        raise RuntimeError(f"ran {result.iterations} outer steps, expected 1")
    return Result(rate=seconds, unit="s (whole call)", peak_mib=memory.peak_mib(), precision=_amp_label(ctx),
                  note="set-up, 1 outer step, checkpoint")


def ddp(ctx: Context) -> Result:
    """A one-process process group (NCCL on CUDA, gloo on CPU), as `torchrun` gives the
    training recipes: init, the generator wrapped in DDP, one forward and backward (the
    gradient all-reduce), one explicit all-reduce; then the group is destroyed."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    if not dist.is_available():
        raise Skipped("this PyTorch has no torch.distributed")
    if dist.is_initialized():
        raise Skipped("a process group is already initialised in this process")
    ctx.drop_engine()
    cuda = ctx.device.type == "cuda"
    backend = "nccl" if cuda else "gloo"
    device = torch.device("cuda", torch.cuda.current_device() if ctx.device.index is None else ctx.device.index) \
        if cuda else ctx.device
    memory = PeakMemory(ctx.device)
    memory.reset()
    start = time.perf_counter()
    store = ctx.work / "ddp_store"  # a file rendezvous: no port to find
    dist.init_process_group(backend, init_method=f"file://{store}", rank=0, world_size=1,
                            **({"device_id": device} if cuda else {}))
    try:
        init_s = time.perf_counter() - start
        model = DistributedDataParallel(ctx.factory().to(device).train(), device_ids=[device.index] if cuda else None,
                                        find_unused_parameters=False)
        model(ctx.inputs(1).to(device))["prediction"].mean().backward()
        flag = torch.ones(1, device=device)
        dist.all_reduce(flag)
        synchronize(device)
        if flag.item() != 1.0:
            raise RuntimeError(f"all_reduce over one process gave {flag.item()}, expected 1")
    finally:
        dist.destroy_process_group()
    return Result(rate=init_s, unit="s to init", peak_mib=memory.peak_mib(), precision="fp32",
                  note=f"{backend}, world size 1: DDP forward + backward, all_reduce", extra={"backend": backend})
