"""`talkingface preprocess`, `validate-data`, `merge-data` and `pack-shards`: options and wiring.

The work is in talkingface.preprocess; this module turns options into settings, runs
inputs (in worker processes with --workers, as Ray tasks with --ray), reports progress
and failures, and raises one TalkingFaceError at the end when something failed.
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from talkingface.config import load_config
from talkingface.data.shards import DEFAULT_SHARD_BYTES, INDEX_FILE, import_webdataset
from talkingface.errors import ConfigError, DataError, TalkingFaceError
from talkingface.preprocess.identity import IDENTITY_DIM
from talkingface.preprocess.merge import merge_datasets
from talkingface.preprocess.pack import pack_dataset
from talkingface.preprocess.parallel import InOrder, RaySettings, import_ray, run_on_ray
from talkingface.preprocess.pipeline import SCHEME, VideoResult, VideoSettings, process_input
from talkingface.preprocess.shard_store import ShardStore
from talkingface.preprocess.sources import InputItem, Shard, expand_inputs
from talkingface.preprocess.store import DatasetStore
from talkingface.preprocess.validate import validate_dataset
from talkingface.utils.options import option, shard_size_option
from talkingface.utils.paths import refuse_overwrite


@dataclass
class PreprocessOptions:
    inputs: list[str] = option(help="Video files, folders of frames, or folders searched recursively for both.",
                               positional=True, metavar="INPUT")
    out: str = option(help="Dataset folder (official layout + meta.json); re-runs resume it.")
    size: int | None = option(None, "Crop size: 256 (default) or 512 for super-resolution data.")
    config: str | None = option(None, "A mediapipe478 model config: size and crop settings from it (its dataset "
                                      "block).")
    crop_expand: float | None = option(None, "Crop side / face-box side (default 1.3, or the config's).")
    crop_offset_y: float | None = option(None, "Crop centre moves down by this x face-box height (default 0.2, or "
                                               "the config's).")
    moving_box: bool | None = option(None, "Follow the face with a smoothed box (default: one static box per video, "
                                           "or the config's static_bbox).")
    source_frame: int | None = option(None, "Frame index of the source portrait (default: the first near-frontal "
                                            "frame).")
    min_confidence: float = option(0.5, "Face confidence below which a frame is dropped.")
    smooth: bool = option(True, "Keep raw per-frame landmarks (no temporal smoothing).")
    image_fps: float = option(25.0, "Frame rate recorded for folders of images.", flag="--fps")
    max_frames: int | None = option(None, "Stop each input after this many frames.")
    preview: bool = option(False, "Also write <out>/<k>/preview.mp4 with landmarks drawn.")
    shard: str | None = option(None, "Process only shard K of N (K from 0) of the sorted inputs; merge shards with "
                                     "merge-data (for machines without Ray; --ray spreads one run over a cluster).",
                               metavar="K/N")
    workers: int | None = option(None, "Inputs processed at once in worker processes (default 1); with --ray local: "
                                       "the local Ray instance's CPUs (default: all cores).")
    ray: str | None = option(None, "One Ray task per input. auto (the default value): the cluster Ray finds "
                                   "(RAY_ADDRESS, or one started here with `ray start`), else a local instance of all "
                                   "cores; local: a new local instance (--workers CPUs); ADDRESS: a cluster's "
                                   'HOST:PORT. Needs pip install -e ".[scale]".',
                             nargs="?", const="auto", metavar="auto|local|ADDRESS")
    ray_retries: int = option(3, "--ray: further attempts at an input whose worker died or hit an I/O error.",
                              flag="--retries")
    format: str = option("folder", "folder: the official layout; shards: WebDataset tar shards for training I/O at "
                                   "scale (--shard-size each).", choices=("folder", "shards"))
    # format "shards": a shard closes at the first input end past this size
    shard_bytes: int = shard_size_option(DEFAULT_SHARD_BYTES)
    scene_split: bool = option(True, "One identity per input, as if it had no scene cuts (default: split each input "
                                     "at cuts and make one identity per person).")
    scene_threshold: float | None = option(None, "Scene-cut threshold on the frame change score, 0..1 (default 0.3; "
                                                 "lower finds more cuts).")


FORMATS = ("folder", "shards")


@dataclass
class PreprocessReport:
    root: Path
    processed: list[tuple[str, list[int]]] = field(default_factory=list)  # (input, its identities k)
    skipped: list[str] = field(default_factory=list)  # already done by an earlier run
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input, error)
    frames_kept: int = 0
    frames_dropped: int = 0
    frames_decoded: int = 0
    seconds: float = 0.0


def video_settings(opts: PreprocessOptions) -> VideoSettings:
    """Defaults <- the config's dataset block (if --config) <- explicit options."""
    settings = VideoSettings()
    if opts.config is not None:
        cfg = load_config(opts.config)
        if cfg.model.landmark_scheme != SCHEME:
            raise ConfigError(f"preprocess writes {SCHEME} landmarks, but this config's model.landmark_scheme is "
                              f"{cfg.model.landmark_scheme}", opts.config)
        if cfg.model.generator.class_dim != IDENTITY_DIM:
            raise ConfigError(f"preprocess writes {IDENTITY_DIM}-d identities, but this config's "
                              f"model.generator.class_dim is {cfg.model.generator.class_dim}", opts.config)
        block = cfg.dataset.data_block()
        settings = replace(settings, size=cfg.resolution[0], crop_expand=block.crop_expand,
                           crop_offset_y=block.crop_offset_y, static_box=block.static_bbox)
    overrides = {
        "size": opts.size, "crop_expand": opts.crop_expand, "crop_offset_y": opts.crop_offset_y,
        "static_box": None if opts.moving_box is None else not opts.moving_box,
    }
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    if opts.scene_threshold is not None and not 0 < opts.scene_threshold <= 1:
        raise DataError("--scene-threshold must be above 0 and at most 1")
    scenes = settings.scenes if opts.scene_threshold is None else replace(settings.scenes,
                                                                          threshold=opts.scene_threshold)
    settings = replace(settings, source_frame=opts.source_frame, min_confidence=opts.min_confidence,
                       smooth=opts.smooth, image_fps=opts.image_fps, max_frames=opts.max_frames,
                       preview=opts.preview, scene_split=opts.scene_split, scenes=scenes)
    if not 64 <= settings.size <= 2048:
        raise DataError(f"crop size {settings.size}: use 256 (base model) or 512 (super-resolution data)")
    if settings.crop_expand <= 0:
        raise DataError("crop_expand must be positive")
    if opts.source_frame is not None and opts.source_frame < 0:
        raise DataError("--source-frame must be 0 or more")
    if not 0 <= opts.min_confidence <= 1:
        raise DataError("--min-confidence must be between 0 and 1")
    if opts.image_fps <= 0:
        raise DataError("--fps must be positive")
    return settings


def _shown(frames: list[int], most: int = 10) -> str:
    return ", ".join(map(str, frames[:most])) + (", ..." if len(frames) > most else "")


# ------------------------------------------------------------------ worker processes
_PROGRESS_QUEUE = None


def _init_worker(queue) -> None:
    global _PROGRESS_QUEUE
    _PROGRESS_QUEUE = queue


def _work(item: InputItem, settings: VideoSettings, staging: Path) -> VideoResult:
    return process_input(item, settings, staging, progress=_PROGRESS_QUEUE.put if _PROGRESS_QUEUE else None)


def _run_parallel(items: list[InputItem], settings: VideoSettings, store: DatasetStore | ShardStore, workers: int,
                  bar, on_result) -> None:
    import queue as queue_module

    context = multiprocessing.get_context("spawn")  # fork would copy MediaPipe's threads
    progress = context.Queue()

    def drain() -> None:
        while True:
            try:
                bar.update(progress.get_nowait())
            except queue_module.Empty:
                return

    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                                                initargs=(progress,)) as pool:
        futures = {pool.submit(_work, item, settings, store.staging_dir(item)): i for i, item in enumerate(items)}
        ordered = InOrder(on_result)  # committed in input order: identity numbers do not depend on timing
        try:
            remaining = set(futures)
            while remaining:
                done, remaining = concurrent.futures.wait(remaining, timeout=0.25,
                                                          return_when=concurrent.futures.FIRST_COMPLETED)
                drain()
                for future in done:
                    item = items[futures[future]]
                    try:
                        result = future.result()
                    except concurrent.futures.process.BrokenProcessPool as e:
                        result = VideoResult(item=item, error=f"{item.path}: worker process died ({e})")
                    ordered.add(futures[future], result)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        drain()


def run_preprocess(opts: PreprocessOptions) -> PreprocessReport:
    start = time.perf_counter()
    settings = video_settings(opts)
    if opts.workers is not None and opts.workers < 1:
        raise DataError("--workers must be 1 or more")
    if not opts.inputs:
        raise DataError("no inputs given")
    if opts.format not in FORMATS:
        raise DataError(f"unknown --format {opts.format!r}; expected one of {', '.join(FORMATS)}")
    shards = opts.format == "shards"
    if shards:
        import_webdataset()  # a missing extra is one line, before anything is written
        if opts.preview:
            raise DataError("--preview writes videos into a dataset folder; it does not go with --format shards")
        if opts.shard_bytes < 1:
            raise DataError("--shard-size must be positive")
    if opts.ray is not None:
        import_ray()
        if opts.ray_retries < 0:
            raise DataError("--retries must be 0 or more")
    # nested: input folders are searched recursively, so a dataset inside one would be read as input next time
    refuse_overwrite(opts.out, opts.inputs, opts.config, nested=True)
    items = expand_inputs(opts.inputs)
    if opts.shard is not None:
        shard = Shard.parse(opts.shard)
        total = len(items)
        items = shard.select(items)
        print(f"shard {shard.index}/{shard.count}: {len(items)} of {total} inputs")
    report = PreprocessReport(root=Path(opts.out))
    store = (ShardStore(Path(opts.out), settings.size, IDENTITY_DIM, target_bytes=opts.shard_bytes) if shards
             else DatasetStore(Path(opts.out), settings.size, IDENTITY_DIM))
    listing = Path(opts.out) / (INDEX_FILE if shards else "meta.json")  # where failures are recorded

    with store:
        pending = []
        for item in items:
            if store.is_done(item):
                report.skipped.append(item.key)
            else:
                pending.append(item)
        if report.skipped:
            print(f"skipping {len(report.skipped)} inputs already in {opts.out}")

        bar = tqdm(unit="frame", desc="preprocess", dynamic_ncols=True, smoothing=0.1, disable=not pending)

        def on_result(result: VideoResult) -> None:
            report.frames_decoded += result.frames_decoded
            report.frames_dropped += len(result.dropped)
            if result.ok:
                ks = store.commit(result)
                report.processed.append((result.item.key, ks))
                report.frames_kept += result.frames_kept
                if result.cuts:
                    bar.write(f"{result.item.path}: {len(result.cuts)} scene cuts (frames "
                              f"{_shown(result.cuts)}) -> {len(ks)} identities ({', '.join(map(str, ks))})")
                if result.several_faces:
                    bar.write(f"warning: {result.item.path}: more than one face at frame(s) "
                              f"{_shown(result.several_faces)}; kept the most confident one (one person per shot: "
                              "crop the video to keep another)")
                if result.dropped:
                    where = ("the json of its identity records in the shards" if shards else
                             f"{Path(opts.out) / str(ks[0]) / 'meta.json'}"
                             + (f" (and {', '.join(map(str, ks[1:]))})" if len(ks) > 1 else ""))
                    bar.write(f"warning: {result.item.path}: dropped {len(result.dropped)} of "
                              f"{result.frames_decoded} frames without a usable face (frames "
                              f"{_shown([i for i, _ in result.dropped])}); see {where}")
            else:
                store.record_failure(result.item, result.error)
                report.failed.append((result.item.key, result.error))
                bar.write(f"error: {result.error}")
            bar.set_postfix_str(f"inputs {len(report.processed) + len(report.failed)}/{len(pending)}")

        try:
            if opts.ray is not None:
                run_on_ray(pending, settings, store.staging_dir,
                           RaySettings(address=opts.ray, num_cpus=opts.workers, max_retries=opts.ray_retries),
                           on_result, bar.update)
            elif (opts.workers or 1) == 1 or len(pending) <= 1:
                for item in pending:
                    on_result(process_input(item, settings, store.staging_dir(item), progress=bar.update))
            else:
                _run_parallel(pending, settings, store, min(opts.workers, len(pending)), bar, on_result)
        finally:
            bar.close()

    report.seconds = time.perf_counter() - start
    rate = report.frames_decoded / report.seconds if report.seconds > 0 else 0.0
    identities = sum(len(ks) for _, ks in report.processed)
    print(f"preprocess: {len(report.processed)} inputs done ({identities} identities, {report.frames_kept} frames "
          f"kept, {report.frames_dropped} dropped), {len(report.skipped)} skipped, {len(report.failed)} failed; "
          f"{report.seconds:.1f} s, {rate:.1f} frames/s" + (f"; dataset in {opts.out}" if report.processed
                                                           or report.skipped else ""))
    if report.failed:
        if len(report.failed) == 1 and not report.processed and not report.skipped:
            raise TalkingFaceError(report.failed[0][1])
        raise TalkingFaceError(f"{len(report.failed)} of {len(items)} inputs failed (the others finished); "
                               f"errors above and in {listing}")
    return report


# ------------------------------------------------------------------ validate-data, merge-data
@dataclass
class ValidateOptions:
    root: str = option(help="Dataset folder.", positional=True)
    scheme: str | None = option(None, "dense669 or mediapipe478 (default: from meta.json or the files).")
    identity_dim: int | None = option(None, "Expected identity size (256 official, 128 dlib; default: whatever the "
                                            "dataset's src_{k}_id.npy files hold, which must agree).")
    check_images: bool = option(True, "Read image headers only instead of decoding every image.", flag="--quick")
    max_problems_shown: int = 20


def run_validate(opts: ValidateOptions):
    report = validate_dataset(Path(opts.root), scheme_name=opts.scheme, identity_dim=opts.identity_dim,
                              check_images=opts.check_images)
    print(report.summary(opts.max_problems_shown))
    if report.problems:
        raise DataError(f"{len(report.problems)} problems found", opts.root)
    return report


@dataclass
class MergeOptions:
    inputs: list[str] = option(help="Datasets to join, in order.", positional=True, metavar="ROOT")
    out: str = option(help="New dataset folder.")
    force: bool = option(False, "Replace --out if it exists.")
    link: bool = option(True, "Copy files (default: hard-link when on one file system).", flag="--copy")


def run_merge(opts: MergeOptions):
    result = merge_datasets([Path(p) for p in opts.inputs], Path(opts.out), force=opts.force, link=opts.link)
    print(f"merge-data: {result.identities} identities, {result.frames} frames from {len(opts.inputs)} datasets "
          f"into {opts.out}" + (f"; {result.renamed} frame names changed to stay unique" if result.renamed else "")
          + (f"; {len(result.duplicates)} duplicate sources skipped" if result.duplicates else ""))
    return result


@dataclass
class PackOptions:
    root: str = option(help="Dataset folder (official layout, either landmark scheme).", positional=True,
                       metavar="DATASET")
    out: str = option(help="New shard folder: shard-*.tar and index.json.")
    shard_bytes: int = shard_size_option(DEFAULT_SHARD_BYTES)


def run_pack(opts: PackOptions):
    with tqdm(unit="frame", desc="pack-shards", dynamic_ncols=True) as bar:
        result = pack_dataset(Path(opts.root), Path(opts.out), opts.shard_bytes, progress=bar.update)
    print(f"pack-shards: {result.frames} frames of {result.identities} identities in {result.shards} shards "
          f"({result.bytes / 1e9:.3g} GB) in {opts.out}")
    return result
