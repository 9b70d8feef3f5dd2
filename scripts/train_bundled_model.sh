#!/usr/bin/env bash
# Train the bundled models on CPU: the 64x64 model (talkingface/assets/models/bundled_64.pth.tar,
# about 50 minutes on 2 cores), then the 128x128 one grown from it
# (talkingface/assets/models/bundled_128.pth.tar). docs/bundled_model.md explains the data,
# the choices and the measured quality. Every step resumes where it stopped (`--resume
# auto`; finished steps are skipped), so rerunning after an interruption continues.
# OMP_NUM_THREADS=1 keeps it steady when other jobs share the cores.
# Usage: bash scripts/train_bundled_model.sh [WORKDIR] [STEPS_128]   (default /tmp/bundle, 1750)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-/tmp/bundle}"
STEPS_128="${2:-1750}"
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
[ -f bundled_64.pth.tar ] || talkingface export --ckpt "$LAST" --out bundled_64.pth.tar

# ---- 128x128: more people (the six of insightface's group photo), head turns, smiles,
# brows and a teeth hint; started from the 64x64 model (scripts/grow_model.py).
CFG128="$REPO/talkingface/properties/model/bundled/mediapipe478_128_bundled.yaml"
[ -f t1.jpg ] || { pip download --no-deps --no-binary :all: insightface==2.1 -d sdist -q
    tar xzf sdist/insightface-2.1.tar.gz -O insightface-2.1/insightface/data/images/t1.jpg > t1.jpg.part && mv t1.jpg.part t1.jpg; }
[ -d portraits128 ] || python "$REPO/scripts/bundled_portraits.py" --out portraits128 --group t1.jpg
[ -d train_data_128 ] || talkingface synth --portrait portraits128/*.png --out train_data_128 --frames 200 --size 128 \
    --scheme mediapipe478 --identity dlib --max-yaw 20 --max-pitch 15 --smile 0.15 --brow 0.03 --teeth 1 \
    --mouth-open 0.15 --seed 2
[ -f grown_128.pth.tar ] || python "$REPO/scripts/grow_model.py" --ckpt bundled_64.pth.tar --config "$CFG128" \
    --out grown_128.pth.tar
talkingface train --config "$CFG128" --stage full --data train_data_128 --out runs/full_128 --init grown_128.pth.tar \
    --batch-size 4 --max-steps "$STEPS_128" --resume auto
LAST=$(ls -t runs/full_128/ckpt_*.pth.tar | head -1)
talkingface export --ckpt "$LAST" --out bundled_128.pth.tar
echo "models: $WORK/bundled_64.pth.tar and $WORK/bundled_128.pth.tar (copy to $REPO/talkingface/assets/models/)"
