"""Recursive and direct forecasting past the data, and the full-window prediction layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lstm_forecast.data.blog_layout import seed_prediction_arrays
from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.tables import forecast_table
from lstm_forecast.evaluation.window_forecasts import predict_windows
from lstm_forecast.inference.forecasting import (
    check_frequency,
    fed_back_steps,
    forecast_future,
    prediction_windows,
)
from lstm_forecast.inference.future_values import FutureValues, future_values
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
    datamodule.setup("fit")  # fits the scalers, as training does
    return datamodule


def hand_forecast(
    net: EmbeddingBiLSTM,
    datamodule: ForecastDataModule,
    horizon: int,
    model_horizon: int = 1,
    future_calendar: bool = True,
) -> np.ndarray:
    """``[S, horizon]`` scaled forecasts, the loop written out by hand for each hourly series: forecast
    the next block from the last ``W`` scaled rows (extras then the value, the training layout),
    append it, repeat. The appended rows get the calendar features of the series' next hours (or,
    with ``future_calendar=False``, those of its last observed row)."""
    frame = datamodule.load_frame()
    values = datamodule.scaled_values(frame.values, frame.row_series)
    extras = datamodule.scaled_extras(datamodule.feature_table())
    forecasts = []
    for s in range(frame.num_series):
        rows = slice(frame.offsets[s], frame.offsets[s + 1])
        last = frame.timestamps[rows][-1]
        ahead = pd.DatetimeIndex([last + pd.Timedelta(hours=k) for k in range(1, horizon + 1)])
        if future_calendar:
            future = datamodule.scaled_extras(datamodule.feature_table(ahead, np.zeros((horizon, 0))))
        else:
            future = np.repeat(extras[rows][-1:], horizon, axis=0)
        known_values, known_extras = list(values[rows]), np.vstack([extras[rows], future])
        forecast: list[float] = []
        while len(forecast) < horizon:
            end = len(known_values)
            step = np.column_stack([known_extras[end - WINDOW : end], known_values[end - WINDOW : end]])
            with torch.no_grad():
                block = net(torch.tensor(step[None], dtype=torch.float32), torch.tensor([s + 1]))[0]
            block = block[: horizon - len(forecast)].tolist()
            forecast += block
            known_values += block
        forecasts.append(forecast)
    return np.array(forecasts)


def test_recursive_forecast_feeds_each_forecast_back():
    datamodule = fitted_datamodule()
    net = make_net(datamodule.num_series, datamodule.num_features)

    forecast = forecast_future(net, datamodule, horizon=5)

    assert forecast.prediction.shape == (3, 5)
    assert forecast.target is None
    assert forecast.series_index.tolist() == [0, 1, 2]
    assert forecast.target_row.tolist() == [40, 80, 120]  # one past each series' last row
    # The same loop written out by hand, with the calendar features of the hours after the data.
    expected = hand_forecast(net, datamodule, horizon=5)
    np.testing.assert_allclose(forecast.prediction, expected, rtol=1e-5, atol=1e-6)
    # The network reads those features: stale ones (the last observed row's) change every fed-back step.
    stale = hand_forecast(net, datamodule, horizon=5, future_calendar=False)
    np.testing.assert_allclose(stale[:, 0], expected[:, 0], rtol=1e-6, atol=1e-7)
    assert not np.isclose(stale[:, 1:], expected[:, 1:], rtol=1e-5, atol=1e-6).any()


def test_direct_multi_step_forecast_advances_by_blocks():
    datamodule = fitted_datamodule()
    net = make_net(datamodule.num_series, datamodule.num_features, horizon=3)

    forecast = forecast_future(net, datamodule, horizon=7, model_horizon=3)

    assert forecast.prediction.shape == (3, 7)
    expected = hand_forecast(net, datamodule, horizon=7, model_horizon=3)
    np.testing.assert_allclose(forecast.prediction, expected, rtol=1e-5, atol=1e-6)
    # The first block is the direct forecast of each series' last full window.
    windows = predict_windows(net, prediction_windows(datamodule, horizon=3))
    last_window = np.flatnonzero(np.diff(np.append(windows.series_index, -1)) != 0)  # [S]
    # atol too: batches of other sizes round differently (a value of -0.0037 once differed by 7e-9).
    np.testing.assert_allclose(
        forecast.prediction[:, :3], windows.prediction[last_window], rtol=1e-6, atol=1e-7
    )
    # Only forecasts that become context need extras: steps 1..6 of 7 with blocks of 3.
    assert fed_back_steps(7, 3) == 6
    assert fed_back_steps(3, 3) == 0 and fed_back_steps(5, 1) == 4


def test_forecast_table_of_the_future_timestamps_and_units():
    datamodule = fitted_datamodule()
    net = make_net(datamodule.num_series, datamodule.num_features)
    last = datamodule.timestamps[-1]  # every synthetic series ends at the same hour

    table = forecast_table(forecast_future(net, datamodule, horizon=4), datamodule)

    assert list(table.columns) == ["series", "timestamp", "step", "prediction", "actual"]
    assert len(table) == 12
    assert table["series"].tolist() == [f"series_{k}" for k in (1, 2, 3) for _ in range(4)]
    assert table["step"].tolist() == [1, 2, 3, 4] * 3
    assert table["timestamp"].tolist() == [last + pd.Timedelta(hours=k) for k in range(1, 5)] * 3
    assert table["actual"].isna().all()  # past the data
    # Original units: the first step equals the network on the last full window, inverted by the scaler.
    windows = predict_windows(net, prediction_windows(datamodule, horizon=1))
    last_windows = windows.prediction[np.isin(windows.target_row, [40, 80, 120]), 0]  # row T
    assert last_windows.shape == (3,)
    expected = datamodule.inverse_values(last_windows, np.arange(3))
    np.testing.assert_allclose(table.loc[table["step"] == 1, "prediction"], expected, rtol=1e-5)
    # ... and they are not the scaled numbers.
    assert not np.allclose(expected, last_windows)


def wide_csv(path: Path, timestamps: pd.DatetimeIndex, **extra: np.ndarray) -> Path:
    step = np.arange(len(timestamps), dtype=float)
    table = pd.DataFrame({"date": timestamps, "a": np.sin(step), "b": np.cos(step), **extra})
    table.to_csv(path, index=False)
    return path


def test_user_extras_need_future_values(tmp_path):
    timestamps = pd.date_range("2024-01-01", periods=40, freq="h")
    path = wide_csv(tmp_path / "with_load.csv", timestamps, load=np.arange(40.0))
    datamodule = ForecastDataModule(
        source={"kind": "wide_file", "path": str(path), "extra_columns": ["load"]},
        window_size=WINDOW,
        split={"train": 0.6, "val": 0.2, "test": 0.2},
        calendar_features=["hour"],
    )
    datamodule.setup("fit")
    net = make_net(2, datamodule.num_features)

    with pytest.raises(UserError, match=r"extra column\(s\) \['load'\].*future.path"):
        forecast_future(net, datamodule, horizon=3)
    one_step = forecast_future(net, datamodule, horizon=1)  # nothing is fed back
    assert one_step.prediction.shape == (2, 1)

    future_index = pd.date_range(timestamps[-1] + pd.Timedelta(hours=1), periods=3, freq="h")

    def future(**columns: list[float]) -> FutureValues:
        """A wide future table (timestamp column ``date``) of the steps after the data."""
        rows = len(next(iter(columns.values())))
        return future_values(pd.DataFrame({"date": future_index[:rows], **columns}), datamodule, "f.csv")

    with pytest.raises(UserError, match="no values of"):
        forecast_future(net, datamodule, 3, future=future(load=[40.0]))
    with pytest.raises(UserError, match=r"lacks the extra column\(s\) \['load'\]"):
        forecast_future(net, datamodule, 3, future=future(x=[0.0] * 3))
    given = future(load=[40.0, 41.0, 42.0])
    other = future(load=[0.0, 0.0, 0.0])
    forecast = forecast_future(net, datamodule, 3, future=given).prediction
    assert forecast.shape == (2, 3)
    np.testing.assert_allclose(forecast[:, 0], one_step.prediction[:, 0], rtol=1e-6)
    # The given values are used: other future loads change the fed-back steps only.
    changed = forecast_future(net, datamodule, 3, future=other).prediction
    np.testing.assert_allclose(changed[:, 0], forecast[:, 0], rtol=1e-6)
    assert not np.allclose(changed[:, 1:], forecast[:, 1:])


def test_prediction_windows_are_the_methods_prediction_layout():
    datamodule = fitted_datamodule(num_rows=30)
    windows = prediction_windows(datamodule, horizon=1)
    num_rows, num_series = 30, 3
    per_series = num_rows - WINDOW + 1

    assert len(windows) == per_series * num_series
    batch = windows.gather(torch.arange(len(windows)))
    # The method's array of the same scaled data: [T, series + extras], time-major windows.
    frame = datamodule.load_frame()
    values = datamodule.scaled_values(frame.values, frame.row_series).reshape(num_series, num_rows).T
    extras = datamodule.scaled_extras(datamodule.feature_table())[:num_rows]  # shared by every series
    reference = seed_prediction_arrays(np.column_stack([values, extras]), WINDOW, num_series)
    # Our windows are series-major: window s * per_series + j is the method's j * S + s.
    order = (np.arange(per_series)[None, :] * num_series + np.arange(num_series)[:, None]).ravel()
    reference = reference[order]  # [N, W, id + extras + value]
    np.testing.assert_allclose(batch["x"].numpy(), reference[:, :, 1:], rtol=1e-6)
    np.testing.assert_array_equal(batch["series_id"].numpy(), reference[:, 0, 0])
    # The forecasts are the network's own forward pass on those hand-built windows.
    net = make_net(num_series, datamodule.num_features, horizon=2)
    forecasts = predict_windows(net, prediction_windows(datamodule, 2))
    with torch.no_grad():
        direct = net(torch.from_numpy(reference[:, :, 1:]), torch.from_numpy(reference[:, 0, 0]).long())
    np.testing.assert_allclose(forecasts.prediction, direct.numpy(), rtol=1e-5, atol=1e-6)

    table = forecast_table(forecasts, datamodule)
    assert list(table.columns) == ["series", "timestamp", "step", "prediction", "actual"]
    assert len(table) == len(windows) * 2
    timestamps = datamodule.timestamps
    first = table.iloc[0]
    assert (first["timestamp"], first["series"], first["step"]) == (timestamps[WINDOW], "series_1", 1)
    assert first["actual"] == pytest.approx(frame.values[WINDOW])
    series_2 = table[table["series"] == "series_2"].iloc[1]  # step 2 of its first window
    assert series_2["timestamp"] == timestamps[WINDOW + 1]
    assert series_2["actual"] == pytest.approx(frame.values[num_rows + WINDOW + 1])
    window_series = np.repeat(np.arange(num_series), per_series)[:, None]  # [N, 1]
    expected = datamodule.inverse_values(direct.numpy(), window_series).ravel()
    np.testing.assert_allclose(table["prediction"], expected, rtol=1e-5)
    # The last window forecasts the two steps after the data: no actuals there.
    last = timestamps[num_rows - 1]
    tail = table[table["timestamp"] > last]
    assert sorted(set(tail["timestamp"])) == [last + pd.Timedelta(hours=k) for k in (1, 2)]
    assert len(tail) == 3 * num_series  # the last window's two steps, the one before's second
    assert tail["actual"].isna().all() and table["actual"].notna().sum() == len(table) - len(tail)


def wide_datamodule(tmp_path: Path, timestamps: pd.DatetimeIndex) -> ForecastDataModule:
    path = wide_csv(tmp_path / "new.csv", timestamps)
    return ForecastDataModule(source={"kind": "wide_file", "path": str(path)}, window_size=WINDOW)


@pytest.mark.parametrize(
    ("timestamps", "expected", "message"),
    [
        (pd.date_range("2024-01-01", periods=10, freq="30min"), "h", "every '30min'"),
        (pd.date_range("2024-01-01", periods=10, freq="h").delete(4), "h", "irregular: line 6"),
        (pd.date_range("2024-01-01", periods=10, freq="D").delete([2, 5]), "D", "irregular: line 4"),
    ],
)
def test_check_frequency_refuses_other_and_irregular_steps(tmp_path, timestamps, expected, message):
    datamodule = wide_datamodule(tmp_path, timestamps)
    with pytest.raises(UserError, match=message) as error:
        check_frequency(datamodule, expected, "new.csv")
    assert "new.csv" in str(error.value) and "\n" not in str(error.value)


def test_check_frequency_accepts_the_training_frequency(tmp_path):
    hourly = wide_datamodule(tmp_path, pd.date_range("2024-01-01", periods=5, freq="h"))
    assert hourly.freq == "h"
    assert check_frequency(hourly, "h", "x") is None
    daily = wide_datamodule(tmp_path, pd.date_range("2024-01-01", periods=5, freq="D"))
    assert daily.freq == "D"
    assert check_frequency(daily, "", "x") is None  # trained on irregular rows: nothing to compare
    with pytest.raises(UserError, match="trained on 'h'"):
        check_frequency(daily, "h", "x")
