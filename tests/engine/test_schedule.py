"""Learning-rate schedules: hand-worked warm-up and cosine values, and extending a run."""

from __future__ import annotations

import itertools
import math

import pytest

from onestage.config import make_config
from onestage.engine.schedule import (
    CosineSegment,
    ScheduleSettings,
    describe_extension,
    extend_segments,
    initial_segments,
    learning_rate,
)
from onestage.engine.train_settings import schedule_for


def recipe(name: str, **overrides: object) -> ScheduleSettings:
    """The schedule of a recipe, with config overrides."""
    return schedule_for(make_config(name, overrides=overrides))


def test_fast_recipe_warm_up_and_cosine_by_hand():
    config = recipe("fast", epochs=10)  # lr 2e-3, min 1e-5, 50 warm-up
    steps = 200  # per epoch: 2,000 steps in all

    def cosine(step: int) -> float:
        return 1e-5 + (2e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * step / 2000))

    assert learning_rate(config, 0, steps) == pytest.approx(cosine(0) / 50, rel=1e-12)
    assert learning_rate(config, 1, steps) == pytest.approx(cosine(1) * 2 / 50, rel=1e-12)
    assert learning_rate(config, 49, steps) == pytest.approx(cosine(49), rel=1e-12)
    assert learning_rate(config, 50, steps) == pytest.approx(cosine(50), rel=1e-12)
    assert learning_rate(config, 1000, steps) == pytest.approx((2e-3 + 1e-5) / 2, rel=1e-12)
    assert learning_rate(config, 1999, steps) == pytest.approx(1.00012275e-5, rel=1e-7)
    assert learning_rate(config, 5000, steps) == 1e-5  # past the end: the floor


def test_step_schedule_ignores_the_number_of_epochs():
    short = recipe("seed", epochs=10)
    long = recipe("seed", epochs=50)
    for step in (0, 499, 500, 999, 4_000):
        assert learning_rate(short, step, 100) == learning_rate(long, step, 100)


def test_extending_a_finished_cosine_run_keeps_the_rate_continuous():
    # The case: fast recipe, 10 epochs (2,000 steps) resumed as 20.
    config = recipe("fast", epochs=20)
    segments = extend_segments(initial_segments(10, 200), 2000, 20, 200)
    before = learning_rate(config, 1999, 200, initial_segments(10, 200))
    after = learning_rate(config, 2000, 200, segments)
    assert before == pytest.approx(1.0e-5, rel=1e-3)
    assert after == pytest.approx(1.0e-5, rel=1e-9)  # not 1.005e-3
    # the steps already taken keep their rates
    for step in (0, 60, 1000, 1999):
        assert learning_rate(config, step, 200, segments) == learning_rate(
            recipe("fast", epochs=10), step, 200
        )


def test_extending_mid_run_follows_the_rest_of_the_cosine_over_the_new_length():
    config = recipe("fast", epochs=20, warmup_steps=0)
    # interrupted at step 500 of 1,000 (halfway: the rate is halfway), extended to 2,000 steps
    segments = extend_segments(initial_segments(10, 100), 500, 20, 100)
    assert segments[-1] == CosineSegment(500, 0.5, 2000)
    halfway = (2e-3 + 1e-5) / 2
    assert learning_rate(config, 499, 100, segments) > halfway
    assert learning_rate(config, 500, 100, segments) == pytest.approx(halfway, rel=1e-12)
    # the second half of the cosine now spans 1,500 steps: three quarters at step 1,250
    expected = 1e-5 + (2e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 0.75))
    assert learning_rate(config, 1250, 100, segments) == pytest.approx(expected, rel=1e-12)
    assert learning_rate(config, 1999, 100, segments) == pytest.approx(1e-5, rel=1e-4)
    rates = [learning_rate(config, s, 100, segments) for s in range(400, 2000)]
    assert all(a >= b for a, b in itertools.pairwise(rates))  # never jumps up


def test_a_second_extension_keeps_the_first():
    first = extend_segments(initial_segments(10, 100), 500, 20, 100)
    second = extend_segments(first, 1500, 30, 100)
    assert second[:2] == first
    assert second[-1].start_step == 1500
    assert second[-1].start_progress == pytest.approx(first[-1].progress(1500))


def test_the_extension_line_says_what_happens():
    cosine = recipe("fast", epochs=20)
    line = describe_extension(cosine, 10, 2000, 200, 1e-5)
    assert line.startswith("extending the run from 10 to 20 epochs (2000 more steps)")
    assert "continues from 1.000e-05 at step 2000" in line and "already reached min_lr" in line
    step = recipe("seed", epochs=30)
    assert "step schedule goes on" in describe_extension(step, 20, 2000, 100, 4.1e-5)
