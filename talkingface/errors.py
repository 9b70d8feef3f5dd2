"""User-facing errors.

Anything a user can cause (bad file, no face, wrong checkpoint, bad config) raises
`TalkingFaceError`. The CLI prints it as one line and exits non-zero; the traceback
is shown only with `--debug`.
"""
from __future__ import annotations

import os


class TalkingFaceError(Exception):
    """An error the user can fix. `path` names the file at fault, when there is one."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else os.fspath(path)
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class ConfigError(TalkingFaceError):
    """A config file has an unknown key, a missing key or a value of the wrong type."""


class CheckpointError(TalkingFaceError):
    """A checkpoint is missing, truncated, or belongs to another model."""


class DataError(TalkingFaceError):
    """A dataset, image, video or landmark file is missing or malformed."""
