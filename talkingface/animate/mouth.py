"""A generated mouth opening built from the photo itself (full-resolution rendering's step 3).

The generator trained at 64 or 128 px draws a blurred mouth, often closed where the pose is
open. Inside the opening the rendered pose asks for, the photo's upper teeth move with the
upper inner lip and its lower teeth with the lower one, over a cavity shaded from the photo's
lip colour; a closed-mouth photo gets a hint of teeth in its eye-white colour, and a wide-open
mouth a tongue on its floor. All lengths are in units of the face size.
"""
from __future__ import annotations

import numpy as np

from talkingface.animate.masks import blur, fill
from talkingface.landmarks.regions import INNER_LIP_MIDDLE, mediapipe_regions


class PhotoMouth:
    """The photo's own mouth parts, for one source face on the rendered area (n x n pixels)."""

    def __init__(self, crop: np.ndarray, source_points: np.ndarray, face: float,
                 cavity_shade: tuple[float, float], teeth_hint: tuple[float, float], tongue: tuple[float, float]):
        """`crop`: n x n x 3 float32 (0..255), the source on the rendered area; `source_points`:
        N x 2 in its pixels; `face`: the face size in pixels; the rest: FullResSettings' fields of
        those names."""
        import cv2

        self.crop = crop  # float32, 0..255
        self.size = n = crop.shape[0]
        self.source_points = source_points
        self.face = face
        self.regions = mediapipe_regions()
        self.cavity_shade, self.teeth_hint, self.tongue = cavity_shade, teeth_hint, tongue
        lips = self.regions
        ring = (fill(n, [source_points[lips.outer_lips]]) - fill(n, [source_points[lips.inner_lips]])) > 0.5
        lip = crop[ring].mean(axis=0, dtype=np.float64) if ring.any() else np.array([120.0, 60, 60])
        self.lip_colour = lip.astype(np.float32)
        self.tooth_colour = self._eye_white()
        # the photo's own mouth opening, a pixel in from its lips (what each jaw's teeth are taken from)
        self.photo_mouth = cv2.erode(fill(n, [source_points[self.regions.inner_lips]]), np.ones((3, 3), np.uint8))

    def _eye_white(self) -> np.ndarray:
        """The photo's eye-white colour (the brightest, least saturated quarter of the pixels inside the
        eye outlines), a little darker and at least 1.3x as bright as the lips, for teeth in the photo's
        light; a neutral ivory if no eye shows."""
        eyes = fill(self.size, [self.source_points[eye] for eye in self.regions.eyes]) > 0.5
        pixels = self.crop[eyes].astype(np.float32)
        if len(pixels) < 8:
            return np.array([200.0, 190, 170], np.float32)
        score = pixels.mean(axis=1) - (pixels.max(axis=1) - pixels.min(axis=1))
        white = 0.9 * pixels[score >= np.quantile(score, 0.75)].mean(axis=0)
        # eyes behind glasses or in shade read dark: teeth are at least a little brighter than the lips
        # (and their hue is half the eye white's, half ivory: lips tint the eyes' light, not the teeth)
        ivory = np.array([1.04, 1.0, 0.92])
        tint = 0.5 * white / max(float(white.mean()), 1.0) + 0.5 * ivory / ivory.mean()
        level = max(float(white.mean()), 1.3 * float(self.lip_colour.mean()))
        return np.clip(tint * level, 0, 255).astype(np.float32)

    def interior(self, points: np.ndarray) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
        """A mouth opening built from the photo, around the rendered pose's inner lips: the photo's
        upper teeth move with the upper lip and its lower teeth with the lower lip (each jaw shows
        the half of the photo's mouth opening on its side), over a dark cavity shaded from the
        photo's lip colour where the photo has nothing to show (a closed-mouth photo: all cavity).
        -> (window of the crop, its opening mask 0..1, its h x w x 3 interior float32 0..255)."""
        import cv2

        n, face = self.size, self.face
        inner = points[self.regions.inner_lips]
        margin = 0.05 * face
        x0, y0 = np.maximum(np.floor(inner.min(axis=0) - margin).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(inner.max(axis=0) + margin).astype(int) + 1, n)
        window = (slice(y0, max(y1, y0 + 1)), slice(x0, max(x1, x0 + 1)))
        opening = fill(n, [inner])[window]
        ys, xs = np.mgrid[window].astype(np.float32)
        top, bottom = INNER_LIP_MIDDLE

        def along(px, py, pts):  # position along the lips' axis: 0 at the upper inner lip, 1 at the lower
            axis = pts[bottom] - pts[top]
            length2 = max(float(axis @ axis), 1e-6)
            return ((px - pts[top][0]) * axis[0] + (py - pts[top][1]) * axis[1]) / length2

        lower = np.clip((along(xs, ys, points) - 0.35) / 0.3, 0, 1)  # which jaw a pixel moves with
        teeth = np.zeros(xs.shape + (3,), np.float32)
        shown = np.zeros(xs.shape, np.float32)
        for jaw, share in ((top, 1 - lower), (bottom, lower)):
            shift = self.source_points[jaw] - points[jaw]
            mx, my = xs + np.float32(shift[0]), ys + np.float32(shift[1])
            colour = cv2.remap(self.crop, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
            inside = cv2.remap(self.photo_mouth, mx, my, cv2.INTER_LINEAR, borderValue=0)
            side = along(mx, my, self.source_points) - 0.5  # the photo opening's half on this jaw's side
            inside *= np.clip((side if jaw == bottom else -side) * 4 + 0.5, 0, 1)
            teeth += (share * inside)[..., None] * colour
            shown += share * inside
        depth = blur(opening, 0.03 * face)
        depth /= max(float(depth.max()), 1e-6)
        edge, centre = self.cavity_shade
        cavity = self.lip_colour * (edge + (centre - edge) * depth)[..., None]
        gap = float(np.linalg.norm(points[bottom] - points[top]))
        below_top = along(xs, ys, points) * gap
        cavity = self._tongue(cavity, points, xs, ys, below_top / max(gap, 1e-6), gap, opening)
        # where the photo shows no teeth: a hint of them, in the photo's eye-white colour, under the upper
        # lip and over the lower one, fading towards the mouth's corners
        above_bottom = gap - below_top
        band = np.maximum(np.clip((self.teeth_hint[0] * face - below_top) / (0.01 * face), 0, 1),
                          np.clip((self.teeth_hint[1] * face - above_bottom) / (0.01 * face), 0, 1))
        hint = (band * np.clip(depth * 2 - 0.4, 0, 1) * opening)[..., None]
        cavity += hint * (self.tooth_colour * (0.6 + 0.4 * depth)[..., None] - cavity)
        return window, blur(opening, 0.01 * face), np.clip(teeth + (1 - shown)[..., None] * cavity, 0, 255)

    def _tongue(self, cavity: np.ndarray, points: np.ndarray, xs: np.ndarray, ys: np.ndarray, down: np.ndarray,
                gap: float, opening: np.ndarray) -> np.ndarray:
        """The floor of a wide-open mouth: a tongue, domed (highest in the middle), over the cavity's
        lower part, in the lips' colour, lighter towards the front; it shows once the opening is wider
        than `tongue[0]` x the face and fully from `tongue[1]`. `down`: 0 at the upper inner lip, 1 at the lower."""
        start, full = self.tongue
        show = float(np.clip((gap - start * self.face) / max((full - start) * self.face, 1e-6), 0, 1))
        if show <= 0:
            return cavity
        top, bottom = INNER_LIP_MIDDLE
        axis = (points[bottom] - points[top]) / max(gap, 1e-6)
        across = np.array([axis[1], -axis[0]])  # the lips' width direction
        inner = points[self.regions.inner_lips]
        centre = inner.mean(axis=0)
        extent = (inner - centre) @ across
        side = ((xs - centre[0]) * across[0] + (ys - centre[1]) * across[1])  # along the width, pixels
        lateral = np.where(side < 0, -side / max(-extent.min(), 1e-6), side / max(extent.max(), 1e-6))
        surface = 0.62 + 0.3 * np.clip(lateral, 0, 1) ** 2  # the tongue's top edge: a dome across the mouth
        soft = 0.04 + 1.5 / max(gap, 1.0)  # its edge's softness, in units of the gap (at least 1.5 pixels)
        mask = np.clip((down - surface) / soft, 0, 1) * opening * show
        front = np.clip((down - surface) / 0.35, 0, 1)  # 0 at the back (its top edge), 1 at the front
        colour = self.lip_colour * (0.45 + 0.3 * front)[..., None]
        return cavity + mask[..., None] * (colour - cavity)
