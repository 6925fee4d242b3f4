"""Recursive and direct forecasting past the data, and the full-window prediction layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.windows import seed_prediction_arrays
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.window_forecasts import predict_windows
from lstm_forecast.inference.forecasting import (
    check_frequency,
    fed_back_steps,
    forecast_future,
    future_timestamps,
    prediction_windows,
    recursive_forecast,
    window_predictions_table,
)
from lstm_forecast.models.net import EmbeddingBiLSTM

WINDOW = 6


def make_net(num_series: int, num_features: int, horizon: int = 1) -> EmbeddingBiLSTM:
    torch.manual_seed(0)
    net = EmbeddingBiLSTM(
        num_series, num_features, embedding_dim=3, num_units=5, dense_size=4, horizon=horizon
    )
    return net.eval()


def fitted_datamodule(
    num_rows: int = 40, calendar: tuple[str, ...] = ("hour", "day_of_week")
) -> ForecastDataModule:
    datamodule = ForecastDataModule(
        source={"kind": "synthetic", "num_series": 3, "num_rows": num_rows, "seed": 1},
        window_size=WINDOW,
        split={"train": 0.6, "val": 0.2, "test": 0.2},
        calendar_features=list(calendar),
    )
    datamodule.setup("fit")  # fits the scaler, as training does
    return datamodule


def hand_window(values: np.ndarray, extras: np.ndarray, end: int, series: int) -> torch.Tensor:
    """``[1, W, E + 1]``: rows ``end - W .. end - 1``, extras then the value (the training layout)."""
    rows = slice(end - WINDOW, end)
    step = np.concatenate([extras[rows], values[rows, series, None]], axis=1)
    return torch.tensor(step[None], dtype=torch.float32)


def test_recursive_forecast_feeds_each_forecast_back():
    rng = np.random.default_rng(0)
    num_series, horizon, observed = 3, 5, 9
    values = rng.uniform(-1, 1, (observed, num_series))
    extras = rng.uniform(-1, 1, (observed + horizon, 2))
    net = make_net(num_series, num_features=3)

    forecast = recursive_forecast(
        net,
        torch.tensor(values, dtype=torch.float32),
        torch.tensor(extras, dtype=torch.float32),
        horizon,
        WINDOW,
    )

    assert forecast.shape == (horizon, num_series)
    # The same loop written out by hand: forecast row t from rows t-W..t-1, append, repeat.
    known = values.copy()
    with torch.no_grad():
        for _ in range(horizon):
            end = known.shape[0]
            step = [
                net(hand_window(known, extras, end, s), torch.tensor([s + 1])).item()
                for s in range(num_series)
            ]
            known = np.vstack([known, step])
    np.testing.assert_allclose(forecast.numpy(), known[observed:], rtol=1e-5, atol=1e-6)


def test_direct_multi_step_forecast_advances_by_blocks():
    rng = np.random.default_rng(1)
    num_series, observed = 2, 8
    values = torch.tensor(rng.uniform(-1, 1, (observed, num_series)), dtype=torch.float32)
    extras = torch.tensor(rng.uniform(-1, 1, (observed + 6, 1)), dtype=torch.float32)
    net = make_net(num_series, num_features=2, horizon=3)

    forecast = recursive_forecast(net, values, extras, horizon=7, window_size=WINDOW, model_horizon=3)

    assert forecast.shape == (7, num_series)
    with torch.no_grad():
        first_block = torch.stack(
            [
                net(hand_window(values.numpy(), extras.numpy(), observed, s), torch.tensor([s + 1]))[0]
                for s in range(2)
            ]
        )  # [S, 3]
    np.testing.assert_allclose(forecast[:3].numpy(), first_block.T.numpy(), rtol=1e-5, atol=1e-6)
    # Only forecasts that become context need extras: steps 1..6 of 7 with blocks of 3.
    assert fed_back_steps(7, 3) == 6
    with pytest.raises(ValueError, match="extras cover"):
        recursive_forecast(
            net, values, extras[: observed + 5], horizon=7, window_size=WINDOW, model_horizon=3
        )


def test_forecast_future_timestamps_units_and_calendar():
    datamodule = fitted_datamodule()
    net = make_net(datamodule.num_series, datamodule.num_features)
    last = datamodule.timestamps[-1]

    future = forecast_future(net, datamodule, horizon=4, freq="h")

    assert list(future.timestamps) == [last + pd.Timedelta(hours=k) for k in range(1, 5)]
    assert future.values.shape == (4, 3)
    table = future.table()
    assert list(table.columns) == ["timestamp", "series", "step", "prediction"]
    assert len(table) == 12 and table["step"].tolist()[:4] == [1, 2, 3, 4]
    # Original units: the first step equals the network on the last full window, inverted by the scaler.
    windows = prediction_windows(datamodule, horizon=1)
    last_windows = predict_windows(net, windows).prediction[-3:, 0]  # row T, every series
    expected = datamodule.inverse_values(last_windows, np.arange(3))
    np.testing.assert_allclose(future.values[0], expected, rtol=1e-5)
    # The calendar features of the fed-back steps are computed from the future timestamps: a model
    # that reads them gives different second steps when the hour changes.
    shifted = forecast_future(net, datamodule, horizon=4, freq="2h")
    np.testing.assert_allclose(shifted.values[0], future.values[0], rtol=1e-6)
    assert not np.allclose(shifted.values[1:], future.values[1:])


def test_user_extras_need_future_values(tmp_path):
    timestamps = pd.date_range("2024-01-01", periods=40, freq="h")
    step = np.arange(40.0)
    path = tmp_path / "with_load.csv"
    pd.DataFrame({"date": timestamps, "a": np.sin(step), "b": np.cos(step), "load": step}).to_csv(
        path, index=False
    )
    datamodule = ForecastDataModule(
        source={"kind": "wide_file", "path": str(path), "extra_columns": ["load"]},
        window_size=WINDOW,
        split={"train": 0.6, "val": 0.2, "test": 0.2},
        calendar_features=["hour"],
    )
    datamodule.setup("fit")
    net = make_net(2, datamodule.num_features)

    with pytest.raises(UserError, match=r"extra column\(s\) \['load'\].*future.path"):
        forecast_future(net, datamodule, horizon=3, freq="h")
    one_step = forecast_future(net, datamodule, horizon=1, freq="h")  # nothing is fed back
    assert one_step.values.shape == (1, 2)

    future_index = future_timestamps(timestamps[-1], "h", 3)
    too_short = pd.DataFrame({"load": [40.0]}, index=future_index[:1])
    with pytest.raises(UserError, match="no row for"):
        forecast_future(net, datamodule, 3, "h", future_extras=too_short)
    given = pd.DataFrame({"load": [40.0, 41.0, 42.0]}, index=future_index)
    other = pd.DataFrame({"load": [0.0, 0.0, 0.0]}, index=future_index)
    forecast = forecast_future(net, datamodule, 3, "h", future_extras=given).values
    assert forecast.shape == (3, 2)
    # The given values are used: other future loads change the fed-back steps only.
    changed = forecast_future(net, datamodule, 3, "h", future_extras=other).values
    np.testing.assert_allclose(changed[0], forecast[0], rtol=1e-6)
    assert not np.allclose(changed[1:], forecast[1:])


def test_prediction_windows_are_the_methods_prediction_layout():
    datamodule = fitted_datamodule(num_rows=30)
    windows = prediction_windows(datamodule, horizon=1)
    num_rows, num_series = 30, 3

    assert len(windows) == (num_rows - WINDOW + 1) * num_series
    batch = windows.gather(torch.arange(len(windows)))
    scaled = datamodule.scaler.transform(datamodule.feature_table())
    reference = seed_prediction_arrays(scaled, WINDOW, num_series)  # [N, W, id + extras + value]
    np.testing.assert_allclose(batch["x"].numpy(), reference[:, :, 1:], rtol=1e-6)
    np.testing.assert_array_equal(batch["series_id"].numpy(), reference[:, 0, 0])

    net = make_net(num_series, datamodule.num_features, horizon=2)
    table = window_predictions_table(predict_windows(net, prediction_windows(datamodule, 2)), datamodule, "h")
    assert list(table.columns) == ["timestamp", "series", "prediction", "actual", "step"]
    assert len(table) == len(windows) * 2
    timestamps = datamodule.timestamps
    first = table.iloc[0]
    assert (first["timestamp"], first["series"], first["step"]) == (timestamps[WINDOW], "series_1", 1)
    assert first["actual"] == pytest.approx(datamodule.load_frame().series["series_1"].iloc[WINDOW])
    # The last window forecasts the two steps after the data: no actuals there.
    tail = table[table["timestamp"] > timestamps[-1]]
    assert sorted(set(tail["timestamp"])) == [timestamps[-1] + pd.Timedelta(hours=k) for k in (1, 2)]
    assert tail["actual"].isna().all() and table["actual"].notna().sum() == len(table) - len(tail)


@pytest.mark.parametrize(
    ("timestamps", "expected", "message"),
    [
        (pd.date_range("2024-01-01", periods=10, freq="30min"), "h", "every '30min'"),
        (pd.date_range("2024-01-01", periods=10, freq="h").delete(4), "h", "irregular: row 4"),
        (pd.date_range("2024-01-01", periods=10, freq="h").delete([2, 5]), "", "cannot tell"),
    ],
)
def test_check_frequency_refuses_other_and_irregular_steps(timestamps, expected, message):
    with pytest.raises(UserError, match=message):
        check_frequency(timestamps, expected, "new.csv")


def test_check_frequency_accepts_the_training_frequency():
    assert check_frequency(pd.date_range("2024-01-01", periods=2, freq="h"), "h", "x") == "h"
    assert check_frequency(pd.date_range("2024-01-01", periods=5, freq="D"), "", "x") == "D"
