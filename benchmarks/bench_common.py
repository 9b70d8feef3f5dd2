"""Benchmark helpers shared by the scripts in benchmarks/ (bench_infer.py, bench_sr.py, gpu_check, ...):
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

REPO = Path(__file__).resolve().parents[1]  # the source checkout these scripts live in
PARITY = REPO.parent / "shared" / "parity"  # the parity fixtures (weights.py, manifests), beside the checkout

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
        capped = ", ".join(f"{k}={v}" for k, v in isa_caps().items())
        return [f"CPU: {self.cpu}, {self.cores} cores, torch threads {self.threads}",
                f"CPU flags: {', '.join(self.flags) or 'none of interest'}" + (f" (kernels capped: {capped})"
                                                                               if capped else ""),
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


# --------------------------------------------------------------------------- result files
RESULTS = REPO / "benchmarks" / "results"  # every script's JSON; docs tables are generated from them (report.py)


def result_path(script: str, variant: str | None = None) -> Path:
    """Where a script writes its result by default: benchmarks/results/<script>[_<variant>].json."""
    stem = Path(script).stem
    return RESULTS / (f"{stem}_{variant}.json" if variant else f"{stem}.json")


def git_commit(repo: Path = REPO) -> dict[str, object] | None:
    """{"sha": HEAD, "dirty": tracked files differ from it} of the checkout, or None outside a
    git checkout (an installed copy, no git). Read-only: takes no index lock."""
    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", "--no-optional-locks", "-C", str(repo), *args], capture_output=True,
                                  text=True, timeout=20, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if not sha:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"sha": sha, "dirty": None if status is None else bool(status)}


def package_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("talkingface")
    except metadata.PackageNotFoundError:
        return None


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed from the repo root: `python benchmarks/x.py --flag ...`."""
    import shlex
    import sys

    argv = list(sys.argv if argv is None else argv)
    if argv:
        script = Path(argv[0])
        try:
            argv[0] = str(script.resolve().relative_to(REPO))
        except ValueError:
            argv[0] = str(script)
    return " ".join(["python", *(shlex.quote(a) for a in argv)])


def machine_header(device: torch.device | str = "cpu") -> dict[str, object]:
    """The machine a result was measured on: CPU model, every avx2/avx512*/amx* flag, cores,
    torch threads, OMP_NUM_THREADS, GPU, torch and Python versions, the load average."""
    info = machine_info(device)
    gpu = None
    if torch.cuda.is_available():
        gpu = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {"cpu": info.cpu, "cpu_flags": list(simd_flags()), "cores": info.cores, "threads": info.threads,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "device": info.device, "gpu": gpu,
            "native_low_precisions": list(info.native_low_precisions), "torch": info.torch,
            "python": platform.python_version(), "load_average": load_average(), **isa_caps()}


def isa_caps() -> dict[str, str]:
    """Instruction-set caps a run was started with (set in the environment, e.g. ONEDNN_MAX_CPU_ISA=AVX2
    ATEN_CPU_CAPABILITY=avx2 to run only AVX2 kernels on an AVX-512 CPU), and the capability torch's
    own kernels then use; empty when nothing is capped."""
    caps = {name: os.environ[name] for name in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY") if os.environ.get(name)}
    if caps:
        caps["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return caps


def result_header(device: torch.device | str = "cpu", argv: list[str] | None = None) -> dict[str, object]:
    """The header every result file starts with: when, which command, which code, which machine."""
    import datetime

    return {"written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": command_line(argv), "package_version": package_version(), "commit": git_commit(),
            "machine": machine_header(device)}


def json_safe(value: object) -> object:
    """Non-finite floats as strings ("inf", "nan"), numpy scalars and arrays as Python
    values, paths and tuples as strings and lists, so the file is strict JSON."""
    import math

    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy scalars/arrays, tensors
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_result(path: Path | str, result: dict[str, object], header: dict[str, object] | None = None) -> Path:
    """Write `result` as JSON to `path` atomically (a temporary sibling, then a rename), the
    header (`result_header()` unless given) first. Returns the path."""
    import json

    from talkingface.utils.atomic import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**(result_header() if header is None else header), **result}
    text = json.dumps(json_safe(payload), indent=1, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return path


def path_rows(rows: list[PathResult]) -> list[dict[str, object]]:
    """PathResult rows as JSON-ready dicts (frames/s and s/frame included)."""
    from dataclasses import asdict

    return [{**asdict(r), "fps": r.fps, "s_per_frame": r.seconds / r.frames if r.frames else None} for r in rows]


def variant_name(flags: dict[str, object], device: str = "cpu") -> str | None:
    """A result-file variant from the options that change what a run measures: the names of
    the true flags, and the device when it is not the CPU (`ablation_compile`, `cuda_onnx`)."""
    parts = ([] if str(device).startswith("cpu") else [str(device).replace(":", "")])
    parts += [name for name, on in flags.items() if on]
    return "_".join(parts) or None
