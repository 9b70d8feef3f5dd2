"""Many inputs at once: in input order whatever order they finish in, and on a Ray cluster.

Workers (processes of this machine, or Ray tasks anywhere in a cluster) run the same
`process_input` as a single-process run, each into its own staging folder; only the
caller commits into the dataset, and always in input order (`InOrder`), so identity
numbers and files do not depend on which input finished first: the output is the
single-process one, byte for byte.

With Ray, each input is one task (one CPU). Ray runs a task again when its worker
process dies (killed, out of memory, a lost node) and, here, after an I/O error
(`VideoResult.transient`); each attempt starts from an empty staging folder, so
nothing of a killed attempt remains. An input whose retries are used up is reported
as failed with the reason; the others go on. Tasks are submitted at most `window`
inputs ahead of the oldest unfinished one, which bounds the staged backlog. Staging
folders are under the dataset folder, so on a cluster every node must see it (and the
inputs) at the same path: a shared file system.
"""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from talkingface.data.shards import INSTALL_HINT
from talkingface.errors import TalkingFaceError
from talkingface.preprocess.pipeline import VideoResult, VideoSettings, process_input
from talkingface.preprocess.sources import InputItem


class InOrder:
    """Hands results to `deliver` in input order (positions 0, 1, ...), whatever order they arrive in."""

    def __init__(self, deliver: Callable[[VideoResult], None]):
        self.deliver = deliver
        self.next = 0  # the oldest position not delivered yet
        self._ready: dict[int, VideoResult] = {}

    def add(self, position: int, result: VideoResult) -> None:
        self._ready[position] = result
        while self.next in self._ready:
            self.deliver(self._ready.pop(self.next))
            self.next += 1


@dataclass(frozen=True)
class RaySettings:
    # auto: the cluster this machine belongs to (RAY_ADDRESS, or one started here with `ray start`),
    # else a new local instance of all cores; local: always a new local instance; else a cluster's
    # address (HOST:PORT, or ray://HOST:10001 through Ray Client)
    address: str = "auto"
    num_cpus: int | None = None  # address "local": the new instance's CPUs (default: all of this machine's cores)
    max_retries: int = 3  # further attempts at an input whose worker died or hit an I/O error
    cpus_per_input: float = 1.0  # CPUs each task reserves (one input keeps about one core busy)
    window_per_cpu: int = 4  # inputs submitted ahead of the oldest unfinished one, per cluster CPU


class TransientInputError(Exception):
    """Raised in a Ray task for an input that failed for a reason of the machine: Ray retries it."""


def import_ray():
    try:
        import ray
    except ImportError as e:
        raise TalkingFaceError(f"--ray needs Ray: {INSTALL_HINT}") from e
    return ray


def _process_on_worker(item: InputItem, settings: VideoSettings, staging: Path, progress) -> VideoResult:
    """A Ray task: one input, from an empty staging folder (an earlier, killed attempt may have left files)."""
    shutil.rmtree(staging, ignore_errors=True)
    result = process_input(item, settings, staging, progress=lambda frames: progress.add.remote(frames))
    if result.transient:
        raise TransientInputError(result.error)
    return result


class _FrameCounter:
    """A Ray actor: frames decoded by all tasks since the driver last asked (for the progress bar)."""

    def __init__(self):
        self.frames = 0

    def add(self, frames: int) -> None:
        self.frames += frames

    def take(self) -> int:
        frames, self.frames = self.frames, 0
        return frames


def connect(ray, settings: RaySettings) -> bool:
    """Join or start Ray as `settings.address` says; True when this call started it (to shut down after)."""
    if ray.is_initialized():  # the caller's own session
        return False
    quiet = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        if settings.address == "local":
            ray.init(address="local", num_cpus=settings.num_cpus or os.cpu_count() or 1, **quiet)
        elif settings.address == "auto":  # Ray's own rule: RAY_ADDRESS, a `ray start` cluster here, else local
            ray.init(**quiet)
        else:
            ray.init(address=settings.address, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as e:
        hint = "" if settings.address == "local" else (
            "; a cluster started with token authentication needs RAY_AUTH_MODE=token and its token "
            "(~/.ray/auth_token) on this machine too")
        raise TalkingFaceError(f"cannot start or join Ray ({settings.address}): {e}{hint}") from None
    return True


def run_on_ray(items: list[InputItem], settings: VideoSettings, staging_dir: Callable[[InputItem], Path],
               ray_settings: RaySettings, deliver: Callable[[VideoResult], None],
               on_frames: Callable[[int], None]) -> None:
    """Process `items` as Ray tasks; results go to `deliver` in input order, decoded-frame counts to `on_frames`."""
    ray = import_ray()
    started = connect(ray, ray_settings)
    pending: dict = {}  # task ref -> input position
    try:
        task = ray.remote(num_cpus=ray_settings.cpus_per_input, max_retries=ray_settings.max_retries,
                          retry_exceptions=[TransientInputError])(_process_on_worker)
        counter = ray.remote(num_cpus=0)(_FrameCounter).remote()
        cpus = int(ray.cluster_resources().get("CPU", 1))
        window = max(8, ray_settings.window_per_cpu * cpus)
        ordered = InOrder(deliver)
        submitted = 0
        while submitted < len(items) or pending:
            while submitted < len(items) and submitted < ordered.next + window:
                item = items[submitted]
                pending[task.remote(item, settings, staging_dir(item), counter)] = submitted
                submitted += 1
            done, rest = ray.wait(list(pending), num_returns=1, timeout=0.25)
            if done and rest:
                more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                done += more
            on_frames(ray.get(counter.take.remote()))
            for ref in done:
                position = pending.pop(ref)
                ordered.add(position, _result(ray, ref, items[position], ray_settings.max_retries))
        on_frames(ray.get(counter.take.remote()))
    finally:
        for ref in pending:  # interrupted: stop what is still running
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


def _result(ray, ref, item: InputItem, retries: int) -> VideoResult:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:  # the task raised (TransientInputError) on its last attempt
        cause = e.cause if isinstance(e.cause, TransientInputError) else e
        reason = str(cause.args[0]) if isinstance(cause, TransientInputError) else f"{item.path}: {e}"
        return VideoResult(item=item, error=f"{reason} (after {retries + 1} attempts)")
    except ray.exceptions.RayError as e:  # its worker (or node) died on every attempt
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return VideoResult(item=item, error=f"{item.path}: the Ray worker died on all {retries + 1} attempts "
                                            f"({type(e).__name__}: {first})")
