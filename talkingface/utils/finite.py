"""Outputs that turned NaN or infinite stop the run: never black frames and exit 0."""
from __future__ import annotations

import torch

from talkingface.errors import NonFiniteError


def precision_hint(precision: str) -> str:
    if precision != "fp32":
        return f" at {precision} (it may overflow there: try --precision fp32)"
    return "; the weights or the inputs are damaged"


def require_finite(output: torch.Tensor, what: str = "the model's output", hint: str = "") -> torch.Tensor:
    """`output` unchanged if every value is finite; else `NonFiniteError`. One reduction and one
    host sync per call: call it once per batch."""
    if not bool(torch.isfinite(output).all()):
        raise NonFiniteError(f"{what} turned non-finite (NaN/inf){hint}; stopped before writing it")
    return output
