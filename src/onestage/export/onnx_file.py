"""An exported ONNX file's names and onestage metadata, written and read without torch.

The graph's input is INPUT_NAME (B, 3, S, S) float32 in [0, 1], its output OUTPUT_NAME
(B, A, values), the head's raw output (`onnx_graph` exports it). The metadata (JSON) sits in the
model's `metadata_props` under METADATA_KEY.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from onestage.errors import OnestageError, first_line
from onestage.parsing import MalformedText, parse_json

INPUT_NAME = "images"
OUTPUT_NAME = "preds"
METADATA_KEY = "onestage"
# A whole-graph file (`export.whole_graph`) says so in its metadata under WHOLE_GRAPH_KEY; its
# outputs are BOXES_NAME, SCORES_NAME and SELECTED_NAME, and NMS_INPUTS its NMS settings.
WHOLE_GRAPH_KEY = "nms_in_graph"
BOXES_NAME = "boxes"
SCORES_NAME = "scores"
SELECTED_NAME = "selected"
NMS_INPUTS = ("max_det", "iou", "conf")
# What an exported file must say to be read without its torch model.
REQUIRED_KEYS = ("model", "class_names", "input_size", "anchors", "coding")


def with_metadata(model_bytes: bytes, metadata: dict[str, Any]) -> bytes:
    """`model_bytes` (serialised ONNX) with `metadata` as JSON under METADATA_KEY."""
    import onnx

    proto = onnx.load_from_string(model_bytes)
    kept = [entry for entry in proto.metadata_props if entry.key != METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    return proto.SerializeToString()


def metadata_from_map(props: dict[str, str], source: str | Path) -> dict[str, Any]:
    """onestage's metadata from a model's key -> value metadata map, with clear errors."""
    if METADATA_KEY not in props:
        raise OnestageError(f"{source}: not a onestage export (no onestage metadata)")
    try:
        metadata = parse_json(props[METADATA_KEY])
    except MalformedText as error:
        raise OnestageError(f"{source}: onestage metadata is not valid JSON ({error})") from None
    if not isinstance(metadata, dict):
        raise OnestageError(f"{source}: onestage metadata is not a JSON object")
    missing = [key for key in REQUIRED_KEYS if key not in metadata]
    if missing:
        raise OnestageError(f"{source}: onestage metadata lacks {', '.join(missing)}")
    return metadata


def read_onnx_metadata(path: Path) -> dict[str, Any]:
    """onestage's metadata from an existing ONNX file, with a one-line error for a file that
    is no ONNX model, one whose tensors live in other files (external data: a runtime would
    read whatever files they name) or one without onestage metadata."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, OSError, ValueError) as error:
        raise OnestageError(f"{path}: not a valid ONNX model ({first_line(error)})") from None
    if not proto.graph.node:
        raise OnestageError(f"{path}: not a valid ONNX model (no graph)")
    if any(_is_external(tensor) for tensor in _tensors(proto.graph)):
        raise OnestageError(
            f"{path}: its tensors are kept in other files (ONNX external data), which onestage "
            "never reads; onestage's exports hold every tensor in the file"
        )
    return metadata_from_map({entry.key: entry.value for entry in proto.metadata_props}, path)


def _tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of an ONNX graph: initializers, sparse ones, and constants in node
    attributes, subgraphs (If, Loop, Scan bodies) included."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        for attribute in node.attribute:
            yield from (attribute.t, *attribute.tensors)
            for subgraph in (attribute.g, *attribute.graphs):
                yield from _tensors(subgraph)


def _is_external(tensor: Any) -> bool:
    """Whether a TensorProto names another file for its data."""
    from onnx import TensorProto

    return tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data) > 0
