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
   chin to the neck, feathered, and faded out before the rendered area's edges. Outside
   it the output is the source frame's own pixels, so the surroundings are unchanged.

The rendered area is larger than the model's crop, which trims the top of the head and
the ears (`render_box`): the whole head region and its feather fit inside it. Beyond the
model's crop the head moves rigidly, by the similarity that carries the rendered pose's
skull points onto the source's (`extend_deformation`); the model's deformation fades into
it over the crop's outer band. (With the blend region cut off at the model crop's edge, a
raised head left its brows and ears half behind, a ghost over the moved face.)

Lengths are in units of the face size (forehead to chin), so the settings hold at any
resolution.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from talkingface.animate.motion import STABLE_POINTS
from talkingface.animate.pasteback import feather_mask
from talkingface.landmarks.regions import CHIN, INNER_LIP_MIDDLE, eye_openness, face_size, mediapipe_regions
from talkingface.models.layers import coordinate_grid
from talkingface.preprocess.align import fit_similarity
from talkingface.preprocess.detect import CropBox, box_from_center, crop_frame


SAMPLINGS = ("lanczos", "bicubic")  # how the photo can be warped (FullResSettings.sampling, warp_native)


@dataclass(frozen=True)
class FullResSettings:
    head_scale: float = 1.3  # the head region: the face outline scaled about its centre by this (hair, ears)
    neck: float = 0.45  # ... and extended below the chin by this x the face size (chin, neck)
    head_feather: float = 0.12  # Gaussian sigma of the head region's edge, x the face size
    edge_feather: float = 0.12  # the region fades to 0 over this fraction of the side at the rendered area's
    #   edges; the model's own deformation fades into the rigid head motion over this fraction of its crop
    motion_margin: float = 0.15  # the rendered area reaches this x the face size beyond the source's head
    #   region and its feather, for a head that moves
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
    tongue: tuple[float, float] = (0.05, 0.1)  # a tongue shows in the cavity once the opening is this wide (x the
    #   face size), fully at the second value; (1, 1): none
    teeth_hint: tuple[float, float] = (0.04, 0.015)  # a closed-mouth photo's mouth gets teeth this x the face size
    #   below the upper lip and above the lower one (0, 0: none), coloured from the photo's eye whites
    max_side: int = 1024  # the model's crop is worked on at most this large (bigger ones are resized, and the
    #   rendered area around it by the same factor)
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
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return (slice(max(rows[0] - reach, 0), min(rows[-1] + reach + 1, mask.shape[0])),
            slice(max(cols[0] - reach, 0), min(cols[-1] + reach + 1, mask.shape[1])))


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


def still_grid(size: int) -> np.ndarray:
    """The size x size x 2 sampling grid that moves nothing: cell centres in -1..1 as
    align_corners=False reads them (the model's coordinate_grid puts its corners on the edge
    pixels' centres instead, which is a slight zoom at this convention)."""
    centres = ((2 * np.arange(size) + 1) / size - 1).astype(np.float32)
    return np.stack(np.meshgrid(centres, centres), axis=-1)


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
                sampling: str = "lanczos", window: tuple[slice, slice] | None = None,
                face: tuple[slice, slice] | None = None) -> np.ndarray:
    """Sample an S x S x 3 float32 source (0..255) through an h x w x 2 grid resized to S x S
    (plus an optional correction grid of any size), with reflection at the borders and
    align_corners=False as the model samples. `sampling`: "lanczos" (8 x 8 Lanczos, OpenCV:
    keeps more of the photo's detail at sub-pixel offsets) or "bicubic" (torch's, as the
    model's own warp would). With a `window` (rows, columns) only its pixels are sampled; the rest
    is the source as it is. With a `face` window (inside `window`), Lanczos is used only there and
    OpenCV's bicubic elsewhere (a third of the cost: hair and background need less). -> S x S x 3
    float32."""
    import cv2

    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    size = source.shape[0]

    def resized(array: np.ndarray) -> np.ndarray:  # bilinear, pixel centres as align_corners=False
        array = np.ascontiguousarray(array, dtype=np.float32)
        return array if array.shape[:2] == (size, size) else cv2.resize(array, (size, size),
                                                                         interpolation=cv2.INTER_LINEAR)

    grid = resized(deformation)  # S x S x 2
    if correction is not None:
        grid = grid + resized(correction)
    if sampling == "bicubic":
        image = torch.from_numpy(source).permute(2, 0, 1)[None]  # 1 x 3 x S x S, a view
        warped = F.grid_sample(image, torch.from_numpy(grid)[None], mode="bicubic", padding_mode="reflection",
                               align_corners=False)[0].permute(1, 2, 0).clamp_(0, 255).numpy()  # S x S x 3
    else:
        if window is not None:
            grid = grid[window]
        pixels = ((grid + 1) * size - 1) / 2  # grid units (align_corners=False) -> pixel centres
        maps = np.ascontiguousarray(pixels[..., 0]), np.ascontiguousarray(pixels[..., 1])
        # reflection about the edge, as torch's
        kernel = cv2.INTER_LANCZOS4 if face is None else cv2.INTER_CUBIC
        warped = cv2.remap(source, *maps, kernel, borderMode=cv2.BORDER_REFLECT)
        if face is not None:
            top, left = (0, 0) if window is None else (window[0].start, window[1].start)
            inner = (slice(face[0].start - top, face[0].stop - top), slice(face[1].start - left, face[1].stop - left))
            warped[inner] = cv2.remap(source, maps[0][inner], maps[1][inner], cv2.INTER_LANCZOS4,
                                      borderMode=cv2.BORDER_REFLECT)
        np.clip(warped, 0, 255, out=warped)
        if window is None:
            return warped
        window_pixels, warped = warped, source.copy()
        warped[window] = window_pixels
        return warped
    if window is None:
        return warped
    out = source.copy()
    out[window] = warped[window]
    return out


def head_polygon(points: np.ndarray, settings: FullResSettings, face: float) -> np.ndarray:
    """The head region's outline for N x 2 landmarks (any pixel units): the face outline scaled
    by `head_scale` about its centre (hair, ears), its chin half moved `neck` x the face size
    further down (chin, neck). -> K x 2, to be filled as a convex polygon."""
    oval = points[mediapipe_regions().face_oval]
    centre = oval.mean(axis=0)
    widened = centre + (oval - centre) * settings.head_scale
    down = (points[CHIN] - centre) / max(np.linalg.norm(points[CHIN] - centre), 1e-9)
    lower = widened[(widened - centre) @ down > 0]  # the half towards the chin
    return np.concatenate([widened, lower + down * settings.neck * face])


def render_box(points_px: np.ndarray, model_box: CropBox, settings: FullResSettings) -> CropBox:
    """The square area full rendering works on, in frame pixels: the model's crop and the
    source's head region (`head_polygon`) with its feather (2.5 sigmas) and `motion_margin`."""
    points_px = np.asarray(points_px, dtype=np.float64)
    face = max(face_size(points_px), 1.0)
    polygon = head_polygon(points_px, settings, face)
    reach = (2.5 * settings.head_feather + settings.motion_margin) * face
    low = np.minimum(polygon.min(axis=0) - reach, (model_box.x0, model_box.y0))
    high = np.maximum(polygon.max(axis=0) + reach, (model_box.x0 + model_box.side, model_box.y0 + model_box.side))
    return box_from_center(*(low + high) / 2, float((high - low).max()))


def extend_deformation(deformation: np.ndarray, origin: np.ndarray, side: float, size: int, rigid: np.ndarray,
                       band: float) -> np.ndarray:
    """The model's h x w x 2 sampling grid (-1..1 of its crop), carried over a larger size x size
    area in which the crop is the square at `origin` (x, y) with `side` (pixels of the area):
    inside the crop the model's deformation, fading over the outer `band` x side of the crop into
    `rigid` (a 2 x 3 similarity, area pixels of the output -> of the source), which is all there
    is beyond the crop. -> g x g x 2 float32 grid over the area (-1..1 of it, align_corners=False),
    with the model's cell size."""
    h = deformation.shape[0]
    g = int(np.clip(round(h * size / side), h, 8 * h))
    centres = (np.arange(g) + 0.5) * size / g  # cell centres, area pixels
    xs, ys = np.meshgrid(centres, centres)
    where = np.stack([xs.ravel(), ys.ravel()], axis=-1)  # g*g x 2
    in_crop = (where - origin) / side  # 0..1 of the model's crop
    model = (sample_grid(deformation, in_crop) + 1) / 2 * side + origin  # area pixels
    moved = where @ rigid[:, :2].T + rigid[:, 2]
    ramp = np.clip(np.minimum(in_crop, 1 - in_crop) / max(band, 1e-6), 0, 1)
    ramp = ramp * ramp * (3 - 2 * ramp)  # smoothstep, 0 at the crop's edge and beyond
    trust = (ramp[:, 0] * ramp[:, 1])[:, None]
    pixels = moved + trust * (model - moved)
    return (2 * pixels / size - 1).reshape(g, g, 2).astype(np.float32)


class FullResComposer:
    """Composes full-resolution output frames for one source face (see the module doc)."""

    def __init__(self, frame: np.ndarray, box: CropBox, source_points: np.ndarray,
                 settings: FullResSettings = FullResSettings()):
        import cv2

        self.frame = np.ascontiguousarray(frame, dtype=np.uint8)
        self.s = settings
        self.model_box = box
        self.box = render_box(box.to_frame(source_points), box, settings)  # the rendered area, frame pixels
        scale = min(1.0, settings.max_side / box.side)  # area pixels per frame pixel
        self.size = n = max(int(round(self.box.side * scale)), 16)  # working side of the rendered area
        scale = n / self.box.side
        self.model_origin = np.array([box.x0 - self.box.x0, box.y0 - self.box.y0], np.float64) * scale
        self.model_side = box.side * scale  # the model's crop inside the area, area pixels
        low = np.clip(np.floor(self.model_origin).astype(int), 0, n)
        high = np.clip(np.ceil(self.model_origin + self.model_side).astype(int), 0, n)
        self.model_window = (slice(low[1], high[1]), slice(low[0], high[0]))  # the crop's pixels in the area
        self.model_area = np.zeros((n, n), bool)  # n x n: inside the model's crop
        self.model_area[self.model_window] = self.place(np.ones((8, 8), np.float32), self.model_window, 0.0) > 0.5
        self.crop = crop_frame(self.frame, self.box, n, replicate=True)  # n x n x 3 uint8 (never enlarged)
        self.crop_float = self.crop.astype(np.float32)
        self.regions = mediapipe_regions()
        self.source_points = self.to_area(source_points)  # area pixels
        self.face = max(face_size(self.source_points), 1.0)
        self.stable = list(STABLE_POINTS)  # the skull's points: the rigid head motion beyond the model's crop
        self.snap_grid = int(np.clip(round(64 * n / self.model_side), 64, 256))  # the snap's grid, 64 per model crop
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
        area = self.box
        self.fx0, self.fy0 = max(area.x0, 0), max(area.y0, 0)
        self.fx1, self.fy1 = min(area.x0 + area.side, w), min(area.y0 + area.side, h)
        self.visible = self.fx0 < self.fx1 and self.fy0 < self.fy1

    def to_area(self, points01: np.ndarray) -> np.ndarray:
        """N x 2 points in 0..1 of the model's crop -> pixels of the rendered area."""
        return self.model_origin + np.asarray(points01, dtype=np.float64) * self.model_side

    def place(self, image: np.ndarray, window: tuple[slice, slice], border: float | None = None) -> np.ndarray:
        """An image of the model's crop (any size) resampled (bicubic) onto a window of the rendered
        area; outside the crop: `border`, or the crop's edge replicated when None."""
        import cv2

        a = image.shape[0] / self.model_side  # crop pixels per area pixel
        ox, oy = self.model_origin
        x0, y0 = window[1].start, window[0].start
        m = np.array([[a, 0, (x0 + 0.5 - ox) * a - 0.5], [0, a, (y0 + 0.5 - oy) * a - 0.5]])  # window -> crop
        mode = cv2.BORDER_REPLICATE if border is None else cv2.BORDER_CONSTANT
        size = (window[1].stop - x0, window[0].stop - y0)
        return cv2.warpAffine(np.ascontiguousarray(image), m, size, flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                              borderMode=mode, borderValue=0.0 if border is None else border)

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
        """The head of the source and of the rendered pose, with hair and neck, feathered (0.5 on
        its outline), zero at the rendered area's edges. n x n."""
        polygons = [head_polygon(pts, self.s, self.face) for pts in (self.source_points, points)]
        region = _blur(_fill(self.size, polygons, convex=True), self.s.head_feather * self.face)
        return region * self.edge

    @staticmethod
    def motion_share(region: np.ndarray) -> np.ndarray:
        """How much of the head's motion a pixel follows: all of it inside the head region's outline,
        fading out across its feather, so the background around a moving head is stretched rather
        than cross-faded (a cross-fade shows the head's old outline as a ghost)."""
        return np.clip(2 * region, 0, 1)

    @staticmethod
    def paste_share(region: np.ndarray) -> np.ndarray:
        """Where the output replaces the source frame: out to where the head region's feather falls
        to 2%, where the motion share is 4% (a sub-pixel offset for any head move under 25 pixels)."""
        return np.clip(region / 0.02, 0, 1)

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
            near = _box_around(weight > 0, grow + 1)
            weight[near] = cv2.dilate(weight[near], cv2.getStructuringElement(cv2.MORPH_ELLIPSE,
                                                                              (2 * grow + 1, 2 * grow + 1)))
        features = weight  # the mouth and the closing eyes: no photo detail is added there
        if occlusion is not None:
            window = self.model_window  # nothing is occluded beyond the model's crop
            occ = self.place(occlusion, window, border=1.0)
            inside = (_fill(n, [points[self.regions.face_oval]], convex=True) > 0.5)[window]
            if inside.any():
                median = float(np.median(occ[inside]))
                occluded = np.zeros((n, n), np.float32)
                occluded[window] = np.clip(1 - occ / max(self.s.occlusion_ratio * median, 1e-6), 0, 1) * inside
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
        gap = float(np.linalg.norm(points[bottom] - points[top]))
        below_top = along(xs, ys, points) * gap
        cavity = self._tongue(cavity, points, xs, ys, below_top / max(gap, 1e-6), gap, opening)
        # where the photo shows no teeth: a hint of them, in the photo's eye-white colour, under the upper
        # lip and over the lower one, fading towards the mouth's corners
        above_bottom = gap - below_top
        band = np.maximum(np.clip((self.s.teeth_hint[0] * face - below_top) / (0.01 * face), 0, 1),
                          np.clip((self.s.teeth_hint[1] * face - above_bottom) / (0.01 * face), 0, 1))
        hint = (band * np.clip(depth * 2 - 0.4, 0, 1) * opening)[..., None]
        cavity += hint * (self.tooth_colour * (0.6 + 0.4 * depth)[..., None] - cavity)
        return window, _blur(opening, 0.01 * face), np.clip(teeth + (1 - shown)[..., None] * cavity, 0, 255)

    def _tongue(self, cavity: np.ndarray, points: np.ndarray, xs: np.ndarray, ys: np.ndarray, down: np.ndarray,
                gap: float, opening: np.ndarray) -> np.ndarray:
        """The floor of a wide-open mouth: a tongue, domed (highest in the middle), over the cavity's
        lower part, in the lips' colour, lighter towards the front; it shows once the opening is wider
        than `tongue[0]` x the face and fully from `tongue[1]`. `down`: 0 at the upper inner lip, 1 at the lower."""
        start, full = self.s.tongue
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

    # ---------------------------------------------------------------- compose
    def compose_crop(self, item: RenderedCrop) -> tuple[np.ndarray, np.ndarray]:
        """(n x n x 3 float32 output 0..255 over the rendered area, n x n head region) for one
        rendered frame."""
        n = self.size
        points = self.to_area(item.pose)  # N x 2, area pixels
        if item.deformation is None:
            raise ValueError("full-resolution rendering needs the model's deformation")
        import cv2

        rigid = fit_similarity(points[self.stable], self.source_points[self.stable])  # 2 x 3: pose -> source
        deformation = extend_deformation(item.deformation, self.model_origin, self.model_side, n, rigid,
                                         self.s.edge_feather)  # g x g x 2 over the area
        g = deformation.shape[0]
        deformation = smooth_deformation(deformation, self.s.flow_smooth * self.face / n * g)
        region = self.head_region(points)  # n x n
        share = cv2.resize(self.motion_share(region), (g, g), interpolation=cv2.INTER_AREA)[..., None]
        still = still_grid(g)  # g x g x 2: no motion
        deformation = still + share * (deformation - still)
        correction = None
        if self.s.snap > 0 or self.s.lip_snap > 0:
            correction = landmark_correction(deformation, points / n, self.source_points / n,
                                             self.s.snap_sigma * self.face / n, size=self.snap_grid,
                                             strength=self.snap_strength)
        paste = self.paste_share(region)  # n x n
        # n x n x 3; sampled only where it is pasted (the rest is never seen)
        # where the paste can change a grey level (share x 255 >= 0.5): the feather's far tail cannot
        pasted = _box_around(paste >= 0.002, 0)
        oval = points[self.regions.face_oval]
        margin = 0.1 * self.face
        low = np.clip(np.floor(oval.min(axis=0) - margin).astype(int), (pasted[1].start, pasted[0].start), None)
        high = np.clip(np.ceil(oval.max(axis=0) + margin).astype(int), None, (pasted[1].stop, pasted[0].stop))
        face = (slice(low[1], max(high[1], low[1])), slice(low[0], max(high[0], low[0])))
        warped = warp_native(self.crop_float, deformation, correction, self.s.sampling, pasted, face)
        weight, occluded = self.generated_region(points, item.occlusion)  # n x n each
        used = weight > 1e-3  # where the generator contributes
        if not used.any():
            return warped, paste
        # match the generator's low frequencies to the warped photo's where the photo is used; only
        # around the generated parts (the Gaussian's reach), the rest is the warped photo as it is
        sigma = self.s.colour_sigma * self.face
        part = _box_around(used, int(3 * sigma) + 1)
        if self.s.mouth_interior > 0:
            window, opening, interior = self.mouth_interior(points)
            part = tuple(slice(min(p.start, w.start), max(p.stop, w.stop)) for p, w in zip(part, window))
        photo = warped[part]  # a view
        gen = photo.copy()  # the generator's image inside the model's crop, the warped photo beyond it
        inside = self.model_area[part]
        gen[inside] = self.place(item.crop, part)[inside]
        keep = 1 - weight[part]
        gen -= _blur((gen - photo) * keep[..., None], sigma) / np.maximum(_blur(keep, sigma), 1e-3)[..., None]
        if self.s.mouth_interior > 0:  # the photo-built mouth needs no colour match: it is the photo's
            local = tuple(slice(w.start - p.start, w.stop - p.start) for p, w in zip(part, window))
            gen[local] += (self.s.mouth_interior * opening)[..., None] * (interior - gen[local])
        detail = None
        if self.s.occlusion_detail > 0 and (occluded > 1e-3).any():
            # the generator cannot draw finer than its own pixels: there the warped photo's detail
            # (its difference from itself blurred by about one model pixel) is kept on occluded skin
            blur = self.model_side / item.crop.shape[0]
            skin = _box_around(occluded > 1e-3, int(3 * blur) + 1)
            share = (self.s.occlusion_detail * np.minimum(occluded, weight)[skin])[..., None]
            detail = skin, share * (warped[skin] - _blur(warped[skin], blur))
        out = warped  # blended in place: the warped photo is not needed after this
        out[part] += weight[part][..., None] * (gen - photo)
        if detail is not None:
            out[detail[0]] += detail[1]
        return out, paste

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
        bx0, by0 = self.fx0 - self.box.x0, self.fy0 - self.box.y0  # the area's part inside the frame
        bx1, by1 = bx0 + self.fx1 - self.fx0, by0 + self.fy1 - self.fy0
        inside = region[by0:by1, bx0:bx1] > 0
        if not inside.any():
            return result
        rows, cols = _box_around(inside, 0)  # only where the region reaches
        weight = region[by0:by1, bx0:bx1][rows, cols][..., None]
        target = result[self.fy0:self.fy1, self.fx0:self.fx1][rows, cols]  # a view
        background = target.astype(np.float32)
        blended = background + weight * (crop[by0:by1, bx0:bx1][rows, cols] - background)
        target[...] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        return result
