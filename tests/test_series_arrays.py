"""The datamodule's compact arrays (calendar keys, int32 window index, chunked fitting) against a
straightforward float reference: every row's features as float64, pandas' per-series statistics,
one scaler transform over all rows, float32 extras and an int64 index (the set-up before it was
made to hold M5-sized data)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from lstm_forecast.data import series_scaling
from lstm_forecast.data.calendar import CALENDAR_FEATURES, CalendarKeys, calendar_features
from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.long_source import synthetic_long_table
from lstm_forecast.data.scaling import MinMaxScaler
from lstm_forecast.data.split import SPLITS
from lstm_forecast.data.windows import SeriesArrays, Windows, series_chunks

WINDOW = 6


def long_file(tmp_path, freq: str = "h") -> str:
    table = synthetic_long_table(num_series=13, max_length=120, min_length=3, freq=freq, seed=4)
    rng = np.random.default_rng(0)
    table["temperature"] = 20 + 5 * rng.standard_normal(len(table))
    path = tmp_path / "long.csv"
    table.to_csv(path, index=False)
    return str(path)


def reference_arrays(dm: ForecastDataModule, method: str) -> tuple[MinMaxScaler, MinMaxScaler, SeriesArrays]:
    """The scalers and float arrays the obvious way: pandas groupby over the training rows, every
    feature as float64, one transform over all rows."""
    frame = dm.load_frame()
    row_series = frame.row_series
    train = frame.local_index < dm.bounds["train"][1][row_series]
    groups = pd.Series(frame.values[train]).groupby(row_series[train])
    stats = groups.agg(["min", "max", "mean"]).reindex(range(frame.num_series)).fillna(0.0)
    std = groups.std(ddof=0).reindex(range(frame.num_series)).fillna(0.0).to_numpy()
    if method == "standard":
        scaler = MinMaxScaler.from_mean_std(stats["mean"].to_numpy(), std)
    else:
        scaler = MinMaxScaler(stats["min"].to_numpy(), (stats["max"] - stats["min"]).to_numpy())
    table = dm.feature_table()  # [N, E] float64
    extra_scaler = MinMaxScaler.fit(table[train], method)
    values = scaler.transform(frame.values, column_index=row_series)
    arrays = SeriesArrays.from_rows(values, extra_scaler.transform(table), frame.offsets, dm.window_size)
    return scaler, extra_scaler, arrays


def expected_targets(dm: ForecastDataModule, split: str) -> np.ndarray:
    """Frame rows of every window's first target, series by series, one window at a time."""
    lo, hi = dm.bounds[split]
    rows = []
    for s in range(dm.num_series):
        if dm.series_train_rows[s] == 0:
            continue
        first = max(lo[s], 1) if split == "train" else lo[s]
        rows.extend(dm.load_frame().offsets[s] + t for t in range(first, hi[s] - dm.horizon + 1))
    return np.array(rows, dtype=np.int64)


@pytest.mark.parametrize(
    ("scaler", "calendar", "padding_mask", "split", "keys"),
    [
        ("minmax", ["hour", "day_of_week", "workday"], False, None, True),
        ("standard", ["hour", "day_of_week", "workday"], True, None, True),
        ("minmax", ["day_of_year", "month", "minute", "day_of_month"], True, None, True),  # int16 keys
        ("minmax", ["hour", "month"], False, None, False),  # calendar as float extras (too many keys)
        ("standard", ["hour", "month"], True, None, False),
        ("minmax", [], False, None, False),  # no calendar: floats only
        # Dates: late series have no training rows (left out), early ones no test rows.
        (
            "standard",
            ["hour"],
            False,
            {"val_start": "2024-01-03 12:00", "test_start": "2024-01-04 12:00"},
            True,
        ),
    ],
)
def test_batches_match_the_float_reference(
    tmp_path, monkeypatch, scaler, calendar, padding_mask, split, keys
):
    if not keys:
        monkeypatch.setattr(series_scaling, "calendar_keys", lambda frame, names: None)
    dm = ForecastDataModule(
        source={
            "kind": "long_file",
            "path": long_file(tmp_path),
            "extra_columns": ["temperature"],
            "static_columns": ["category"],
        },
        window_size=WINDOW,
        horizon=2,
        split=split,
        calendar_features=calendar,
        padding_mask=padding_mask,
        scaler=scaler,
    )
    dm.setup()
    if split is not None:
        assert (dm.series_train_rows == 0).any(), "a series without training rows is left out"
        frame = dm.load_frame()
        for key, name in (("val_start", "val"), ("test_start", "test")):
            before = frame.row_series[frame.timestamps < pd.Timestamp(split[key])]
            np.testing.assert_array_equal(dm.bounds[name][0], np.bincount(before, minlength=dm.num_series))
    series_scaler, extra_scaler, arrays = reference_arrays(dm, scaler)
    exact = scaler == "minmax"  # min and max are exact; means and stds agree to rounding
    for fitted, reference in ((dm.scaler, series_scaler), (dm.extra_scaler, extra_scaler)):
        for key in ("data_min", "data_range"):
            if exact:
                np.testing.assert_array_equal(getattr(fitted, key), getattr(reference, key))
            else:
                np.testing.assert_allclose(getattr(fitted, key), getattr(reference, key), rtol=1e-12)
    assert dm.windows["train"].num_features == len(calendar) + 1 + int(padding_mask) + 1
    if keys and calendar:
        assert dm.arrays.calendar.dtype == (torch.int16 if "minute" in calendar else torch.uint8)
        assert dm.arrays.extras.shape[1] == 1  # only the user column is a float
    else:
        assert dm.arrays.calendar is None and dm.arrays.extras.shape[1] == 1 + len(calendar)
    for split_name in SPLITS:
        windows = dm.windows[split_name]
        assert windows.targets.dtype == torch.int32
        reference = Windows(arrays, windows.targets.long(), dm.horizon, padding_mask, True, dm.static_codes())
        np.testing.assert_array_equal(
            windows.locate(torch.arange(len(windows)))[0], expected_targets(dm, split_name)
        )
        index = torch.randperm(len(windows), generator=torch.Generator().manual_seed(0))[:300]
        batch, expected = windows.gather(index), reference.gather(index)
        assert batch.keys() == expected.keys()
        for key in batch:
            assert batch[key].dtype == expected[key].dtype, key
            if exact or key != "x":
                torch.testing.assert_close(batch[key], expected[key], rtol=0, atol=0)
            else:  # float32 rounding of the slightly different statistics
                torch.testing.assert_close(batch[key], expected[key], rtol=0, atol=1e-6)


def test_restored_scalers_build_the_same_arrays(tmp_path):
    options = {
        "source": {"kind": "long_file", "path": long_file(tmp_path), "extra_columns": ["temperature"]},
        "window_size": WINDOW,
        "calendar_features": ["hour", "workday"],
    }
    fitted = ForecastDataModule(**options)
    fitted.setup()
    restored = ForecastDataModule(**options)
    restored.load_state_dict(fitted.state_dict())
    restored.setup()
    for name in ("values", "extras", "calendar", "calendar_table", "block_start"):
        torch.testing.assert_close(
            getattr(restored.arrays, name), getattr(fitted.arrays, name), rtol=0, atol=0
        )


def test_calendar_keys_give_the_batches_of_float_features():
    stamps = pd.date_range("2023-12-28 22:00", periods=40, freq="7h")
    names = ["hour", "day_of_week", "day_of_year", "workday"]
    offsets = np.array([0, 15, 15, 40])  # a series without rows in the middle
    floats = calendar_features(stamps, names).to_numpy()
    scaler = MinMaxScaler.fit(floats)
    keys = CalendarKeys.build(stamps[0], stamps[-1], names)
    assert keys.dtype == np.int16  # 14 days x 24 hours
    table = np.zeros((keys.num_keys, len(names)), dtype=np.float32)
    table[1:] = scaler.transform(keys.table)
    values = np.linspace(-1, 1, 40)
    with_keys = SeriesArrays.from_rows(values, np.empty((40, 0)), offsets, 5, keys.keys(stamps), table)
    with_floats = SeriesArrays.from_rows(values, scaler.transform(floats), offsets, 5)
    targets = with_floats.padded_ranges(np.array([1, 0, 0]), np.array([14, 0, 25]))
    assert targets.dtype == torch.int32 and len(targets) == 39
    index = torch.arange(39)
    for mask in (False, True):
        a = Windows(with_keys, targets, 1, mask).gather(index)
        b = Windows(with_floats, targets.long(), 1, mask).gather(index)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_series_chunks_cover_every_series_once():
    offsets = np.concatenate([[0], np.cumsum([5, 0, 0, 300, 2, 0, 7, 1000, 0])])
    chunks = series_chunks(offsets, rows=100)
    assert chunks[0][0] == 0 and chunks[-1][1] == len(offsets) - 1
    assert all(a[1] == b[0] for a, b in itertools.pairwise(chunks))
    assert all(s0 < s1 for s0, s1 in chunks)


@pytest.mark.parametrize("tz", [None, "Europe/Berlin"])
def test_calendar_keys_look_up_the_calendar_features(tz):
    rng = np.random.default_rng(3)
    # Before and after 1970, minutes apart, across DST changes.
    sparse = pd.DatetimeIndex(
        np.sort(rng.integers(-3 * 10**18 // 2, 2 * 10**18, 5000)).astype("datetime64[ns]")
    ).floor("min")
    dense = pd.date_range("2023-03-20", "2023-11-05", freq="17min")
    for timestamps, names in (
        (sparse, ["day_of_week", "month", "day_of_month", "workday"]),
        (sparse, ["hour", "day_of_week"]),
        (dense, sorted(set(CALENDAR_FEATURES) - {"minute"})),
        (dense[:3], ["minute", "workday"]),
    ):
        timestamps = timestamps if tz is None else timestamps.tz_localize("UTC").tz_convert(tz)
        keys = CalendarKeys.build(
            timestamps[0] - pd.Timedelta(days=1), timestamps[-1] + pd.Timedelta(days=1), names
        )
        row_keys = keys.keys(timestamps)
        assert row_keys.min() >= 1 and row_keys.dtype == keys.dtype
        np.testing.assert_array_equal(
            keys.table[row_keys - 1], calendar_features(timestamps, names).to_numpy()
        )
    # Every minute of a year of days has too many combinations for two bytes: no keys.
    assert CalendarKeys.build(dense[0], dense[-1], ["minute", "hour", "day_of_year"]) is None
