"""Size bounds on the files onestage reads, each written once, and reads that keep to them.

A file over its bound is refused in one line naming it (a `DataError`) after at most the bound
plus one byte is read, so no input, a special file such as /dev/zero included, makes onestage
take unbounded memory. Images have their own bound, in pixels (`onestage.data.images`).
"""

from __future__ import annotations

from pathlib import Path

from onestage.errors import DataError

MEGABYTE = 1024 * 1024
MAX_WEIGHTS_BYTES = 2048 * MEGABYTE  # weights and training state (a YOLOv8-x: 131 MB in fp32)
MAX_EXPORT_BYTES = 2048 * MEGABYTE  # an exported model's file (protobuf's own limit is 2 GB)
MAX_ANNOTATIONS_BYTES = 1024 * MEGABYTE  # a COCO annotation file (COCO train2017's: 448 MB)
MAX_TEXT_BYTES = 64 * MEGABYTE  # YAML configs and specs, label files, VOC XML, lists, CSV
MAX_PLUGIN_BYTES = 4 * MEGABYTE  # a plugin's Python source
MAX_INPUT_SIZE = 4096  # pixels: the side of a model's square input (specs, weights, exports)


def read_bytes_within(path: Path, limit: int) -> bytes:
    """The bytes of the file at `path`, refused in one line when there are more than `limit`.
    OSError (no such file, a folder) is left to the caller, which knows what the file is."""
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise DataError(path, f"larger than the {_size(limit)} onestage reads for such a file")
    return data


def read_text_within(path: Path, limit: int = MAX_TEXT_BYTES) -> str:
    """The file at `path` as UTF-8 text with universal newlines (as `Path.read_text`), within
    `limit` bytes; UnicodeDecodeError and OSError are left to the caller."""
    text = read_bytes_within(path, limit).decode("utf-8")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _size(limit: int) -> str:
    return f"{limit / MEGABYTE:g} MB" if limit >= MEGABYTE else f"{limit:,} bytes"
