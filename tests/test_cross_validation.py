"""``Forecaster.cross_validation``: forecasts from each series' last cut-offs beside the actuals, as
``Forecaster.predict`` makes them from the data up to each cut-off, and refitted models on request."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_MODEL
from lstm_forecast import Forecaster
from lstm_forecast.data.long_source import synthetic_long_table
from lstm_forecast.errors import UserError

pytestmark = pytest.mark.slow

HORIZON, N_WINDOWS, STEP = 5, 3, 2
NIXTLA = {"series": "unique_id", "timestamp": "ds", "value": "y"}


def long_frame() -> pd.DataFrame:
    table = synthetic_long_table(num_series=4, min_length=100, max_length=140)
    return table.drop(columns="category").rename(columns=NIXTLA)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Forecaster:
    run_dir = tmp_path_factory.mktemp("cross_validation") / "run"
    return Forecaster([*TINY_MODEL, f"model.horizon={HORIZON}"], run_dir=run_dir).fit(long_frame())


def test_windows_end_at_each_series_end_and_match_predict_from_the_cutoff(fitted: Forecaster) -> None:
    data = long_frame()
    cv = fitted.cross_validation(data, horizon=HORIZON, n_windows=N_WINDOWS, step=STEP)
    assert list(cv.columns[:5]) == ["unique_id", "cutoff", "ds", "prediction", "actual"]  # as in data
    assert len(cv) == data["unique_id"].nunique() * N_WINDOWS * HORIZON
    hour = pd.Timedelta(hours=1)
    for series, rows in cv.groupby("unique_id"):
        history = data[data["unique_id"] == series]
        cutoffs = sorted(rows["cutoff"].unique())
        last = history["ds"].max() - HORIZON * hour
        assert cutoffs == [last - k * STEP * hour for k in reversed(range(N_WINDOWS))], series
        for cutoff, window in rows.groupby("cutoff"):
            steps = (window["ds"] - cutoff) / hour
            assert steps.tolist() == list(range(1, HORIZON + 1))
            actual = history.set_index("ds").loc[window["ds"], "y"].to_numpy()
            np.testing.assert_allclose(window["actual"], actual, rtol=1e-6)
    # The forecast from a cut-off is the one predict makes from the rows up to it.
    cutoff = cv.groupby("unique_id")["cutoff"].max()
    upto = data[data["ds"] <= pd.to_datetime(data["unique_id"].astype(str).map(cutoff))]
    forecast = fitted.predict(upto, horizon=HORIZON)
    last_windows = cv[cv["cutoff"] == cv["unique_id"].map(cutoff)]
    np.testing.assert_allclose(
        last_windows.sort_values(["unique_id", "ds"])["prediction"],
        forecast.sort_values(["unique_id", "ds"])["prediction"],
        rtol=1e-5,
    )


def test_refit_every_window_trains_models_that_leave_nothing_behind(
    fitted: Forecaster, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    data = long_frame()
    plain = fitted.cross_validation(data, n_windows=2, step=HORIZON)
    refitted = fitted.cross_validation(data, n_windows=2, step=HORIZON, refit_every=1)
    key = ["unique_id", "cutoff", "ds"]
    plain, refitted = (t.sort_values(key, ignore_index=True) for t in (plain, refitted))
    pd.testing.assert_frame_equal(plain[key], refitted[key])
    np.testing.assert_allclose(plain["actual"], refitted["actual"], rtol=1e-6)
    assert not np.allclose(plain["prediction"], refitted["prediction"])  # other models forecast
    assert list(Path(tmp_path).iterdir()) == []  # the refits lived in a temporary folder


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"n_windows": 0}, "n_windows must be a positive integer"),
        ({"step": -1}, "step must be a positive integer"),
        ({"refit_every": -1}, "refit_every must be 0 (never refit) or a positive integer"),
        ({"horizon": 2 * HORIZON}, f"train one with model.horizon={2 * HORIZON}"),
    ],
)
def test_bad_arguments_are_one_line(fitted: Forecaster, arguments: dict, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fitted.cross_validation(long_frame(), **arguments)
    with pytest.raises(UserError, match="nothing to cross-validate yet"):
        Forecaster().cross_validation(long_frame())
