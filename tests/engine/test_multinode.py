"""Training beyond one launch: two torchrun "nodes" on 127.0.0.1 (c10d rendezvous, gloo) train
the weights one launch of two processes trains, and a worker killed with SIGKILL mid-epoch makes
torchrun restart the group, which resumes the run from its last epoch on its own (no --resume)
to the same weights."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import TINY_FIVE_LEVEL_SSD_SPEC, TINY_TRAINING_OVERRIDES
from onestage.checkpoint import load_weights
from onestage.engine.run_folder import read_results

EPOCHS = 3
OVERRIDES = {**TINY_TRAINING_OVERRIDES, "epochs": EPOCHS, "steps": 24, "batch": 4}
ENV = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}  # loopback: torchrun's --local-addr and gloo's
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--local-addr", "127.0.0.1"]
WAIT_S = 300


def train_command(spec: Path, project: Path, name: str) -> list[str]:
    """`-m onestage train` of the tiny spec, as torchrun's module to run."""
    options = [f"{key}={value}" for key, value in OVERRIDES.items()]
    return ["-m", "onestage", "train", "--model", str(spec), "--recipe", "seed",
            "--project", str(project), "--name", name, *options]  # fmt: skip


def last_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_weights(run_dir / "weights" / "last.safetensors")[0]


def assert_same_weights(run_dir: Path, reference: dict[str, torch.Tensor]) -> None:
    weights = last_weights(run_dir)
    assert weights.keys() == reference.keys()
    for name, tensor in reference.items():
        assert torch.equal(weights[name], tensor), (run_dir, name)
    epochs = [row["epoch"] for row in read_results(run_dir / "results.csv")]
    assert epochs == list(range(1, EPOCHS + 1))


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(TINY_FIVE_LEVEL_SSD_SPEC, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reference(spec: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """The weights of one launch of two processes, uninterrupted."""
    project = tmp_path_factory.mktemp("reference")
    command = [*TORCHRUN, "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run(
        [*command, *train_command(spec, project, "run")],
        capture_output=True, text=True, timeout=WAIT_S, env=ENV,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return last_weights(project / "run")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_nodes_train_the_weights_of_one_launch_of_two_processes(spec, reference, tmp_path):
    endpoint = f"127.0.0.1:{free_port()}"
    node = [*TORCHRUN, "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
            "--rdzv-endpoint", endpoint, "--rdzv-id", "two-nodes"]  # fmt: skip
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "env": ENV}
    command = [*node, *train_command(spec, tmp_path, "run")]
    nodes = [subprocess.Popen(command, **pipes) for _ in range(2)]
    for launched in nodes:
        _, stderr = launched.communicate(timeout=WAIT_S)
        assert launched.returncode == 0, stderr[-3000:]
    assert_same_weights(tmp_path / "run", reference)


def workers_of(agent: subprocess.Popen) -> list[int]:
    """The process ids of torchrun's workers: the children of its agent process."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields[1]) == agent.pid:
            children.append(int(stat.parent.name))
    return children


def test_a_worker_killed_mid_epoch_costs_a_restart_and_the_run_resumes_itself(
    spec, reference, tmp_path
):
    command = [*TORCHRUN, "--standalone", "--nproc-per-node", "2", "--max-restarts", "1"]
    agent = subprocess.Popen(
        [*command, *train_command(spec, tmp_path, "run")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    state = tmp_path / "run" / "weights" / "last.state.safetensors"
    deadline = time.monotonic() + WAIT_S
    while not state.is_file():  # the first epoch's commit
        assert agent.poll() is None, agent.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no epoch ended"
        time.sleep(0.005)
    time.sleep(random.Random(28).uniform(0.0, 0.3))  # into the second epoch
    workers = workers_of(agent)
    assert len(workers) == 2, workers
    os.kill(random.Random(2).choice(workers), signal.SIGKILL)
    stdout, stderr = agent.communicate(timeout=WAIT_S)
    assert agent.returncode == 0, stderr[-3000:]
    assert "torchrun restart 1: resuming" in stdout, stdout[-2000:]
    assert_same_weights(tmp_path / "run", reference)
