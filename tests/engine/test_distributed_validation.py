"""Validation across ranks (`engine.validation.validate` under torchrun): each of two processes
detects its share of the validation set, rank 0 merges the detections and scores them: the
numbers of one process scoring the whole set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_two_ranks_score_their_shares_as_one_process_scores_the_set(tmp_path: Path):
    worker = Path(__file__).with_name("val_worker.py")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                "--standalone", "--local-addr", "127.0.0.1"]  # fmt: skip
    command = [*torchrun, str(worker), str(tmp_path), "11"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    main, other = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert main["world_size"] == other["world_size"] == 2
    assert other["row"] == {}  # rank 0 alone scores
    assert main["row"] == main["alone"]
    assert main["row"]["val/mAP50"] > 0.5  # real detections, not an empty agreement
