"""The demo job end to end at a tiny budget: every output it promises exists."""

from __future__ import annotations

from pathlib import Path

from onestage.engine.demo import run_demo


def test_demo_writes_preview_run_and_report(tmp_path: Path):
    summary = run_demo(tmp_path / "demo", epochs=1, steps=1, test_images=4)
    assert summary.data_preview.is_file()
    assert (summary.run_dir / "weights" / "best.safetensors").is_file()
    assert (summary.run_dir / "results.csv").read_text().count("\n") == 2
    assert (summary.trained_report / "metrics.json").is_file()
    assert (summary.trained_report / "predictions_grid.png").is_file()
    assert 0.0 <= summary.trained.voc.map <= 1.0
    if summary.shipped is not None:
        assert (summary.shipped_report / "metrics.json").is_file()
    else:
        assert summary.notes == ["no shipped weights in this installation; skipped that step"]
