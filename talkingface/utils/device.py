"""Device selection: CUDA where present, CPU otherwise; never hard-coded."""
from __future__ import annotations

import torch

from talkingface.errors import TalkingFaceError


def resolve_device(spec: str = "auto") -> torch.device:
    """'auto' -> cuda if available else cpu; 'cpu'; 'cuda'; 'cuda:N'."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise TalkingFaceError(f"unknown device {spec!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TalkingFaceError(f"device {spec!r} requested but no CUDA GPU is available (use --device cpu)")
    return device
