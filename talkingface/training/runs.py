"""Run folders you can trace: one folder per training run, its options recorded beside its config.

- `run_folder`: a run never writes into another run's files. A missing or empty folder
  is used as it is; a non-empty one only to resume it (`--resume`). Otherwise the seed's
  default folder (`saved/ckpt_<stage>/<exp_name>`) gives way to the next free numbered
  sibling (`<exp_name>-1`, `<exp_name>-2`, ...), and a folder given with `--out` is
  refused. Rank 0 decides; every rank gets its answer.
- `write_run_record`: `config.yaml` (the resolved config) and `options.json` (the resolved
  options, the data path, the package version, the git commit when the package runs from
  a git checkout); a resumed run adds its own record under "resumes".
- `discard_if_unfinished`: around a run, a folder it started (missing or empty before) that
  holds nothing but that record and the logs when the run fails (a bad frame in the first
  batch, a full disk) is removed: a failed run leaves no folder that looks like a result.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import torch
import yaml

import talkingface
from talkingface.errors import TalkingFaceError
from talkingface.training.distributed import DistInfo
from talkingface.utils.atomic import atomic_path

OPTIONS_FILE = "options.json"
CONFIG_FILE = "config.yaml"
EVENTS_DIR = "events"  # TensorBoard logs
# run folders that `run_folder` chose missing or empty, inside `discard_if_unfinished`
_STARTED: contextvars.ContextVar[list[Path] | None] = contextvars.ContextVar("started_run_folders", default=None)


def _is_empty(folder: Path) -> bool:
    return not folder.exists() or (folder.is_dir() and not any(folder.iterdir()))


def next_numbered(folder: Path) -> Path:
    """The first `<name>-<n>` (n = 1, 2, ...) beside `folder` that is missing or empty."""
    n = 1
    while not _is_empty(candidate := folder.with_name(f"{folder.name}-{n}")):
        n += 1
    return candidate


def _decide(requested: Path, explicit: bool, resume: str | None) -> Path | str:
    if resume is not None or _is_empty(requested):
        return requested
    if explicit:
        return (f"{requested}: the run folder holds another run's files; continue that run with --resume auto, "
                "or give another run folder (--out)")
    chosen = next_numbered(requested)
    print(f"{requested} holds an earlier run (continue it with --resume auto); this run writes {chosen}")
    return chosen


def run_folder(requested: Path, explicit: bool, resume: str | None, info: DistInfo | None = None) -> Path:
    """Where this run writes (see the module doc). `explicit`: the folder was given (--out-dir),
    not the seed's default. Raises TalkingFaceError when a given folder is not empty and not resumed."""
    decision: Path | str | None = _decide(requested, explicit, resume) if info is None or info.is_main else None
    if info is not None and info.enabled:
        box = [decision]
        torch.distributed.broadcast_object_list(box, src=0)
        decision = box[0]
    if isinstance(decision, str):
        raise TalkingFaceError(decision)
    started = _STARTED.get()
    if started is not None and (info is None or info.is_main) and _is_empty(Path(decision)):
        started.append(Path(decision))
    return Path(decision)


@contextlib.contextmanager
def discard_if_unfinished() -> Iterator[None]:
    """Remove, when the block fails, each run folder it started that holds only the run's record and logs."""
    started: list[Path] = []
    token = _STARTED.set(started)
    try:
        yield
    except BaseException:
        for folder in started:
            if folder.is_dir() and all(p.name in (CONFIG_FILE, OPTIONS_FILE, EVENTS_DIR) for p in folder.iterdir()):
                shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        _STARTED.reset(token)


def git_commit() -> str | None:
    """The commit of the checkout the package runs from (an editable install), else None."""
    package = Path(talkingface.__file__).resolve().parent
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=package, capture_output=True, text=True,
                             timeout=10, check=False)
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() / package.name != package:
            return None  # not a checkout, or a checkout of something else around an installed package
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=package, capture_output=True, text=True, timeout=10,
                              check=False)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=package,
                               capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def run_record(options: Any, data: str | Path | None, resumed_from: str | Path | None = None) -> dict[str, Any]:
    """What options.json holds."""
    return {"options": _jsonable(options),
            "data": None if data is None else str(Path(data).resolve()),
            "resumed_from": None if resumed_from is None else str(resumed_from),
            "talkingface_version": talkingface.__version__,
            "git_commit": git_commit(),
            "torch_version": torch.__version__,
            "command": [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else [],
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def write_run_record(out_dir: Path, config: dict[str, Any], options: Any, data: str | Path | None,
                     resumed_from: str | Path | None = None) -> None:
    """`config.yaml` (the resolved config) and `options.json` beside it, atomically. A resumed run
    keeps the first run's files and adds its own record to options.json's "resumes"."""
    record = run_record(options, data, resumed_from)
    options_path = out_dir / OPTIONS_FILE
    if resumed_from is not None and options_path.is_file():
        try:
            first = json.loads(options_path.read_text())
        except (OSError, ValueError):
            first = None
        if isinstance(first, dict):
            record = {**first, "resumes": [*first.get("resumes", []), record]}
    if resumed_from is None or not (out_dir / CONFIG_FILE).is_file():
        with atomic_path(out_dir / CONFIG_FILE) as tmp:
            tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    with atomic_path(options_path) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
