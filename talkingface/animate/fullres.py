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
   up) is used: the mouth opening (inner-lip polygon of the rendered pose; built from the
   photo's own teeth over a shaded cavity, `animate.mouth`), eyes that close further than
   in the photo (blinks), and what the model's occlusion map marks as occluded. Those
   weights are feathered.
3. Colour match: before blending, the generator's low frequencies are matched to the
   warped photo's around the generated regions (a normalised Gaussian of their
   difference, weighted by where the photo is used), so a generated mouth takes the
   photo's lighting and no colour step shows.
4. Paste back: only the head moves. The head region is the face outline of the rendered
   and of the source pose, widened to take in hair and extended below the chin to the
   neck, feathered, and faded out before the rendered area's edges. The motion (not the
   pixels) fades out across its feather, so a moved head leaves no ghost of its outline;
   beyond it the output is the source frame's own pixels, so the surroundings are
   unchanged.

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

from talkingface.animate.deformation import (SAMPLINGS, extend_deformation, landmark_correction, smooth_deformation,
                                             still_grid, warp_native)
from talkingface.animate.masks import blur, box_around, fill
from talkingface.animate.motion import STABLE_POINTS
from talkingface.animate.mouth import PhotoMouth
from talkingface.animate.pasteback import feather_mask
from talkingface.landmarks.regions import CHIN, INNER_LIP_MIDDLE, eye_openness, face_size, mediapipe_regions
from talkingface.preprocess.align import fit_similarity
from talkingface.preprocess.detect import CropBox, box_from_center, crop_frame


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


class FullResComposer:
    """Composes full-resolution output frames for one source face (see the module doc)."""

    def __init__(self, frame: np.ndarray, box: CropBox, source_points: np.ndarray,
                 settings: FullResSettings = FullResSettings()):
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
        self.mouth = PhotoMouth(self.crop_float, self.source_points, self.face, settings.cavity_shade,
                                settings.teeth_hint, settings.tongue)
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

    # ---------------------------------------------------------------- masks (n x n float32, 0..1)
    def head_region(self, points: np.ndarray) -> np.ndarray:
        """The head of the source and of the rendered pose, with hair and neck, feathered (0.5 on
        its outline), zero at the rendered area's edges. n x n."""
        polygons = [head_polygon(pts, self.s, self.face) for pts in (self.source_points, points)]
        region = blur(fill(self.size, polygons, convex=True), self.s.head_feather * self.face)
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
        weight = np.clip(opening / (self.s.mouth_full * face), 0, 1) * fill(n, [points[self.regions.inner_lips]])
        closing = (self.source_openness - eye_openness(points)) / np.maximum(self.source_openness, 1e-6)
        for eye, amount in zip(self.regions.eyes, np.clip(closing * self.s.blink_gain, 0, 1)):
            if amount <= 0:
                continue
            # the photo's eye shape, where the pose puts the eye: the closing lid is drawn by the generator
            outline = self.source_points[eye]
            placed = (outline - outline.mean(axis=0)) * self.s.eye_scale + points[eye].mean(axis=0)
            weight = np.maximum(weight, amount * fill(n, [placed], convex=True))
        grow = int(round(self.s.grow * face))
        if grow > 0 and weight.any():
            near = box_around(weight > 0, grow + 1)
            weight[near] = cv2.dilate(weight[near], cv2.getStructuringElement(cv2.MORPH_ELLIPSE,
                                                                              (2 * grow + 1, 2 * grow + 1)))
        features = weight  # the mouth and the closing eyes: no photo detail is added there
        if occlusion is not None:
            window = self.model_window  # nothing is occluded beyond the model's crop
            occ = self.place(occlusion, window, border=1.0)
            inside = (fill(n, [points[self.regions.face_oval]], convex=True) > 0.5)[window]
            if inside.any():
                median = float(np.median(occ[inside]))
                occluded = np.zeros((n, n), np.float32)
                occluded[window] = np.clip(1 - occ / max(self.s.occlusion_ratio * median, 1e-6), 0, 1) * inside
                weight = np.maximum(weight, occluded)
        feather = self.s.detail_feather * face
        only_occluded = weight - features
        if only_occluded.any():
            only_occluded = np.clip(blur(only_occluded, feather), 0, 1)
        return np.clip(blur(weight, feather), 0, 1), only_occluded

    # ---------------------------------------------------------------- compose
    def compose_crop(self, item: RenderedCrop) -> tuple[np.ndarray, np.ndarray]:
        """(n x n x 3 float32 output 0..255 over the rendered area, n x n head region) for one
        rendered frame."""
        import cv2

        n = self.size
        points = self.to_area(item.pose)  # N x 2, area pixels
        if item.deformation is None:
            raise ValueError("full-resolution rendering needs the model's deformation")
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
        pasted = box_around(paste >= 0.002, 0)
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
        part = box_around(used, int(3 * sigma) + 1)
        if self.s.mouth_interior > 0:
            window, opening, interior = self.mouth.interior(points)
            part = tuple(slice(min(p.start, w.start), max(p.stop, w.stop)) for p, w in zip(part, window))
        photo = warped[part]  # a view
        gen = photo.copy()  # the generator's image inside the model's crop, the warped photo beyond it
        inside = self.model_area[part]
        gen[inside] = self.place(item.crop, part)[inside]
        keep = 1 - weight[part]
        gen -= blur((gen - photo) * keep[..., None], sigma) / np.maximum(blur(keep, sigma), 1e-3)[..., None]
        if self.s.mouth_interior > 0:  # the photo-built mouth needs no colour match: it is the photo's
            local = tuple(slice(w.start - p.start, w.stop - p.start) for p, w in zip(part, window))
            gen[local] += (self.s.mouth_interior * opening)[..., None] * (interior - gen[local])
        detail = None
        if self.s.occlusion_detail > 0 and (occluded > 1e-3).any():
            # the generator cannot draw finer than its own pixels: there the warped photo's detail
            # (its difference from itself blurred by about one model pixel) is kept on occluded skin
            pixel = self.model_side / item.crop.shape[0]  # one model pixel, area pixels
            skin = box_around(occluded > 1e-3, int(3 * pixel) + 1)
            share = (self.s.occlusion_detail * np.minimum(occluded, weight)[skin])[..., None]
            detail = skin, share * (warped[skin] - blur(warped[skin], pixel))
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
        rows, cols = box_around(inside, 0)  # only where the region reaches
        weight = region[by0:by1, bx0:bx1][rows, cols][..., None]
        target = result[self.fy0:self.fy1, self.fx0:self.fx1][rows, cols]  # a view
        background = target.astype(np.float32)
        blended = background + weight * (crop[by0:by1, bx0:bx1][rows, cols] - background)
        target[...] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        return result
