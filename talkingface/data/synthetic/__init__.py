"""Synthetic talking clips from one portrait, with exact ground-truth motion.

A clip is the portrait moved by a smooth random head motion (shift, scale, in-plane
rotation about the face centre; optionally head turns and nods out of the image plane),
with the mouth opening and closing, the eyes blinking, and optionally smiles and brow
raises. Its landmarks are moved by exactly the same map as its pixels, so tests,
the meta-learning benchmark and the demo model can check recovered motion against
known motion.

Geometry. Points are continuous pixel coordinates (pixel (i, j) covers [j, j+1) x
[i, i+1); landmarks in 0..1 are these divided by W and H, as the encoding's
`int(x * W)` assumes). Frame t is the source seen through the map

    source point p  --local warps L_t-->  r  --head turn P_t-->  u  --global affine A_t-->  frame point q

Local warps act in the source face's own frame: the lips part (lower lip down, upper
lip slightly up, with a smooth falloff towards chin and nose) and the eyelids squeeze
towards the line through the eye corners. Each is written in backward form (output
point -> source point) in closed form, monotone along one axis, so pixels are sampled
with one `cv2.remap` and landmarks are moved by inverting it exactly (a 1-D bisection
per point, far below 1e-6 px). Where the lips part, no source pixel exists: the gap samples
the lip line and is darkened like a mouth cavity.

Smile and brow raise (`expr`) are further local warps of the same kind, applied
after the lips and lids (L_t = brow o smile o mouth o eyes). The head turn P_t
(`pose3d`) is a piecewise-affine map over the portrait's 3-D Face Mesh, turned
and projected back; it acts on the expressed frontal face r, so expressions move with
the turned head, and it is the identity when the clip has no turn (then frames are
exactly those of clips made before turns existed). Landmarks go through the same
chain forwards, so they stay exactly on the pixels.

The modules: `motion` (spec and curves), `warps` (lips, lids, face geometry), `expr`
(smile, brows), `pose3d` (head turns, the 3-D Face Mesh of a photo), `clip` (clips,
MediaPipe points as any scheme's) and `dataset` (official-layout datasets). Everything
public is importable from here. The 2-D landmarks of a photo come from preprocessing's
tracker: `talkingface.preprocess.portrait.detect_landmarks`.

The mouth and eyes are located from the 58-point subset's roles (eye extremes, mouth
corners, lips), so any `LandmarkScheme` works.
"""
from talkingface.data.synthetic.clip import (MEDIAPIPE_POINTS, MEDIAPIPE_ROLE_POINTS, SyntheticClip,
                                             landmarks_for_scheme, synthesize_clip)
from talkingface.data.synthetic.dataset import MOTION_FILE, clip_seed, image_identity, write_synthetic_dataset
from talkingface.data.synthetic.motion import Motion, MotionSpec, generate_motion
from talkingface.data.synthetic.pose3d import detect_mesh
from talkingface.data.synthetic.warps import FaceGeometry

__all__ = ["MOTION_FILE", "MEDIAPIPE_POINTS", "MEDIAPIPE_ROLE_POINTS", "FaceGeometry", "Motion", "MotionSpec",
           "SyntheticClip", "clip_seed", "detect_mesh", "generate_motion", "image_identity", "landmarks_for_scheme",
           "synthesize_clip", "write_synthetic_dataset"]
