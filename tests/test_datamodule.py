import numpy as np
import pandas as pd
import pytest
import torch

from lstm_forecast.data.datamodule import ForecastDataModule, resolve_split
from lstm_forecast.errors import UserError

SYNTHETIC = {"kind": "synthetic", "num_series": 3, "num_rows": 200, "seed": 0}


def make_datamodule(**overrides) -> ForecastDataModule:
    options = {"source": SYNTHETIC, "window_size": 10, "split": {"train": 100, "val": 50, "test": 50}}
    datamodule = ForecastDataModule(**{**options, **overrides})
    datamodule.setup("fit")
    return datamodule


def test_split_by_fractions_and_by_row_counts():
    assert resolve_split({"train": 0.7, "val": 0.15, "test": 0.15}, 1000) == (700, 150, 150)
    assert resolve_split({"train": 8640, "val": 2880, "test": 2880}, 17420) == (8640, 2880, 2880)
    for bad in (
        {"train": 0.9, "val": 0.1, "test": 0.1},
        {"train": 10, "val": 0.5, "test": 5},
        {"train": 900, "val": 90, "test": 20},
        {"train": 10, "val": 0, "test": 5},
    ):
        with pytest.raises(UserError):
            resolve_split(bad, 1000)


def test_window_counts_and_split_boundaries():
    dm = make_datamodule(horizon=2)
    train, val, test = dm.windows["train"], dm.windows["val"], dm.windows["test"]
    assert len(train) == (100 - 2) * 3  # warm-up from target row 1; targets t, t+1 stay in train
    assert len(val) == (50 - 2 + 1) * 3
    assert len(test) == (50 - 2 + 1) * 3
    for windows, (first, last) in ((train, (1, 99)), (val, (100, 149)), (test, (150, 199))):
        rows = windows.gather(torch.arange(len(windows)))["target_row"]
        assert rows.min().item() == first
        assert rows.max().item() + 1 == last  # the horizon's last step is the split's last row


def test_scaler_is_fitted_on_training_rows_only():
    dm = make_datamodule()
    table = dm.feature_table()
    np.testing.assert_allclose(dm.scaler.data_min, table[:100].min(axis=0))
    np.testing.assert_allclose(dm.series_mean, table[:100, :3].mean(axis=0))
    # Changing validation and test rows must not change the fitted scaler.
    frame = dm.load_frame()
    frame.series.iloc[100:] *= 1000
    leaked = ForecastDataModule(source=SYNTHETIC, window_size=10, split={"train": 100, "val": 50, "test": 50})
    leaked._frame = frame
    leaked.setup("fit")
    np.testing.assert_array_equal(leaked.scaler.data_min, dm.scaler.data_min)
    np.testing.assert_array_equal(leaked.scaler.data_range, dm.scaler.data_range)


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
    expected = dm.load_frame().series.to_numpy()[batch["target_row"].numpy(), series]
    np.testing.assert_allclose(original[:, 0], expected, rtol=1e-5)


def test_unknown_scaler_is_a_user_error():
    with pytest.raises(UserError, match=r"data\.scaler must be one of"):
        make_datamodule(scaler="robust")


def test_inverse_values_recover_original_units():
    dm = make_datamodule()
    batch = dm.windows["test"].gather(torch.arange(6))
    series = (batch["series_id"] - 1).numpy()
    original = dm.inverse_values(batch["y"].numpy(), series[:, None])
    expected = dm.load_frame().series.to_numpy()[batch["target_row"].numpy(), series]
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
