"""The one rule for short series, applied by every app (train, evaluate, predict, backtest, the API).

A series with rows, but fewer than ``data.window_size`` of them in the data an app reads, is *short*:
it gets no window in any split (training included), no score and no forecast, so no table has a row
for it (``metrics_per_series.csv``, ``forecasts.csv``, ``forecast.csv``, ``predictions.csv``, the
API's frames). The app names the short series in one warning line when it reads the data. A series
of ``window_size`` rows or more keeps everything it had: in training, the method's zero-padded warm-up
windows; in validation and test, windows whose context reaches back into the padding.

A short series is not trained on, so training gives it no scale either: in a later file where it is
long, a restored model leaves it out as it does every series it has no training rows for, and names
those in a line of their own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)

NAMED = 5  # short series named in the warning; the rest are counted


def short_series(lengths: np.ndarray, window_size: int) -> np.ndarray:
    """``[S]`` bool: the series with rows but fewer than ``window_size`` of them (``lengths [S]``)."""
    return (lengths > 0) & (lengths < window_size)


def served_series(lengths: np.ndarray, train_rows: np.ndarray, window_size: int) -> np.ndarray:
    """``[S]`` bool: the series an app windows, scores and forecasts: scaled in training (``train_rows
    [S]`` > 0) and not short."""
    return (train_rows > 0) & ~short_series(lengths, window_size)


def short_series_message(names: Sequence[str], window_size: int) -> str:
    """The warning that names the short series ``names`` (the first :data:`NAMED`, then a count)."""
    named = ", ".join(repr(str(name)) for name in names[:NAMED])
    more = f" and {len(names) - NAMED} more" if len(names) > NAMED else ""
    return (
        f"{len(names)} series have fewer rows than data.window_size={window_size} and are left out "
        f"(no windows, scores or forecasts; no rows in any table): {named}{more}; give each series at "
        f"least {window_size} rows, or train with a smaller data.window_size"
    )


def untrained_series_message(names: Sequence[str]) -> str:
    """The warning that names the series ``names`` a restored model has no training rows for."""
    named = ", ".join(repr(str(name)) for name in names[:NAMED])
    more = f" and {len(names) - NAMED} more" if len(names) > NAMED else ""
    return (
        f"{len(names)} series had no training rows when the model was trained and are left out (no "
        f"scores or forecasts; no rows in any table): {named}{more}; train on data that gives them "
        "training rows to forecast them"
    )


def warn_left_out_series(
    names: Sequence[str], lengths: np.ndarray, window_size: int, train_rows: np.ndarray | None = None
) -> None:
    """Name the short series in one warning line, unless every series with rows is short: the app
    then stops with an error instead (no window of any series). With a restored model's ``train_rows
    [S]``, name in a second line the series long enough that it never trained on (a fit names its
    own, as it splits the data)."""
    short = short_series(lengths, window_size)
    if short.any() and short.sum() < (lengths > 0).sum():
        log.warning(short_series_message([names[s] for s in np.flatnonzero(short)], window_size))
    if train_rows is not None:
        untrained = np.flatnonzero((lengths >= window_size) & (train_rows == 0))
        if len(untrained):
            log.warning(untrained_series_message([names[s] for s in untrained]))
