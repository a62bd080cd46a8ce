"""Box-exact augmentation of one labelled image (numpy and OpenCV): mosaic, affine warp, HSV
jitter, mixup and copy-paste. `data.augmented` draws their parameters and chains them.

Boxes here are absolute-pixel xyxy in the continuous convention of `data.records` (a box over
the whole W x H image is (0, 0, W, H)); a warp maps pixel centres (x + 0.5, y + 0.5) with the
same matrix as box corners, so pixels and boxes move together exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from onestage.data.transforms import LETTERBOX_FILL, LETTERBOX_GREY

# A box survives a warp when it is wider and taller than MIN_BOX_PX pixels, less elongated than
# MAX_ASPECT, and keeps more than MIN_AREA_KEPT of its full area (Ultralytics' thresholds).
MIN_BOX_PX = 2.0
MAX_ASPECT = 100.0
MIN_AREA_KEPT = 0.1
# Copy-paste drops an object when pasted patches cover more than this fraction of its box.
MAX_COVERED = 0.5


@dataclass(frozen=True)
class Labelled:
    """An image with its objects. `boxes` are (N, 4) float64 pixel xyxy, `class_ids` (N,)
    int64 (IGNORED_CLASS_ID kept), `full_areas` (N,) each object's area before any clipping,
    in this image's pixels (what MIN_AREA_KEPT compares with)."""

    image: np.ndarray  # (H, W, 3) uint8
    boxes: np.ndarray
    class_ids: np.ndarray
    full_areas: np.ndarray

    @classmethod
    def of(cls, image: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray) -> Labelled:
        """A fitted image and its pixel xyxy boxes, their areas as full areas."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        return cls(image, boxes, np.asarray(class_ids, dtype=np.int64), box_areas(boxes))

    def select(self, keep: np.ndarray) -> Labelled:
        return replace(
            self,
            boxes=self.boxes[keep],
            class_ids=self.class_ids[keep],
            full_areas=self.full_areas[keep],
        )


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """(N,) areas of (N, 4) xyxy boxes; 0 for inverted ones."""
    sides = np.clip(boxes[:, 2:] - boxes[:, :2], 0.0, None)
    return sides[:, 0] * sides[:, 1]


def concatenate(parts: list[Labelled], image: np.ndarray) -> Labelled:
    """The objects of `parts`, in order, on `image`."""
    return Labelled(
        image,
        np.concatenate([p.boxes for p in parts]).reshape(-1, 4),
        np.concatenate([p.class_ids for p in parts]).astype(np.int64),
        np.concatenate([p.full_areas for p in parts]),
    )


def mosaic4(tiles: list[Labelled], centre: tuple[int, int]) -> Labelled:
    """Four size x size tiles on a 2size x 2size grey canvas, meeting at `centre` (cx, cy):
    tile 0 ends there (top left), 1 starts right of it (top right), 2 below it (bottom left),
    3 at it (bottom right). Parts beyond the canvas are cut; boxes are shifted by each tile's
    offset and clipped to the canvas, those left without area dropped."""
    size = tiles[0].image.shape[0]
    cx, cy = centre
    canvas = np.full((2 * size, 2 * size, 3), LETTERBOX_GREY, dtype=np.uint8)
    placed = []
    for tile, (left, top) in zip(
        tiles, ((cx - size, cy - size), (cx, cy - size), (cx - size, cy), (cx, cy)), strict=True
    ):
        x1, y1 = max(left, 0), max(top, 0)
        x2, y2 = min(left + size, 2 * size), min(top + size, 2 * size)
        canvas[y1:y2, x1:x2] = tile.image[y1 - top : y2 - top, x1 - left : x2 - left]
        placed.append(replace(tile, boxes=tile.boxes + np.array([left, top, left, top])))
    joined = concatenate(placed, canvas)
    return clip_boxes(joined, 2 * size, 2 * size)


def clip_boxes(sample: Labelled, width: int, height: int) -> Labelled:
    """Boxes clipped to the image; those left without area dropped."""
    boxes = sample.boxes.copy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    clipped = replace(sample, boxes=boxes)
    return clipped.select(box_areas(boxes) > 0)


def affine_matrix(
    in_size: int,
    out_size: int,
    angle: float = 0.0,
    scale: float = 1.0,
    shear: tuple[float, float] = (0.0, 0.0),
    centre: tuple[float, float] = (0.5, 0.5),
) -> np.ndarray:
    """(3, 3) input -> output pixel map: the input's centre to the origin, rotation by `angle`
    degrees (counter-clockwise as seen) with `scale`, shear of (x, y) `shear` degrees, then
    the origin to `centre` (fractions of the output side). Identity for in = out and defaults."""
    to_origin = np.array([[1, 0, -in_size / 2], [0, 1, -in_size / 2], [0, 0, 1]], dtype=np.float64)
    radians = math.radians(angle)
    cos, sin = math.cos(radians) * scale, math.sin(radians) * scale
    rotate = np.array([[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]])
    shear_x, shear_y = (math.tan(math.radians(value)) for value in shear)
    sheared = np.array([[1, shear_x, 0], [shear_y, 1, 0], [0, 0, 1]])
    to_centre = np.array([[1, 0, centre[0] * out_size], [0, 1, centre[1] * out_size], [0, 0, 1]])
    return to_centre @ sheared @ rotate @ to_origin


def warp_affine(sample: Labelled, matrix: np.ndarray, out_size: int, scale: float) -> Labelled:
    """The image warped by `matrix` onto an out_size square (bilinear, grey outside); each box
    becomes the box enclosing its 4 transformed corners, clipped to the output, and is kept by
    `box_candidates` (full areas times scale squared)."""
    height, width = sample.image.shape[:2]
    if (width, height) == (out_size, out_size) and np.allclose(matrix, np.eye(3), atol=1e-12):
        return sample
    # OpenCV puts pixel centres at whole coordinates: shift by half a pixel on both sides
    centred = matrix[:2].copy()
    centred[:, 2] += 0.5 * centred[:, :2].sum(axis=1) - 0.5
    image = cv2.warpAffine(
        sample.image,
        centred,
        (out_size, out_size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=LETTERBOX_FILL,
    )
    corners = sample.boxes[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 4, 2)  # (N, 4, xy)
    moved = corners @ matrix[:2, :2].T + matrix[:2, 2]
    boxes = np.concatenate((moved.min(axis=1), moved.max(axis=1)), axis=1).reshape(-1, 4)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, out_size)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, out_size)
    warped = Labelled(image, boxes, sample.class_ids, sample.full_areas * scale**2)
    return warped.select(box_candidates(boxes, warped.full_areas))


def box_candidates(boxes: np.ndarray, full_areas: np.ndarray) -> np.ndarray:
    """(N,) bool: boxes wider and taller than MIN_BOX_PX, less elongated than MAX_ASPECT, with
    more than MIN_AREA_KEPT of `full_areas` left."""
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    aspect = np.maximum(width / np.maximum(height, 1e-9), height / np.maximum(width, 1e-9))
    return (
        (width > MIN_BOX_PX)
        & (height > MIN_BOX_PX)
        & (aspect < MAX_ASPECT)
        & (width * height > MIN_AREA_KEPT * full_areas)
    )


def hsv_jitter(image: np.ndarray, hue: float, saturation: float, value: float) -> np.ndarray:
    """Turn the hue by `hue` turns and multiply saturation and value by their gains (clipped).

    Value (the top channel) and saturation ((top - channel) / top) change exactly as in HSV,
    each channel becoming (top - saturation x (top - channel)) x value, rounded; the hue turns
    as a rotation of each colour about the grey axis, which is HSV's hue turn for thirds of a
    turn (red to green) and within a few levels of it for the small turns of training.
    """
    if hue:
        image = cv2.transform(image, hue_rotation(hue))
    channels = cv2.split(image)
    top = cv2.max(cv2.max(channels[0], channels[1]), channels[2])
    top_weight = (1 - saturation) * value
    return cv2.merge(
        [cv2.addWeighted(channel, saturation * value, top, top_weight, 0.0) for channel in channels]
    )


def hue_rotation(turns: float) -> np.ndarray:
    """(3, 3) float32: the rotation of RGB colours about the grey axis (1, 1, 1) by `turns`."""
    angle = 2 * math.pi * turns
    cos, sin = math.cos(angle), math.sin(angle)
    third, root = (1 - cos) / 3, math.sqrt(1 / 3) * sin
    return np.array(
        [
            [cos + third, third - root, third + root],
            [third + root, cos + third, third - root],
            [third - root, third + root, cos + third],
        ],
        dtype=np.float32,
    )


def mixup(first: Labelled, second: Labelled, ratio: float) -> Labelled:
    """Pixels `ratio` x first + (1 - ratio) x second (rounded), the objects of both."""
    blend = first.image.astype(np.float32) * ratio + second.image.astype(np.float32) * (1 - ratio)
    return concatenate([first, second], np.rint(blend).astype(np.uint8))


def paste_objects(
    target: Labelled, donor: Labelled, chosen: np.ndarray, corners: np.ndarray
) -> Labelled:
    """Copy the pixels of the donor's `chosen` boxes (each box's whole-pixel cover) onto the
    target with their top-left pixels at `corners` (K, 2) (x, y), in order; the pasted boxes are
    appended, and every object then covered above MAX_COVERED of its box by later patches is
    dropped."""
    image = target.image.copy()
    layer = np.zeros(image.shape[:2], dtype=np.int32)  # which paste shows at each pixel
    boxes = [target.boxes]
    for order, (index, (left, top)) in enumerate(zip(chosen, corners, strict=True), start=1):
        box = donor.boxes[index]
        x1, y1 = math.floor(box[0]), math.floor(box[1])
        x2, y2 = math.ceil(box[2]), math.ceil(box[3])
        image[top : top + y2 - y1, left : left + x2 - x1] = donor.image[y1:y2, x1:x2]
        layer[top : top + y2 - y1, left : left + x2 - x1] = order
        boxes.append((box + np.array([left - x1, top - y1] * 2))[None])
    pasted = Labelled(
        image,
        np.concatenate(boxes),
        np.concatenate((target.class_ids, donor.class_ids[chosen])),
        np.concatenate((target.full_areas, box_areas(donor.boxes[chosen]))),
    )
    owners = np.concatenate((np.zeros(len(target.boxes), int), np.arange(1, len(chosen) + 1)))
    covered = np.array(
        [_covered(layer, box, owner) for box, owner in zip(pasted.boxes, owners, strict=True)]
    )
    return pasted.select(covered <= MAX_COVERED)


def _covered(layer: np.ndarray, box: np.ndarray, owner: int) -> float:
    """The fraction of the box's whole pixels that later pastes (layer > owner) cover."""
    x1, y1 = math.floor(box[0]), math.floor(box[1])
    x2, y2 = math.ceil(box[2]), math.ceil(box[3])
    region = layer[y1:y2, x1:x2]
    return float((region > owner).mean()) if region.size else 1.0
