"""Every file onestage reads has a size bound: a larger one, a special file that never ends
included, is one line naming it, after reading no more than the bound."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import run_in_process
from onestage import checkpoint
from onestage.checkpoint import load_weights, save_weights
from onestage.errors import DataError, OnestageError
from onestage.limits import MAX_TEXT_BYTES, read_bytes_within, read_text_within


def test_reads_keep_to_their_bound(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"one\r\ntwo\rthree\n")
    assert read_bytes_within(path, 15) == b"one\r\ntwo\rthree\n"
    assert read_text_within(path, 15) == path.read_text(encoding="utf-8") == "one\ntwo\nthree\n"
    with pytest.raises(DataError) as raised:
        read_bytes_within(path, 14)
    assert str(raised.value) == f"{path}: larger than the 14 bytes onestage reads for such a file"


def test_a_file_that_never_ends_is_refused_at_the_bound() -> None:
    with pytest.raises(DataError) as raised:
        read_text_within(Path("/dev/zero"))
    assert str(raised.value) == (
        f"/dev/zero: larger than the {MAX_TEXT_BYTES // 2**20} MB onestage reads for such a file"
    )


def test_a_config_that_never_ends_is_one_line(monkeypatch, capsys) -> None:
    result = run_in_process(monkeypatch, capsys, "train", "--config", "/dev/zero")
    assert result.returncode == 2
    assert (
        result.stderr == "error: /dev/zero: larger than the 64 MB onestage reads for such a file\n"
    )


def test_weights_over_their_bound_are_refused_unread(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "w.safetensors"
    save_weights(path, torch.nn.Linear(4, 4), {"model": "tiny"})
    monkeypatch.setattr(checkpoint, "MAX_WEIGHTS_BYTES", path.stat().st_size - 1)
    with pytest.raises(OnestageError, match=r"larger than the \d+ bytes onestage reads"):
        load_weights(path)
