"""Pieces every format shares: problem collection, image checks, image copies, box clipping."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from onestage.data.images import load_image_rgb, read_image_size
from onestage.data.records import (
    BOX_TOLERANCE_PX,
    CLIP_TOLERANCE,
    Box,
    ImageRecord,
    LabelFix,
    box_problem,
)
from onestage.errors import DataError
from onestage.fileio import WriteError


class Problems:
    """Where readers report bad input and lenient box fixes.

    Without `skip_invalid` the first error raises; with it, all are kept in `errors`. Unless
    `strict`, `fit_box` clips small overshoots; readers keep the fixes of the images they return
    in `fixes`.
    """

    def __init__(self, skip_invalid: bool, strict: bool = False) -> None:
        self.skip_invalid = skip_invalid
        self.strict = strict
        self.errors: list[DataError] = []
        self.fixes: list[LabelFix] = []

    def add(self, error: DataError) -> None:
        """Raise `error`, or keep it when invalid input is being skipped."""
        if not self.skip_invalid:
            raise error
        self.errors.append(error)

    def fit_box(
        self,
        box: Box,
        width: int,
        height: int,
        path: Path,
        *,
        line: int | None = None,
        field: str | None = None,
    ) -> tuple[Box | None, LabelFix | None]:
        """Absolute-pixel xyxy `box` checked against a width x height image, and the fix made.

        A box overshooting an edge by at most CLIP_TOLERANCE of the side comes back clipped
        (None, to be dropped, when under BOX_TOLERANCE_PX of width or height is left), unless
        `strict`. Raises DataError, located by `path` and `line` or `field`, for a bad box.
        """
        problem = box_problem(box, width, height)
        if problem is None:
            return box, None
        if self.strict or box_problem(box, width, height, CLIP_TOLERANCE) is not None:
            raise DataError(path, problem, line=line, field=field)
        x1, y1, x2, y2 = box
        clipped: Box | None = (
            min(max(x1, 0.0), float(width)),
            min(max(y1, 0.0), float(height)),
            min(max(x2, 0.0), float(width)),
            min(max(y2, 0.0), float(height)),
        )
        if min(clipped[2] - clipped[0], clipped[3] - clipped[1]) < BOX_TOLERANCE_PX:
            clipped = None
        return clipped, LabelFix(path, box, clipped, (width, height), line=line, field=field)

    def __len__(self) -> int:
        return len(self.errors)


def image_size(path: Path, *, verify: bool, max_pixels: int) -> tuple[int, int]:
    """(width, height) of an image: from the header, or from a full decode when `verify` is set."""
    if verify:
        height, width = load_image_rgb(path, max_pixels).shape[:2]
        return width, height
    return read_image_size(path, max_pixels)


def claim(claimed: dict[Path, Path], target: Path, image_path: Path) -> None:
    """Reserve the output file `target` for `image_path`; two different images may not share it."""
    other = claimed.setdefault(target, image_path)
    if other != image_path:
        raise DataError(target, f"both {other} and {image_path} would be written here; rename one")


def place_image(source: Path, dest: Path) -> None:
    """Copy `source` to `dest` (temporary file, then rename) unless it already is that file; a
    refused write (a full disk, a read-only folder) is a WriteError naming `dest`."""
    if dest.exists() and dest.resolve() == source.resolve():
        return
    if not source.is_file():
        raise DataError(source, "image file not found")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as error:
        raise WriteError(dest, error) from error
    os.close(fd)
    try:
        shutil.copy2(source, temp_name)
        os.replace(temp_name, dest)
    except BaseException as error:
        Path(temp_name).unlink(missing_ok=True)
        if isinstance(error, OSError) and str(error.filename) != str(source):
            raise WriteError(dest, error) from error
        raise


def clipped_boxes_xyxy(record: ImageRecord) -> np.ndarray:
    """Absolute-pixel xyxy boxes of `record` clipped to the image (reading allows 1e-3 px over)."""
    boxes = record.boxes_xyxy.copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, record.width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, record.height)
    return boxes
