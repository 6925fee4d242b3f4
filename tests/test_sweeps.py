"""Multiruns through the real CLI: grid sweeps, failing jobs, Optuna resume, submitit, the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import TINY_OVERRIDES, assert_one_line_error, run_app
from lstm_forecast.training.sweeps import JOB_FILE, SUMMARY_CSV, SUMMARY_MD

pytestmark = pytest.mark.slow


def sweep_args(sweep_dir: Path, *extra: str) -> list[str]:
    """``-m`` with the tiny data and model, one epoch, outputs in ``sweep_dir``; ``extra`` keys win."""
    swept = {arg.split("=")[0] for arg in extra}
    base = [o for o in TINY_OVERRIDES if o.split("=")[0] not in swept and not o.startswith("trainer.max")]
    return ["-m", *base, "trainer.max_epochs=1", f"hydra.sweep.dir={sweep_dir}", *extra]


def read_summary(sweep_dir: Path) -> pd.DataFrame:
    return pd.read_csv(sweep_dir / SUMMARY_CSV, keep_default_na=False, na_values=[""])


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_grid_sweep_runs_every_combination_and_summarises_them(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_app(
        "train", *sweep_args(sweep_dir, "data.window_size=8,12", "model.net.num_units=4,8"), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]

    jobs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0", "1", "2", "3"]
    for job in jobs:
        folder = sweep_dir / job
        assert {p.name for p in (folder / "checkpoints").iterdir()} == {"epoch_000.ckpt", "last.ckpt"}
        assert {p.parent for p in folder.rglob("events.out.tfevents.*")} == {folder / "tensorboard"}
        assert read_json(folder / "metrics.json")["test/mse_z"] > 0
        assert read_json(folder / JOB_FILE)["status"] == "completed"

    summary = read_summary(sweep_dir)
    assert len(summary) == 4
    assert set(summary["status"]) == {"completed"}
    assert set(summary["overrides"]) == {
        f"data.window_size={w} model.net.num_units={u}" for w in (8, 12) for u in (4, 8)
    }
    assert summary["val/mse_z"].is_monotonic_increasing  # sorted by the objective
    assert not [c for c in summary.columns if c.startswith("test/")]  # chosen on validation, test unseen
    for _, row in summary.iterrows():
        metrics = read_json(sweep_dir / str(row["job"]) / "metrics.json")
        assert row["val/loss_best"] == pytest.approx(metrics["val/loss_best"])
        assert row["epochs"] == metrics["epochs"] == 1
        assert row["wall_time_s"] > 0
    markdown = (sweep_dir / SUMMARY_MD).read_text()
    assert "4 jobs: 4 completed" in markdown
    assert sum(line.startswith("| ") for line in markdown.splitlines()) == 1 + 4  # header + one row a job

    # lstm-summarize gives the same table for the existing folder.
    csv_written_by_sweep = (sweep_dir / SUMMARY_CSV).read_text()
    (sweep_dir / SUMMARY_CSV).unlink()
    summarized = run_app("summarize", str(sweep_dir))
    assert summarized.returncode == 0, summarized.stderr
    assert (sweep_dir / SUMMARY_CSV).read_text() == csv_written_by_sweep
    assert "data.window_size=8 model.net.num_units=4" in summarized.stdout
    assert "test/" not in summarized.stdout

    # --show-test adds the test metrics of the finished sweep, same ranking.
    summarized = run_app("summarize", str(sweep_dir), "--show-test")
    assert summarized.returncode == 0, summarized.stderr
    with_test = read_summary(sweep_dir)
    assert list(with_test["job"]) == list(summary["job"])
    for _, row in with_test.iterrows():
        metrics = read_json(sweep_dir / str(row["job"]) / "metrics.json")
        assert row["test/mse_z"] == pytest.approx(metrics["test/mse_z"])
    assert "test/mse_z" in summarized.stdout


def test_summarize_rejects_a_folder_without_jobs(tmp_path):
    result = run_app("summarize", str(tmp_path))
    assert_one_line_error(result, "no job folders")
    assert result.returncode == 2


def test_failing_jobs_do_not_stop_the_sweep(tmp_path):
    """A bad combination and a missing accelerator each fail their job only."""
    sweep_dir = tmp_path / "sweep"
    result = run_app(
        "train", *sweep_args(sweep_dir, "data.window_size=12,1000", "trainer=cpu,gpu"), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr

    summary = read_summary(sweep_dir).set_index("overrides")
    assert len(summary) == 4
    assert summary.loc["data.window_size=12 trainer=cpu", "status"] == "completed"
    assert summary.index[0] == "data.window_size=12 trainer=cpu"  # completed jobs first
    gpu_missing = "MisconfigurationException: No supported gpu backend found!"
    for trainer, reason in (
        ("cpu", "too few rows"),
        ("gpu", "too few rows" if torch.cuda.is_available() else gpu_missing),
    ):
        row = summary.loc[f"data.window_size=1000 trainer={trainer}"]
        assert row["status"] == "failed"
        assert reason in row["reason"]
    gpu_row = summary.loc["data.window_size=12 trainer=gpu"]
    if torch.cuda.is_available():
        assert gpu_row["status"] == "completed"
    else:
        assert gpu_row["status"] == "failed"
        assert gpu_missing in gpu_row["reason"]
    assert "\n" not in "".join(summary["reason"].dropna())

    errors = [line for line in result.stderr.splitlines() if line.startswith("error: job ")]
    assert len(errors) == int(summary["status"].eq("failed").sum())
    for row in summary[summary["status"] == "failed"].itertuples():
        folder = sweep_dir / str(row.job)
        assert (folder / "FAILED").read_text().splitlines()[0] == row.reason
        assert read_json(folder / JOB_FILE)["status"] == "failed"
        assert not (folder / "metrics.json").exists()


def test_optuna_study_resumes_and_records_failed_trials(tmp_path):
    """Three trials, then the same command continues the same SQLite study to six."""
    optuna = pytest.importorskip("optuna")
    # Windows of 1000 steps do not fit the tiny data: those trials fail, the study goes on.
    # Fixing the other choices keeps the sampled windows the same for this seed: both kinds of trial.
    command = [
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=3",
        "data.window_size=choice(12,1000)",
        "data.padding_mask=false",
        "data.scaler=minmax",
    ]

    def sweep(name: str) -> pd.DataFrame:
        result = run_app("train", *sweep_args(tmp_path / name, *command), cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        return read_summary(tmp_path / name)

    first = sweep("first")
    study = optuna.load_study(study_name="train", storage=f"sqlite:///{tmp_path}/outputs/optuna/train.db")
    assert len(study.trials) == 3
    second = sweep("second")
    study = optuna.load_study(study_name="train", storage=f"sqlite:///{tmp_path}/outputs/optuna/train.db")
    trials = study.trials
    assert [t.number for t in trials] == list(range(6))
    states = [t.state for t in trials]
    assert set(states) == {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL}
    for trial in trials:
        failed = trial.params["data.window_size"] == 1000
        assert trial.state == (optuna.trial.TrialState.FAIL if failed else optuna.trial.TrialState.COMPLETE)

    # Each invocation's trials are its jobs; Optuna got each job's objective (val/mse_z).
    for summary, batch in ((first, trials[:3]), (second, trials[3:])):
        assert len(summary) == 3
        completed = summary[summary["status"] == "completed"]
        values = sorted(t.value for t in batch if t.state == optuna.trial.TrialState.COMPLETE)
        assert sorted(completed["val/mse_z"]) == pytest.approx(values)
        assert (summary["status"] == "failed").sum() == sum(t.value is None for t in batch)


@pytest.mark.launches
def test_submitit_local_launcher_runs_the_job_in_a_process_of_its_own(tmp_path):
    """One job (each is a fresh process that imports torch and Lightning: seconds); the basic
    launcher's tests cover sweeps of several jobs, which the summary gathers alike."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep_dir = tmp_path / "sweep"
    result = run_app("train", *sweep_args(sweep_dir, "hydra/launcher=submitit_local", "seed=1"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_summary(sweep_dir)
    assert len(summary) == 1 and summary["overrides"][0].endswith("seed=1"), summary
    assert summary["status"][0] == "completed", summary
    assert (sweep_dir / ".submitit").is_dir()  # submitit's own job files, not a job of the sweep
    assert read_json(sweep_dir / "0" / "metrics.json")["test/mse_z"] > 0
    # Run by submitit's own process (the sweep itself runs in this one).
    assert read_json(sweep_dir / "0" / "run_info.json")["command"][0] == "_submit.py"


def test_misspelt_key_in_a_multirun_is_one_line_error_before_any_job(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_app(
        "train", *sweep_args(sweep_dir, "data.window_size=8,12", "model.num_units=4,8"), cwd=tmp_path
    )
    assert_one_line_error(result, "model.num_units")
    assert result.returncode == 2
    assert not sweep_dir.exists()
