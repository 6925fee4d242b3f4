"""Metric functions against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.evaluation.metrics import ForecastErrors, forecast_metrics
from lstm_forecast.evaluation.report import training_naive_scale

PREDICTION = np.array([[1.0, 2.0], [3.0, 4.0]])
TARGET = np.array([[1.0, 1.0], [1.0, 1.0]])  # errors [[0, 1], [2, 3]]
SERIES = np.array([0, 1])
MASE_SCALE = np.array([1.0, 2.0])


def identity(values, series):
    return values


def halve(values, series):  # z-normalisation with mean 0 and std 2
    return values / 2.0


@pytest.fixture
def errors() -> ForecastErrors:
    return ForecastErrors.compute(PREDICTION, TARGET, SERIES, identity, halve, MASE_SCALE)


def test_overall_metrics_match_hand_computed_values(errors):
    metrics = errors.overall()
    assert metrics["mse"] == pytest.approx(3.5)
    assert metrics["mae"] == pytest.approx(1.5)
    assert metrics["mse_z"] == pytest.approx(0.875)
    assert metrics["mae_z"] == pytest.approx(0.75)
    assert metrics["mae_orig"] == pytest.approx(1.5)
    assert metrics["rmse_orig"] == pytest.approx(math.sqrt(3.5))
    # 200 |e| / (|F| + |A|): 0, 200/3, 400/4, 600/5
    assert metrics["smape"] == pytest.approx((0 + 200 / 3 + 100 + 120) / 4)
    # |e| / scale: 0/1, 1/1, 2/2, 3/2
    assert metrics["mase"] == pytest.approx((0 + 1 + 1 + 1.5) / 4)
    assert forecast_metrics(PREDICTION, TARGET, SERIES, identity, halve, MASE_SCALE) == metrics


def test_per_step_metrics_average_over_windows(errors):
    per_step = errors.per_step()
    np.testing.assert_allclose(per_step["mse"], [(0 + 4) / 2, (1 + 9) / 2])
    np.testing.assert_allclose(per_step["mae_z"], [(0 + 1) / 2, (0.5 + 1.5) / 2])
    np.testing.assert_allclose(per_step["rmse_orig"], [math.sqrt(2), math.sqrt(5)])


def test_per_series_metrics_average_over_windows_and_steps(errors):
    per_series = errors.per_series(num_series=3)
    np.testing.assert_allclose(per_series["mse"][:2], [(0 + 1) / 2, (4 + 9) / 2])
    np.testing.assert_allclose(per_series["mase"][:2], [(0 + 1) / 2, (1 + 1.5) / 2])
    assert np.isnan(per_series["mse"][2])  # no windows of the third series


def test_smape_is_zero_where_forecast_and_actual_are_zero():
    zeros = np.zeros((1, 2))
    metrics = forecast_metrics(zeros, zeros, np.array([0]), identity, identity)
    assert metrics["smape"] == 0.0
    assert metrics["mase"] == 0.0


def test_naive_scale_is_the_mean_absolute_step_change_and_safe_on_constant_series(tmp_path):
    rows = 40
    pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=rows, freq="h"),
            "a": 1.5 * np.arange(rows),
            "b": np.full(rows, 3.0),
        }
    ).to_csv(tmp_path / "wide.csv", index=False)
    datamodule = ForecastDataModule(
        source={"kind": "wide_file", "path": str(tmp_path / "wide.csv")},
        window_size=4,
        split={"train": 20, "val": 10, "test": 10},
    )
    np.testing.assert_allclose(training_naive_scale(datamodule), [1.5, 1.0])
