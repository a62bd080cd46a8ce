"""The shared conftest: global state put back after every test, hypothesis derandomised in CI."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings


def test_conftest_puts_global_state_back_and_derandomises_hypothesis_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(Path(__file__).with_name("conftest.py").read_text())
    pytester.makepyfile(
        test_isolation="""
        import random

        import numpy as np
        import torch
        import torch._inductor.config as inductor_config
        from hypothesis import settings

        def state():
            return (
                torch.get_num_threads(),
                torch.get_rng_state().tolist(),
                np.random.get_state()[1].tolist(),
                random.getstate(),
                torch.get_default_dtype(),
                torch.is_grad_enabled(),
                inductor_config.freezing,
            )

        FOUND = []

        def test_1_changes_all_of_it():
            FOUND.append(state())
            torch.set_num_threads(3 - min(torch.get_num_threads(), 2))
            torch.manual_seed(123)
            np.random.seed(123)
            random.seed(123)
            torch.set_default_dtype(torch.float64)
            torch.set_grad_enabled(False)
            inductor_config.freezing = not inductor_config.freezing  # as accelerate() does
            assert all(a != b for a, b in zip(state(), FOUND[0]))

        def test_2_finds_it_as_test_1_did():
            assert state() == FOUND[0]

        def test_3_hypothesis_is_derandomised_without_deadline():
            assert settings.default.derandomize and settings.default.deadline is None
        """
    )
    profile = settings.get_current_profile_name()
    monkeypatch.setenv("CI", "true")
    monkeypatch.delenv("HYPOTHESIS_PROFILE", raising=False)
    try:
        result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    finally:
        settings.load_profile(profile)
    result.assert_outcomes(passed=3)
