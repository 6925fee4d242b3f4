"""Drift warnings: forecasts whose input values lie outside the training range say so.

End to end: a tiny model trained (default config) on a wide file at one level; lstm-predict and
lstm-evaluate on a shifted copy warn in their log, naming the series, the share and the training
range; on an in-range file they say nothing. On long ragged files (no training needed: the scalers are
fitted by the datamodule, restored as a checkpoint restores them): only the rows the windows read
count, and many drifted series make one summary line.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

import lstm_forecast.evaluation.drift as drift_module
from conftest import ETTH1, TINY_MODEL, compose_config, run_app
from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.windows import series_chunks
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.drift import (
    DEFAULT_WARN_SHARE,
    chance_of_outside,
    check_warn_share,
    leading_rows_drift,
    warn_drift,
)
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
    # Read by training windows, not by test ones; 20 rows: 10 of q's 59 could be chance (docs/drift.md).
    first_rows = early.groupby("series").cumcount() < 20
    early.loc[first_rows & (early["series"] == "q"), "value"] += 1000.0
    early.to_csv(tmp_path / "early.csv", index=False)
    datamodule = restored(tmp_path / "train.csv", tmp_path / "early.csv")

    with caplog.at_level(logging.WARNING, logger=DRIFT_LOGGER):
        assert warn_drift(datamodule, datamodule.windows["test"], 0.05, "early.csv") == []
        drifts = warn_drift(datamodule, prediction_windows(datamodule, 1), 0.05, "early.csv")

    assert [drift.series for drift in drifts] == ["q"]
    assert drifts[0].share == pytest.approx(20 / 59) and drifts[0].num_values == 59  # q has 59 rows
    assert "series 'q': 33.9% of its 59 input values" in caplog.text
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


@pytest.mark.parametrize(
    ("outside", "read", "train_rows"), [(1, 4, 3), (2, 5, 3), (3, 3, 4), (3, 5, 3), (4, 6, 2)]
)
def test_the_chance_bound_holds_for_every_ordering_of_exchangeable_values(outside, read, train_rows):
    # All orderings of n + m distinct values are equally likely when nothing changed: count those in
    # which `outside` or more of the m new values fall outside the range of the n old ones.
    total = hits = 0
    for order in itertools.permutations(range(train_rows + read)):
        old, new = order[:train_rows], order[train_rows:]
        total += 1
        hits += sum(v < min(old) or v > max(old) for v in new) >= outside
    bound = chance_of_outside(outside, read, train_rows)
    # Equal when every new value is outside (k = m: the bound's events are then disjoint); rounding only.
    assert hits / total <= bound or hits / total == pytest.approx(bound, rel=1e-12)


def test_noise_of_a_short_series_is_not_drift_but_a_level_shift_is(tmp_path, caplog):
    # 30 training rows of white noise leave out much of its own tails: 5 of the 18 rows the test
    # windows read (28 %) fall outside the training range, which chance gives (p <= 0.03); no warning.
    # The same series moved up by 3 standard deviations after its training rows warns.
    values = np.random.default_rng(0).standard_normal(54)
    stamps = pd.date_range("2024-01-01", periods=54, freq="h")
    noise = pd.DataFrame({"series": "n", "timestamp": stamps, "value": values})
    noise.to_csv(tmp_path / "noise.csv", index=False)
    shifted = noise.assign(value=np.where(np.arange(54) >= 30, values + 3.0, values))
    shifted.to_csv(tmp_path / "shifted.csv", index=False)
    options = {"window_size": WINDOW, "calendar_features": [], "split": {"val": 12, "test": 12}}
    quiet = ForecastDataModule(source={"kind": "long_file", "path": str(tmp_path / "noise.csv")}, **options)
    quiet.setup()
    low, high = quiet.fitted.training_range("minmax")
    test_rows = values[54 - 12 - WINDOW :]  # the rows the test windows read
    outside = int(((test_rows < low[0]) | (test_rows > high[0])).sum())
    assert (outside, len(test_rows)) == (5, 18)  # the share alone (28 % > 5 %) would warn
    moved = ForecastDataModule(source={"kind": "long_file", "path": str(tmp_path / "shifted.csv")}, **options)
    moved.load_state_dict(quiet.state_dict())
    moved.setup()

    with caplog.at_level(logging.WARNING, logger=DRIFT_LOGGER):
        assert warn_drift(quiet, quiet.windows["test"], 0.05, "noise.csv") == []
        assert caplog.text == ""
        assert [d.series for d in warn_drift(moved, moved.windows["test"], 0.05, "shifted.csv")] == ["n"]


@pytest.mark.skipif(not ETTH1.is_file(), reason="ETTh1.csv is not in ../shared/data")
def test_etth1_test_split_is_silent_and_its_copy_times_1_5_warns(tmp_path, caplog):
    cfg = compose_config("train", tmp_path, ["data=etth1", f"data.source.path={ETTH1}"])
    original = instantiate(cfg.data)
    original.setup()
    scaled_file = tmp_path / "ETTh1_x1.5.csv"
    table = pd.read_csv(ETTH1)
    series = [column for column in table.columns if column != "date"]
    table.assign(**{column: table[column] * 1.5 for column in series}).to_csv(scaled_file, index=False)
    cfg.data.source.path = str(scaled_file)
    scaled = instantiate(cfg.data)
    scaled.load_state_dict(original.state_dict())
    scaled.setup()

    with caplog.at_level(logging.WARNING, logger=DRIFT_LOGGER):
        assert warn_drift(original, original.windows["test"], DEFAULT_WARN_SHARE, "ETTh1.csv") == []
        assert caplog.text == ""
        drifts = warn_drift(scaled, scaled.windows["test"], DEFAULT_WARN_SHARE, "ETTh1_x1.5.csv")

    assert [drift.series for drift in drifts] == ["MUFL", "HUFL"]
    assert "forecasts on ETTh1_x1.5.csv cannot be trusted: series 'MUFL'" in caplog.text
