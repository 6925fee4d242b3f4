"""Say when forecasts cannot be trusted: input values outside the range the network was trained on.

The scalers are fitted once, on the training rows. Values beyond a series' training range scale
beyond [-1, 1], where the tanh network saturates: on data from another level (another station, a
grown business) its forecasts fall behind persistence and nothing else shows it. Every app that
forecasts from a checkpoint calls :func:`warn_drift` on the windows it forecasts from; only the
rows those windows read count.

Only a material shift is reported (docs/drift.md): more than ``warn_share`` of a series' input values
outside its training range, and more of them than values like its training rows would put there by
chance (:func:`chance_of_outside`): a few training rows leave out much of a series' own noise, so new
values of an unchanged series fall outside their range often.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.windows import Windows, index_chunks, series_chunks
from lstm_forecast.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_WARN_SHARE = 0.05
# A share outside the training range is material when values exchangeable with the training rows
# would put that many outside it less often than this (chance_of_outside).
MAX_CHANCE = 1e-3
MAX_LISTED = 10  # drifted series named one line each; beyond that, one summary line
WORST_SHOWN = 5  # series named in the summary line
REMEDY = (
    "the network saturates outside the range it was trained on: use a window-normalised model "
    "(model=bilstm_hybrid, or model.net.window_norm=last) or retrain on data that covers these values"
)


@dataclass(frozen=True)
class SeriesDrift:
    """One series whose forecasts read values outside its training range (original units).

    Attributes
    ----------
    series : str
        Its name.
    share : float
        Fraction of its input values outside ``[train_min, train_max]``.
    num_values : int
        Its input values: the rows the forecast windows read.
    train_min, train_max : float
        Its training range.
    seen_min, seen_max : float
        The range of its input values.
    """

    series: str
    share: float
    num_values: int
    train_min: float
    train_max: float
    seen_min: float
    seen_max: float

    def describe(self) -> str:
        return (
            f"series {self.series!r}: {100 * self.share:.1f}% of its {self.num_values} input values lie "
            f"outside its training range [{self.train_min:.6g}, {self.train_max:.6g}] (they span "
            f"{self.seen_min:.6g} .. {self.seen_max:.6g})"
        )


def check_warn_share(value: object) -> float | None:
    """``drift.warn_share`` as a number in [0, 1], or None (no check)."""
    if value is None:
        return None
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value <= 1:
        raise UserError(
            f"drift.warn_share must be a number in [0, 1] (the share of a series' input values outside "
            f"its training range that triggers a warning; null: no check), got {value!r}"
        )
    return float(value)


def chance_of_outside(outside: int, read: int, train_rows: int) -> float:
    """An upper bound of the probability that ``outside`` or more of ``read`` values fall outside the
    range of ``train_rows`` values when all of them are exchangeable (an unchanged series).

    The ``j`` largest and ``l`` smallest of the ``n + m`` values are all new ones with probability
    ``a(j + l) = m! (n + m - j - l)! / ((m - j - l)! (n + m)!)`` whatever their distribution; ``k``
    or more new values outside means ``j`` above and ``k - j`` below for some ``j`` in ``0..k``, so the
    chance is at most ``(k + 1) a(k)``. Distribution-free: no assumption on the values but that
    nothing changed. 1 when no training rows bound the range.
    """
    n, m, k = train_rows, read, outside
    if k == 0 or n == 0:
        return 1.0
    log_a = math.lgamma(m + 1) - math.lgamma(m - k + 1) - math.lgamma(n + m + 1) + math.lgamma(n + m - k + 1)
    return min(1.0, (k + 1) * math.exp(log_a))


def rows_drift(
    datamodule: ForecastDataModule, start: np.ndarray, stop: np.ndarray, warn_share: float
) -> list[SeriesDrift]:
    """:func:`input_drift` of forecasts that read rows ``start[s] .. stop[s] - 1`` (from each series'
    first row, ``[S]`` each) of every series ``s``, a few series at a time: no ``[N]`` temporaries."""
    training_range = datamodule.fitted.training_range(datamodule.scaler_method)
    frame = datamodule.load_frame()
    start = np.clip(start, 0, frame.lengths)
    counts = np.maximum(np.minimum(stop, frame.lengths) - start, 0)  # [S]
    if training_range is None or not counts.any():
        return []
    outside = np.zeros(frame.num_series, dtype=np.int64)  # [S]
    for s0, s1 in series_chunks(frame.offsets):
        lengths = frame.lengths[s0:s1]
        local = np.arange(frame.offsets[s0], frame.offsets[s1]) - np.repeat(frame.offsets[s0:s1], lengths)
        series = np.repeat(np.arange(s1 - s0), lengths)  # [n] within the chunk
        values = frame.values[frame.offsets[s0] : frame.offsets[s1]]
        low, high = (bound[s0:s1][series] for bound in training_range)
        read = (local >= start[s0:s1][series]) & (local < start[s0:s1][series] + counts[s0:s1][series])
        outside[s0:s1] = np.bincount(series[read & ((values < low) | (values > high))], minlength=s1 - s0)

    def read_rows(s: int) -> slice:
        return slice(start[s], start[s] + counts[s])

    return _drifts(datamodule, training_range, outside, counts, warn_share, read_rows)


def leading_rows_drift(
    datamodule: ForecastDataModule, rows_read: np.ndarray, warn_share: float
) -> list[SeriesDrift]:
    """:func:`rows_drift` of forecasts that read the first ``rows_read [S]`` rows of each series (every
    full window of the data reads all of them)."""
    return rows_drift(datamodule, np.zeros_like(rows_read), rows_read, warn_share)


def input_drift(datamodule: ForecastDataModule, windows: Windows, warn_share: float) -> list[SeriesDrift]:
    """Series more than ``warn_share`` of whose input values lie outside their training range, more
    than chance puts there (:func:`chance_of_outside`), worst first; none when the checkpoint keeps no
    training range.

    A series' input values are the rows from its first window's context to its last window's last
    step: exactly the rows its windows read when they forecast every target of a period (a split),
    as the apps' windows do. Read a chunk of windows at a time (``[S]`` memory).
    """
    frame = datamodule.load_frame()
    start = np.full(frame.num_series, np.iinfo(np.int64).max)
    stop = np.zeros(frame.num_series, dtype=np.int64)
    for chunk in index_chunks(len(windows)):
        target_row, series = (part.cpu().numpy() for part in windows.locate(chunk))
        local = target_row - frame.offsets[series]  # [B] step of each window's first target
        np.minimum.at(start, series, local - windows.window_size)
        np.maximum.at(stop, series, local)
    return rows_drift(datamodule, np.minimum(start, stop), stop, warn_share)


def _drifts(
    datamodule: ForecastDataModule,
    training_range: tuple[np.ndarray, np.ndarray],
    outside: np.ndarray,
    counts: np.ndarray,
    warn_share: float,
    read: Callable[[int], np.ndarray | slice],
) -> list[SeriesDrift]:
    """The series more than ``warn_share`` of whose ``counts [S]`` input values lie outside the training
    range (``outside [S]`` of them), more than chance puts there (:data:`MAX_CHANCE`), worst first;
    ``read(s)`` selects series ``s``'s input values among its rows."""
    frame = datamodule.load_frame()
    share = outside / np.maximum(counts, 1)
    train_rows = datamodule.series_train_rows
    drifted = np.asarray(
        [
            s
            for s in np.flatnonzero((share > warn_share) & (train_rows > 0))
            if chance_of_outside(int(outside[s]), int(counts[s]), int(train_rows[s])) < MAX_CHANCE
        ],
        dtype=np.int64,
    )
    drifts = []
    for s in drifted[np.argsort(-share[drifted], kind="stable")]:
        seen = frame.values[frame.offsets[s] : frame.offsets[s + 1]][read(s)]
        drifts.append(
            SeriesDrift(
                series=str(frame.series_names[s]),
                share=float(share[s]),
                num_values=int(counts[s]),
                train_min=float(training_range[0][s]),
                train_max=float(training_range[1][s]),
                seen_min=float(seen.min()),
                seen_max=float(seen.max()),
            )
        )
    return drifts


def warn_drift(
    datamodule: ForecastDataModule, windows: Windows | np.ndarray, warn_share: float | None, data_name: str
) -> list[SeriesDrift]:
    """Log a WARNING for each series of ``data_name`` whose forecasts cannot be trusted (see
    :func:`input_drift`), or one summary line for more than :data:`MAX_LISTED`, then the remedy.
    ``windows``: the windows forecast, or ``[S]`` the rows each series' forecasts read from its start
    (:func:`leading_rows_drift`)."""
    warn_share = check_warn_share(warn_share)
    if warn_share is None:
        return []
    if isinstance(windows, np.ndarray):
        drifts = leading_rows_drift(datamodule, windows, warn_share)
    else:
        drifts = input_drift(datamodule, windows, warn_share)
    if not drifts:
        return drifts
    if len(drifts) <= MAX_LISTED:
        for drift in drifts:
            log.warning("forecasts on %s cannot be trusted: %s", data_name, drift.describe())
    else:
        worst = "; ".join(drift.describe() for drift in drifts[:WORST_SHOWN])
        log.warning(
            "forecasts on %s cannot be trusted: %d of %d series have more than %.3g%% of their input values "
            "outside their training range; the worst: %s",
            data_name,
            len(drifts),
            datamodule.num_series,
            100 * warn_share,
            worst,
        )
    log.warning("%s (this warning: drift.warn_share=%g)", REMEDY, warn_share)
    return drifts
