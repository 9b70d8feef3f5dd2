"""Each command-line option is declared once, as a field of an options dataclass
(talkingface.utils.options), and every verb's flags are generated from those fields."""
from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest

from talkingface import cli, seed_cli
from talkingface.utils.options import add_options, option, option_fields, options_from_args

PACKAGE = Path(cli.__file__).resolve().parent

# Fields that are Python-API only (plain fields, no `option(...)`), per options dataclass.
PYTHON_API_ONLY = {
    "AnimateOptions": {"feather", "smooth", "random_vgg", "seed", "progress", "fullres"},
    "SpeakOptions": {"batch_size", "voice", "progress"},
    "SynthOptions": {"spec"},  # its options are MotionSpec's
    "MotionSpec": {"num_frames", "smoothness", "syllable_frames", "pause_prob", "blink_frames", "blink_closure",
                   "seed"},
    "TrainOptions": {"val_frames", "max_bad_steps"},
    "SRTrainOptions": {"max_bad_steps"},
    "MakeSRDataOptions": {"degradation"},
    "ValidateOptions": {"max_problems_shown"},
    "AppSettings": {"max_steps", "max_text", "keep_hours", "random_vgg"},
}

# Every flag each verb took before its flags came from the dataclasses (less meta-train's --warp-ckpt,
# --val-data, --image-every and --num-workers, which it accepted and ignored).
FLAGS_BEFORE = {
    "preprocess": "config crop-expand crop-offset-y format fps max-frames min-confidence moving-box no-scene-split "
                  "no-smooth out preview ray retries scene-threshold shard shard-size size source-frame workers",
    "validate-data": "identity-dim quick scheme",
    "merge-data": "copy force out",
    "pack-shards": "out shard-size",
    "infer": "batch-size ckpt config data device eval force fps keep-partial no-video out precision",
    "animate": "absolute batch-size ckpt config crop-only device driving enhance find-best-frame force out "
               "personalize precision render source sr-ckpt vgg19",
    "demo": "ckpt device driving force out precision render source",
    "speak": "audio ckpt device force fps head-motion out precision render save-landmarks seed source text transcript",
    "export": "ckpt config onnx out",
    "train": "batch-size ckpt-every config data device epochs force fp16 image-every init log-every max-steps "
             "num-workers out random-vgg resume shuffle-buffer skip-bad stage val-data vgg19 warp-ckpt",
    "meta-train": "ckpt ckpt-every config data device epochs force fp16 log-every max-steps out random-vgg remove-sn "
                  "resume skip-bad vgg19",
    "personalize": "batch-size ckpt config data device force fp16 holdout lr out random-vgg seconds seed steps vgg19",
    "enhance": "batch-size chunking ckpt device force fps input out overlap precision weights window",
    "train-sr": "batch-size ckpt-every config data device force fp16 image-every init-ckpt log-every lpips-alexnet "
                "lpips-lin max-steps no-val num-workers out random-vgg resume total-iter val-data val-every vgg19",
    "make-sr-data": "batch-size ckpt config data degrade device out seed",
    "synth": "blink-every brow fps frames identity identity-dim max-pitch max-rotation max-scale max-shift max-yaw "
             "mouth-open out portrait scheme seed size smile teeth video",
    "evaluate": "arcface batch-size device fps gt inception lpips-alexnet lpips-lin no-face-metrics no-temporal "
                "no-video out pred source",
    "sample-data": "force",
    "app": "allow-server-paths device host job-timeout max-image-side max-seconds max-upload-mb models-dir port "
           "queue-size share vgg19 work-dir",
}
HIDDEN_ALIASES = {("train", "--init-ckpt"): "init_ckpt", ("train-sr", "--init-ckpt"): "init_ckpt"}


def verb_parsers() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for parser in sub.choices.values():
        parser.add_verb_options()
    return sub.choices


def test_every_verb_has_a_table_entry():
    assert {v.name for v in cli.VERBS} == set(FLAGS_BEFORE) == set(verb_parsers())


@pytest.mark.parametrize("verb", cli.VERBS, ids=lambda v: v.name)
def test_a_verbs_flags_are_its_dataclasses_fields(verb):
    parser = verb_parsers()[verb.name]
    dests = {a.dest for a in parser._actions if not isinstance(a, argparse._HelpAction)}
    classes = verb.option_classes()
    assert dests == {f.name for cls in classes for f in option_fields(cls)}
    for cls in classes:
        plain = {f.name for f in dataclasses.fields(cls)} - {f.name for f in option_fields(cls)}
        assert plain == PYTHON_API_ONLY.get(cls.__name__, set()), cls.__name__


@pytest.mark.parametrize("verb", sorted(FLAGS_BEFORE))
def test_every_earlier_flag_still_parses(verb):
    parser = verb_parsers()[verb]
    flags = {s for a in parser._actions for s in a.option_strings}
    assert {"--" + f for f in FLAGS_BEFORE[verb].split()} <= flags


@pytest.mark.parametrize("verb, alias", sorted(HIDDEN_ALIASES))
def test_hidden_aliases_parse_to_the_same_field(verb, alias):
    parser = verb_parsers()[verb]
    required = {"train": ["--config", "c", "--stage", "warp"], "train-sr": ["--config", "c"]}[verb]
    dest = HIDDEN_ALIASES[verb, alias]
    assert getattr(parser.parse_args([*required, alias, "w.pth"]), dest) == "w.pth"
    assert getattr(parser.parse_args([*required, "--init", "w.pth"]), dest) == "w.pth"
    assert getattr(parser.parse_args(required), dest) is None
    assert alias not in parser.format_help() and "--init " in parser.format_help()


def test_each_option_is_declared_once_in_the_source():
    sources = {p.name: p.read_text(encoding="utf-8") for p in (PACKAGE / "cli.py", PACKAGE / "seed_cli.py")}
    assert sources["cli.py"].count("add_argument(") == 1  # --debug; every verb flag comes from a dataclass
    for text in sources.values():
        assert not re.search(r"""["']--device["']""", text)
    # the one declaration of --device (talkingface.utils.options.device_option)
    found = [p for p in PACKAGE.rglob("*.py") if "cuda or cuda:N{note}" in p.read_text(encoding="utf-8")]
    assert [p.relative_to(PACKAGE).as_posix() for p in found] == ["utils/options.py"]
    device_helps = {a.help for parser in verb_parsers().values() for a in parser._actions if a.dest == "device"}
    assert all(h.startswith("auto, cpu, cuda or cuda:N") for h in device_helps)


def test_built_options_follow_the_flags():
    from talkingface.recipes.infer import InferOptions

    args = cli.build_parser().parse_args(["infer", "--config", "c", "--ckpt", "k", "--data", "d", "--out", "o",
                                          "--no-video", "--eval", "--precision", "bf16"])
    assert options_from_args(InferOptions, args) == InferOptions(
        config="c", ckpt="k", data_root="d", save_dir="o", write_video=False, evaluate=True, precision="bf16")
    args = cli.build_parser().parse_args(["infer", "--config", "c", "--ckpt", "k"])
    assert options_from_args(InferOptions, args) == InferOptions(config="c", ckpt="k")


def test_the_seed_front_door_takes_the_training_flags():
    args = seed_cli.build_parser().parse_args(["--model==metaportraitbasetrain", "--config", "c", "--stage", "Warp",
                                               "--task", "Pretrain", "--out", "o", "--data", "d", "--fp16",
                                               "--batch_size", "3"])
    assert (args.out_dir, args.data_root, args.mixed_precision, args.batch_size) == ("o", "d", True, 3)
    assert args.precision == "fp32" and args.device == "auto"


def test_the_top_level_help_imports_no_recipe():
    code = ("import sys; from talkingface.cli import build_parser; build_parser().format_help(); "
            "sys.exit(any(m.startswith(('talkingface.recipes', 'torch')) for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@dataclasses.dataclass
class _Toy:
    name: str = option(help="required")
    mode: Literal["a", "b"] = option("a", "choices from the annotation")
    count: int | None = option(None, "optional int")
    sizes: list[int] = option(default_factory=list, help="one or more")
    quiet: bool = option(False, "switch")
    colour: bool = option(True, "negated switch")
    maybe: bool | None = option(None, "tri-state switch")
    hidden: int = 3


def test_the_generator_reads_types_defaults_and_switches():
    parser = argparse.ArgumentParser()
    add_options(parser, _Toy)
    args = parser.parse_args(["--name", "x", "--mode", "b", "--count", "2", "--sizes", "1", "2", "--quiet",
                              "--no-colour"])
    assert options_from_args(_Toy, args) == _Toy("x", "b", 2, [1, 2], True, False, None)
    assert options_from_args(_Toy, parser.parse_args(["--name", "y"])) == _Toy("y")
    for bad in (["--mode", "c", "--name", "x"], [], ["--name", "x", "--count", "two"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    assert "--hidden" not in parser.format_help()
