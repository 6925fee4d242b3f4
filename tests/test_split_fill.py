"""Fills after the split: no filled value, nor a scaler fitted on training rows, reads a later split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.frame import FILL_METHODS

LENGTH, SPLIT = 40, {"train": 0.5, "val": 0.25, "test": 0.25}  # train rows 0-19, val 20-29, test 30-39
STAMPS = pd.date_range("2024-01-01", periods=LENGTH, freq="h")


def series_values(later: float, seed: int) -> np.ndarray:
    """``[LENGTH, 3]`` values of a, b and the extra x: missing near the train/val and val/test
    boundaries; rows from 20 on (val, test) are shifted by ``later`` and get other missing values."""
    values = np.random.default_rng(0).normal(size=(LENGTH, 3)) + 5.0
    values[20:] += later
    values[20:] += np.random.default_rng(seed).normal(size=(LENGTH - 20, 3))
    values[[17, 18, 19], 0] = np.nan  # the end of a's training rows
    values[19, 2] = np.nan  # the extra feature's last training row
    values[28:30, 1] = np.nan  # the end of b's validation rows
    later_gaps = [20, 21, 31] if seed else [25, 30]
    values[later_gaps, 0] = np.nan
    values[later_gaps, 2] = np.nan
    return values


def wide_source(tmp_path, values: np.ndarray, method: str) -> dict:
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "wide.csv"
    pd.DataFrame({"date": STAMPS, "a": values[:, 0], "b": values[:, 1], "x": values[:, 2]}).to_csv(
        path, index=False
    )
    return {
        "kind": "wide_file",
        "path": str(path),
        "series_columns": ["a", "b"],
        "extra_columns": ["x"],
        "fill_method": method,
    }


def long_source(tmp_path, values: np.ndarray, method: str) -> dict:
    rows = [
        pd.DataFrame({"name": name, "when": STAMPS, "value": values[:, column], "x": values[:, 2]})
        for column, name in enumerate("ab")
    ]
    table = pd.concat(rows).reset_index(drop=True)
    table = table.drop(index=[18, 22])  # missing steps: a's rows 18 (train) and 22 (val)
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "long.csv"
    table.to_csv(path, index=False)
    return {
        "kind": "long_file",
        "path": str(path),
        "series_column": "name",
        "timestamp_column": "when",
        "value_column": "value",
        "extra_columns": ["x"],
        "fill_method": method,
    }


def fitted_datamodule(source: dict) -> ForecastDataModule:
    dm = ForecastDataModule(source=source, window_size=4, horizon=2, split=SPLIT, batch_size=4)
    dm.setup()
    return dm


def rows_of(dm: ForecastDataModule, split: str) -> np.ndarray:
    """Values and extras of ``split``'s rows of every series, in order."""
    frame, (lo, hi) = dm.load_frame(), dm.bounds[split]
    rows = np.concatenate(
        [np.arange(start + a, start + b) for start, a, b in zip(frame.offsets[:-1], lo, hi, strict=True)]
    )
    return np.column_stack([frame.values[rows], frame.extras.to_numpy()[rows]])


@pytest.mark.parametrize("layout", [wide_source, long_source])
@pytest.mark.parametrize("method", FILL_METHODS)
def test_training_rows_and_scalers_never_see_later_splits(tmp_path, layout, method):
    first = fitted_datamodule(layout(tmp_path / "1", series_values(0.0, 0), method))
    second = fitted_datamodule(layout(tmp_path / "2", series_values(100.0, 1), method))
    train = rows_of(first, "train")
    assert np.isfinite(train).all()
    np.testing.assert_array_equal(train, rows_of(second, "train"))
    for name, state in first.fitted.state_dict().items():
        other = second.fitted.state_dict()[name]
        if isinstance(state, dict):
            for key in state:
                np.testing.assert_array_equal(state[key].numpy(), other[key].numpy(), err_msg=name)
        else:
            np.testing.assert_array_equal(state.numpy(), other.numpy(), err_msg=name)


@pytest.mark.parametrize("layout", [wide_source, long_source])
@pytest.mark.parametrize("method", ["bfill", "interpolate"])
def test_validation_rows_never_see_test_rows_and_split_ends_carry_forward(tmp_path, layout, method):
    values = series_values(0.0, 0)
    changed = values.copy()
    changed[30:] += 50.0
    changed[[30, 33], 1] = np.nan
    first = fitted_datamodule(layout(tmp_path / "1", values, method))
    second = fitted_datamodule(layout(tmp_path / "2", changed, method))
    np.testing.assert_array_equal(rows_of(first, "val"), rows_of(second, "val"))
    frame = first.load_frame()
    b = frame.values[frame.offsets[1] : frame.offsets[2]]
    assert b[28] == b[29] == b[27]  # the gap ending b's validation rows takes the last earlier value
    a = frame.values[: frame.offsets[1]]
    assert a[17] == a[18] == a[19] == a[16]  # ...and the one ending a's training rows
