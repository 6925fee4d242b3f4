"""The sweep summary ranks by the objective and keeps test metrics out unless asked (fast: no training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lstm_forecast.files import write_json
from lstm_forecast.training.sweeps import JOB_FILE, SUMMARY_CSV, SUMMARY_MD, summarize_sweep, write_summary


def finished_job(sweep_dir: Path, job: int, overrides: list[str], val: float, test: float) -> None:
    folder = sweep_dir / str(job)
    write_json(
        folder / JOB_FILE,
        {"job_num": job, "overrides": overrides, "objective": "val/mse_z", "status": "completed"},
    )
    write_json(folder / "metrics.json", {"val/mse_z": val, "test/mse_z": test, "test/mae_z": test / 2})


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    # Validation and test disagree: job 1 is best on validation, job 0 on test.
    finished_job(tmp_path, 0, ["model.lr=0.01"], val=0.5, test=0.1)
    finished_job(tmp_path, 1, ["model.lr=0.001"], val=0.2, test=0.9)
    return tmp_path


def test_default_summary_ranks_by_the_objective_without_test_columns(sweep_dir):
    table = write_summary(sweep_dir)
    assert list(table["job"]) == ["1", "0"]
    assert not [c for c in table.columns if c.startswith("test/")]
    for name in (SUMMARY_CSV, SUMMARY_MD):
        assert "test/" not in (sweep_dir / name).read_text()


def test_show_test_adds_the_test_metrics_and_keeps_the_ranking(sweep_dir):
    table = summarize_sweep(sweep_dir, show_test=True)
    assert list(table["job"]) == ["1", "0"]  # still by validation, not by the better test score
    assert list(table["test/mse_z"]) == [0.9, 0.1]
    assert list(table["test/mae_z"]) == [0.45, 0.05]
