"""Elastic training under torchrun: when `torchrun --max-restarts N` restarts the worker group
after a worker died, every new worker finds the run its job started and resumes it from its last
epoch commit, with no `--resume` typed.

A run started under torchrun carries `elastic.json` (torchrun's job id, TORCHELASTIC_RUN_ID, and
a fingerprint of the config the command built). A restarted attempt (TORCHELASTIC_RESTART_COUNT
> 0) looks in the config's project folder for the newest run with both: every node reads the
same folder, so it must be on a file system they share.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from onestage.config import TrainConfig
from onestage.engine.run_folder import resume_config
from onestage.errors import OnestageError
from onestage.fileio import atomic_write_text
from onestage.limits import read_text_within

MARKER = "elastic.json"


def job_id() -> str | None:
    """torchrun's id of this job (the same in every attempt), or None outside torchrun."""
    return os.environ.get("TORCHELASTIC_RUN_ID")


def restart_count() -> int:
    """How many times torchrun has restarted this worker group (0: the first attempt)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def config_fingerprint(config: TrainConfig) -> str:
    """A SHA-256 of the config as a command built it (before training fills in defaults),
    but for the run folder's name (a restart may have had to name its folder)."""
    settings = {k: v for k, v in config.to_dict().items() if k not in ("name", "exist_ok")}
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def mark_run(run_dir: Path, fingerprint: str) -> None:
    """Record in a new run's folder which torchrun job started it (nothing outside torchrun)."""
    job = job_id()
    if job is not None:
        marker = {"job": job, "config": fingerprint}
        atomic_write_text(run_dir / MARKER, json.dumps(marker) + "\n")


def continue_restarted_job(
    config: TrainConfig, overrides: dict[str, Any]
) -> tuple[TrainConfig, Path | None, str | None]:
    """(config, run to resume, a line to say) for a training command: in a restarted attempt of
    a torchrun job, the job's run resumed from its last epoch commit with `overrides` (as
    --resume), or started again in its folder when it had none; otherwise `config` as it is."""
    run = run_of_restarted_job(config)
    if run is None:
        return config, None, None
    said = f"torchrun restart {restart_count()}: "
    if (run / "weights" / "last.state.safetensors").is_file():
        return resume_config(run, overrides), run, said + f"resuming {run} from its last epoch"
    again = replace(config, project=str(run.parent), name=run.name, exist_ok=True)
    return again, None, said + f"{run} had no epoch done; starting it again"


def run_of_restarted_job(config: TrainConfig) -> Path | None:
    """The run folder this torchrun job started, when this is a restarted attempt of it (the
    newest, if the same command ran before under the same job id); None otherwise."""
    job = job_id()
    project = Path(config.project)
    if job is None or restart_count() == 0 or not project.is_dir():
        return None
    wanted = {"job": job, "config": config_fingerprint(config)}
    runs = [path.parent for path in project.glob(f"*/{MARKER}") if _marker(path) == wanted]
    return max(runs, key=lambda run: (run / MARKER).stat().st_mtime, default=None)


def _marker(path: Path) -> dict[str, str] | None:
    """A run's elastic marker, or None when it cannot be read."""
    try:
        loaded = json.loads(read_text_within(path, limit=4096))
    except (OSError, ValueError, OnestageError):  # unreadable, not JSON or UTF-8, too large
        return None
    return loaded if isinstance(loaded, dict) else None
