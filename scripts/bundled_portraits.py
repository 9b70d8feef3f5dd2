"""Collect the bundled model's training portraits into one folder (maintainers only).

Every photo comes from a package that installs offline from the package registries;
docs/bundled_model.md lists each file's origin and licence:
- scikit-image's astronaut photo (skimage.data.astronaut);
- three photos of one man from the face_recognition 1.3.0 source distribution
  (tests/data/faces, already cropped);
- the six people of insightface's group photo (insightface 2.1 source distribution,
  insightface/data/images/t1.jpg), each cut out as its own portrait.
Each portrait is also mirrored. The held-out evaluation people (Grace Hopper from
matplotlib, the man in tests/data/faces/biden.jpg) are never written here.

    python scripts/bundled_portraits.py --out WORK/portraits --group PATH/TO/t1.jpg
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CROP_FACTOR = 2.4  # square side over the detected face-box width (tests/data/faces uses 2)
PORTRAIT_SIDE = 256  # px; the 128 px synth crops from this


def face_portraits(image: np.ndarray, min_face: int) -> list[np.ndarray]:
    """One square portrait per face dlib's detector finds that is at least `min_face` px
    wide, left to right, the square shifted (not padded) to stay inside the photo."""
    import dlib

    height, width = image.shape[:2]
    boxes = sorted(dlib.get_frontal_face_detector()(image, 1), key=lambda b: b.left())
    out = []
    for box in boxes:
        if box.width() < min_face:
            continue
        side = min(int(round(box.width() * CROP_FACTOR)), height, width)
        cx, cy = box.left() + box.width() / 2, box.top() + box.height() * 0.6  # a little below the box centre: chin and neck
        left = int(np.clip(round(cx - side / 2), 0, width - side))
        top = int(np.clip(round(cy - side / 2), 0, height - side))
        crop = Image.fromarray(image[top:top + side, left:left + side])
        out.append(np.asarray(crop.resize((PORTRAIT_SIDE, PORTRAIT_SIDE), Image.LANCZOS)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the PNG portraits to")
    parser.add_argument("--group", type=Path, required=True,
                        help="insightface's t1.jpg (from `pip download --no-deps --no-binary :all: insightface==2.1`)")
    parser.add_argument("--min-face", type=int, default=80, help="smallest face width to keep, px")
    args = parser.parse_args()
    from skimage import data

    portraits = {"astronaut": data.astronaut()}
    for name in ("obama", "obama2", "obama3"):
        portraits[name] = np.asarray(Image.open(REPO / "tests" / "data" / "faces" / f"{name}.jpg").convert("RGB"))
    group = face_portraits(np.asarray(Image.open(args.group).convert("RGB")), args.min_face)
    if len(group) < 6:
        raise SystemExit(f"{args.group}: expected 6 faces, found {len(group)}")
    portraits.update({f"group{i}": px for i, px in enumerate(group)})
    args.out.mkdir(parents=True, exist_ok=True)
    for name, px in portraits.items():
        Image.fromarray(px).save(args.out / f"{name}.png")
        Image.fromarray(np.ascontiguousarray(px[:, ::-1])).save(args.out / f"{name}_flip.png")
    print(f"wrote {2 * len(portraits)} portraits to {args.out}")


if __name__ == "__main__":
    main()
