"""Sampling grids at any resolution: the model's deformation (an h x w x 2 grid in -1..1,
align_corners=False) carried to the photo's own pixels.

- `still_grid`: the grid that moves nothing; `sample_grid`: a grid's bilinear value at points;
- `smooth_deformation`: a low-pass on the displacement; `landmark_correction`: a correction that
  carries each landmark exactly where the pose puts it;
- `extend_deformation`: the grid carried over an area larger than the model's crop, rigid beyond it;
- `warp_native`: the photo sampled through a grid at its own resolution (Lanczos or bicubic).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from talkingface.models.layers import coordinate_grid

SAMPLINGS = ("lanczos", "bicubic")  # how the photo can be warped (FullResSettings.sampling, warp_native)


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
    if window is not None:
        grid = grid[window]  # each output pixel depends on its own grid value only
    if sampling == "bicubic":
        image = torch.from_numpy(source).permute(2, 0, 1)[None]  # 1 x 3 x S x S, a view
        warped = F.grid_sample(image, torch.from_numpy(np.ascontiguousarray(grid))[None], mode="bicubic",
                               padding_mode="reflection", align_corners=False)[0].permute(1, 2, 0).clamp_(0, 255)
        warped = warped.numpy()  # the grid's size x 3
    else:
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
    out = source.copy()
    out[window] = warped
    return out


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
