"""User-facing errors.

Anything a user can cause (bad file, no face, wrong checkpoint, bad config) raises
`TalkingFaceError`. The CLI prints it as one line and exits non-zero; the traceback
is shown only with `--debug`.
"""
from __future__ import annotations

import errno
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


class NonFiniteError(TalkingFaceError):
    """A model's output (or a training loss) turned NaN or infinite."""


class TrainingError(TalkingFaceError):
    """Training cannot go on (e.g. the loss kept being NaN)."""


# Causes a user can fix (space, permissions, a wrong path), reported even without a file name.
_USER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR,
                errno.EEXIST, errno.ENOENT, errno.EFBIG, errno.ENAMETOOLONG, errno.ELOOP}


def describe_os_error(error: OSError) -> str | None:
    """One line for an operating-system error the user can fix: 'PATH: no space left on device'.

    None for an OSError with neither a file name nor a user-fixable cause (a bug: report it
    as an internal error).
    """
    cause = error.strerror or (str(error.args[0]) if error.args else type(error).__name__)
    cause = cause[:1].lower() + cause[1:]
    name = error.filename
    if name is not None:
        name = os.fsdecode(name) if isinstance(name, (str, bytes, os.PathLike)) else str(name)
        if error.errno == errno.EEXIST and os.path.exists(name) and not os.path.isdir(name):
            cause = "exists and is a file, not a folder"
        if error.filename2 is not None:
            return f"{name} -> {os.fsdecode(error.filename2)}: {cause}"
        return f"{name}: {cause}"
    if error.errno in _USER_ERRNOS:
        return cause
    return None
