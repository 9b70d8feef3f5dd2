"""Fast inference for the base generator: precision, memory layout, compilation, source caching.

Importing this package loads nothing heavy beyond torch; see `engine` for the entry points.
"""
from talkingface.inference.engine import (
    PRECISIONS,
    EmulatedPrecisionWarning,
    EngineOptions,
    InferenceEngine,
    PrecisionChoice,
    SourceCache,
    choose_precision,
    cpu_flags,
    fit_precision,
    generator_psnr_check,
    native_precisions,
    psnr_uint8,
    resolve_precision,
)

__all__ = [
    "PRECISIONS",
    "EmulatedPrecisionWarning",
    "EngineOptions",
    "InferenceEngine",
    "PrecisionChoice",
    "SourceCache",
    "choose_precision",
    "cpu_flags",
    "fit_precision",
    "generator_psnr_check",
    "native_precisions",
    "psnr_uint8",
    "resolve_precision",
]
