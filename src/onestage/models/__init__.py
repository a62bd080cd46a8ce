"""Detector architectures by name or spec: `build_model("seed", num_classes=15)`.

Every model maps images (B, 3, H, W), float in [0, 1], to (B, A, values), one row per prior,
laid out as its head says (`heads`: SSD offsets and num_classes + 1 logits with background last
for anchor heads, DFL distances and num_classes logits for anchor-free ones). Priors are ordered
level by level (largest feature map first), cell by cell (row-major), then anchor within the
cell. Each model exposes `feature_sizes`, its head's attributes and the `anchor_config` and
`score_mode` it was built with (`build_model(..., anchors=, score_mode=)`), from which
`onestage.priors.codings` makes its priors in the same order. `spec` parses specs and
`spec_model` builds them; `recorded` rebuilds the model a weights file records.
"""

from __future__ import annotations

from onestage.models.blocks import BLOCKS, register_block
from onestage.models.fuse import fused_for_inference
from onestage.models.plugins import Plugin, load_plugins
from onestage.models.registry import (
    MODELS,
    build_built_in,
    build_model,
    is_spec_file,
    model_class,
    model_names,
    register_model,
)
from onestage.models.seed import SeedModel  # registers "seed-reference"
from onestage.models.spec import Layer, Spec, load_spec, parse_spec, spec_names
from onestage.models.spec_model import SpecModel, build_spec_model
from onestage.models.summary import summarize
from onestage.priors.numpy_codings import BOX_CODINGS, output_values

__all__ = [
    "BLOCKS",
    "BOX_CODINGS",
    "MODELS",
    "Layer",
    "Plugin",
    "SeedModel",
    "Spec",
    "SpecModel",
    "build_built_in",
    "build_model",
    "build_spec_model",
    "fused_for_inference",
    "is_spec_file",
    "load_plugins",
    "load_spec",
    "model_class",
    "model_names",
    "output_values",
    "parse_spec",
    "register_block",
    "register_model",
    "spec_names",
    "summarize",
]
