"""`talkingface <verb>`: the one command-line entry point.

Each verb's flags are the option fields of its options dataclasses (talkingface.utils.options:
a field's name, type, default and help are declared once, where the field is). A verb's
parser adds them, importing the recipe, only when that verb is parsed or its help shown, so
`talkingface --help` stays fast. User errors (`TalkingFaceError`) print as one line and exit
2; `--debug` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from talkingface.errors import TalkingFaceError, describe_os_error
from talkingface.utils.options import add_options, option, options_from_args, parse_bool

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1


# --------------------------------------------------------------------------- verbs
@dataclass
class SampleDataOptions:
    dest: str = option("dataset/meta_portrait_base_data", "Destination (default: the eval config's dataset root).",
                       positional=True)
    force: bool = option(False, "Replace a non-empty destination (else it is kept).")


@dataclass
class ServeOptions:
    """Where `talkingface app` listens; the app's own settings are talkingface.app.jobs.AppSettings."""

    host: str = option("127.0.0.1", "Address to listen on (0.0.0.0: every interface).")
    port: int = option(7860, "Port to listen on.")
    share: bool = option(False, "Also serve through a public gradio.live link (needs internet).", type=parse_bool,
                         metavar="{true,false}")


def _run_demo(args: argparse.Namespace) -> None:
    # lazy: verb (a verb's recipe loads when it runs: `talkingface --help` stays fast)
    from talkingface.recipes.demo import DemoOptions, run_demo

    print(f"Demo video: {run_demo(options_from_args(DemoOptions, args)).out}")


def _run_export(args: argparse.Namespace) -> None:
    # lazy: verb (a verb's recipe loads when it runs: `talkingface --help` stays fast)
    from talkingface.recipes.export import ExportOptions, export_generator, export_onnx_graphs

    opts = options_from_args(ExportOptions, args)
    if opts.out is None and opts.onnx is None:
        raise TalkingFaceError("nothing to write: give --out (a snapshot), --onnx OUT.onnx (ONNX graphs) or both")
    if opts.onnx is not None:  # first: a missing extra fails before anything is written
        export_onnx_graphs(opts.ckpt, opts.onnx, opts.config)
    if opts.out is not None:
        export_generator(opts.ckpt, opts.out, opts.config)


def _run_synth(args: argparse.Namespace) -> None:
    # lazy: verb (a verb's recipe loads when it runs: `talkingface --help` stays fast)
    from talkingface.data.synthetic import MotionSpec
    from talkingface.recipes.synth import SynthOptions, run_synth

    run_synth(options_from_args(SynthOptions, args, spec=options_from_args(MotionSpec, args)))


def _run_sample_data(args: argparse.Namespace) -> None:
    # lazy: verb (a verb's recipe loads when it runs: `talkingface --help` stays fast)
    from talkingface.data.sample import install_sample_data

    opts = options_from_args(SampleDataOptions, args)
    dest, written = install_sample_data(opts.dest, opts.force)
    print(f"Sample dataset written to {dest}" if written else f"{dest} already exists; kept it (--force replaces it)")


def _run_app(args: argparse.Namespace) -> None:
    # lazy: verb (a verb's recipe loads when it runs: `talkingface --help` stays fast)
    from talkingface.app.jobs import AppSettings

    settings = options_from_args(AppSettings, args)
    serve_at = options_from_args(ServeOptions, args)
    # lazy: optional extra (Gradio, which app.server imports): a one-line error without it
    from talkingface.app.server import serve

    serve(settings, host=serve_at.host, port=serve_at.port, share=serve_at.share)


@dataclass(frozen=True)
class Verb:
    name: str
    help: str
    options: tuple[str, ...]  # "module:Class": the dataclasses whose option fields are the verb's flags
    # "module:function", called with the first options dataclass built from the parsed flags; or a
    # handler of the parsed flags themselves
    run: str | Callable[[argparse.Namespace], None]

    def option_classes(self) -> list[type]:
        """The options dataclasses (importing their modules: a recipe's may import torch)."""
        return [_load(spec) for spec in self.options]

    def handle(self, args: argparse.Namespace) -> None:
        if callable(self.run):
            self.run(args)
        else:
            _load(self.run)(options_from_args(self.option_classes()[0], args))


def _load(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


_R = "talkingface.recipes."
VERBS: list[Verb] = [
    Verb("preprocess", "Turn talking-head videos (or image folders) into a mediapipe478 dataset.",
         (_R + "preprocess:PreprocessOptions",), _R + "preprocess:run_preprocess"),
    Verb("validate-data", "Check an official-layout dataset (either landmark scheme).",
         (_R + "preprocess:ValidateOptions",), _R + "preprocess:run_validate"),
    Verb("merge-data", "Join datasets (e.g. preprocess shards) into one, renumbering identities.",
         (_R + "preprocess:MergeOptions",), _R + "preprocess:run_merge"),
    Verb("pack-shards", "Convert an official-layout dataset (either scheme) to WebDataset shards.",
         (_R + "preprocess:PackOptions",), _R + "preprocess:run_pack"),
    Verb("infer", "Reconstruct an official-layout dataset with a base-model checkpoint.",
         (_R + "infer:InferOptions",), _R + "infer:run_inference"),
    Verb("animate", "Make a portrait (photo or video) talk like a driving video.",
         (_R + "animate:AnimateOptions",), _R + "animate:run_animate"),
    Verb("demo", "Animate a bundled portrait with a bundled driving video and model (no downloads).",
         (_R + "demo:DemoOptions",), _run_demo),
    Verb("speak", "Make a portrait talk from speech audio, or from text (espeak-ng).",
         (_R + "speak:SpeakOptions",), _R + "speak:run_speak"),
    Verb("export", "Write a generator-only inference snapshot of a training checkpoint, and/or ONNX graphs of its "
                   "generator (--onnx).", (_R + "export:ExportOptions",), _run_export),
    Verb("train", "Pretrain the base model: the warp stage, then the full stage.",
         (_R + "train:TrainOptions",), _R + "train:run_training"),
    Verb("meta-train", "Reptile meta-training from a full-stage checkpoint.",
         (_R + "meta_train:MetaTrainOptions",), _R + "meta_train:run_meta_training"),
    Verb("personalize", "Fine-tune a base model to one person (dataset folder or video).",
         (_R + "personalize:PersonalizeOptions",), _R + "personalize:run_personalize"),
    Verb("enhance", "Temporal x2 face super-resolution (256 -> 512) of a frames folder or video.",
         (_R + "enhance:EnhanceOptions",), _R + "enhance:run_enhance"),
    Verb("train-sr", "Train the temporal super-resolution model (256 -> 512) on LQ/GT clips.",
         (_R + "train_sr:SRTrainOptions",), _R + "train_sr:run_sr_training"),
    Verb("make-sr-data", "Build LQ/GT clip pairs for train-sr from a preprocessed 512 dataset.",
         (_R + "make_sr_data:MakeSRDataOptions",), _R + "make_sr_data:run_make_sr_data"),
    Verb("synth", "Make an official-layout dataset of synthetic talking clips from portraits.",
         (_R + "synth:SynthOptions", "talkingface.data.synthetic:MotionSpec"), _run_synth),
    Verb("evaluate", "Score a predicted video against its ground truth and write a report.",
         (_R + "evaluate:EvaluateOptions",), _R + "evaluate:run_evaluate"),
    Verb("sample-data", "Copy the bundled official-layout sample dataset to a folder.",
         ("talkingface.cli:SampleDataOptions",), _run_sample_data),
    Verb("app", "The web demo (Gradio): animate, personalise and enhance in a browser.",
         ("talkingface.app.jobs:AppSettings", "talkingface.cli:ServeOptions"), _run_app),  # jobs: no Gradio
]


class VerbParser(argparse.ArgumentParser):
    """A verb's parser: its flags are added on first use (parsing, help, usage), so that
    `talkingface --help` and the other verbs import no recipe."""

    def __init__(self, *args: Any, verb: Verb | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending = verb

    def add_verb_options(self) -> None:
        verb, self._pending = self._pending, None
        if verb is not None:
            for cls in verb.option_classes():
                add_options(self, cls)
            self.set_defaults(handler=verb.handle)

    def parse_known_args(self, args=None, namespace=None):  # noqa: ANN001 - argparse's signature
        self.add_verb_options()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self.add_verb_options()
        return super().format_usage()

    def format_help(self) -> str:
        self.add_verb_options()
        return super().format_help()


# --------------------------------------------------------------------------- entry
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="talkingface", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="Show full tracebacks on errors.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=VerbParser)
    sub.required = True
    for verb in VERBS:
        sub.add_parser(verb.name, help=verb.help, verb=verb)
    return parser


def _progress_bars() -> list:
    """The tqdm bars now open (none when tqdm was never imported)."""
    return list(getattr(getattr(sys.modules.get("tqdm"), "tqdm", None), "_instances", ()))


def _end_progress_bars() -> None:
    """Close the progress bars a failure left open, so the error starts a line of its own (not the
    bar's: tqdm leaves the cursor at the end of an open bar)."""
    for bar in _progress_bars():
        bar.close()


def _warning_line(prog: str, message) -> str:
    """A warning as one line of its own: open progress bars are cleared first (each redraws itself
    at its next update), so the line does not start at the end of a bar."""
    for bar in _progress_bars():
        bar.clear()
    return f"{prog}: warning: {message}\n"


def run_guarded(fn: Callable[[], None], debug: bool, prog: str = "talkingface") -> int:
    """Run `fn`, turning failures into one stderr line and an exit code; warnings (a damaged
    packet, several faces, ...) print as one line each (with --debug, Python's usual two)."""
    default_format = warnings.formatwarning
    if not debug:
        warnings.formatwarning = lambda message, *_args, **_kw: _warning_line(prog, message)
    try:
        fn()
    except TalkingFaceError as e:
        if debug:
            raise
        _end_progress_bars()
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - last resort: one line, never a bare traceback
        if debug:
            raise
        # an OSError with a path or a cause the user can fix (a full disk, a read-only folder, a file
        # where a folder belongs) is a user error
        line = describe_os_error(e) if isinstance(e, OSError) else None
        _end_progress_bars()
        if line is not None:
            print(f"{prog}: error: {line}", file=sys.stderr)
            return EXIT_USER_ERROR
        print(f"{prog}: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return EXIT_INTERNAL_ERROR
    finally:
        warnings.formatwarning = default_format
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parsed: list[argparse.Namespace] = []
    # parsing imports the verb's recipe (its options dataclass): a failure there is one line too
    code = run_guarded(lambda: parsed.append(build_parser().parse_args(argv)), "--debug" in argv)
    if code:
        return code
    args = parsed[0]
    return run_guarded(lambda: args.handler(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
