"""The fuzz harness itself (`fuzzing.FuzzRun`): which cases it judges failures. A harness that
passed every case would make every fuzz test pass."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from fuzz import fuzzing
from fuzz.fuzzing import FuzzRun
from onestage.errors import OnestageError

FILE = "labels/img0.txt"  # the file each case claims to read


class FakeClock:
    """Stands for the `time` module in `fuzzing`: `perf_counter` moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def perf_counter(self) -> float:
        return self.now

    def taking(self, seconds: float) -> Callable[[], None]:
        """A case that returns after `seconds` of this clock's time."""

        def case() -> None:
            self.now += seconds

        return case


class TwoLineError(OnestageError):
    """An error class whose own `__str__` forgot `one_line` (as `DataError` overrides it):
    OnestageError's message is one line only when `__str__` keeps it so."""

    def __str__(self) -> str:
        return self.args[0]


def raising(error: BaseException) -> Callable[[], None]:
    def case() -> None:
        raise error

    return case


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(fuzzing, "time", fake)
    return fake


def test_a_one_line_onestage_error_naming_the_file_and_a_clean_return_pass(clock: FakeClock):
    run = FuzzRun("reader", "harness")
    assert run.case("case 0", raising(OnestageError(f"{FILE}: line 2: bad box")), FILE) is None
    assert run.case("case 1", clock.taking(0.9), FILE) is None
    assert (run.cases, run.failures, run.max_seconds) == (2, [], pytest.approx(0.9))
    run.finish()


@pytest.mark.parametrize(
    ("case", "failure"),
    [
        (raising(ValueError(f"{FILE}: could not convert 'x'")), "ValueError escaped: "),
        (raising(TwoLineError(f"{FILE}: line 2\nbad box")), "multi-line message: "),
        (raising(TwoLineError(f"{FILE}: line 2\rbad box")), "multi-line message: "),
        (raising(OnestageError("line 2: bad box")), f"message does not name {FILE}: "),
    ],
    ids=["other exception", "two lines", "carriage return", "file not named"],
)
def test_an_error_that_breaks_a_rule_is_a_failure(case: Callable[[], None], failure: str):
    run = FuzzRun("reader", "harness")
    found = run.case("case 7", case, FILE)
    assert found is not None and found.startswith(failure)
    assert run.failures == [f"case 7: {found}"]
    with pytest.raises(AssertionError, match=r"^1/1 cases failed:\ncase 7: "):
        run.finish()


def test_a_case_over_the_time_limit_is_a_failure(clock: FakeClock):
    run = FuzzRun("reader", "harness")
    found = run.case("case 3", clock.taking(1.5), FILE)
    assert found == "took 1.50 s (limit 1.0 s)"
    assert run.failures == [f"case 3: {found}"] and run.max_seconds == pytest.approx(1.5)


def test_the_report_counts_every_case_and_failure(
    clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    report = tmp_path / "report.jsonl"
    monkeypatch.setenv("ONESTAGE_FUZZ_REPORT", str(report))
    run = FuzzRun("yolo", "label files")
    run.case("case 0", clock.taking(0.25), FILE)
    run.case("case 1", raising(KeyError("boxes")), FILE)
    run.case("case 2", raising(OnestageError(f"{FILE}: empty")), FILE)
    with pytest.raises(AssertionError, match=r"^1/3 cases failed:\ncase 1: KeyError escaped"):
        run.finish()
    line = json.loads(report.read_text())
    assert line["reader"] == "yolo" and line["test"] == "label files"
    assert (line["cases"], line["failures"], line["max_seconds"]) == (3, 1, 0.25)
