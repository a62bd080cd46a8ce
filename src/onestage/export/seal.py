"""A content hash over every byte of an exported model's files, kept inside the files.

An exported file (an .onnx file, or an OpenVINO .xml with its .bin) carries onestage's metadata
as JSON, with "file_sha256" first written as PLACEHOLDER (its "content_sha256", inherited from
the weights, is the hash of the weight tensors it was exported from). `seal` then computes the
SHA-256 of the files' bytes as they are and writes that digest over the placeholder (same
length, so no other byte moves). `check_seal` reverses it on load: the digest found in the
files is put back to the placeholder and the hash recomputed, so a flipped byte anywhere in the
graph, the weights or the metadata is seen before a runtime reads the file.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from onestage.errors import OnestageError
from onestage.limits import MAX_EXPORT_BYTES, read_bytes_within

HASH_KEY = "file_sha256"
PLACEHOLDER = "0" * 64
# The key and its value as they appear in the files: raw JSON in ONNX metadata_props, JSON with
# XML-escaped quotes in an OpenVINO IR's runtime info.
_QUOTE = rb'(?:"|&quot;)'
_DIGEST_PATTERN = re.compile(HASH_KEY.encode() + _QUOTE + rb"\s*:\s*" + _QUOTE + rb"([0-9a-f]{64})")


def files_of(path: Path) -> list[Path]:
    """The files an exported model is made of: `path`, and its .bin for an OpenVINO .xml."""
    return [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]


def seal(paths: Sequence[Path]) -> str:
    """Write the digest of the files' bytes over the placeholder in `paths[0]` (in place: for
    staged files not yet under their final name); returns the digest."""
    head = paths[0].read_bytes()
    start, end = _digest_span(head, paths[0], PLACEHOLDER)
    digest = _digest([head, *(path.read_bytes() for path in paths[1:])])
    paths[0].write_bytes(head[:start] + digest.encode() + head[end:])
    return digest


def seal_bytes(data: bytes, source: str | Path) -> bytes:
    """`data` (one serialised file with the placeholder in it) with its digest in place."""
    start, end = _digest_span(data, source, PLACEHOLDER)
    return data[:start] + _digest([data]).encode() + data[end:]


def check_seal(path: Path) -> bool:
    """Verify the exported model at `path` against the digest it carries: a mismatch is a
    one-line error naming `path`; returns False when the files carry no digest (an older
    export, or one whose digest was itself damaged: the caller decides which)."""
    paths = files_of(path)
    for part in paths[1:]:
        if not part.is_file():
            raise OnestageError(f"{path}: its weights file {part.name} is missing")
    head = read_bytes_within(path, MAX_EXPORT_BYTES)
    found = [match.span(1) for match in _DIGEST_PATTERN.finditer(head)]
    if not found:
        return False
    if len(found) > 1:
        raise OnestageError(f"{path}: more than one content hash in the file (the file is corrupt)")
    (start, end) = found[0]
    carried = head[start:end].decode()
    restored = head[:start] + PLACEHOLDER.encode() + head[end:]
    rest = [read_bytes_within(part, MAX_EXPORT_BYTES) for part in paths[1:]]
    if _digest([restored, *rest]) != carried:
        raise OnestageError(
            f"{path}: its content does not match its content hash (the file is corrupt)"
        )
    return True


def _digest_span(data: bytes, source: str | Path, value: str) -> tuple[int, int]:
    matches = [m.span(1) for m in _DIGEST_PATTERN.finditer(data) if m.group(1) == value.encode()]
    if len(matches) != 1:
        raise OnestageError(f"{source}: expected one {HASH_KEY} placeholder, found {len(matches)}")
    return matches[0]


def _digest(parts: Sequence[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()
