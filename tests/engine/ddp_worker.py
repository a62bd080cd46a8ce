"""Run by test_distributed.py under torchrun: trains briefly on a fixed synthetic set and saves
this rank's initial and final weights and the training-set indices this rank read, per epoch."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from safetensors.torch import save_file

from onestage.config import make_config
from onestage.data.dataset import SyntheticDataset
from onestage.engine.sampler import EpochSampler
from onestage.engine.trainer import Trainer

out_dir = Path(sys.argv[1])
rank = int(os.environ["RANK"])
config = make_config(
    "seed",
    overrides={
        "epochs": 2,
        "steps": 2,
        "batch": 4,
        "threads": 1,
        "hflip": 0.5,
        "synthetic_objects": "1-3",
        "train_images": 8,  # a fixed set of one epoch's size: the shuffled, rank-sliced path
        "val_images": 4,
        "project": str(out_dir),
        "name": "ddp",
    },
)

reads: dict[int, list[int]] = {}  # epoch -> training-set indices this rank loaded, in order
epoch_now = {"epoch": -1}  # data is loaded in this process (no workers): the sampler's epoch
load_item = SyntheticDataset.__getitem__
set_sampler_epoch = EpochSampler.set_epoch


def recording_getitem(self: SyntheticDataset, index: int):
    reads.setdefault(epoch_now["epoch"], []).append(int(index))
    return load_item(self, index)


def recording_set_epoch(self: EpochSampler, epoch: int) -> None:
    epoch_now["epoch"] = epoch
    set_sampler_epoch(self, epoch)


SyntheticDataset.__getitem__ = recording_getitem
EpochSampler.set_epoch = recording_set_epoch


def save_state(state: dict, path: Path) -> None:
    save_file(
        {name: tensor.detach().clone().contiguous() for name, tensor in state.items()}, str(path)
    )


trainer = Trainer(config)
save_state(trainer.model.state_dict(), out_dir / f"rank{rank}_init.safetensors")
result = trainer.run()
save_state(result.model.state_dict(), out_dir / f"rank{rank}.safetensors")
(out_dir / f"rank{rank}_reads.json").write_text(
    json.dumps({"master_addr": os.environ.get("MASTER_ADDR"), "reads": reads})
)
