"""Process-level CPU settings that inference benefits from.

glibc serves allocations above its mmap threshold (at most 32 MiB) with fresh mmap()
pages, and every page faults in on first touch. A 256x256 feature map of a batch of
frames is 64 MiB or more, and every PyTorch op allocates its output, so on CPU the
base model spends about as long faulting pages in as computing element-wise ops
(docs/performance.md). Serving every allocation from the heap, and never trimming it,
lets freed maps be reused: the process keeps its peak memory instead of returning it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform
from dataclasses import dataclass

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_DEFAULT_MMAP_MAX = 65536
_DEFAULT_TRIM_THRESHOLD = 128 * 1024


@dataclass(frozen=True)
class AllocatorState:
    applied: bool
    reason: str


def _libc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def keep_freed_memory(enabled: bool = True) -> AllocatorState:
    """enabled: serve large allocations from the heap and keep freed memory for reuse;
    False: glibc's defaults again. A no-op (applied=False) off glibc."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return AllocatorState(False, "not glibc")
    mmap_max, trim = (0, 2 ** 31 - 1) if enabled else (_DEFAULT_MMAP_MAX, _DEFAULT_TRIM_THRESHOLD)
    ok = bool(libc.mallopt(_M_MMAP_MAX, mmap_max)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, trim))
    return AllocatorState(ok, "glibc mallopt" if ok else "mallopt refused")
