"""One input (video or image folder) -> staged identities of the official layout.

Per frame: check for a scene cut (scenes.py), crop the face (a static box from the
shot's first good frame, or a smoothed moving box), run Face Mesh on the crop (478
points), score the crop with the face detector, smooth the points over time (a centred
bilateral filter with two frames of look-ahead), compute theta, and stream the crop,
landmarks and theta to disk. Frames without a face are dropped and listed.

A cut starts a new segment: the face is searched for afresh and nothing (box, Face
Mesh track, smoothing) carries over. At the end, segments of the same person are
grouped by dlib descriptor (segments.py) and each group becomes one identity. The
source portrait is the identity's first near-frontal frame (or --source-frame); its
dlib embedding is the identity. A video without cuts gives one identity, as before.

`process_input` writes into a staging folder and returns a picklable result; the
dataset store (store.py) moves it into the dataset. It runs in worker processes, so
it imports its heavy libraries itself and shares no state with the caller.
"""
from __future__ import annotations

import collections
import concurrent.futures
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from talkingface.errors import DataError, TalkingFaceError
from talkingface.preprocess.align import theta_from_points
from talkingface.preprocess.detect import (CropBox, FaceDetector, box_around_points, box_from_center, crop_frame,
                                           detection_region)
from talkingface.preprocess.identity import IDENTITY_DIM, identity_embedding
from talkingface.preprocess.landmarks import (BilateralSettings, FaceMeshTracker, OneEuroFilter, OneEuroSettings,
                                              TemporalBilateralSmoother)
from talkingface.preprocess.preview import write_preview
from talkingface.preprocess.scenes import SceneCutDetector, SceneCutSettings
from talkingface.preprocess.segments import (Portrait, Segment, gather_frames, group_segments, keep_segments,
                                             pick_source, shot_rows)
from talkingface.preprocess.sources import InputItem, open_stream

SCHEME = "mediapipe478"
FRAMES_DIR = "frames"  # inside a staged identity folder; becomes the dataset's {k}/ folder
SEGMENTS_DIR = "segments"  # inside a staging folder: one folder of frames per shot while streaming
SOURCE_FILES = ("src.png", "src_ldmk.npy", "src_theta.npy", "src_id.npy")
PREVIEW_FILE = "preview.mp4"

# Moving box: re-detect on the whole frame after this many seconds without a face.
LOST_TRACK_SECONDS = 0.5
# The per-frame detector check looks at the crop box enlarged by CONTEXT_SCALE, at CONTEXT_SIZE pixels.
CONTEXT_SCALE = 1.5
CONTEXT_SIZE = 128


def context_box(box: CropBox) -> CropBox:
    return box_from_center(box.x0 + box.side / 2, box.y0 + box.side / 2, box.side * CONTEXT_SCALE)


@dataclass(frozen=True)
class VideoSettings:
    size: int = 256  # crop size (256 for the base model, 512 for super-resolution data)
    crop_expand: float = 1.3  # crop side / face-box side (reference config crop_expand)
    crop_offset_y: float = 0.2  # crop centre moves down by this x face-box height (crop_offset_y)
    static_box: bool = True  # one box from the first good frame (static_bbox); else a smoothed moving box
    min_confidence: float = 0.5  # face detector and Face Mesh thresholds: below them a frame has "no face"
    smooth: bool = True  # temporal smoothing of the landmarks (centred bilateral filter)
    smoothing: BilateralSettings = BilateralSettings()
    box_smoothing: OneEuroSettings = OneEuroSettings()  # moving box only
    source_frame: int | None = None  # frame index for the source portrait; default: first near-frontal
    image_fps: float = 25.0  # frame rate recorded for image folders
    max_frames: int | None = None  # stop after this many decoded frames (tests, benchmarks)
    preview: bool = False  # also write {k}/preview.mp4 (landmarks and line image over the crops)
    png_compression: int = 1  # zlib level 0-9; 1 is ~4x faster than the default with files ~15% larger
    scene_split: bool = True  # split the input at scene cuts and group the shots by person (else one identity)
    scenes: SceneCutSettings = SceneCutSettings()  # the cut detector's thresholds (scenes.py)
    # In an input with cuts, a shot is kept only with at least this many frames with a face (0.3 s at
    # 25 fps); shorter ones are mostly transitions or inserts, and their frames are dropped and listed.
    min_shot_faces: int = 8
    # Shots whose unit-length dlib descriptors are closer than this (Euclidean, average over the
    # groups' members) are one person. dlib's documented "same person" cut is 0.6 on its raw
    # descriptors, whose length is ~1.4, i.e. ~0.43 on unit-length ones; 0.4 is a little stricter,
    # since joining two people in one identity harms training more than splitting one person in two.
    # Measured on tests/data/faces: three photos of one man 0.23-0.31 apart, different people 0.58-0.63.
    same_person_distance: float = 0.4


@dataclass
class StagedIdentity:
    folder: Path  # holds SOURCE_FILES and FRAMES_DIR
    meta: dict
    frames_kept: int


@dataclass
class VideoResult:
    item: InputItem
    staged: Path | None = None  # the input's staging folder
    identities: list[StagedIdentity] = field(default_factory=list)  # one per person, in order of appearance
    cuts: list[int] = field(default_factory=list)  # frames that start a new shot
    frames_decoded: int = 0
    frames_kept: int = 0
    dropped: list[tuple[int, str]] = field(default_factory=list)
    # frames where the face search found more than one confident face (the most confident was kept)
    several_faces: list[int] = field(default_factory=list)
    error: str | None = None
    # the error came from the machine (an I/O error of a file system, memory), not from the input:
    # another attempt may succeed (the Ray runner retries these)
    transient: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def frame_stem(item: InputItem, index: int) -> str:
    return f"{item.token}_{index:08d}"


class FrameWriter:
    """Streams driving frames to {folder}/imgs, ldmks, thetas. PNG encoding runs on a
    helper thread (OpenCV releases the GIL), overlapping with decoding and Face Mesh."""

    MAX_PENDING = 16

    def __init__(self, folder: Path, compression: int):
        self.folder = folder
        for sub in ("imgs", "ldmks", "thetas"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        self._compression = compression
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="png")
        self._pending: collections.deque = collections.deque()

    @staticmethod
    def _write_png(path: Path, image: np.ndarray, compression: int) -> None:
        import cv2

        ok = cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, compression])
        if not ok:
            raise DataError("cannot write image", path)

    def write(self, stem: str, image: np.ndarray, points: np.ndarray, theta: np.ndarray) -> None:
        np.save(self.folder / "ldmks" / f"{stem}_ldmk.npy", np.asarray(points, dtype=np.float32))
        np.save(self.folder / "thetas" / f"{stem}_theta.npy", np.asarray(theta, dtype=np.float32))
        self._pending.append(self._pool.submit(self._write_png, self.folder / "imgs" / f"{stem}.png", image,
                                               self._compression))
        while len(self._pending) > self.MAX_PENDING:
            self._pending.popleft().result()

    def close(self) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True)


class _BoxTracker:
    """Where to crop each frame: finds the face on the whole frame until one is found,
    then keeps a static box, or follows the face with a smoothed box."""

    def __init__(self, settings: VideoSettings, fps: float):
        self.s = settings
        self.dt = 1.0 / fps
        self.box: CropBox | None = None
        self.lost_frames = 0
        self.lost_limit = max(1, int(round(LOST_TRACK_SECONDS * fps)))
        self._filter = OneEuroFilter(settings.box_smoothing)
        self._frame_detector: FaceDetector | None = None
        self._probe_mesh: FaceMeshTracker | None = None
        self.others = 0  # confident faces besides the kept one at the last whole-frame search

    def find_face(self, frame: np.ndarray) -> tuple[CropBox | None, float]:
        """Full-frame detection, then Face Mesh on the detected region for a landmark box."""
        if self._frame_detector is None:
            self._frame_detector = FaceDetector(full_range=True, min_confidence=0.3)
            self._probe_mesh = FaceMeshTracker(static=True)
        faces = self._frame_detector.detect_all(frame)
        det = faces[0] if faces else None
        if det is None or det.score < self.s.min_confidence:
            return None, 0.0 if det is None else det.score
        # another confident face: one person per shot is kept (the most confident), the caller says so
        self.others = sum(f.score >= self.s.min_confidence for f in faces[1:])
        region = detection_region(det)
        probe_size = 256
        points = self._probe_mesh.process(crop_frame(frame, region, probe_size))
        if points is None:
            return None, det.score
        return box_around_points(region.to_frame(points), self.s.crop_expand, self.s.crop_offset_y), det.score

    def follow(self, points_px: np.ndarray) -> CropBox:
        """Moving box: the next box from this frame's landmarks, smoothed."""
        raw = box_around_points(points_px, self.s.crop_expand, self.s.crop_offset_y)
        state = np.array([raw.x0 + raw.side / 2, raw.y0 + raw.side / 2, raw.side], dtype=np.float64)
        # smooth in units of the box side, so the filter settings do not depend on resolution
        scale = float(self.box.side if self.box is not None else raw.side)
        cx, cy, side = self._filter(state / scale, self.dt) * scale
        return box_from_center(cx, cy, side)

    def reset_motion(self) -> None:
        self._filter.reset()

    def restart(self) -> None:
        """A new shot: search the whole frame for the face again."""
        self.box = None
        self.lost_frames = 0
        self.reset_motion()

    def close(self) -> None:
        if self._frame_detector is not None:
            self._frame_detector.close()
            self._probe_mesh.close()


def _round_list(values: list[float | None], digits: int = 3) -> list[float | None]:
    return [None if v is None else round(float(v), digits) for v in values]


def process_input(item: InputItem, settings: VideoSettings, staging: Path,
                  progress: Callable[[int], None] | None = None) -> VideoResult:
    """Process one input into `staging`. Never raises for a bad input: the error is in
    the result, so the caller can go on with the other inputs."""
    start = time.perf_counter()
    result = VideoResult(item=item)
    try:
        _process(item, settings, staging, result, progress)
    except TalkingFaceError as e:
        result.error = str(e) if e.path else f"{item.path}: {e}"
    except Exception as e:  # noqa: BLE001 - one broken input must not stop a corpus run
        result.error = f"{item.path}: internal error while preprocessing: {type(e).__name__}: {e}"
        result.transient = isinstance(e, (OSError, MemoryError))
    result.seconds = time.perf_counter() - start
    if result.error is not None:
        shutil.rmtree(staging, ignore_errors=True)  # a failed input leaves no partial frames behind
        result.staged = None
    return result


class _Output:
    """Receives kept frames in order (after smoothing): writes each shot's frames to its
    own segment folder and tracks the shot's source candidates."""

    def __init__(self, item: InputItem, settings: VideoSettings, staging: Path, result: VideoResult):
        self.item, self.s, self.staging, self.result = item, settings, staging, result
        self.segments: list[Segment] = []
        self._writer: FrameWriter | None = None

    def start_segment(self, index: int) -> None:
        self.end_segment(index)
        number = len(self.segments)
        segment = Segment(number, index, self.staging / SEGMENTS_DIR / str(number))
        self._writer = FrameWriter(segment.folder, self.s.png_compression)
        self.segments.append(segment)

    def end_segment(self, index: int) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        if self.segments and self.segments[-1].end is None:
            self.segments[-1].end = index

    def emit(self, index: int, crop: np.ndarray, box: CropBox, points_px: np.ndarray) -> None:
        points01 = box.to_crop(points_px)
        theta = theta_from_points(points01)
        self._writer.write(frame_stem(self.item, index), crop, points01, theta)
        self.result.frames_kept += 1
        self.segments[-1].offer(Portrait.of(index, crop, points01, theta), self.s.source_frame)


def _process(item: InputItem, s: VideoSettings, staging: Path, result: VideoResult,
             progress: Callable[[int], None] | None) -> None:
    stream = open_stream(item, s.image_fps)
    fps = stream.fps if stream.fps > 0 else 25.0
    staging.mkdir(parents=True, exist_ok=True)
    output = _Output(item, s, staging, result)
    boxes = _BoxTracker(s, fps)
    mesh = FaceMeshTracker(static=False, min_detection_confidence=s.min_confidence,
                           min_tracking_confidence=s.min_confidence)
    crop_scorer = FaceDetector(full_range=False, min_confidence=0.1)
    smoother = TemporalBilateralSmoother(s.smoothing)
    cut_detector = SceneCutDetector(s.scenes) if s.scene_split else None
    smoothing_scale: float | None = None  # the shot's first box side: smoothing units for the shot
    confidences: list[float | None] = []
    frame_boxes: list[list[int] | None] = []
    pending_progress = 0

    def drop(index: int, reason: str) -> None:
        result.dropped.append((index, reason))
        frame_boxes.append(None)

    def emit_all(smoothed) -> None:
        for index, points, (crop, box) in smoothed:
            output.emit(index, crop, box, points * smoothing_scale)

    try:
        output.start_segment(0)
        for index, frame in enumerate(stream.frames):
            if s.max_frames is not None and index >= s.max_frames:
                break
            result.frames_decoded += 1
            pending_progress += 1
            if progress is not None and pending_progress >= 10:
                progress(pending_progress)
                pending_progress = 0

            if cut_detector is not None and cut_detector.push(frame):
                # a new shot: finish the last one, then find the face afresh; nothing carries over
                emit_all(smoother.flush())
                output.start_segment(index)
                result.cuts.append(index)
                boxes.restart()
                mesh.reset()
                smoothing_scale = None
            if boxes.box is None:
                box, score = boxes.find_face(frame)
                if box is None:
                    confidences.append(score)
                    drop(index, "no face detected in the frame")
                    continue
                boxes.box = box
                boxes.reset_motion()
                if boxes.others:
                    result.several_faces.append(index)
            track_box = boxes.box
            points = mesh.process(crop_frame(frame, track_box, s.size))
            if points is None:
                confidences.append(None)
                drop(index, "face mesh found no face in the crop")
                if not s.static_box:
                    boxes.lost_frames += 1
                    if boxes.lost_frames >= boxes.lost_limit:
                        boxes.box = None  # the face left the box: search the whole frame again
                continue
            boxes.lost_frames = 0
            points_px = track_box.to_frame(points)
            out_box = track_box if s.static_box else boxes.follow(points_px)
            boxes.box = out_box
            crop = crop_frame(frame, out_box, s.size)
            # A second opinion from the face detector, on the crop with some context around it
            # (on the tight crop alone it misses faces that touch the edge): Face Mesh's tracker
            # can hold on to a blurred or vanished face for a frame.
            confidence = crop_scorer.score(crop_frame(frame, context_box(out_box), CONTEXT_SIZE))
            confidences.append(confidence)
            if confidence < s.min_confidence:
                drop(index, f"face detector confidence {confidence:.2f} < {s.min_confidence}")
                continue
            frame_boxes.append(out_box.as_list())
            # smooth in frame pixels over the shot's first box side: one unit for a whole shot,
            # so the filter settings hold at any resolution and face size
            smoothing_scale = smoothing_scale or float(out_box.side)
            if s.smooth:
                emit_all(smoother.push(index, points_px / smoothing_scale, (crop, out_box)))
            else:
                output.emit(index, crop, out_box, points_px)
        emit_all(smoother.flush())
    finally:
        if progress is not None and pending_progress:
            progress(pending_progress)
        close_frames = getattr(stream.frames, "close", None)
        if close_frames is not None:  # a generator: release the decoder now, not at garbage collection
            close_frames()
        output.end_segment(result.frames_decoded)
        boxes.close()
        mesh.close()
        crop_scorer.close()

    if result.frames_decoded == 0:
        raise DataError("no frames could be decoded", item.path)
    if result.frames_kept == 0:
        raise DataError(f"no face found in any of the {result.frames_decoded} frames", item.path)
    segments = output.segments
    kept = keep_segments(segments, s.min_shot_faces)
    for seg in segments:
        if seg.discarded and seg.frames_kept:  # a short shot: its frames are dropped too
            result.dropped.extend((i, seg.discarded) for i in range(seg.start, seg.end) if frame_boxes[i] is not None)
            result.frames_kept -= seg.frames_kept
    result.dropped.sort(key=lambda d: d[0])
    if not kept:
        raise DataError(f"no shot has {s.min_shot_faces} or more frames with a face ({len(segments)} shots, scene "
                        f"cuts at frames {', '.join(map(str, result.cuts))}; --no-scene-split keeps them as one)",
                        item.path)
    if s.source_frame is not None and not any(seg.chosen is not None for seg in kept):
        if s.source_frame >= result.frames_decoded:
            raise DataError(f"--source-frame {s.source_frame} is past the last frame "
                            f"({result.frames_decoded} frames)", item.path)
        if any(seg.discarded and seg.frames_kept and seg.contains(s.source_frame) for seg in segments):
            raise DataError(f"--source-frame {s.source_frame}: that frame is in a shot with fewer than "
                            f"{s.min_shot_faces} frames with a face (dropped)", item.path)
        raise DataError(f"--source-frame {s.source_frame}: that frame has no usable face (dropped)", item.path)

    labels = group_segments(kept, s.same_person_distance, identity_embedding)
    head = {
        "scheme": SCHEME,
        "resolution": s.size,
        "identity_dim": IDENTITY_DIM,
        "identity_model": "dlib_face_recognition_resnet_model_v1 (L2-normalised)",
        "source_video": str(item.path),
        "input_kind": item.kind.value,
        "source_bytes": _size_of(item.path),
        "fps": fps,
        "frame_size": [stream.width, stream.height],
        "rotation": stream.rotation,
        "frames_decoded": result.frames_decoded,
        # the input's own count (0: its header does not say) and, for a video, what its decoding lost
        "frames_declared": stream.num_frames,
        "decoding": asdict(stream.decode) if stream.decode is not None else None,
        # frames where a face search found several confident faces; the most confident one was kept
        "several_faces_at": list(result.several_faces),
    }
    tail = {
        "input_identities": max(labels) + 1,
        "scene_cuts": list(result.cuts),
        "scene_split": ({"enabled": True, "detector": asdict(s.scenes), "min_shot_faces": s.min_shot_faces,
                         "same_person_distance": s.same_person_distance} if s.scene_split else {"enabled": False}),
        "shots": shot_rows(segments),
    }
    for j in range(max(labels) + 1):
        group = [seg for seg in kept if seg.identity == j]
        result.identities.append(_stage_identity(staging / f"identity_{j}", group, s, head, tail, confidences,
                                                 frame_boxes, result, fps))
    shutil.rmtree(staging / SEGMENTS_DIR, ignore_errors=True)
    result.staged = staging


def _stage_identity(folder: Path, group: list[Segment], s: VideoSettings, head: dict, tail: dict,
                    confidences: list, frame_boxes: list, result: VideoResult, fps: float) -> StagedIdentity:
    """Gather one person's shots into `folder` (FRAMES_DIR plus the source files) and build its meta."""
    import cv2

    frames_dir = folder / FRAMES_DIR
    gather_frames(group, frames_dir)
    source = pick_source(group)
    identity = next((seg.descriptor for seg in group if seg.best is source and seg.descriptor is not None), None)
    if identity is None:
        identity = identity_embedding(source.image, source.points)
    if not cv2.imwrite(str(folder / "src.png"), cv2.cvtColor(source.image, cv2.COLOR_RGB2BGR)):
        raise DataError("cannot write image", folder / "src.png")
    np.save(folder / "src_ldmk.npy", source.points.astype(np.float32))
    np.save(folder / "src_theta.npy", source.theta.astype(np.float32))
    np.save(folder / "src_id.npy", identity.reshape(1, IDENTITY_DIM).astype(np.float32))

    if s.preview:
        write_preview(frames_dir, frames_dir / PREVIEW_FILE, fps)

    mine = np.zeros(len(frame_boxes), dtype=bool)  # frames of this identity's shots
    for seg in group:
        mine[seg.start:seg.end] = True
    boxes = [b if mine[i] else None for i, b in enumerate(frame_boxes)]
    crop_info: dict = {"mode": "static" if s.static_box else "moving", "expand": s.crop_expand,
                       "offset_y": s.crop_offset_y, "box_format": "[x0, y0, side] in source-frame pixels"}
    if s.static_box:
        crop_info["box"] = next(b for b in boxes if b is not None)
    else:
        crop_info["boxes"] = boxes
    dropped = [(i, r) for i, r in result.dropped if mine[i]]
    frames_kept = sum(seg.frames_kept for seg in group)
    meta = {
        **head,
        "frames_kept": frames_kept,
        "frame_name_prefix": result.item.token + "_",
        "source_frame": source.index,
        "source_frame_name": frame_stem(result.item, source.index) + ".png",
        "crop": crop_info,
        "confidence": _round_list(confidences),
        "dropped": {"count": len(dropped), "frames": [{"frame": i, "reason": r} for i, r in dropped]},
        "smoothing": (None if not s.smooth else
                      {"filter": "temporal bilateral (centred)", "radius_frames": s.smoothing.radius,
                       "sigma_time_frames": s.smoothing.sigma_time,
                       "sigma_range_crop_widths": s.smoothing.sigma_range}),
        "theta": "affine_grid theta (align_corners=False): aligned output -> crop, ArcFace 5-point template",
        "input_identity": group[0].identity,
        "segments": [{"start": seg.start, "end": seg.end, "frames_kept": seg.frames_kept,
                      **({"box": next(b for b in boxes[seg.start:seg.end] if b is not None)} if s.static_box else {})}
                     for seg in group],
        **tail,
    }
    return StagedIdentity(folder, meta, frames_kept)


def _size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
