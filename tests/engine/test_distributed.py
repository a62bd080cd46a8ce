"""Two CPU processes under torchrun (gloo on loopback): each rank reads its own half of every
epoch, DistributedDataParallel keeps the ranks in step, and training moves the weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def test_two_process_ddp_reads_disjoint_halves_and_ends_with_identical_trained_weights(
    tmp_path: Path,
):
    worker = Path(__file__).with_name("ddp_worker.py")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--standalone",  # rendezvous on a free port the OS picks: no port to collide on
        "--local-addr",
        "127.0.0.1",  # so MASTER_ADDR is loopback, not whatever the host name resolves to
        str(worker),
        str(tmp_path),
    ]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]

    records = [json.loads((tmp_path / f"rank{r}_reads.json").read_text()) for r in (0, 1)]
    assert [record["master_addr"] for record in records] == ["127.0.0.1", "127.0.0.1"]
    # 2 epochs x 2 steps x batch 4 over a fixed set of 8 images: per epoch each rank loads 4,
    # the two halves are disjoint and together are the whole set.
    reads0, reads1 = (record["reads"] for record in records)
    assert sorted(reads0) == sorted(reads1) == ["0", "1"]
    for epoch in ("0", "1"):
        halves = (reads0[epoch], reads1[epoch])
        assert len(halves[0]) == len(halves[1]) == 4, (epoch, halves)
        assert not set(halves[0]) & set(halves[1]), (epoch, halves)
        assert sorted(halves[0] + halves[1]) == list(range(8)), (epoch, halves)

    init = load_file(str(tmp_path / "rank0_init.safetensors"))
    rank0 = load_file(str(tmp_path / "rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "rank1.safetensors"))
    assert init.keys() == rank0.keys() == rank1.keys()
    for name in rank0:
        # different data on each rank, yet the same weights: the gradients were averaged
        assert torch.equal(rank0[name], rank1[name]), name
        if name.endswith("num_batches_tracked"):
            assert rank0[name].item() == 4, name  # 2 epochs x 2 training steps, each rank
    parameters = [name for name in rank0 if not name.endswith(BUFFERS)]
    unchanged = {name for name in parameters if torch.equal(rank0[name], init[name])}
    # Training moved every weight that had a gradient: all but the box heads of the levels
    # whose big seed anchors (sizes 0.75, 0.5) matched none of these small objects.
    assert "box_20x20.weight" not in unchanged
    assert {name.split(".")[0] for name in unchanged} <= {
        f"box_{level}" for level in ("10x10", "5x5", "3x3", "1x1")
    }
    init1 = load_file(str(tmp_path / "rank1_init.safetensors"))
    assert all(torch.equal(init[name], init1[name]) for name in init)

    # rank 0 alone wrote the run folder
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ddp",
        "rank0.safetensors",
        "rank0_init.safetensors",
        "rank0_reads.json",
        "rank1.safetensors",
        "rank1_init.safetensors",
        "rank1_reads.json",
    ]
    assert (tmp_path / "ddp" / "weights" / "last.safetensors").is_file()
    assert len((tmp_path / "ddp" / "results.csv").read_text().splitlines()) == 3
