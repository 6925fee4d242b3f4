"""Checkpoints written before wide and long data shared one datamodule still load.

Checked once by hand with real checkpoints of the previous version (commit c0f6588): a wide and a
long run evaluate to the same test metrics with either version. Here the old state layouts are
rebuilt from today's, so the suite keeps the upgrade honest.
"""

from __future__ import annotations

import numpy as np
import torch

from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.inference.checkpoints import datamodule_state

HPARAMS = {
    "source": {"kind": "synthetic", "num_series": 3, "num_rows": 200, "seed": 1},
    "window_size": 8,
    "calendar_features": ["hour", "workday"],
}


def old_wide_state(state: dict) -> dict:
    """The wide-only datamodule's state: one scaler over [series..., extras...], no per-series extras."""
    return {
        "scaler": {
            key: torch.cat([state["scaler"][key], state["extra_scaler"][key]]) for key in state["scaler"]
        },
        **{key: state[key] for key in ("series_mean", "series_std", "series_names", "feature_names", "freq")},
    }


def test_an_old_wide_state_restores_the_same_scaling_and_windows() -> None:
    fitted = ForecastDataModule(**HPARAMS)
    fitted.setup()
    restored = ForecastDataModule(**HPARAMS)
    restored.load_state_dict(old_wide_state(fitted.state_dict()))
    restored.setup()
    np.testing.assert_array_equal(restored.scaler.data_min, fitted.scaler.data_min)
    np.testing.assert_array_equal(restored.extra_scaler.data_range, fitted.extra_scaler.data_range)
    index = torch.arange(len(fitted.windows["test"]))
    for key, value in fitted.windows["test"].gather(index).items():
        torch.testing.assert_close(restored.windows["test"].gather(index)[key], value)


def test_a_long_panel_state_is_found_under_its_old_class_name() -> None:
    state = {"scaler": {}}
    assert datamodule_state({"PanelDataModule": state, "state_dict": {}}) is state
    assert datamodule_state({"ForecastDataModule": state}) is state
