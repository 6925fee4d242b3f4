"""Baselines on synthetic series with known answers, scored through the real evaluation path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.windows import SeriesArrays
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.baselines import RidgeBaseline, default_seasonal_period, seasonal_naive
from lstm_forecast.evaluation.report import EvaluationOptions
from lstm_forecast.evaluation.streaming import evaluate_windows
from lstm_forecast.models.net import EmbeddingBiLSTM


def file_datamodule(
    tmp_path: Path, columns: dict[str, np.ndarray], window_size: int, horizon: int, freq: str = "h"
) -> ForecastDataModule:
    """A datamodule over a wide CSV holding ``columns`` (one series each), set up."""
    num_rows = len(next(iter(columns.values())))
    table = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=num_rows, freq=freq), **columns})
    path = tmp_path / "series.csv"
    table.to_csv(path, index=False)
    datamodule = ForecastDataModule(
        source={"kind": "wide_file", "path": str(path)},
        window_size=window_size,
        horizon=horizon,
        split={"train": 0.6, "val": 0.2, "test": 0.2},
        calendar_features=[],
    )
    datamodule.setup("fit")
    return datamodule


def evaluate(datamodule: ForecastDataModule, **evaluation) -> dict[str, float]:
    torch.manual_seed(0)
    net = EmbeddingBiLSTM(
        datamodule.num_series, datamodule.num_features, num_units=4, horizon=datamodule.horizon
    )
    options = EvaluationOptions.from_config(evaluation)
    scores, _, _ = evaluate_windows(net, datamodule, datamodule.windows["test"], "test", options=options)
    return scores.metrics


def test_persistence_is_exact_on_a_constant_series(tmp_path):
    flat = file_datamodule(tmp_path, {"flat": np.full(300, 7.5)}, window_size=6, horizon=3)
    metrics = evaluate(flat)
    for key in ("mse_z", "mae_z", "mae_orig", "rmse_orig", "smape", "mase"):
        assert metrics[f"baseline/persistence/{key}"] == 0.0, key
    for step in (1, 2, 3):
        assert metrics[f"baseline/persistence/mse_z@{step}"] == 0.0


def test_seasonal_naive_is_exact_on_a_periodic_series_beyond_one_season(tmp_path):
    steps = np.arange(600.0)
    daily = 10 + 3 * np.sin(2 * np.pi * steps / 24) + np.cos(2 * np.pi * steps / 8)
    datamodule = file_datamodule(tmp_path, {"a": daily, "b": 2 * daily - 4}, window_size=12, horizon=30)
    metrics = evaluate(datamodule)
    assert metrics["baseline/seasonal_naive/period"] == 24  # hourly data
    assert metrics["baseline/seasonal_naive/mse_z"] < 1e-10
    assert metrics["baseline/seasonal_naive/mse_z@30"] < 1e-10  # a second season back
    assert metrics["baseline/persistence/mse_z"] > 0.1
    wrong_period = evaluate(datamodule, seasonal_period=23)
    assert wrong_period["baseline/seasonal_naive/mse_z"] > 0.01


def test_ridge_is_exact_on_a_noiseless_autoregressive_process(tmp_path):
    # x_t = 2 cos(w) x_{t-1} - x_{t-2}: an AR(2) without noise; every step ahead is linear in the window.
    steps = np.arange(500.0)
    wave = np.sin(2 * np.pi * steps / 17.3 + 0.4)
    datamodule = file_datamodule(
        tmp_path, {"a": 5 * wave + 20, "b": 3 * (5 * wave + 20) - 1}, window_size=8, horizon=5
    )
    metrics = evaluate(datamodule)
    assert metrics["baseline/ridge/mse_z"] < 1e-8
    assert metrics["baseline/ridge/mse_z@5"] < 1e-8
    assert metrics["baseline/persistence/mse_z"] > 0.1
    assert metrics["baseline/ridge/alpha"] in EvaluationOptions().ridge_alphas


def test_ridge_chooses_regularisation_on_validation_and_skips_warm_up_windows(tmp_path):
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((400, 2))
    datamodule = file_datamodule(tmp_path, {"a": noise[:, 0], "b": noise[:, 1]}, window_size=10, horizon=2)
    train = datamodule.windows["train"]
    everything = torch.arange(len(train))
    index = everything[train.full_context(everything)]
    rows, series = train.locate(index)
    steps = datamodule.load_frame().local_index[rows.numpy()]
    for s in (0, 1):  # per series, the first window whose context is all real rows, then every later one
        mine = steps[series.numpy() == s]
        assert mine.tolist() == list(range(train.window_size, mine.max() + 1))
    ridge = RidgeBaseline.fit(train, datamodule.windows["val"], alphas=[0.0, 1.0, 100.0])
    assert ridge.alpha == min(ridge.validation_mse, key=ridge.validation_mse.get)
    # On white noise the best linear forecast is the mean: heavy shrinkage wins.
    assert ridge.alpha > 0.0
    assert ridge.weights.shape == (11, 2)


def test_seasonal_naive_reads_the_row_one_season_back_per_step():
    # Two series of 30 rows: series 0 holds r at its row r, series 1 holds 100 + r.
    values = np.concatenate([np.arange(30.0), 100 + np.arange(30.0)])
    arrays = SeriesArrays.from_rows(values, np.empty((60, 0)), np.array([0, 30, 60]), window_size=4)
    # target_row is the row of the frame: row t of series 1 is 30 + t.
    forecast = seasonal_naive(arrays, np.array([10, 20, 30 + 10]), np.array([0, 0, 1]), horizon=5, period=3)
    np.testing.assert_array_equal(
        forecast, [[7, 8, 9, 7, 8], [17, 18, 19, 17, 18], [107, 108, 109, 107, 108]]
    )
    # Before a series' first row it reads zeros (the warm-up padding), never the series before it,
    # however far back the season reaches.
    near_start = seasonal_naive(arrays, np.array([30 + 1]), np.array([1]), horizon=5, period=3)
    np.testing.assert_array_equal(near_start, [[0, 0, 100, 0, 0]])
    far = seasonal_naive(arrays, np.array([30 + 1]), np.array([1]), horizon=2, period=10)
    np.testing.assert_array_equal(far, [[0, 0]])
    with pytest.raises(UserError, match="seasonal_period"):
        seasonal_naive(arrays, np.array([10]), np.array([0]), horizon=1, period=0)


@pytest.mark.parametrize(
    ("freq", "period"),
    [("h", 24), ("15min", 96), ("D", 7), ("W", 52), ("MS", 12), ("QS", 4), ("YS", 1)],
)
def test_default_seasonal_period_follows_the_sampling_interval(freq, period):
    assert default_seasonal_period(pd.date_range("2020-01-01", periods=10, freq=freq)) == period


def test_evaluation_options_refuse_unknown_baselines_and_keys():
    with pytest.raises(UserError, match="unknown baseline"):
        EvaluationOptions.from_config({"baselines": ["prophet"]})
    with pytest.raises(UserError, match="unknown evaluation option"):
        EvaluationOptions.from_config({"seasonal_periode": 3})


def test_only_the_chosen_baselines_are_scored(tmp_path):
    datamodule = file_datamodule(tmp_path, {"a": np.arange(200.0)}, window_size=5, horizon=1)
    metrics = evaluate(datamodule, baselines=["persistence"])
    assert "baseline/persistence/mse_z" in metrics
    assert not any(key.startswith(("baseline/ridge", "baseline/seasonal_naive")) for key in metrics)


def test_per_series_ridge_recovers_each_series_own_noiseless_ar_process(tmp_path):
    # Two noiseless AR(2) processes with different coefficients (sines of different periods): no
    # shared linear model forecasts both, one model per series (per series id) does exactly.
    steps = np.arange(400.0)
    slow, fast = np.sin(2 * np.pi * steps / 23.0), np.sin(2 * np.pi * steps / 5.3 + 1.0)
    # Window 3: enough for each AR(2), too short for the AR(4) that forecasts both.
    datamodule = file_datamodule(tmp_path, {"slow": slow, "fast": fast}, window_size=3, horizon=1)
    train, val = datamodule.windows["train"], datamodule.windows["val"]
    per_series = RidgeBaseline.fit(train, val, alphas=[0.0], per_series=True)
    shared = RidgeBaseline.fit(train, val, alphas=[0.0])
    assert per_series.weights.shape == (3, 4, 1)  # row 0: the reserved id, no windows
    assert torch.count_nonzero(per_series.weights[0]) == 0
    assert per_series.validation_mse[0.0] < 1e-8 < shared.validation_mse[0.0]
