"""Forecasts past the end from each series' tail, and the window forecasts a chunk at a time, against
the straightforward full-array implementation they replace (every row scaled in float64, one window
set over all of them): the same numbers, bit for bit, for every layout and option."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

import lstm_forecast.inference.forecasting as forecasting
from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.windows import SeriesArrays, index_ranges
from lstm_forecast.evaluation.tables import forecast_table
from lstm_forecast.evaluation.window_forecasts import predict_windows
from lstm_forecast.files import write_table, write_table_chunks
from lstm_forecast.inference.forecasting import (
    forecast_future,
    forecastable_series,
    future_user_extras,
    prediction_counts,
    prediction_windows,
)
from lstm_forecast.inference.future_values import future_values
from lstm_forecast.models.net import EmbeddingBiLSTM

WINDOW = 6
# Ragged hourly series: "b" is shorter than the window (left out: no forecast), "d" has a single
# window.
SERIES = {"a": ("2024-01-01 00:00", 40), "b": ("2024-01-02 10:00", 4), "c": ("2024-01-01 15:00", 31)}
SERIES |= {"d": ("2024-01-01 03:00", 26), "e": ("2024-01-03 00:00", 35)}


# ----------------------------------------------------------------------------- the reference
def full_arrays(
    dm: ForecastDataModule, horizon: int = 0, future=None, model_horizon: int = 1
) -> SeriesArrays:
    """Every row of every series scaled in float64, grown by the rows to forecast into: the
    implementation before forecasts read each series' tail only (O(rows) float64)."""
    frame = dm.load_frame()
    values = dm.scaled_values(frame.values, frame.row_series)  # [N]
    extras = dm.scaled_extras(dm.feature_table())  # [N, E]
    offsets = frame.offsets
    if horizon:
        future_rows = -(-horizon // model_horizon) * model_horizon
        num_series = frame.num_series
        grown = offsets + np.arange(num_series + 1) * future_rows
        observed = np.arange(frame.num_rows) + frame.row_series * future_rows
        known = np.flatnonzero(frame.lengths > 0)
        ahead = index_ranges(grown[known + 1] - future_rows, np.full(len(known), future_rows))
        stamps = frame.future_timestamps(known, future_rows)
        step = np.tile(np.arange(future_rows), len(known))
        series = np.repeat(known, future_rows)
        user = future_user_extras(dm, series, stamps, step, horizon, model_horizon, future)
        future_extras = np.nan_to_num(dm.scaled_extras(dm.feature_table(stamps, user)))
        grown_values = np.zeros(len(values) + num_series * future_rows)
        grown_extras = np.zeros((len(grown_values), extras.shape[1]))
        grown_values[observed], grown_extras[observed] = values, extras
        grown_extras[ahead] = future_extras
        values, extras, offsets = grown_values, grown_extras, grown
    return SeriesArrays.from_rows(values, extras, offsets, dm.window_size)


@torch.no_grad()
def reference_forecast(net, dm, horizon, model_horizon=1, future=None):
    """``(prediction [M, H], quantiles [M, H, Q] or None)`` from the full arrays, every series at once."""
    frame = dm.load_frame()
    series = forecastable_series(dm)
    arrays = full_arrays(dm, horizon, future, model_horizon)
    start = arrays.padded_rows(series, frame.lengths[series])
    forecast = np.empty((len(series), horizon), dtype=np.float32)
    quantiles = None
    for step in range(0, horizon, model_horizon):
        windows = dm.window_set(arrays, torch.from_numpy(start + step), model_horizon, with_target=False)
        predicted = predict_windows(net, windows, dm.eval_batch_size)
        take = min(model_horizon, horizon - step)
        forecast[:, step : step + take] = predicted.prediction[:, :take]
        if step == 0 and predicted.quantiles is not None:
            quantiles = np.full((len(series), horizon, predicted.quantiles.shape[-1]), np.nan, np.float32)
            quantiles[:, :take] = predicted.quantiles[:, :take]
        arrays.values[torch.from_numpy(start[:, None] + step + np.arange(take))] = torch.from_numpy(
            predicted.prediction[:, :take]
        )
    return forecast, quantiles


def reference_windows(dm: ForecastDataModule, horizon: int):
    """Every full window of the data over the full arrays."""
    series, count = prediction_counts(dm, horizon)
    min_rows = dm.window_size + (horizon if dm.future_columns else 0)
    arrays = full_arrays(dm)
    local = index_ranges(np.full(len(series), dm.window_size), count)
    assert (count == dm.load_frame().lengths[series] - min_rows + 1).all()
    targets = torch.from_numpy(arrays.padded_rows(np.repeat(series, count), local))
    return dm.window_set(arrays, targets, horizon, with_target=False)


# ----------------------------------------------------------------------------- data and models
class QuantileNet(nn.Module):
    """A network emitting ``[B, H, 3]`` sorted quantiles (a quantile model's output)."""

    quantile_levels = (0.1, 0.5, 0.9)

    def __init__(self, net: EmbeddingBiLSTM) -> None:
        super().__init__()
        self.net = net

    def forward(self, x, series_id, static=None, x_future=None):
        out = self.net(x, series_id, static, x_future)  # [B, 3H]
        return out.view(len(x), -1, 3).sort(dim=-1).values  # [B, H, 3]


def panel(tmp_path: Path) -> tuple[Path, Path]:
    """The ragged panel and a long future file with ``promo`` for 12 hours after each series' end."""
    parts, ahead = [], []
    for k, (name, (start, length)) in enumerate(SERIES.items()):
        stamps = pd.date_range(start, periods=length + 12, freq="h")
        steps = np.arange(length + 12)
        rows = pd.DataFrame(
            {
                "shop": name,
                "when": stamps,
                "sales": 10 ** (k % 3) * (2 + np.sin(steps / (k + 2))) + 0.1 * steps,
                "promo": np.cos(steps * (k + 1.3)),
                "kind": "kiosk" if k % 2 else "shop",
            }
        )
        parts.append(rows[:length])
        ahead.append(rows[length:].drop(columns=["sales", "kind"]))
    data, future = tmp_path / "panel.csv", tmp_path / "future.csv"
    pd.concat(parts).to_csv(data, index=False)
    pd.concat(ahead).to_csv(future, index=False)
    return data, future


CASES = {
    # name: (datamodule options, model horizon, forecast horizon, quantiles, with the future file)
    "calendar": ({"calendar_features": ["hour", "day_of_week"]}, 1, 5, False, False),
    "extras_static_mask_blocks": (
        {"source": {"extra_columns": ["promo"], "static_columns": ["kind"]}, "padding_mask": True},
        2,
        5,
        False,
        True,
    ),
    "future_columns": (
        {"source": {"extra_columns": ["promo"]}, "future_columns": ["promo"], "calendar_features": ["hour"]},
        3,
        7,
        False,
        True,
    ),
    "quantiles": ({"calendar_features": ["workday"], "padding_mask": True}, 2, 5, True, False),
}


def case_setup(tmp_path: Path, name: str, batch: int):
    options, model_horizon, horizon, quantiles, with_future = CASES[name]
    options = dict(options)
    data, future_file = panel(tmp_path)
    source = {
        "kind": "long_file",
        "path": str(data),
        "series_column": "shop",
        "timestamp_column": "when",
        "value_column": "sales",
        **options.pop("source", {}),
    }
    dm = ForecastDataModule(
        source=source,
        window_size=WINDOW,
        horizon=model_horizon,
        split={"train": 0.6, "val": 0.2, "test": 0.2},
        eval_batch_size=batch,
        **options,
    )
    dm.setup("fit")
    torch.manual_seed(0)
    net = EmbeddingBiLSTM(
        dm.num_series,
        dm.num_features,
        embedding_dim=3,
        num_units=5,
        dense_size=4,
        dropout=0.0,
        horizon=model_horizon * (3 if quantiles else 1),
        static_cardinalities=dm.static_cardinalities,
        num_future_features=len(dm.future_feature_names),
    )
    if dm.future_columns:  # the head's rows are per step: one per forecast step
        net = EmbeddingBiLSTM(
            dm.num_series,
            dm.num_features,
            embedding_dim=3,
            num_units=5,
            dense_size=4,
            dropout=0.0,
            horizon=model_horizon,
            num_future_features=len(dm.future_feature_names),
        )
    net = (QuantileNet(net) if quantiles else net).eval()
    future = None
    if with_future:
        future = future_values(pd.read_csv(future_file), dm, str(future_file))
    return dm, net, model_horizon, horizon, future


@pytest.mark.parametrize("batch", [2, 1024])
@pytest.mark.parametrize("name", list(CASES))
def test_the_tail_forecast_is_the_full_array_forecast_bit_for_bit(tmp_path, monkeypatch, name, batch):
    dm, net, model_horizon, horizon, future = case_setup(tmp_path, name, batch)
    expected, expected_quantiles = reference_forecast(net, dm, horizon, model_horizon, future)
    # A few series per chunk (whole batches of 2), or every series in one.
    monkeypatch.setattr(forecasting, "CHUNK_ROWS", 8 if batch == 2 else forecasting.CHUNK_ROWS)

    forecasts = forecast_future(net, dm, horizon, model_horizon, future)

    np.testing.assert_array_equal(forecasts.prediction, expected)
    if expected_quantiles is None:
        assert forecasts.quantiles is None
    else:
        np.testing.assert_array_equal(forecasts.quantiles, expected_quantiles)
    frame = dm.load_frame()
    series = forecastable_series(dm)
    assert forecasts.series_index.tolist() == series.tolist()
    assert forecasts.target_row.tolist() == frame.offsets[series + 1].tolist()
    # The short series "b" (fewer rows than a window) is left out, as in every app.
    assert dm.series_names.index("b") not in series.tolist()


@pytest.mark.parametrize("name", list(CASES))
def test_window_forecasts_a_chunk_at_a_time_are_the_full_array_ones(tmp_path, name):
    batch = 3
    dm, net, model_horizon, _, _ = case_setup(tmp_path, name, batch)
    reference = reference_windows(dm, model_horizon)
    expected = predict_windows(net, reference, batch)
    counts = prediction_counts(dm, model_horizon)
    total = int(counts[1].sum())
    assert total == len(reference)

    # Chunks of whole batches, cutting series anywhere (first, last and middle windows).
    parts = [
        predict_windows(net, prediction_windows(dm, model_horizon, first, first + 2 * batch, counts), batch)
        for first in range(0, total, 2 * batch)
    ]

    np.testing.assert_array_equal(np.concatenate([p.prediction for p in parts]), expected.prediction)
    np.testing.assert_array_equal(np.concatenate([p.series_index for p in parts]), expected.series_index)
    np.testing.assert_array_equal(np.concatenate([p.target_row for p in parts]), expected.target_row)
    np.testing.assert_array_equal(np.concatenate([p.last_value for p in parts]), expected.last_value)
    if expected.quantiles is not None:
        np.testing.assert_array_equal(np.concatenate([p.quantiles for p in parts]), expected.quantiles)
    tables = pd.concat([forecast_table(p, dm) for p in parts], ignore_index=True)
    pd.testing.assert_frame_equal(tables, forecast_table(expected, dm))
    # The batches are the network's inputs over the full arrays, windows by windows.
    first = prediction_windows(dm, model_horizon, 4, 9, counts).gather(torch.arange(5))
    whole = reference.gather(torch.arange(4, 9))
    assert first.keys() == whole.keys()
    for key in whole:
        torch.testing.assert_close(first[key], whole[key], rtol=0, atol=0)


@pytest.mark.parametrize("freq", ["h", "D"])
def test_a_table_written_in_chunks_is_the_table_written_whole(tmp_path, freq):
    stamps = pd.date_range("2024-01-01", periods=30, freq=freq)
    table = pd.DataFrame(
        {"series": np.repeat(["a", "b"], 15), "timestamp": stamps, "prediction": np.linspace(0, 1, 30) / 3}
    )
    table.loc[3, "prediction"] = np.nan
    whole = write_table(tmp_path / "whole.csv", table).read_bytes()
    # Chunks of 1 and 4 rows: in hourly data a chunk of midnights only keeps its time of day.
    midnight_only = bool((table["timestamp"].dt.normalize() == table["timestamp"]).all())
    for size in (1, 4):
        chunks = (table[i : i + size] for i in range(0, len(table), size))
        path = write_table_chunks(tmp_path / "chunks.csv", chunks, dates_only=midnight_only)
        assert path.read_bytes() == whole
    chunks = (table[i : i + 4] for i in range(0, len(table), 4))
    parquet = write_table_chunks(tmp_path / "chunks.parquet", chunks)
    pd.testing.assert_frame_equal(pd.read_parquet(parquet), table)
    assert pq.ParquetFile(parquet).num_row_groups == 8
