"""The animate pipeline, streaming: memory stays flat in the driving video's length.

1. Source (once): find the face (the largest), crop it as preprocessing does, take
   its landmarks and dlib identity; the generator encodes the source crop once. A
   source video gives one frame: the first near-frontal one among its first frames
   (else the most frontal), and that frame is the background for paste-back.
2. Driving (one pass over the video): landmarks per frame, smoothed over time as in
   preprocessing, spooled to a temporary file (`LandmarkTrack`), not kept in memory.
   Frames without a face are marked and counted.
3. Render (a second pass, over the spooled landmarks): frames without a face take
   the last good pose (leading ones the first good pose); motion transfer gives the
   source crop's landmarks; the generator renders batches; crops are pasted back.
   Everything is a generator: frames are produced as the video writer pulls them.

The driving video is decoded once: rendering needs its landmarks only, not its pixels.
"""
from __future__ import annotations

import collections
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from talkingface.animate.faces import FaceTracker, TrackerSettings
from talkingface.animate.fullres import FullResComposer, FullResSettings, RenderedCrop
from talkingface.animate.motion import HeadLimits, Motion, find_best_frame
from talkingface.animate.pasteback import PasteBack
from talkingface.config import Config
from talkingface.errors import ConfigError, DataError, TalkingFaceError
from talkingface.inference import InferenceEngine, generator_psnr_check, resolve_precision
from talkingface.landmarks.encoding import draw_line_image, mouth_mask, normalized_subset
from talkingface.landmarks.scheme import LandmarkScheme, get_scheme
from talkingface.models.generator import GeneratorInputs
from talkingface.preprocess.detect import CropBox, box_around_points, crop_frame
from talkingface.preprocess.identity import IDENTITY_DIM, identity_embedding
from talkingface.preprocess.landmarks import (NUM_POINTS, BilateralSettings, TemporalBilateralSmoother,
                                              frontal_error, is_near_frontal)
from talkingface.preprocess.pipeline import SCHEME
from talkingface.preprocess.sources import FrameStream, InputItem, InputKind, open_stream
from talkingface.utils import images
from talkingface.utils.images import is_image_path, to_uint8_truncate


@dataclass(frozen=True)
class AnimateSettings:
    size: int  # the model's crop size
    crop_expand: float = 1.3  # crop framing: the model config's dataset block (as preprocessing)
    crop_offset_y: float = 0.2
    relative: bool = True  # relative motion; False: absolute
    find_best_frame: bool = False  # reference = the driving frame most like the source (else the first with a face)
    head_limits: HeadLimits | None = HeadLimits()  # relative head motion soft-limited to this range; None: as measured
    crop_only: bool = False  # output the generated crops, no paste-back
    render: str = "full"  # full: the model's motion on the photo's own pixels (animate.fullres); model: its output upsampled
    batch_size: int = 8  # driving frames per forward pass
    feather: float = 0.1  # paste-back blend band, fraction of the crop side
    smooth: bool = True  # temporal smoothing of the driving landmarks
    source_scan_frames: int = 150  # a source video: look for a near-frontal frame among this many
    tracker: TrackerSettings = TrackerSettings()
    fullres: FullResSettings = FullResSettings()

    def __post_init__(self):
        if self.render not in RENDER_MODES:
            raise ValueError(f"render must be one of {', '.join(RENDER_MODES)}, got {self.render!r}")

    @property
    def needs_motion(self) -> bool:
        """Whether rendering needs the model's deformation and occlusion besides its image."""
        return self.render == "full" and not self.crop_only


RENDER_MODES = ("full", "model")


def settings_for_model(cfg: Config, **options) -> AnimateSettings:
    """Crop framing from the model config (how its training data was cropped), plus options."""
    block = cfg.dataset.data_block()
    return AnimateSettings(size=cfg.resolution[0], crop_expand=block.crop_expand, crop_offset_y=block.crop_offset_y,
                           **options)


def check_model_config(cfg: Config, origin: str | os.PathLike) -> None:
    """animate makes MediaPipe landmarks and dlib identities: the model must take those."""
    if cfg.model.landmark_scheme != SCHEME or cfg.model.generator.class_dim != IDENTITY_DIM:
        raise ConfigError(f"animate drives {SCHEME} models with {IDENTITY_DIM}-d identities (what preprocessing "
                          f"makes); this model uses {cfg.model.landmark_scheme} landmarks and "
                          f"{cfg.model.generator.class_dim}-d identities", origin)
    h, w = cfg.resolution
    if h != w:
        raise ConfigError(f"animate needs a square model resolution, got {h}x{w}", origin)


def model_scheme(cfg: Config) -> LandmarkScheme:
    """The config's scheme, with its 58-point subset overridden by dataset.ldmk_idx as the data reader does."""
    scheme = get_scheme(cfg.model.landmark_scheme)
    if cfg.dataset.ldmk_idx is None:
        return scheme
    return LandmarkScheme(scheme.name, scheme.num_points, scheme.edges, scheme.edge_colors,
                          np.asarray(cfg.dataset.ldmk_idx, dtype=np.int64), scheme.roles)


# --------------------------------------------------------------------------- inputs
def read_image(path: Path) -> np.ndarray:
    """An image file as RGB uint8, upright per its EXIF orientation (talkingface.utils.images)."""
    return images.read_image(path, error="cannot read this image")


def open_video(path: Path) -> FrameStream:
    """A video (or a folder of frames) for streaming; DataError for a missing, unreadable or
    unsupported file (the decoder reports a bad codec on the first frames)."""
    if not path.exists():
        raise DataError("no such file", path)
    kind = InputKind.IMAGES if path.is_dir() else InputKind.VIDEO
    return open_stream(InputItem(Path(os.path.abspath(path)), kind))


def close_frames(stream: FrameStream) -> None:
    """Release a stream's decoder now, not at garbage collection."""
    close = getattr(stream.frames, "close", None)
    if close is not None:
        close()


# --------------------------------------------------------------------------- source
@dataclass
class SourceFace:
    frame: np.ndarray  # H x W x 3 uint8: the full source frame (the paste-back background)
    box: CropBox  # the model crop in the frame
    crop: np.ndarray  # S x S x 3 uint8
    points: np.ndarray  # N x 2, 0..1 of the crop
    identity: np.ndarray  # D float32, unit length
    frame_index: int  # in a source video; 0 for a photo
    several_faces: bool


def source_face(frame: np.ndarray, points_px: np.ndarray, settings: AnimateSettings, index: int = 0,
                several_faces: bool = False, path: str | os.PathLike | None = None) -> SourceFace:
    """Crop, landmarks and identity of a face given its landmarks in frame pixels."""
    box = box_around_points(points_px, settings.crop_expand, settings.crop_offset_y)
    crop = crop_frame(frame, box, settings.size)
    points = box.to_crop(points_px)
    try:
        identity = identity_embedding(crop, points)  # on the model-size crop, as preprocessing computes it
    except TalkingFaceError as e:
        raise DataError(f"source face: {e.message}", path) from None
    return SourceFace(frame, box, crop, points, identity, index, several_faces)


def load_source(path: str | os.PathLike, settings: AnimateSettings) -> SourceFace:
    """The source face of a photo, or of the best early frame of a video."""
    path = Path(path)
    label = f"{path} (source)"
    if is_image_path(path):
        frame = read_image(path)
        with FaceTracker(settings.tracker, still=True, label=label) as tracker:
            points = tracker.process(frame)
            several = tracker.several_faces > 0
        if points is None:
            raise DataError("no face found in the source image", path)
        return source_face(frame, points, settings, 0, several, path)

    stream = open_video(path)
    best: tuple[int, np.ndarray, np.ndarray, float] | None = None
    decoded = 0
    with FaceTracker(settings.tracker, still=False, label=label) as tracker:
        try:
            for index, frame in enumerate(stream.frames):
                if index >= settings.source_scan_frames:
                    break
                decoded += 1
                points = tracker.process(frame)
                if points is None:
                    continue
                error = frontal_error(points)
                if best is None or error < best[3]:
                    best = (index, frame, points, error)
                if is_near_frontal(points):
                    break
        finally:
            close_frames(stream)
        several = tracker.several_faces > 0
    if decoded == 0:
        raise DataError("no frames could be decoded", path)
    if best is None:
        raise DataError(f"no face found in the source video (first {decoded} frames searched)", path)
    index, frame, points, _ = best
    return source_face(frame, points, settings, index, several, path)


# --------------------------------------------------------------------------- driving landmarks
class LandmarkTrack:
    """Per-frame landmarks (N x 2 float64) spooled to an unnamed temporary file, so memory
    stays flat in video length; a frame without a face is stored as NaN. Iterating reads
    the file back in chunks; iterations are independent (positional reads)."""

    CHUNK = 64  # frames per read (7.6 KB each at 478 points)

    def __init__(self, num_points: int = NUM_POINTS, directory: str | None = None):
        self.num_points = num_points
        self._record = num_points * 2 * 8
        self._file = tempfile.TemporaryFile(prefix="talkingface-track-", dir=directory)
        self.count = 0
        self.missing = 0
        self.first_good: int | None = None
        self.cuts: list[int] = []  # frames that start a new shot (scene cuts), ascending

    def append(self, points: np.ndarray | None) -> None:
        if points is None:
            row = np.full((self.num_points, 2), np.nan)
            self.missing += 1
        else:
            row = np.asarray(points, dtype=np.float64)
            if row.shape != (self.num_points, 2) or not np.isfinite(row).all():
                raise ValueError(f"landmarks must be finite {self.num_points} x 2, got {row.shape}")
            if self.first_good is None:
                self.first_good = self.count
        self._file.write(np.ascontiguousarray(row).tobytes())
        self.count += 1

    def _read(self, start: int, count: int) -> np.ndarray:
        self._file.flush()
        data = os.pread(self._file.fileno(), count * self._record, start * self._record)
        return np.frombuffer(data, dtype=np.float64).reshape(count, self.num_points, 2)

    def get(self, index: int) -> np.ndarray | None:
        if not 0 <= index < self.count:
            raise IndexError(index)
        row = self._read(index, 1)[0]
        return None if np.isnan(row[0, 0]) else row.copy()

    def __iter__(self) -> Iterator[tuple[int, np.ndarray | None]]:
        for start in range(0, self.count, self.CHUNK):
            chunk = self._read(start, min(self.CHUNK, self.count - start))
            for offset, row in enumerate(chunk):
                yield start + offset, (None if np.isnan(row[0, 0]) else row.copy())

    def held(self) -> Iterator[np.ndarray]:
        """Every frame's landmarks: a frame without a face repeats the last good one;
        leading frames without a face take the first good one."""
        if self.first_good is None:
            raise ValueError("no frame has landmarks")
        last = self.get(self.first_good)
        for _, points in self:
            if points is not None:
                last = points
            yield last

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> LandmarkTrack:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


Landmarker = Callable[[np.ndarray], "np.ndarray | None"]  # RGB frame -> N x 2 frame pixels, or None


def track_landmarks(frames: Iterable[np.ndarray], landmarker: Landmarker, settings: AnimateSettings,
                    on_frame: Callable[[], None] | None = None, num_points: int = NUM_POINTS,
                    is_cut: Callable[[np.ndarray], bool] | None = None) -> LandmarkTrack:
    """Landmarks of every frame into a LandmarkTrack (in frame order), smoothed over time
    unless settings.smooth is off. `is_cut` (e.g. SceneCutDetector.push) says whether a frame
    starts a new shot: those frames are recorded in `track.cuts`, and smoothing never spans
    a cut. The caller closes the track."""
    track = LandmarkTrack(num_points)
    smoother = TemporalBilateralSmoother(BilateralSettings()) if settings.smooth else None
    unit: float | None = None  # smoothing unit: the first face's crop side (as preprocessing), any resolution

    def store(emitted) -> None:
        for _, points, _ in emitted:
            track.append(points * unit)

    try:
        for index, frame in enumerate(frames):
            if is_cut is not None and is_cut(frame):
                track.cuts.append(index)
                if smoother is not None:
                    store(smoother.flush())  # the shot before the cut ends here
            points = landmarker(frame)
            if points is None:
                if smoother is not None:
                    store(smoother.flush())  # frames before the gap first: the file stays in frame order
                track.append(None)
            elif smoother is None:
                track.append(points)
            else:
                unit = unit or float(box_around_points(points, settings.crop_expand, settings.crop_offset_y).side)
                store(smoother.push(index, np.asarray(points, dtype=np.float64) / unit))
            if on_frame is not None:
                on_frame()
        if smoother is not None:
            store(smoother.flush())
    except BaseException:
        track.close()
        raise
    return track


def reference_frame(track: LandmarkTrack, source_points: np.ndarray, best: bool) -> int:
    """The driving frame motion is measured from: the first with a face, or with `best`
    the one whose normalised landmarks best match the source's."""
    if track.first_good is None:
        raise ValueError("no frame has landmarks")
    if not best:
        return track.first_good
    found = find_best_frame(source_points, track)
    return track.first_good if found is None else found[0]


def source_poses(track: LandmarkTrack, motion: Motion,
                 rebase: Callable[[np.ndarray], Motion] | None = None) -> Iterator[np.ndarray]:
    """The source crop's landmarks (N x 2, 0..1) for every driving frame, missing faces held.

    With `rebase` (driving landmarks -> a Motion measured from them), the first frame with a
    face after each scene cut becomes the new reference: relative motion restarts from the
    source's own pose instead of jumping by the difference between two shots."""
    cuts = set(track.cuts) if rebase is not None else set()
    pending_cut = False
    last = track.get(track.first_good) if track.first_good is not None else None
    for index, points in track:
        pending_cut = pending_cut or (index in cuts and index > (track.first_good or 0))
        if points is not None:
            if pending_cut:
                motion, pending_cut = rebase(points), False
            last = points
        if last is None:
            raise ValueError("no frame has landmarks")
        yield motion(last)


# --------------------------------------------------------------------------- rendering
def prepare_engine(model: torch.nn.Module, device: torch.device, precision: str = "auto",
                   source: "SourceFace | None" = None, scheme: LandmarkScheme | None = None, force: bool = False):
    """The inference engine at `precision`. "auto" picks the fastest precision whose
    render of the source's own pose stays at 40 dB or more against fp32 (so the check is
    on this model and this face; it runs only where a low precision is native); without a
    source, fp32.
    A precision the device only emulates falls back to fp32 with a warning, unless `force`."""
    check = None
    if precision == "auto" and source is not None and scheme is not None:
        check = generator_psnr_check(model, lambda: SourceTensors(source, scheme).inputs(source.points[None]),
                                     device)
    choice = resolve_precision(precision, device, check, force=force)
    print(f"precision {choice.reason}")
    return InferenceEngine.prepare(model, device=device, precision=choice.precision)


class SourceTensors:
    """One source face as model inputs: its crop, line image and identity, and per-pose
    driving inputs against it."""

    def __init__(self, source: SourceFace, scheme: LandmarkScheme):
        self.scheme = scheme
        self.size = s = source.crop.shape[0]
        # contiguous NCHW, as the data reader feeds the model (a permuted array would be channels-last)
        self.source = torch.from_numpy(source.crop).permute(2, 0, 1)[None].contiguous().float() / 255  # 1 x 3 x S x S
        line = draw_line_image(source.points, scheme, s, s)  # S x S x 3 uint8
        self.source_line = torch.from_numpy(line).permute(2, 0, 1)[None].contiguous().float() / 255  # 1 x 3 x S x S
        self.identity = torch.from_numpy(np.asarray(source.identity, dtype=np.float32)).reshape(1, -1)  # 1 x D

    def inputs(self, poses: np.ndarray) -> GeneratorInputs:
        """poses: B x N x 2 landmarks in 0..1 of the crop."""
        s, batch = self.size, len(poses)
        lines = np.stack([draw_line_image(p, self.scheme, s, s) for p in poses])  # B x S x S x 3 uint8
        subsets = np.stack([normalized_subset(p, self.scheme) for p in poses])  # B x 58 x 2
        masks = np.stack([mouth_mask(sub, self.scheme, s, s) for sub in subsets])  # B x 1 x S x S

        def repeat(t: torch.Tensor) -> torch.Tensor:
            return t.expand(batch, *t.shape[1:])

        return GeneratorInputs(source=repeat(self.source), source_line=repeat(self.source_line),
                               driving_line=torch.from_numpy(lines).permute(0, 3, 1, 2).contiguous().float() / 255,
                               driving_subset=torch.from_numpy(subsets), mouth_mask=torch.from_numpy(masks),
                               identity=repeat(self.identity))


class CropRenderer:
    """The generator bound to one source (encoded once): landmark batches -> crops."""

    def __init__(self, engine, source: SourceFace, scheme: LandmarkScheme):
        self.engine = engine
        self.tensors = SourceTensors(source, scheme)
        self.features = engine.encode_source(self.tensors.source)  # source pyramid, batch 1: shared by every frame

    def inputs(self, poses: np.ndarray) -> GeneratorInputs:
        return self.tensors.inputs(poses)

    def __call__(self, poses: np.ndarray) -> np.ndarray:
        """B x N x 2 -> B x S x S x 3 uint8 (the model's 0..1 output convention)."""
        return to_uint8_truncate(self.engine.render(self.inputs(poses), self.features))

    def with_motion(self, poses: np.ndarray) -> list[RenderedCrop]:
        """B x N x 2 -> B rendered crops carrying the warp's deformation and occlusion map."""
        prediction, deformation, occlusion = self.engine.render_with_motion(self.inputs(poses), self.features)
        crops = to_uint8_truncate(prediction)  # B x S x S x 3
        deformation = deformation.cpu().numpy()  # B x h x w x 2
        occlusion = occlusion[:, 0].cpu().numpy()  # B x S x S
        return [RenderedCrop(c, p, d, o) for c, p, d, o in zip(crops, poses, deformation, occlusion)]


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive groups of `size` (the last may be shorter); holds one group at a time."""
    group: list = []
    for item in items:
        group.append(item)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def render_crops(render: Callable[[np.ndarray], "np.ndarray | list[RenderedCrop]"], poses: Iterable[np.ndarray],
                 batch_size: int) -> Iterator[RenderedCrop]:
    """Rendered crops for a stream of poses, `batch_size` at a time. `render` maps B x N x 2
    poses to B crops (B x S x S x 3 uint8), or to RenderedCrops that carry the model's
    motion as well (`CropRenderer.with_motion`, for full-resolution rendering)."""
    for group in batched(poses, batch_size):
        stacked = np.stack(group)
        rendered = render(stacked)
        if isinstance(rendered, np.ndarray):
            rendered = [RenderedCrop(crop, pose) for crop, pose in zip(rendered, stacked)]
        yield from rendered


def map_crops(items: Iterable[RenderedCrop], transform: Callable[[Iterator[np.ndarray]], Iterator[np.ndarray]]
              ) -> Iterator[RenderedCrop]:
    """Pass the crops through a stream transform (one crop out per crop in, in order, possibly
    reading ahead, e.g. temporal super-resolution), keeping each crop's pose and motion."""
    pending: collections.deque[RenderedCrop] = collections.deque()

    def crops() -> Iterator[np.ndarray]:
        for item in items:
            pending.append(item)
            yield item.crop

    for crop in transform(crops()):
        item = pending.popleft()
        yield RenderedCrop(crop, item.pose, item.deformation, item.occlusion)


def render_frames(renderer: CropRenderer, poses: Iterable[np.ndarray], source: SourceFace,
                  settings: AnimateSettings,
                  transform: Callable[[Iterator[np.ndarray]], Iterator[np.ndarray]] | None = None
                  ) -> Iterator[np.ndarray]:
    """Output frames for a stream of source-crop poses (N x 2, 0..1), whatever made them (a
    driving video's motion, a speech track): the generator renders `settings.batch_size` at a
    time (with its deformation and occlusion when full-resolution rendering needs them), an
    optional crop stream transform runs (e.g. super-resolution, `map_crops`), then the crops
    are composed at the source's resolution or pasted back (`output_frames`). Lazy: frames
    are made as they are pulled."""
    render = renderer.with_motion if settings.needs_motion else renderer
    crops = render_crops(render, poses, settings.batch_size)
    if transform is not None:
        crops = map_crops(crops, transform)
    return output_frames(crops, source, settings)


def output_frames(items: Iterable[RenderedCrop], source: SourceFace, settings: AnimateSettings
                  ) -> Iterator[np.ndarray]:
    """The crops as they are (--crop-only), or output frames at the source's resolution:
    full-resolution composition (render "full") or the crop upsampled and pasted back ("model")."""
    if settings.crop_only:
        yield from (item.crop for item in items)
        return
    if settings.render == "model":
        paste = PasteBack(source.frame, source.box, settings.feather)
        yield from (paste(item.crop) for item in items)
        return
    compose = FullResComposer(source.frame, source.box, source.points, settings.fullres)
    yield from (compose(item) for item in items)
