"""Forecasts past the end of each series scored against a held-out file, as the M4 competition does.

sMAPE in percent and MASE scaled by each series' in-sample one-step naive error over its whole
training series (seasonality 1, the M4 paper's convention for weekly data); both averaged over every
series and step (every series has the same number of steps, so this is also the mean of the
per-series scores). The naive forecast (the last value, repeated) is the reference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.metrics import ForecastErrors

HOLDOUT_METRICS = ("smape", "mase")


def _keyed(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with string series names and parsed timestamps (a CSV gives text), for matching."""
    return table.assign(series=table["series"].astype(str), timestamp=pd.to_datetime(table["timestamp"]))


def _unchanged(values: np.ndarray, series: np.ndarray) -> np.ndarray:
    """Values already in original units: the identity for :meth:`ForecastErrors.compute`."""
    return values


def in_sample_naive_scale(history: pd.DataFrame, series_names: list[str]) -> np.ndarray:
    """``[S]`` mean absolute one-step change of each series over its whole history (``series``,
    ``timestamp``, ``value`` columns), in ``series_names`` order."""
    ordered = history.sort_values(["series", "timestamp"])
    change = ordered.groupby("series", sort=False)["value"].diff().abs()
    scale = change.groupby(ordered["series"]).mean().reindex(series_names).to_numpy()
    return np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)


def naive_forecast(history: pd.DataFrame, actuals: pd.DataFrame) -> pd.DataFrame:
    """The last observed value of each series for every row of ``actuals``: ``series``, ``timestamp``,
    ``prediction``."""
    last = history.sort_values("timestamp").groupby("series")["value"].last()
    forecast = actuals[["series", "timestamp"]].copy()
    forecast["prediction"] = forecast["series"].map(last)
    return forecast


def holdout_scores(
    forecast: pd.DataFrame, history: pd.DataFrame, actuals: pd.DataFrame, prefix: str
) -> dict[str, float]:
    """``{prefix}/smape`` and ``{prefix}/mase`` of ``forecast`` (``series``, ``timestamp``,
    ``prediction``) against ``actuals`` (``series``, ``timestamp``, ``value``).

    Every row of ``actuals`` must be forecast, and every series must have as many steps.
    """
    forecast, history, actuals = _keyed(forecast), _keyed(history), _keyed(actuals)
    merged = actuals[["series", "timestamp", "value"]].merge(
        forecast[["series", "timestamp", "prediction"]], on=["series", "timestamp"], how="left"
    )
    missing = merged["prediction"].isna()
    if missing.any():
        first = merged[missing].iloc[0]
        raise UserError(
            f"{int(missing.sum())} held-out steps have no forecast (first: series {first['series']!r} at "
            f"{first['timestamp']}); forecast as many steps as the held-out file holds per series"
        )
    merged = merged.sort_values(["series", "timestamp"])
    steps = merged.groupby("series").size()
    if steps.nunique() != 1:
        raise UserError("the held-out file has a different number of steps per series; give each the same")
    names = list(steps.index)
    shape = (len(names), int(steps.iloc[0]))
    errors = ForecastErrors.compute(
        merged["prediction"].to_numpy().reshape(shape),  # [S, H]
        merged["value"].to_numpy().reshape(shape),  # [S, H]
        np.arange(len(names)),
        _unchanged,
        _unchanged,
        in_sample_naive_scale(history, names),
    ).overall()
    return {f"{prefix}/{name}": errors[name] for name in HOLDOUT_METRICS}
