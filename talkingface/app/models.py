"""Which checkpoints the web app may open: its allow-list (no Gradio here).

A model is the bundled one, one personalised in the same browser session, or a checkpoint the
operator put in `--models-dir`; super-resolution checkpoints come from `--models-dir` too.
Checkpoint paths typed on the page are refused unless the operator started the app with
`--allow-server-paths`. A refusal never touches the file system for the name it was given, so
its message is the same whether that path exists or not.
"""
from __future__ import annotations

from pathlib import Path

from talkingface.app.jobs import BUNDLED_CHOICE, AppSettings, SessionModel, clean_path
from talkingface.errors import CheckpointError

CHECKPOINT_SUFFIXES = (".pth", ".pth.tar", ".pt")  # what --models-dir offers; other files are left out of the menus
PATHS_OFF = ("this server takes models from its menus only (typed checkpoint paths are off; the operator can "
             "allow them with --allow-server-paths)")


def is_checkpoint_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(CHECKPOINT_SUFFIXES)


def models_dir_entries(settings: AppSettings) -> dict[str, Path]:
    """The checkpoints in --models-dir (subfolders included), by menu label: the path relative to it."""
    root = settings.models_dir
    if root is None or not root.is_dir():
        return {}
    found = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if (path.is_file() and is_checkpoint_name(path.name)
                and not any(part.startswith(".") for part in relative.parts)):
            found[relative.as_posix()] = path
    return found


def model_choices(settings: AppSettings, models: list[SessionModel]) -> list[str]:
    """The base-model menu: bundled, then --models-dir, then this session's personalised models."""
    return [BUNDLED_CHOICE, *models_dir_entries(settings), *(m.label for m in models)]


def sr_choices(settings: AppSettings) -> list[str]:
    """The super-resolution menu: the checkpoints in --models-dir (none is bundled)."""
    return list(models_dir_entries(settings))


def typed_path(settings: AppSettings, text: str | None) -> str | None:
    """A checkpoint path typed on the page: the path when the operator allows them, else a refusal."""
    path = clean_path(text)
    if path and not settings.allow_server_paths:
        raise CheckpointError(PATHS_OFF)
    return path


def resolve_model(settings: AppSettings, choice: str | None, typed: str | None,
                  models: list[SessionModel]) -> str | None:
    """The checkpoint to use: a typed path (when allowed) wins over the menu; None is the bundled model."""
    path = typed_path(settings, typed)
    if path:
        return path
    if not choice or choice == BUNDLED_CHOICE:
        return None
    for model in models:
        if model.label == choice:
            return model.path
    listed = models_dir_entries(settings).get(choice)
    if listed is not None:
        return str(listed)
    raise CheckpointError("that model is not on this server's menu nor a model of this browser session "
                          "(personalised models are kept per session: personalise again after reloading the page)")


def resolve_sr(settings: AppSettings, choice: str | None, typed: str | None) -> str | None:
    """The super-resolution checkpoint: a typed path (when allowed), else the menu's; None when neither."""
    path = typed_path(settings, typed)
    if path:
        return path
    if not choice:
        return None
    listed = models_dir_entries(settings).get(choice)
    if listed is None:
        raise CheckpointError("that super-resolution model is not on this server's menu")
    return str(listed)
