"""A folder or a test set shared out over torchrun's processes, without torch: each process
(`Shard`, from torchrun's RANK and WORLD_SIZE) takes every world_size-th item from its rank, and
the processes hand their detections to rank 0 through files in a folder they share, so an
exported model shards in the torch-free install too."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from onestage.detections import ImageDetections
from onestage.fileio import atomic_write_text

WAIT_POLL_S = 0.5


@dataclass(frozen=True)
class Shard:
    """This process's share: every `world_size`-th item from `rank` (one process: 0 of 1);
    `job` tells this torchrun job's files from an earlier one's."""

    rank: int = 0
    world_size: int = 1
    job: str = "single"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def indices(self, count: int) -> range:
        """This shard's positions among `count` items."""
        return range(self.rank, count, self.world_size)

    @classmethod
    def from_environment(cls) -> Shard:
        """torchrun's RANK, WORLD_SIZE and job id (one process outside torchrun)."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        job = os.environ.get("TORCHELASTIC_RUN_ID", "torchrun")
        return cls(int(os.environ["RANK"]), world_size, job)


def hand_in(parts: Path, shard: Shard, detections: list[ImageDetections]) -> None:
    """This shard's detections (in its `indices` order) as one file in `parts`, atomically."""
    rows = [
        {
            "boxes": d.boxes_xyxy.tolist(),
            "scores": d.scores.tolist(),
            "classes": d.class_ids.tolist(),
        }
        for d in detections
    ]
    atomic_write_text(parts / f"rank{shard.rank}.{shard.job}.json", json.dumps(rows))


def collect(parts: Path, shard: Shard, count: int) -> list[ImageDetections]:
    """Rank 0: every shard's detections, once all are handed in, in the items' order."""
    files = [parts / f"rank{rank}.{shard.job}.json" for rank in range(shard.world_size)]
    while not all(path.is_file() for path in files):
        time.sleep(WAIT_POLL_S)  # torchrun stops the whole group if a process dies
    shares = []
    for path in files:
        rows = json.loads(path.read_text(encoding="utf-8"))
        shares.append(
            [ImageDetections(row["boxes"], row["scores"], row["classes"]) for row in rows]
        )
        path.unlink()
    return in_item_order(shares, count)


def in_item_order(shares: list[list[ImageDetections]], count: int) -> list[ImageDetections]:
    """Every rank's detections (its `Shard.indices` order, ranks in order) as one list in the
    order of the `count` items."""
    merged: list[ImageDetections | None] = [None] * count
    for rank, found in enumerate(shares):
        for index, image in zip(Shard(rank, len(shares)).indices(count), found, strict=True):
            merged[index] = image
    return merged
