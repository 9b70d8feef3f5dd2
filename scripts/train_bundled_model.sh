#!/usr/bin/env bash
# Train the bundled 64x64 model (talkingface/assets/models/bundled_64.pth.tar) on CPU.
# docs/bundled_model.md explains the data and the measured quality. About 50 minutes on
# 2 cores (OMP_NUM_THREADS=1 keeps it steady when other jobs share the cores).
# Usage: bash scripts/train_bundled_model.sh [WORKDIR]   (default /tmp/bundle)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-/tmp/bundle}"
CFG="$REPO/talkingface/properties/model/bundled/mediapipe478_64_bundled.yaml"
mkdir -p "$WORK/portraits"
cd "$WORK"

# Training identities: the astronaut (scikit-image) and three photos of one man
# (tests/data/faces), each also mirrored. Held out: the demo's two people.
python - "$REPO" <<'PY'
import sys
from pathlib import Path
import numpy as np
from PIL import Image
from skimage import data
repo, out = Path(sys.argv[1]), Path("portraits")
images = {"astronaut": data.astronaut()}
for name in ("obama", "obama2", "obama3"):
    images[name] = np.asarray(Image.open(repo / "tests" / "data" / "faces" / f"{name}.jpg").convert("RGB"))
for name, px in images.items():
    Image.fromarray(px).save(out / f"{name}.png")
    Image.fromarray(np.ascontiguousarray(px[:, ::-1])).save(out / f"{name}_flip.png")
PY

[ -d train_data ] || talkingface synth --portrait portraits/*.png --out train_data --frames 200 --size 64 \
    --scheme mediapipe478 --identity dlib
# Wider mouth motion for the last stage: at 64 px the default 8% lip gap is ~3 px, too
# little for the model to learn a mouth that opens visibly.
[ -d train_data_mouth ] || talkingface synth --portrait portraits/*.png --out train_data_mouth --frames 200 \
    --size 64 --scheme mediapipe478 --identity dlib --mouth-open 0.2 --seed 1
talkingface train --config "$CFG" --stage warp --data train_data --out runs/warp --max-steps 1200 --resume auto
WARP=$(ls -t runs/warp/ckpt_*.pth.tar | head -1)
talkingface train --config "$CFG" --stage full --data train_data --out runs/full --warp-ckpt "$WARP" \
    --max-steps 1500 --resume auto
FULL=$(ls -t runs/full/ckpt_*.pth.tar | head -1)
talkingface train --config "$CFG" --stage full --data train_data_mouth --out runs/full_mouth --init "$FULL" \
    --max-steps 600 --resume auto
LAST=$(ls -t runs/full_mouth/ckpt_*.pth.tar | head -1)
talkingface export --ckpt "$LAST" --out "$REPO/talkingface/assets/models/bundled_64.pth.tar"
