"""A PNG of a prediction run: history, one-step predictions, the forecast, its intervals and known
actuals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lstm_forecast.data.frame import SeriesFrame
from lstm_forecast.evaluation.figure_layout import (
    COVERAGE_LABEL_SIZE,
    coverage_axis,
    fit_margins,
    new_figure,
    y_tick_labels,
)
from lstm_forecast.files import write_atomic


def interval_levels_of(table: pd.DataFrame) -> list[str]:
    """Levels (``"80"``, ``"95"``) of the ``lo-<level>`` / ``hi-<level>`` columns of a forecast table,
    widest first (drawn first, so the narrower bands lie on top)."""
    levels = [
        column[3:] for column in table.columns if column.startswith("lo-") and f"hi-{column[3:]}" in table
    ]
    return sorted(levels, key=float, reverse=True)


def draw_bands(ax: Axes, rows: pd.DataFrame, levels: list[str], color: str, label: str) -> None:
    """Shade each interval of the forecast-table ``rows`` (levels widest first), labelled once per level."""
    for shade, level in enumerate(levels):
        ax.fill_between(
            rows["timestamp"],
            rows[f"lo-{level}"],
            rows[f"hi-{level}"],
            color=color,
            alpha=0.15 + 0.15 * shade,
            linewidth=0,
            label=f"{label} {level}%",
        )


def draw_rolling_coverage(ax: Axes, rows: pd.DataFrame, level: str) -> Axes | None:
    """:func:`coverage_axis` of the ``level`` interval over the rows with an actual (None when none
    has one)."""
    rows = rows[rows["actual"].notna()]
    if rows.empty:
        return None
    inside = ((rows[f"lo-{level}"] <= rows["actual"]) & (rows["actual"] <= rows[f"hi-{level}"])).to_numpy()
    return coverage_axis(ax, rows["timestamp"], inside, float(level) / 100, f"{level}% coverage")


def plot_forecasts(
    path: str | Path,
    frame: SeriesFrame,
    predictions: pd.DataFrame,
    forecast: pd.DataFrame | None = None,
    max_series: int = 4,
    history: int = 200,
) -> Path:
    """Write :func:`forecast_plot`'s figure as the PNG ``path``, atomically."""
    figure = forecast_plot(frame, predictions, forecast, max_series, history)
    return write_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))


def forecast_plot(
    frame: SeriesFrame,
    predictions: pd.DataFrame,
    forecast: pd.DataFrame | None = None,
    max_series: int = 4,
    history: int = 200,
) -> Figure:
    """The first ``max_series`` series, one panel each.

    Parameters
    ----------
    frame : SeriesFrame
        The observed data (history, original units).
    predictions : DataFrame
        Window predictions of the drawn series (the forecast table; their last ``history`` windows are
        enough); the first step is drawn, with its intervals (``lo-80``, ``hi-80`` ...) as bands when
        the table has them, and the widest one's rolling coverage (:func:`draw_rolling_coverage`).
    forecast : DataFrame, optional
        Forecast past the data (``timestamp, series, prediction[, actual, lo-80, hi-80 ...]``).
    max_series : int
        Panels drawn.
    history : int
        Observed rows drawn before the end of the data.
    """
    drawn = list(np.flatnonzero(frame.lengths > 0)[: max(max_series, 1)])
    observed_values = frame.wide_values(drawn)
    names = list(observed_values.columns)
    predictions = predictions[predictions["step"] == 1]
    levels = interval_levels_of(predictions)
    figure = new_figure(10, 2.6 * len(names), dpi=100)  # margins: fit_margins, at the end
    axes = figure.subplots(len(names), 1, squeeze=False)[:, 0]
    y_labels, right_labels = [], []
    for ax, name in zip(axes, names, strict=True):
        # Series have their own spans (NaN elsewhere in the wide view).
        known = observed_values[name].dropna()
        start, end = known.index[max(len(known) - history, 0)], known.index[-1]
        observed = known[known.index >= start]
        ax.plot(observed.index, observed.to_numpy(), color="black", linewidth=1.0, label="actual")
        shown = predictions[(predictions["series"] == name) & (predictions["timestamp"] >= start)]
        draw_bands(ax, shown, levels, "tab:blue", "interval")
        ax.plot(shown["timestamp"], shown["prediction"], color="tab:blue", linewidth=1.0, label="prediction")
        right = draw_rolling_coverage(ax, shown, levels[0]) if levels else None
        if right is not None:
            right_labels += y_tick_labels(right)
        if forecast is not None:
            ahead = forecast[forecast["series"] == name]
            # Start the forecast line at the last observation so it reads as a continuation.
            times = [end, *ahead["timestamp"]]
            values = [known.iloc[-1], *ahead["prediction"]]
            draw_bands(ax, ahead, interval_levels_of(ahead), "tab:orange", "forecast")
            ax.plot(times, values, color="tab:orange", linewidth=1.4, label="forecast")
            if "actual" in ahead and ahead["actual"].notna().any():
                ax.plot(
                    ahead["timestamp"],
                    ahead["actual"],
                    color="tab:green",
                    linestyle="--",
                    label="actual (future)",
                )
        ax.axvline(end, color="grey", linewidth=0.6, linestyle=":")
        ax.set_title(name, fontsize=10, loc="left")
        ax.legend(loc="upper left", fontsize=8, ncol=4)
        y_labels += y_tick_labels(ax)
    # Laid out from the texts' sizes: constrained layout drew the figure once more (half its cost).
    fit_margins(
        figure,
        y_labels,
        right_labels=right_labels,
        right_label_size=COVERAGE_LABEL_SIZE if right_labels else None,
        panels=len(names),
    )
    return figure
