"""Two CPU processes under torchrun (gloo): DistributedDataParallel keeps the ranks in step."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file


def test_two_process_ddp_ends_with_identical_weights(tmp_path: Path):
    worker = Path(__file__).with_name("ddp_worker.py")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--standalone",
        str(worker),
        str(tmp_path),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = load_file(str(tmp_path / "rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "rank1.safetensors"))
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    # rank 0 alone wrote the run folder, and training moved the weights away from the init
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ddp",
        "rank0.safetensors",
        "rank1.safetensors",
    ]
    assert (tmp_path / "ddp" / "weights" / "last.safetensors").is_file()
    assert len((tmp_path / "ddp" / "results.csv").read_text().splitlines()) == 3
