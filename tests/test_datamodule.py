import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.frame import SeriesFrame
from lstm_forecast.data.sources import synthetic_frame
from lstm_forecast.data.split import split_bounds
from lstm_forecast.errors import UserError

SYNTHETIC = {"kind": "synthetic", "num_series": 3, "num_rows": 200, "seed": 0}


def make_datamodule(**overrides) -> ForecastDataModule:
    options = {"source": SYNTHETIC, "window_size": 10, "split": {"train": 100, "val": 50, "test": 50}}
    datamodule = ForecastDataModule(**{**options, **overrides})
    datamodule.setup("fit")
    return datamodule


def split_sizes(split: dict, frame: SeriesFrame) -> dict[str, list[int]]:
    """Rows per split of each series."""
    return {name: (hi - lo).tolist() for name, (lo, hi) in split_bounds(split, frame).items()}


def ragged_frame(lengths: list[int]) -> SeriesFrame:
    """Series of ``lengths`` rows each (a ragged panel), hourly, values 0, 1, 2, ... per series."""
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    stamps = [pd.date_range("2024-01-01", periods=n, freq="h") for n in lengths]
    return SeriesFrame(
        series_names=[f"s{i}" for i in range(len(lengths))],
        offsets=offsets,
        timestamps=pd.DatetimeIndex(np.concatenate([t.to_numpy() for t in stamps])),
        values=np.concatenate([np.arange(float(n)) for n in lengths]),
        extras=pd.DataFrame(index=range(offsets[-1])),
        static=pd.DataFrame(index=pd.Index([f"s{i}" for i in range(len(lengths))], name="series")),
        freq=pd.tseries.frequencies.to_offset("h"),
    )


def test_split_by_fractions_and_by_row_counts():
    frame = synthetic_frame(num_series=2, num_rows=1000)
    assert split_sizes({"train": 0.7, "val": 0.15, "test": 0.15}, frame) == {
        "train": [700, 700],
        "val": [150, 150],
        "test": [150, 150],
    }
    etth1 = synthetic_frame(num_series=1, num_rows=17420)
    assert split_sizes({"train": 8640, "val": 2880, "test": 2880}, etth1) == {
        "train": [8640],
        "val": [2880],
        "test": [2880],
    }
    lo, hi = split_bounds({"train": 8640, "val": 2880, "test": 2880}, etth1)["test"]
    assert (lo.tolist(), hi.tolist()) == ([8640 + 2880], [8640 + 2 * 2880])  # rows after it unused
    for bad in (
        {"train": 0.9, "val": 0.1, "test": 0.1},
        {"train": 10, "val": 0.5, "test": 5},
        {"train": 900, "val": 90, "test": 20},
        {"train": 10, "val": 0, "test": 5},
    ):
        with pytest.raises(UserError):
            split_bounds(bad, frame)


def test_row_count_split_counts_from_each_series_first_row():
    # Long data: row counts from each series' own start; a series too short for all of them keeps
    # what it has (the longest series bounds the total).
    frame = ragged_frame([100, 60, 25])
    bounds = split_bounds({"train": 50, "val": 20, "test": 20}, frame)
    assert {name: (lo.tolist(), hi.tolist()) for name, (lo, hi) in bounds.items()} == {
        "train": ([0, 0, 0], [50, 50, 25]),
        "val": ([50, 50, 25], [70, 60, 25]),
        "test": ([70, 60, 25], [90, 60, 25]),
    }
    with pytest.raises(UserError, match="asks for 101 rows but the data has 100"):
        split_bounds({"train": 61, "val": 20, "test": 20}, frame)


def test_val_test_counts_are_taken_back_from_each_series_end():
    # Long data the M4/M5 way: every series holds its last 20 rows for test and the 10 before them
    # for validation, whatever its length; a series of at most 30 rows has no training rows (the
    # datamodule leaves it out of every split), the shortest keeps what it has from the end.
    frame = ragged_frame([100, 60, 31, 30, 25, 12])
    for split in ({"val": 10, "test": 20}, {"train": None, "val": 10, "test": 20, "val_start": None}):
        bounds = split_bounds(split, frame)
        assert {name: (lo.tolist(), hi.tolist()) for name, (lo, hi) in bounds.items()} == {
            "train": ([0] * 6, [70, 30, 1, 0, 0, 0]),
            "val": ([70, 30, 1, 0, 0, 0], [80, 40, 11, 10, 5, 0]),
            "test": ([80, 40, 11, 10, 5, 0], [100, 60, 31, 30, 25, 12]),
        }
    # Dates still take precedence; three counts still count from the start.
    dates = {"val": 10, "test": 20, "val_start": "2024-01-02", "test_start": "2024-01-03"}
    assert split_sizes(dates, frame)["train"] == [24, 24, 24, 24, 24, 12]
    assert split_sizes({"train": 50, "val": 10, "test": 20}, frame)["test"] == [20, 0, 0, 0, 0, 0]


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ({"val": 0, "test": 20}, r"data.split.val=0: val and test count rows back .* positive integers"),
        ({"val": 10, "test": -3}, r"data.split.test=-3: .* positive integers"),
        ({"val": True, "test": 5}, r"data.split.val=True: .* positive integers"),
        ({"val": 0.1, "test": 20}, r"data.split.val=0.1 is a fraction but data.split.train is null"),
        ({"val": 60, "test": 40}, r"last 60\+40 rows .* longest series has 100 rows"),
        ({"val": 60, "test": 40, "train": None}, r"last 60\+40 rows"),
        (
            {"train": 0.7, "val": 28, "test": 28},
            r"mixes a train fraction \(0.7\) with row counts .* set data.split.train=null",
        ),
        ({"test": 20}, r"row counts \{val, test\} from each series' end"),
    ],
)
def test_bad_counts_from_the_end_are_user_errors(split, message):
    with pytest.raises(UserError, match=message):
        split_bounds(split, ragged_frame([100, 60]))


def test_window_counts_and_split_boundaries():
    dm = make_datamodule(horizon=2)
    train, val, test = dm.windows["train"], dm.windows["val"], dm.windows["test"]
    assert len(train) == (100 - 2) * 3  # warm-up from target row 1; targets t, t+1 stay in train
    assert len(val) == (50 - 2 + 1) * 3
    assert len(test) == (50 - 2 + 1) * 3
    local_index = dm.load_frame().local_index
    for windows, (first, last) in ((train, (1, 99)), (val, (100, 149)), (test, (150, 199))):
        batch = windows.gather(torch.arange(len(windows)))
        for series in range(3):
            rows = batch["target_row"][batch["series_id"] == series + 1].numpy()
            assert (rows // 200 == series).all()  # row s * T + t of the frame: inside its series
            steps = local_index[rows]
            assert steps.min() == first
            assert steps.max() + 1 == last  # the horizon's last step is the split's last row


def test_scaler_is_fitted_on_training_rows_only():
    dm = make_datamodule(calendar_features=["hour"])
    values = dm.load_frame().values.reshape(3, 200)  # series by series
    np.testing.assert_allclose(dm.scaler.data_min, values[:, :100].min(axis=1))
    np.testing.assert_allclose(dm.scaler.data_range, np.ptp(values[:, :100], axis=1))
    np.testing.assert_allclose(dm.series_mean, values[:, :100].mean(axis=1))
    np.testing.assert_allclose(dm.extra_scaler.data_min, [0.0])  # hours of the training rows
    np.testing.assert_allclose(dm.extra_scaler.data_range, [23.0])
    # Changing validation and test rows must not change the fitted scaler.
    frame = dm.load_frame()
    changed = values.copy()
    changed[:, 100:] *= 1000
    leaked = ForecastDataModule(
        source=SYNTHETIC,
        window_size=10,
        split={"train": 100, "val": 50, "test": 50},
        calendar_features=["hour"],
    )
    leaked._frame = dataclasses.replace(frame, values=changed.ravel())
    leaked.setup("fit")
    np.testing.assert_array_equal(leaked.scaler.data_min, dm.scaler.data_min)
    np.testing.assert_array_equal(leaked.scaler.data_range, dm.scaler.data_range)
    np.testing.assert_array_equal(leaked.series_mean, dm.series_mean)
    assert leaked.windows["test"].arrays.values.abs().max() > 100  # the change did reach the data


def test_scaled_training_data_lies_in_minus_one_to_one():
    dm = make_datamodule()
    batch = dm.windows["train"].gather(torch.arange(len(dm.windows["train"])))
    assert batch["x"].abs().max() <= 1 + 1e-6
    assert batch["y"].abs().max() <= 1 + 1e-6


def test_standard_scaler_makes_scaled_targets_the_z_normalised_values():
    dm = make_datamodule(scaler="standard")
    batch = dm.windows["test"].gather(torch.arange(len(dm.windows["test"])))
    series = (batch["series_id"] - 1).numpy()
    original = dm.inverse_values(batch["y"].numpy(), series[:, None])
    # So the training loss is the metric the ETTh1 tables publish (MSE on z-normalised values).
    np.testing.assert_allclose(batch["y"].numpy(), dm.z_normalise(original, series[:, None]), atol=1e-5)
    expected = dm.load_frame().values[batch["target_row"].numpy()]
    np.testing.assert_allclose(original[:, 0], expected, rtol=1e-5)


def test_unknown_scaler_is_a_user_error():
    with pytest.raises(UserError, match=r"data\.scaler must be one of"):
        make_datamodule(scaler="robust")


def test_inverse_values_recover_original_units():
    dm = make_datamodule()
    batch = dm.windows["test"].gather(torch.arange(6))
    series = (batch["series_id"] - 1).numpy()
    original = dm.inverse_values(batch["y"].numpy(), series[:, None])
    expected = dm.load_frame().values[batch["target_row"].numpy()]
    np.testing.assert_allclose(original[:, 0], expected, rtol=1e-5)


def test_state_dict_restores_scaler_without_refitting():
    dm = make_datamodule()
    restored = ForecastDataModule(
        source=SYNTHETIC, window_size=10, split={"train": 50, "val": 50, "test": 50}
    )
    restored.load_state_dict(dm.state_dict())
    restored.setup("test")
    np.testing.assert_array_equal(restored.scaler.data_min, dm.scaler.data_min)
    assert restored.state_dict()["series_names"] == ["series_1", "series_2", "series_3"]


def test_wide_file_defaults_every_numeric_column_to_a_series(tmp_path):
    path = tmp_path / "wide.csv"
    timestamps = pd.date_range("2024-01-01", periods=60, freq="h")
    pd.DataFrame(
        {"date": timestamps, "a": np.arange(60.0), "b": np.ones(60), "temp": np.arange(60.0) % 7}
    ).to_csv(path, index=False)
    dm = ForecastDataModule(
        source={"kind": "wide_file", "path": str(path), "extra_columns": ["temp"]},
        window_size=5,
        calendar_features=["hour"],
    )
    dm.setup("fit")
    assert dm.series_names == ["a", "b"]
    assert dm.feature_names == ["temp", "hour"]
    assert dm.num_features == 2 + 1
    assert dm.windows["train"].gather(torch.arange(2))["x"].shape == (2, 5, 3)


def test_too_few_rows_for_the_window_is_a_user_error():
    with pytest.raises(UserError, match="too few rows"):
        make_datamodule(window_size=150)
