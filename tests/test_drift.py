"""Drift warnings: forecasts whose input values lie outside the training range say so.

End to end: a tiny model trained (default config) on a wide file at one level; lstm-predict and
lstm-evaluate on a shifted copy warn in their log, naming the series, the share and the training
range; on an in-range file they say nothing. On long ragged files (no training needed: the scalers are
fitted by the datamodule, restored as a checkpoint restores them): only the rows the windows read
count, and many drifted series make one summary line.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import lstm_forecast.evaluation.drift as drift_module
from conftest import TINY_MODEL, run_app
from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.windows import series_chunks
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.drift import check_warn_share, leading_rows_drift, warn_drift
from lstm_forecast.inference.checkpoints import datamodule_state
from lstm_forecast.inference.forecasting import prediction_counts, prediction_windows

WINDOW = 6
DRIFT_LOGGER = "lstm_forecast.evaluation.drift"


def wide_table(level_a: float = 50.0, scale_b: float = 1.0) -> pd.DataFrame:
    """Two periodic hourly series without trend (every split spans the same range), 240 rows."""
    step = np.arange(240, dtype=float)
    return pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=240, freq="h"),
            "a": level_a + 10 * np.sin(2 * np.pi * step / 24),
            "b": scale_b * (5 + np.cos(2 * np.pi * step / 12)),
        }
    )


def drift_lines(log_text: str) -> list[str]:
    return [line for line in log_text.splitlines() if "WARNING" in line and "evaluation.drift" in line]


@pytest.mark.slow
def test_predict_and_evaluate_warn_about_a_shifted_file_and_not_an_in_range_one(tmp_path):
    train_file, shifted_file = tmp_path / "train.csv", tmp_path / "shifted.csv"
    wide_table().to_csv(train_file, index=False)
    shifted = wide_table(level_a=75.0, scale_b=1.1)  # a wholly above its range, b partly
    shifted.to_csv(shifted_file, index=False)
    result = run_app(
        "train",
        "data=wide_file",
        f"data.source.path={train_file}",
        *TINY_MODEL,
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = json.loads((tmp_path / "run" / "metrics.json").read_text())["best_checkpoint"]
    state = datamodule_state(torch.load(checkpoint, weights_only=True))
    low, high = state["series_min"].numpy(), state["series_max"].numpy()  # [a, b] training ranges
    outside = (shifted[["a", "b"]] < low) | (shifted[["a", "b"]] > high)
    share_b = outside["b"].mean()  # lstm-predict reads every row of the file
    assert outside["a"].all() and 0.05 < share_b < 0.95

    predicted = run_app(
        "predict",
        f"ckpt_path={checkpoint}",
        f"data.source.path={shifted_file}",
        f"hydra.run.dir={tmp_path / 'p'}",
    )

    assert predicted.returncode == 0, predicted.stderr[-3000:]
    lines = drift_lines((tmp_path / "p" / "predict.log").read_text())
    assert len(lines) == 3, lines  # one per series, then the remedy
    assert "series 'a': 100.0% of its 240 input values" in lines[0]
    assert f"training range [{low[0]:.6g}, {high[0]:.6g}]" in lines[0]
    assert f"series 'b': {100 * share_b:.1f}% of its 240 input values" in lines[1]
    assert "model=bilstm_hybrid" in lines[2] and "drift.warn_share=0.05" in lines[2]

    in_range = run_app(
        "predict",
        f"ckpt_path={checkpoint}",
        f"data.source.path={train_file}",
        f"hydra.run.dir={tmp_path / 'q'}",
    )
    assert in_range.returncode == 0, in_range.stderr[-3000:]
    assert drift_lines((tmp_path / "q" / "predict.log").read_text()) == []

    evaluated = run_app(
        "evaluate",
        f"ckpt_path={checkpoint}",
        f"data.source.path={shifted_file}",
        f"hydra.run.dir={tmp_path / 'e'}",
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    lines = drift_lines((tmp_path / "e" / "evaluate.log").read_text())
    assert "(test split)" in lines[0] and "series 'a': 100.0%" in lines[0]


def long_table(names: list[str], level: dict[str, float] | None = None, rows: int = 60) -> pd.DataFrame:
    """Ragged hourly series (each starts a few hours after the previous), periodic, no trend."""
    parts = []
    for i, name in enumerate(names):
        stamps = pd.date_range("2024-01-01", periods=rows - i, freq="h") + pd.Timedelta(hours=i)
        values = (level or {}).get(name, 10.0 * (i + 1)) + np.sin(2 * np.pi * np.arange(rows - i) / 12)
        parts.append(pd.DataFrame({"series": name, "timestamp": stamps, "value": values}))
    return pd.concat(parts, ignore_index=True)


def restored(trained_on: Path, data: Path) -> ForecastDataModule:
    """A datamodule on ``data`` with the scalers fitted on ``trained_on``, as a checkpoint restores them."""
    options = {
        "window_size": WINDOW,
        "calendar_features": [],
        "split": {"train": 0.6, "val": 0.2, "test": 0.2},
    }
    fitted = ForecastDataModule(source={"kind": "long_file", "path": str(trained_on)}, **options)
    fitted.setup()
    datamodule = ForecastDataModule(source={"kind": "long_file", "path": str(data)}, **options)
    datamodule.load_state_dict(fitted.state_dict())
    datamodule.setup()
    return datamodule


def test_only_the_rows_the_windows_read_count(tmp_path, caplog):
    names = ["p", "q", "r"]
    long_table(names).to_csv(tmp_path / "train.csv", index=False)
    early = long_table(names)
    first_rows = early.groupby("series").cumcount() < 10  # read by training windows, not by test ones
    early.loc[first_rows & (early["series"] == "q"), "value"] += 1000.0
    early.to_csv(tmp_path / "early.csv", index=False)
    datamodule = restored(tmp_path / "train.csv", tmp_path / "early.csv")

    with caplog.at_level(logging.WARNING, logger=DRIFT_LOGGER):
        assert warn_drift(datamodule, datamodule.windows["test"], 0.05, "early.csv") == []
        drifts = warn_drift(datamodule, prediction_windows(datamodule, 1), 0.05, "early.csv")

    assert [drift.series for drift in drifts] == ["q"]
    assert drifts[0].share == pytest.approx(10 / 59) and drifts[0].num_values == 59  # q has 59 rows
    assert "series 'q': 16.9% of its 59 input values" in caplog.text
    # lstm-predict's check, a chunk of series at a time: every full window reads each series' first
    # window_size + windows - 1 rows.
    series, count = prediction_counts(datamodule, 1)
    rows_read = np.zeros(datamodule.num_series, dtype=np.int64)
    rows_read[series] = datamodule.window_size + count - 1
    assert warn_drift(datamodule, rows_read, 0.05, "early.csv") == drifts


def test_many_drifted_series_make_one_summary_line_with_the_worst(tmp_path, caplog, monkeypatch):
    names = [f"s{i:02d}" for i in range(12)]
    long_table(names).to_csv(tmp_path / "train.csv", index=False)
    # s03 lies 1.5 units above its range for part of its rows, every other series wholly above.
    shifted = long_table(names, {name: 10.0 * (i + 1) + 5 for i, name in enumerate(names)} | {"s03": 41.5})
    shifted.to_csv(tmp_path / "shifted.csv", index=False)
    datamodule = restored(tmp_path / "train.csv", tmp_path / "shifted.csv")

    with caplog.at_level(logging.WARNING, logger=DRIFT_LOGGER):
        drifts = warn_drift(datamodule, prediction_windows(datamodule, 1), 0.05, "shifted.csv")
    series, count = prediction_counts(datamodule, 1)
    rows_read = np.zeros(datamodule.num_series, dtype=np.int64)
    rows_read[series] = datamodule.window_size + count - 1
    with monkeypatch.context() as patch:
        patch.setattr(drift_module, "series_chunks", lambda offsets: series_chunks(offsets, rows=50))
        assert leading_rows_drift(datamodule, rows_read, 0.05) == drifts

    assert len(drifts) == 12 and drifts[-1].series == "s03" and drifts[-1].share < 1.0
    messages = [record.getMessage() for record in caplog.records if record.name == DRIFT_LOGGER]
    assert len(messages) == 2, messages  # the summary and the remedy
    assert "12 of 12 series have more than 5% of their input values outside" in messages[0]
    assert messages[0].count("series '") == 5 and "'s03'" not in messages[0]  # the worst five only


@pytest.mark.parametrize("value", [-0.1, 1.5, "often", True])
def test_a_bad_warn_share_is_a_user_error(value):
    with pytest.raises(UserError, match=r"drift\.warn_share must be a number in"):
        check_warn_share(value)
