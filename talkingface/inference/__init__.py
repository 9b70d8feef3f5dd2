"""Fast inference for the base generator: precision, memory layout, compilation, source caching.

Importing this package loads nothing heavy beyond torch; see `engine` for the entry points.
"""
from talkingface.inference.engine import (
    PRECISIONS,
    EngineOptions,
    InferenceEngine,
    PrecisionChoice,
    SourceCache,
    choose_precision,
    cpu_flags,
    native_precisions,
    psnr_uint8,
)

__all__ = [
    "PRECISIONS",
    "EngineOptions",
    "InferenceEngine",
    "PrecisionChoice",
    "SourceCache",
    "choose_precision",
    "cpu_flags",
    "native_precisions",
    "psnr_uint8",
]
