"""A Keras-style model summary: layers in forward order, output shapes, parameters and GFLOPs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class SummaryRow:
    """One layer: its attribute name, class name, output shape per image (no batch dim), params."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int


@dataclass(frozen=True)
class ModelSummary:
    """Rows in forward order and the model's totals.

    Non-trainable parameters are frozen parameters plus floating-point buffers (BatchNorm running
    mean and variance), as Keras counts them. `gflops` is per image, 1 multiply-add = 2 FLOPs.
    """

    rows: tuple[SummaryRow, ...]
    total_params: int
    trainable_params: int
    non_trainable_params: int
    gflops: float


def _counted_tensors(module: nn.Module, *, recurse: bool) -> tuple[int, int]:
    """(trainable, non-trainable) element counts of a module's parameters and float buffers."""
    trainable = non_trainable = 0
    for parameter in module.parameters(recurse=recurse):
        if parameter.requires_grad:
            trainable += parameter.numel()
        else:
            non_trainable += parameter.numel()
    for buffer in module.buffers(recurse=recurse):
        if buffer.is_floating_point():
            non_trainable += buffer.numel()
    return trainable, non_trainable


def summarize(model: nn.Module, input_size: int = 320) -> ModelSummary:
    """Run one (1, 3, input_size, input_size) image through `model` in eval mode and describe it.

    Rows come from forward hooks on the leaf modules, in the order they run (a module run twice
    gives two rows). GFLOPs are counted by `torch.utils.flop_counter.FlopCounterMode`, which
    counts convolutions and matrix products only, a multiply-add as 2 FLOPs.
    """
    rows: list[SummaryRow] = []

    def record(name: str, module: nn.Module, output: torch.Tensor) -> None:
        trainable, non_trainable = _counted_tensors(module, recurse=False)
        shape = tuple(output.shape[1:])
        rows.append(SummaryRow(name, type(module).__name__, shape, trainable + non_trainable))

    handles = [
        module.register_forward_hook(
            lambda module, _inputs, output, name=name: record(name, module, output)
        )
        for name, module in model.named_modules()
        if name and next(module.children(), None) is None
    ]
    reference = next(model.parameters())
    image = torch.zeros(
        1, 3, input_size, input_size, device=reference.device, dtype=reference.dtype
    )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(image)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()

    trainable, non_trainable = _counted_tensors(model, recurse=True)
    return ModelSummary(
        rows=tuple(rows),
        total_params=trainable + non_trainable,
        trainable_params=trainable,
        non_trainable_params=non_trainable,
        gflops=counter.get_total_flops() / 1e9,
    )


def format_summary(summary: ModelSummary) -> str:
    """A plain-text table, ending with the parameter totals and the GFLOPs per image."""
    header = ("Layer (type)", "Output shape", "Param #")
    cells = [
        (f"{row.name} ({row.kind})", str(row.output_shape), f"{row.params:,}")
        for row in summary.rows
    ]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(3)]

    def line(cell: tuple[str, str, str]) -> str:
        return f"{cell[0]:<{widths[0]}}  {cell[1]:<{widths[1]}}  {cell[2]:>{widths[2]}}"

    rule = "-" * (sum(widths) + 4)
    return "\n".join(
        [
            line(header),
            rule,
            *(line(cell) for cell in cells),
            rule,
            f"Total params: {summary.total_params:,}",
            f"Trainable params: {summary.trainable_params:,}",
            f"Non-trainable params: {summary.non_trainable_params:,}",
            f"GFLOPs per image: {summary.gflops:.2f}",
        ]
    )
