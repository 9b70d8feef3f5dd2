"""Full-resolution rendering: the model's motion applied to the photo's own pixels.

The generator renders at its training size (128 or 64 px for the bundled models, 256 for the
official one), but what it predicts first is a dense deformation of the source crop,
and a deformation does not depend on resolution. So each output frame is made at the
source crop's own resolution:

1. Warp: the deformation (h x w x 2 sampling grid) is resized to the native crop and
   samples the native source crop with an 8x8 Lanczos kernel (bilinear sampling at
   sub-pixel offsets alone halves the sharpness of a face; on a still photo bicubic keeps
   0.82-0.90 of a face's sharpness, Lanczos 0.90-0.96). Every pixel the warp can
   supply keeps the photo's detail. The deformation's displacement is low-passed first
   (small wobbles inside the face cost the person) and corrected towards the landmarks.
2. Generate: where the warp cannot supply the pixels, the generator's output (resized
   up) is used: the mouth opening (inner-lip polygon of the rendered pose), eyes that
   close further than in the photo (blinks), and what the model's occlusion map marks
   as occluded. Those weights are feathered.
3. Colour match: before blending, the generator's low frequencies are matched to the
   warped photo's around the generated regions (a normalised Gaussian of their
   difference, weighted by where the photo is used), so a generated mouth takes the
   photo's lighting and no colour step shows.
4. Paste back: only the head moves. The blend region is the face outline of the
   rendered and of the source pose, widened to take in hair and extended below the
   chin to the neck, feathered, and faded out before the crop's edges. Outside it the
   output is the source frame's own pixels, so the surroundings are unchanged.

Lengths are in units of the face size (forehead to chin), so the settings hold at any
resolution.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from talkingface.animate.pasteback import feather_mask
from talkingface.landmarks.regions import CHIN, INNER_LIP_MIDDLE, eye_openness, face_size, mediapipe_regions
from talkingface.models.layers import coordinate_grid
from talkingface.preprocess.detect import CropBox, crop_frame


SAMPLINGS = ("lanczos", "bicubic")  # how the photo can be warped (FullResSettings.sampling, warp_native)


@dataclass(frozen=True)
class FullResSettings:
    head_scale: float = 1.3  # the head region: the face outline scaled about its centre by this (hair, ears)
    neck: float = 0.45  # ... and extended below the chin by this x the face size (chin, neck)
    head_feather: float = 0.12  # Gaussian sigma of the head region's edge, x the face size
    edge_feather: float = 0.12  # the region fades to 0 over this fraction of the crop side at the crop's edges
    mouth_full: float = 0.03  # the mouth is fully generated once it opens this x the face size wider than the photo's
    grow: float = 0.02  # the mouth opening and closing eyes are grown by this x the face size before feathering
    detail_feather: float = 0.02  # Gaussian sigma of the generated regions' edges, x the face size
    occlusion_ratio: float = 0.5  # occlusion below this x the frame's median inside the face -> generated
    occlusion_detail: float = 1.0  # 0..1: how much of the warped photo's fine detail (finer than the model's
    #   pixels) is added to the occlusion-driven generated parts; the mouth and closing eyes take none
    blink_gain: float = 2.0  # an eye closed by 1/blink_gain of the photo's openness is fully generated
    eye_scale: float = 1.6  # a closing eye's region: the photo's eye outline scaled by this (lids and their folds)
    colour_sigma: float = 0.12  # scale of the colour match, x the face size
    snap: float = 0.5  # 0..1: how far the warp is corrected to carry each source landmark exactly onto the pose's
    lip_snap: float = 0.5  # the same for the lip landmarks alone (1.0 tried: see docs/animate_quality.md)
    snap_sigma: float = 0.05  # reach of each landmark's correction (Gaussian sigma), x the face size
    flow_smooth: float = 0.2  # Gaussian sigma, x the face size, of a low-pass on the model's displacement field
    #   before the snap (0: none): keeps the head and jaw motion, drops small in-face wobble
    mouth_interior: float = 1.0  # 0..1: how much of a generated mouth opening is built from the photo (its teeth
    #   carried by each jaw over a cavity shaded from its lip colour) rather than the generator's own mouth
    cavity_shade: tuple[float, float] = (0.5, 0.2)  # the cavity's colour x the lip colour, at its edge and its centre
    teeth_hint: tuple[float, float] = (0.04, 0.015)  # a closed-mouth photo's mouth gets teeth this x the face size
    #   below the upper lip and above the lower one (0, 0: none), coloured from the photo's eye whites
    max_side: int = 1024  # the native crop is worked on at most this large (bigger boxes are resized)
    sampling: str = "lanczos"  # how the photo is warped: lanczos (8x8) or bicubic (see docs/animate_quality.md)

    def __post_init__(self):
        if self.head_scale < 1 or self.neck < 0 or self.max_side < 16:
            raise ValueError("head_scale must be >= 1, neck >= 0, max_side >= 16")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {self.sampling!r}")


@dataclass
class RenderedCrop:
    """One generated frame with what full-resolution rendering needs from the model."""

    crop: np.ndarray  # S x S x 3 uint8: the generator's output (or its super-resolved version)
    pose: np.ndarray  # N x 2: the rendered landmarks, 0..1 of the crop
    deformation: np.ndarray | None = None  # h x w x 2 float32: the sampling grid, -1..1
    occlusion: np.ndarray | None = None  # S' x S' float32, 0..1 (low: occluded)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (edges replicated). A wide blur runs on a copy shrunk so that its sigma
    is about 3 pixels there, then resized back: the result is smooth at that scale anyway,
    and a 50-pixel sigma at full size costs ~0.1 s a frame."""
    import cv2

    if sigma <= 0.3:
        return image
    h, w = image.shape[:2]
    factor = int(sigma // 3)
    if factor < 2 or min(h, w) // factor < 8:
        return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)
    small = cv2.resize(image, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=sigma / factor, sigmaY=sigma / factor,
                             borderType=cv2.BORDER_REPLICATE)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _box_around(mask: np.ndarray, reach: int) -> tuple[slice, slice]:
    """The bounding box of a non-empty mask's True pixels, grown by `reach` (clipped to the image)."""
    rows, cols = np.nonzero(mask)
    return (slice(max(rows.min() - reach, 0), min(rows.max() + reach + 1, mask.shape[0])),
            slice(max(cols.min() - reach, 0), min(cols.max() + reach + 1, mask.shape[1])))


def _fill(size: int, polygons: list[np.ndarray], convex: bool = False) -> np.ndarray:
    """size x size float32 mask, 1 inside the polygons (pixel coordinates)."""
    import cv2

    mask = np.zeros((size, size), np.uint8)
    for polygon in polygons:
        pts = np.round(np.asarray(polygon) * 16).astype(np.int32)  # 4 bits of sub-pixel precision
        if convex:
            cv2.fillConvexPoly(mask, cv2.convexHull(pts), 1, lineType=cv2.LINE_AA, shift=4)
        else:
            cv2.fillPoly(mask, [pts], 1, lineType=cv2.LINE_AA, shift=4)
    return mask.astype(np.float32)


def sample_grid(grid: np.ndarray, points01: np.ndarray) -> np.ndarray:
    """Bilinear values of an h x w x C grid at N x 2 points in 0..1 (cell centres at (k + 0.5) / h,
    as F.interpolate(align_corners=False) resizes it). -> N x C."""
    h, w = grid.shape[:2]
    x = np.clip(points01[:, 0] * w - 0.5, 0, w - 1)
    y = np.clip(points01[:, 1] * h - 0.5, 0, h - 1)
    x0, y0 = np.minimum(x.astype(int), w - 2).clip(0), np.minimum(y.astype(int), h - 2).clip(0)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    top = grid[y0, x0] * (1 - fx) + grid[y0, x1] * fx
    bottom = grid[y1, x0] * (1 - fx) + grid[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def landmark_correction(deformation: np.ndarray, pose01: np.ndarray, source01: np.ndarray, sigma01: float,
                        size: int = 64, strength: np.ndarray | float = 1.0) -> np.ndarray:
    """A size x size x 2 correction to the deformation (grid units) that makes it sample each
    source landmark exactly at its pose position (`strength` per landmark: 1 all the way, 0.5
    half way): the residuals at the landmarks, spread by a normalised Gaussian (Shepard)
    interpolation that fades to 0 away from the face."""
    residual = (2 * source01 - 1) - sample_grid(deformation, pose01)  # N x 2, grid units
    residual = residual * np.reshape(strength, (-1, 1))
    centres = (np.arange(size) + 0.5) / size
    # A 2-D Gaussian is the product of a row and a column factor, so the weighted sums over the
    # landmarks are matrix products (size x N by N x size) instead of a size x size x N array
    wx = np.exp(-(centres[:, None] - pose01[:, 0]) ** 2 / (2 * sigma01 ** 2))  # size (x) x N
    wy = np.exp(-(centres[:, None] - pose01[:, 1]) ** 2 / (2 * sigma01 ** 2))  # size (y) x N
    total = wy @ wx.T  # size (y) x size (x)
    spread = np.stack([(wy * residual[:, c]) @ wx.T for c in range(2)], axis=-1)  # size x size x 2
    # exp(-2): the weight of one landmark two sigmas away; inside the face the weights sum far above it
    return spread / (total + np.exp(-2.0))[..., None]


def smooth_deformation(deformation: np.ndarray, sigma_cells: float) -> np.ndarray:
    """The h x w x 2 sampling grid with its displacement from the identity grid Gaussian-blurred
    (sigma in grid cells, edges replicated): the identity part is kept exactly."""
    import cv2

    if sigma_cells <= 0.1:
        return deformation
    identity = coordinate_grid(*deformation.shape[:2]).numpy()  # the model's identity grid, h x w x 2
    displacement = cv2.GaussianBlur(np.ascontiguousarray(deformation - identity, dtype=np.float32), (0, 0),
                                    sigmaX=sigma_cells, sigmaY=sigma_cells, borderType=cv2.BORDER_REPLICATE)
    return identity + displacement


def warp_native(source: np.ndarray, deformation: np.ndarray, correction: np.ndarray | None = None,
                sampling: str = "lanczos") -> np.ndarray:
    """Sample an S x S x 3 float32 source (0..255) through an h x w x 2 grid resized to S x S
    (plus an optional correction grid of any size), with reflection at the borders and
    align_corners=False as the model samples. `sampling`: "lanczos" (8 x 8 Lanczos, OpenCV:
    keeps more of the photo's detail at sub-pixel offsets) or "bicubic" (torch's, as the
    model's own warp would). -> S x S x 3 float32."""
    import cv2

    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    size = source.shape[0]

    def resized(array: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)[None]
        return t if t.shape[-2:] == (size, size) else F.interpolate(t, size=(size, size), mode="bilinear",
                                                                      align_corners=False)

    grid = resized(deformation)
    if correction is not None:
        grid = grid + resized(correction)
    if sampling == "bicubic":
        image = torch.from_numpy(source).permute(2, 0, 1)[None]  # 1 x 3 x S x S, a view
        warped = F.grid_sample(image, grid.permute(0, 2, 3, 1), mode="bicubic", padding_mode="reflection",
                               align_corners=False)  # 1 x 3 x S x S
        return warped[0].permute(1, 2, 0).clamp_(0, 255).numpy()
    pixels = ((grid[0] + 1) * size - 1) / 2  # 2 x S x S: grid units (align_corners=False) -> pixel centres
    warped = cv2.remap(source, pixels[0].numpy(), pixels[1].numpy(), cv2.INTER_LANCZOS4,
                       borderMode=cv2.BORDER_REFLECT)  # S x S x 3: reflection about the edge, as torch's
    return np.clip(warped, 0, 255, out=warped)


class FullResComposer:
    """Composes full-resolution output frames for one source face (see the module doc)."""

    def __init__(self, frame: np.ndarray, box: CropBox, source_points: np.ndarray,
                 settings: FullResSettings = FullResSettings()):
        import cv2

        self.frame = np.ascontiguousarray(frame, dtype=np.uint8)
        self.box = box
        self.s = settings
        self.size = n = min(box.side, settings.max_side)  # working side of the native crop
        self.crop = crop_frame(self.frame, box, n, replicate=True)  # n x n x 3 uint8 (n <= side: never enlarged)
        self.crop_float = self.crop.astype(np.float32)
        self.regions = mediapipe_regions()
        self.source_points = np.asarray(source_points, dtype=np.float64) * n  # crop pixels
        self.face = max(face_size(self.source_points), 1.0)
        self.source_openness = eye_openness(self.source_points)
        self.source_gap = float(np.linalg.norm(self.source_points[INNER_LIP_MIDDLE[0]]
                                               - self.source_points[INNER_LIP_MIDDLE[1]]))
        self.edge = feather_mask(n, settings.edge_feather)[..., 0]  # n x n
        ring = (_fill(n, [self.source_points[self.regions.outer_lips]])
                - _fill(n, [self.source_points[self.regions.inner_lips]])) > 0.5
        self.lip_colour = (self.crop[ring].mean(axis=0) if ring.any() else np.array([120.0, 60, 60])).astype(np.float32)
        self.tooth_colour = self._eye_white()
        # the photo's own mouth opening, a pixel in from its lips (what each jaw's teeth are taken from)
        self.photo_mouth = cv2.erode(_fill(n, [self.source_points[self.regions.inner_lips]]), np.ones((3, 3), np.uint8))
        self.snap_strength = np.full(len(self.source_points), settings.snap)
        self.snap_strength[np.concatenate([self.regions.inner_lips, self.regions.outer_lips])] = settings.lip_snap
        h, w = self.frame.shape[:2]
        self.fx0, self.fy0 = max(box.x0, 0), max(box.y0, 0)
        self.fx1, self.fy1 = min(box.x0 + box.side, w), min(box.y0 + box.side, h)
        self.visible = self.fx0 < self.fx1 and self.fy0 < self.fy1

    def _eye_white(self) -> np.ndarray:
        """The photo's eye-white colour (the brightest, least saturated quarter of the pixels inside the
        eye outlines), a little darker and at least 1.3x as bright as the lips, for teeth in the photo's
        light; a neutral ivory if no eye shows."""
        eyes = _fill(self.size, [self.source_points[eye] for eye in self.regions.eyes]) > 0.5
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

    # ---------------------------------------------------------------- masks (n x n float32, 0..1)
    def head_region(self, points: np.ndarray) -> np.ndarray:
        """Where the output may differ from the source frame: the head of the source and of
        the rendered pose, with hair and neck, feathered, zero at the crop's edges."""
        polygons = []
        for pts in (self.source_points, points):
            oval = pts[self.regions.face_oval]
            centre = oval.mean(axis=0)
            widened = centre + (oval - centre) * self.s.head_scale
            down = (pts[CHIN] - centre) / max(np.linalg.norm(pts[CHIN] - centre), 1e-9)
            lower = widened[(widened - centre) @ down > 0]  # the half towards the chin, moved down to the neck
            polygons.append(np.concatenate([widened, lower + down * self.s.neck * self.face]))
        region = _blur(_fill(self.size, polygons, convex=True), self.s.head_feather * self.face)
        return region * self.edge

    def generated_region(self, points: np.ndarray, occlusion: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Where the generator supplies the pixels: the mouth opening, closing eyes, occluded parts.
        -> (n x n weight 0..1, n x n share of it that is only occlusion-driven 0..1)."""
        import cv2

        n, face = self.size, self.face
        # the mouth opening, as far as it is wider than the photo's own (whose teeth the warp carries)
        top, bottom = INNER_LIP_MIDDLE
        opening = np.linalg.norm(points[top] - points[bottom]) - self.source_gap
        weight = np.clip(opening / (self.s.mouth_full * face), 0, 1) * _fill(n, [points[self.regions.inner_lips]])
        closing = (self.source_openness - eye_openness(points)) / np.maximum(self.source_openness, 1e-6)
        for eye, amount in zip(self.regions.eyes, np.clip(closing * self.s.blink_gain, 0, 1)):
            if amount <= 0:
                continue
            # the photo's eye shape, where the pose puts the eye: the closing lid is drawn by the generator
            outline = self.source_points[eye]
            placed = (outline - outline.mean(axis=0)) * self.s.eye_scale + points[eye].mean(axis=0)
            weight = np.maximum(weight, amount * _fill(n, [placed], convex=True))
        grow = int(round(self.s.grow * face))
        if grow > 0 and weight.any():
            weight = cv2.dilate(weight, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
        features = weight  # the mouth and the closing eyes: no photo detail is added there
        if occlusion is not None:
            occ = occlusion if occlusion.shape[0] == n else cv2.resize(occlusion, (n, n),
                                                                         interpolation=cv2.INTER_LINEAR)
            inside = _fill(n, [points[self.regions.face_oval]], convex=True) > 0.5
            if inside.any():
                median = float(np.median(occ[inside]))
                occluded = np.clip(1 - occ / max(self.s.occlusion_ratio * median, 1e-6), 0, 1) * inside
                weight = np.maximum(weight, occluded)
        feather = self.s.detail_feather * face
        only_occluded = weight - features
        if only_occluded.any():
            only_occluded = np.clip(_blur(only_occluded, feather), 0, 1)
        return np.clip(_blur(weight, feather), 0, 1), only_occluded

    def mouth_interior(self, points: np.ndarray) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
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
        opening = _fill(n, [inner])[window]
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
            colour = cv2.remap(self.crop_float, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
            inside = cv2.remap(self.photo_mouth, mx, my, cv2.INTER_LINEAR, borderValue=0)
            side = along(mx, my, self.source_points) - 0.5  # the photo opening's half on this jaw's side
            inside *= np.clip((side if jaw == bottom else -side) * 4 + 0.5, 0, 1)
            teeth += (share * inside)[..., None] * colour
            shown += share * inside
        depth = _blur(opening, 0.03 * face)
        depth /= max(float(depth.max()), 1e-6)
        edge, centre = self.s.cavity_shade
        cavity = self.lip_colour * (edge + (centre - edge) * depth)[..., None]
        # where the photo shows no teeth: a hint of them, in the photo's eye-white colour, under the upper
        # lip and over the lower one, fading towards the mouth's corners
        gap = float(np.linalg.norm(points[bottom] - points[top]))
        below_top = along(xs, ys, points) * gap
        above_bottom = gap - below_top
        band = np.maximum(np.clip((self.s.teeth_hint[0] * face - below_top) / (0.01 * face), 0, 1),
                          np.clip((self.s.teeth_hint[1] * face - above_bottom) / (0.01 * face), 0, 1))
        hint = (band * np.clip(depth * 2 - 0.4, 0, 1) * opening)[..., None]
        cavity += hint * (self.tooth_colour * (0.6 + 0.4 * depth)[..., None] - cavity)
        return window, _blur(opening, 0.01 * face), np.clip(teeth + (1 - shown)[..., None] * cavity, 0, 255)

    # ---------------------------------------------------------------- compose
    def compose_crop(self, item: RenderedCrop) -> tuple[np.ndarray, np.ndarray]:
        """(n x n x 3 float32 output crop 0..255, n x n head region) for one rendered frame."""
        import cv2

        n = self.size
        points = np.asarray(item.pose, dtype=np.float64) * n
        if item.deformation is None:
            raise ValueError("full-resolution rendering needs the model's deformation")
        deformation = smooth_deformation(item.deformation, self.s.flow_smooth * self.face / n
                                         * item.deformation.shape[0])  # h x w x 2
        correction = None
        if self.s.snap > 0 or self.s.lip_snap > 0:
            correction = landmark_correction(deformation, item.pose, self.source_points / n,
                                             self.s.snap_sigma * self.face / n, strength=self.snap_strength)
        warped = warp_native(self.crop_float, deformation, correction, self.s.sampling)  # n x n x 3
        generated = item.crop if item.crop.shape[0] == n else cv2.resize(item.crop, (n, n),
                                                                          interpolation=cv2.INTER_CUBIC)
        generated = generated.astype(np.float32)
        weight, occluded = self.generated_region(points, item.occlusion)  # n x n each
        out = warped
        used = weight > 1e-3  # where the generator contributes
        if used.any():
            # match the generator's low frequencies to the warped photo's where the photo is used; only
            # around the generated parts (the Gaussian's reach), the rest is the warped photo as it is
            sigma = self.s.colour_sigma * self.face
            part = _box_around(used, int(3 * sigma) + 1)
            gen, photo = generated[part], warped[part]
            keep = 1 - weight[part]
            gen -= _blur((gen - photo) * keep[..., None], sigma) / np.maximum(_blur(keep, sigma), 1e-3)[..., None]
            if self.s.mouth_interior > 0:  # the photo-built mouth needs no colour match: it is the photo's
                window, opening, interior = self.mouth_interior(points)
                generated[window] += (self.s.mouth_interior * opening)[..., None] * (interior - generated[window])
            out = warped + weight[..., None] * (generated - warped)
            if self.s.occlusion_detail > 0 and (occluded > 1e-3).any():
                # the generator cannot draw finer than its own pixels: there the warped photo's detail
                # (its difference from itself blurred by about one model pixel) is kept on occluded skin
                sigma = n / item.crop.shape[0]
                part = _box_around(occluded > 1e-3, int(3 * sigma) + 1)
                fine = warped[part] - _blur(warped[part], sigma)
                out[part] += (self.s.occlusion_detail * np.minimum(occluded, weight)[part])[..., None] * fine
        return out, self.head_region(points)

    def __call__(self, item: RenderedCrop) -> np.ndarray:
        """One output frame, H x W x 3 uint8, at the source frame's resolution."""
        import cv2

        result = self.frame.copy()
        if not self.visible:
            return result
        crop, region = self.compose_crop(item)
        side = self.box.side
        if side != self.size:
            crop = cv2.resize(crop, (side, side), interpolation=cv2.INTER_CUBIC)
            region = cv2.resize(region, (side, side), interpolation=cv2.INTER_LINEAR)
        bx0, by0 = self.fx0 - self.box.x0, self.fy0 - self.box.y0
        bx1, by1 = bx0 + self.fx1 - self.fx0, by0 + self.fy1 - self.fy0
        background = result[self.fy0:self.fy1, self.fx0:self.fx1].astype(np.float32)
        weight = region[by0:by1, bx0:bx1, None]
        blended = background + weight * (crop[by0:by1, bx0:bx1] - background)
        result[self.fy0:self.fy1, self.fx0:self.fx1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        return result
