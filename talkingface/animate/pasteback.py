"""Paste-back: the generated crop blended into the full source frame.

The crop is the frame's pixels in a square box (x0, y0, side), resized to the model's
size (talkingface.preprocess.detect.crop_frame). Its inverse resizes a generated crop
back to side x side and puts it at (x0, y0). The blend weight is 1 inside and falls
smoothly to 0 over a band along the crop's edges, so the seam between the generated
crop and the untouched frame fades out instead of showing as a square; parts of the
box outside the frame are dropped.
"""
from __future__ import annotations

import numpy as np

from talkingface.preprocess.detect import CropBox


def feather_mask(side: int, feather: float) -> np.ndarray:
    """side x side x 1 float32 weights: 1 inside, a smoothstep ramp to 0 over the outer
    `feather` x side pixels of each edge."""
    band = max(1.0, feather * side)
    centres = np.arange(side, dtype=np.float64) + 0.5
    edge = np.minimum(centres, side - centres) / band  # 0 at the border, 1 after one band
    ramp = np.clip(edge, 0.0, 1.0)
    ramp = ramp * ramp * (3 - 2 * ramp)  # smoothstep: no kink where the ramp meets the plateau
    return np.outer(ramp, ramp)[..., None].astype(np.float32)


def resize_crop(crop: np.ndarray, side: int) -> np.ndarray:
    """A size x size crop to side x side (the inverse of crop_frame's resize)."""
    import cv2

    if crop.shape[0] == side and crop.shape[1] == side:
        return crop
    interpolation = cv2.INTER_CUBIC if side > crop.shape[0] else cv2.INTER_AREA
    return cv2.resize(crop, (side, side), interpolation=interpolation)


class PasteBack:
    """Blends generated crops into one background frame (H x W x 3 uint8) at `box`."""

    def __init__(self, frame: np.ndarray, box: CropBox, feather: float = 0.1):
        self.frame = np.ascontiguousarray(frame, dtype=np.uint8)
        self.box = box
        h, w = self.frame.shape[:2]
        # the part of the box inside the frame, in frame and in box coordinates
        self.fx0, self.fy0 = max(box.x0, 0), max(box.y0, 0)
        self.fx1, self.fy1 = min(box.x0 + box.side, w), min(box.y0 + box.side, h)
        self.visible = self.fx0 < self.fx1 and self.fy0 < self.fy1
        self.bx0, self.by0 = self.fx0 - box.x0, self.fy0 - box.y0
        mask = feather_mask(box.side, feather)
        self.weight = mask[self.by0:self.by0 + self.fy1 - self.fy0, self.bx0:self.bx0 + self.fx1 - self.fx0]
        self.background = self.frame[self.fy0:self.fy1, self.fx0:self.fx1].astype(np.float32)

    def __call__(self, crop: np.ndarray) -> np.ndarray:
        """crop: S x S x 3 uint8 (any S) -> H x W x 3 uint8, a new array."""
        out = self.frame.copy()
        if not self.visible:
            return out
        full = resize_crop(np.ascontiguousarray(crop, dtype=np.uint8), self.box.side)
        part = full[self.by0:self.by0 + self.fy1 - self.fy0, self.bx0:self.bx0 + self.fx1 - self.fx0]
        blended = self.background + self.weight * (part.astype(np.float32) - self.background)
        out[self.fy0:self.fy1, self.fx0:self.fx1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        return out
