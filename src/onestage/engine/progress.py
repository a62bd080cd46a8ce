"""What the trainer reports while it runs: the protocol, a silent reporter, and one that stops."""

from __future__ import annotations

from typing import Protocol


class TrainProgress(Protocol):
    """What the trainer reports while it runs (the CLI draws progress bars from it)."""

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None: ...

    def step(self, parts: dict[str, float], lr: float, images_per_s: float) -> None: ...

    def end_epoch(self, row: dict[str, float]) -> None: ...

    def message(self, text: str) -> None: ...


class SilentProgress:
    """Reports nothing (the default for library use and tests)."""

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        pass

    def step(self, parts: dict[str, float], lr: float, images_per_s: float) -> None:
        pass

    def end_epoch(self, row: dict[str, float]) -> None:
        pass

    def message(self, text: str) -> None:
        pass


class InterruptAfterEpoch(SilentProgress):
    """Raises KeyboardInterrupt once `epoch` (1-based) has ended and been saved, as Ctrl-C or a
    lost machine would then: for checks that `--resume` continues exactly. Keeps the trainer's
    messages in `messages`."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.messages: list[str] = []

    def end_epoch(self, row: dict[str, float]) -> None:
        if row["epoch"] == self.epoch:
            raise KeyboardInterrupt

    def message(self, text: str) -> None:
        self.messages.append(text)
