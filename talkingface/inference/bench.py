"""Benchmark helpers shared by `benchmarks/bench_infer.py` and `benchmarks/bench_sr.py`:
the machine description, peak-memory measurement, timing and the result table.

Peak memory on CPU is the process's peak resident set (VmHWM), reset before each path
through /proc/self/clear_refs, so paths measured one after another in one process each
get their own peak. On CUDA it is torch's peak allocated device memory.
"""
from __future__ import annotations

import ctypes
import os
import platform
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from talkingface.inference.engine import cpu_flags, native_precisions

_FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16", "amx_tile")


@dataclass(frozen=True)
class MachineInfo:
    cpu: str
    cores: int  # CPUs this process may run on
    threads: int  # torch intra-op threads
    flags: tuple[str, ...]
    torch: str
    device: str
    native_low_precisions: tuple[str, ...]

    def lines(self) -> list[str]:
        return [f"CPU: {self.cpu}, {self.cores} cores, torch threads {self.threads}",
                f"CPU flags: {', '.join(self.flags) or 'none of interest'}",
                f"device: {self.device}; native low precisions: {', '.join(self.native_low_precisions) or 'none'}",
                f"torch {self.torch}, Python {platform.python_version()}"]


def simd_flags() -> tuple[str, ...]:
    """Every avx2, avx512* and amx* flag of /proc/cpuinfo, sorted."""
    return tuple(sorted(f for f in cpu_flags() if f == "avx2" or f.startswith(("avx512", "amx"))))


def cpu_model_name() -> str:
    """`lscpu`'s model name (falls back to /proc/cpuinfo, then platform.processor())."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
        match = re.search(r"^Model name:\s*(.+)$", out, re.M)
        if match:
            return match[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(errors="replace"), re.M)
        if match:
            return match[1].strip()
    return platform.processor() or "unknown"


def machine_info(device: torch.device | str = "cpu") -> MachineInfo:
    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    flags = tuple(f for f in _FLAGS_OF_INTEREST if f in cpu_flags())
    return MachineInfo(cpu_model_name(), cores, torch.get_num_threads(), flags, torch.__version__, name,
                       native_precisions(device))


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


# --------------------------------------------------------------------------- memory
def _proc_status_kib(key: str) -> int | None:
    path = Path("/proc/self/status")
    if not path.is_file():
        return None
    match = re.search(rf"^{key}:\s+(\d+) kB", path.read_text(), re.M)
    return int(match[1]) if match else None


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class PeakMemory:
    """Peak memory of the code run between `reset()` and `peak_mib()`."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.start_mib = 0.0

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_mib = torch.cuda.memory_allocated(self.device) / 2 ** 20
            return
        _malloc_trim()  # give freed heap back first, so the start is what is really in use
        try:  # "5" resets VmHWM to the current RSS (Linux >= 4.0)
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        self.start_mib = (_proc_status_kib("VmRSS") or 0) / 1024

    def peak_mib(self) -> float | None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / 2 ** 20
        peak = _proc_status_kib("VmHWM")
        return None if peak is None else peak / 1024


# --------------------------------------------------------------------------- timing and table
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class PathResult:
    name: str
    frames: int
    seconds: float
    peak_mib: float | None = None
    start_mib: float | None = None
    psnr_db: float | None = None  # against the reference path
    max_diff: int | None = None  # grey levels, against the reference path
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


def timed(fn: Callable[[], object], device: torch.device) -> tuple[object, float]:
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - start


def format_table(rows: list[PathResult], reference: PathResult | dict[str, PathResult] | None = None) -> str:
    """Markdown table: one row per path, with its speed-up over `reference` (one column),
    or over each of several named references (one column each)."""
    references = ({} if reference is None else reference if isinstance(reference, dict)
                  else {"": reference})
    labels = "".join(f" speed-up{' vs ' + k if k else ''} |" for k in references) or " speed-up |"
    header = (f"| path | frames/s | s/frame |{labels} peak RSS MiB (+ over start) | PSNR dB | max diff |\n"
              "|---|---:|---:|" + "---:|" * max(1, len(references)) + "---:|---:|---:|")
    out = [header]
    for r in rows:
        ratio = " | ".join(f"{r.fps / ref.fps:.2f}x" for ref in references.values()) if references else ""
        peak = "" if r.peak_mib is None else f"{r.peak_mib:.0f} (+{r.peak_mib - (r.start_mib or 0):.0f})"
        psnr = "" if r.psnr_db is None else ("inf" if r.psnr_db == float("inf") else f"{r.psnr_db:.1f}")
        diff = "" if r.max_diff is None else str(r.max_diff)
        name = r.name + (f" ({r.note})" if r.note else "")
        out.append(f"| {name} | {r.fps:.3f} | {r.seconds / r.frames:.3f} | {ratio} | {peak} | {psnr} | {diff} |")
    return "\n".join(out)
