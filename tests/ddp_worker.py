"""Run by test_distributed.py under torchrun: trains briefly and saves this rank's weights."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from safetensors.torch import save_file

from onestage.config import make_config
from onestage.engine.trainer import train

out_dir = Path(sys.argv[1])
config = make_config(
    "seed",
    overrides={
        "epochs": 2,
        "steps": 2,
        "batch": 4,
        "threads": 1,
        "hflip": 0.5,
        "synthetic_objects": "1-3",
        "val_images": 4,
        "project": str(out_dir),
        "name": "ddp",
    },
)
result = train(config)
rank = int(os.environ["RANK"])
state = {name: tensor.contiguous() for name, tensor in result.model.state_dict().items()}
save_file(state, str(out_dir / f"rank{rank}.safetensors"))
