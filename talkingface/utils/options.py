"""Options dataclasses that are also command lines: each option is declared once, as a field.

A field made with `option(default, "help")` is a command-line option of every verb built
from its dataclass (talkingface/cli.py); a plain field is Python-API only. The option's

- flag is `--field-name`, unless `flag=` names another (`--out` for `save_dir`); `aliases=`
  are further spellings that parse to the same field but stay out of `--help`;
- type comes from the annotation: `str`, `int`, `float`, `X | None` (default None: "not
  given"), `list[X]` (one or more values), `Literal[...]` (its values are the choices);
  `type=` (a parser such as `parse_size`) and `choices=` override it;
- a `bool` is a switch: `--name` sets True when the default is False or None; a default of
  True gives `--no-name` (or `flag=`) that sets False;
- default is the field's default; a field without one is a required flag; a `default_factory`
  field defaults to None on the command line, which `options_from_args` leaves to the factory;
- `one_of="group"`: exactly one of the group's options must be given.

Nothing here imports beyond the standard library, so a dataclass anywhere can use it.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable

METADATA_KEY = "talkingface.option"


@dataclass(frozen=True)
class OptionSpec:
    help: str
    flag: str | None = None
    aliases: tuple[str, ...] = ()
    choices: tuple[Any, ...] | None = None
    type: Callable[[str], Any] | None = None
    metavar: str | None = None
    nargs: str | None = None
    const: Any = None
    required: bool | None = None  # None: required when the field has no default
    one_of: str | None = None
    positional: bool = False


def option(default: Any = dataclasses.MISSING, help: str = "", *,  # noqa: A002 - argparse's name
           default_factory: Callable[[], Any] | Any = dataclasses.MISSING, **cli: Any) -> Any:
    """A dataclass field that is a command-line option; `cli` are OptionSpec's other fields."""
    if "aliases" in cli:
        cli["aliases"] = tuple(cli["aliases"])
    if "choices" in cli:
        cli["choices"] = tuple(cli["choices"])
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={METADATA_KEY: OptionSpec(help=help, **cli)})


# ---------------------------------------------------------------------- options shared by many verbs
def device_option(note: str = "") -> Any:
    return option("auto", f"auto, cpu, cuda or cuda:N{note}.")


def precision_option(default: str, note: str) -> Any:
    return option(default, "Inference precision. auto: the fastest one measured to stay within 40 dB PSNR of fp32 "
                           "on this device; bf16/fp16 run convolutions in that type, or fp32 (one warning) where "
                           f"the machine only emulates it (--force keeps it). {note}.",
                  choices=("auto", "fp32", "bf16", "fp16"))


def force_option() -> Any:
    return option(False, "Keep the requested bf16/fp16 (--precision, --fp16) even where this machine only emulates "
                         "it: bf16 on a CPU without avx512_bf16/amx_bf16, fp16 on a CPU without avx512_fp16/"
                         "amx_fp16, bf16 on a GPU before compute capability 8.0: about 100x slower than fp32 per "
                         "convolution with AVX2 kernels. Without it: one warning, then fp32.")


def fp16_option(note: str = "") -> Any:
    return option(False, f"Mixed precision{note}: fp16 + GradScaler on CUDA, bf16 autocast on CPU. Trains in fp32 "
                         "(one warning) where bf16 is emulated, i.e. a CPU without avx512_bf16/amx_bf16 (--force "
                         "keeps it).", flag="--fp16")


def render_option() -> Any:
    return option("full", "full (default): the model's motion applied to the photo's own pixels at its resolution, "
                          "the generator filling the mouth and closing eyes; model: the model's output upsampled "
                          "and pasted back (blurry at 64 px; for comparison).", choices=("full", "model"))


def vgg19_option(note: str = "") -> Any:
    return option(None, f"{note}VGG19 ImageNet weights (torchvision layout).")


def shard_size_option(default: int) -> Any:
    return option(default, "Target size of a WebDataset shard (default 1GB; e.g. 500MB).", type=parse_size,
                  flag="--shard-size", metavar="SIZE")


# ---------------------------------------------------------------------- value parsers
def parse_size(text: str) -> int:
    """Bytes from '1GB', '500M', '64KiB' or a plain number (decimal units; KiB, MiB, GiB binary)."""
    units = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30}
    value = text.strip().lower().removesuffix("b")
    number = value.rstrip("kmgti")
    try:
        return int(float(number) * units[value[len(number):]])
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a size such as 1GB, 500MB or 1000000; got {text!r}") from None


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


# ---------------------------------------------------------------------- dataclass <-> argparse
def option_fields(cls: type, only: typing.Iterable[str] | None = None) -> list[dataclasses.Field]:
    """The fields of `cls` that are command-line options (all, or those named in `only`)."""
    wanted = None if only is None else set(only)
    found = [f for f in dataclasses.fields(cls) if METADATA_KEY in f.metadata]
    if wanted is not None:
        missing = wanted - {f.name for f in found}
        if missing:
            raise ValueError(f"{cls.__name__} has no options {sorted(missing)}")
        found = [f for f in found if f.name in wanted]
    return found


def _annotation(cls: type, f: dataclasses.Field) -> Any:
    """The field's annotation as an object (`from __future__ import annotations` leaves a string)."""
    if not isinstance(f.type, str):
        return f.type
    owner = next(c for c in cls.__mro__ if f.name in getattr(c, "__annotations__", {}))
    return eval(f.type, vars(sys.modules[owner.__module__]))  # as typing.get_type_hints does, one field only


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """(the type inside `X | None`, whether it is a list)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"cannot make an option of {hint}")
        hint = inner[0]
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0], True
    return hint, False


def _has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def argument_kwargs(cls: type, f: dataclasses.Field) -> dict[str, Any]:
    """add_argument's keywords for one option field (help, type or action, default, ...)."""
    spec: OptionSpec = f.metadata[METADATA_KEY]
    hint, is_list = _unwrap(_annotation(cls, f))
    kwargs: dict[str, Any] = {"help": spec.help}
    default = f.default if f.default is not dataclasses.MISSING else None
    if hint is bool and spec.type is None:
        kwargs["action"] = "store_false" if default is True else "store_true"
    else:
        if typing.get_origin(hint) is typing.Literal:
            kwargs["choices"] = typing.get_args(hint)
        elif spec.type is not None:
            kwargs["type"] = spec.type
        elif hint is not str:
            kwargs["type"] = hint
        for key in ("metavar", "choices"):
            if getattr(spec, key) is not None:
                kwargs[key] = getattr(spec, key)
        if is_list or spec.nargs:
            kwargs["nargs"] = spec.nargs or "+"
        if spec.const is not None:
            kwargs["const"] = spec.const
    if spec.positional:
        if _has_default(f) and "nargs" not in kwargs:
            kwargs["nargs"] = "?"
    elif spec.one_of is None:
        kwargs["required"] = not _has_default(f) if spec.required is None else spec.required
    if _has_default(f):
        kwargs["default"] = default
    return kwargs


def flag_of(f: dataclasses.Field) -> str:
    spec: OptionSpec = f.metadata[METADATA_KEY]
    if spec.flag:
        return spec.flag
    prefix = "--no-" if f.default is True and spec.type is None else "--"
    return prefix + f.name.replace("_", "-")


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type,
                only: typing.Iterable[str] | None = None) -> None:
    """One argument per option field of `cls` (or of those named in `only`), dest = the field's name."""
    groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for f in option_fields(cls, only):
        spec: OptionSpec = f.metadata[METADATA_KEY]
        kwargs = argument_kwargs(cls, f)
        target = parser
        if spec.one_of is not None:
            if spec.one_of not in groups:
                groups[spec.one_of] = parser.add_mutually_exclusive_group(required=True)
            target = groups[spec.one_of]
        if spec.positional:
            target.add_argument(f.name, **kwargs)
            continue
        flag = flag_of(f)
        if "action" not in kwargs and "choices" not in kwargs and "metavar" not in kwargs:
            kwargs["metavar"] = flag.lstrip("-").upper().replace("-", "_")  # the flag's, not the field's name
        target.add_argument(flag, dest=f.name, **kwargs)
        hidden = {**kwargs, "help": argparse.SUPPRESS, "default": argparse.SUPPRESS}
        hidden.pop("required", None)
        for alias in spec.aliases:  # another spelling of the same option, left out of --help
            target.add_argument(alias, dest=f.name, **hidden)


def options_from_args(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """`cls` built from the parsed option fields found in `args`; `overrides` win. A None for a
    `default_factory` field ("not given") leaves it to the factory."""
    values = {}
    for f in option_fields(cls):
        if f.name in overrides or not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        if value is None and f.default_factory is not dataclasses.MISSING:
            continue
        values[f.name] = value
    return cls(**values, **overrides)
