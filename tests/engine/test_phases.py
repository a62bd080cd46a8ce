"""The phase timer the profile benchmark reads, and the trainer's phases."""

from __future__ import annotations

import time
from pathlib import Path

from onestage.config import make_config
from onestage.engine.phases import NO_PHASES, STEP_PHASES, PhaseTimer, timed_iteration
from onestage.engine.trainer import Trainer


def slow_items(count: int, seconds: float):
    for item in range(count):
        time.sleep(seconds)
        yield item


def test_timed_iteration_charges_the_wait_for_each_item_to_its_phase():
    timer = PhaseTimer()
    assert list(timed_iteration(slow_items(3, 0.02), timer, "data")) == [0, 1, 2]
    assert 0.06 <= timer.seconds["data"] < 0.5
    with timer("data"):
        time.sleep(0.01)
    assert timer.seconds["data"] >= 0.07
    timer.reset()
    assert timer.seconds == {}
    assert list(timed_iteration(slow_items(2, 0.0), NO_PHASES, "data")) == [0, 1]


def test_the_trainer_times_every_phase_of_a_step(tmp_path: Path):
    overrides = {"steps": 2, "batch": 2, "val_every": 0, "project": str(tmp_path)}
    trainer = Trainer(make_config("seed", overrides=overrides))
    timer = PhaseTimer(trainer.device)
    trainer.phases = timer
    began = time.perf_counter()
    trainer._train_epoch(0)
    wall = time.perf_counter() - began

    assert set(timer.seconds) == set(STEP_PHASES)
    assert sum(timer.seconds.values()) <= wall
    assert timer.seconds["forward"] > 0 and timer.seconds["backward"] > 0
