"""Scaling every row into the padded window arrays, a few series at a time.

The scalers are fitted on each series' training rows (unless restored from a checkpoint) in the
same pass: per-series statistics come from ``ufunc.reduceat`` over each chunk's training rows, the
calendar features' from their keys' histogram. No ``[N]`` float64 temporary is made, so set-up of
tens of millions of rows stays a small multiple of the float32 data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from lstm_forecast.data.calendar import CalendarKeys, calendar_features
from lstm_forecast.data.frame import SeriesFrame
from lstm_forecast.data.scaling import MinMaxScaler
from lstm_forecast.data.short_series import short_series
from lstm_forecast.data.windows import SeriesArrays, series_chunks
from lstm_forecast.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FittedScalers:
    """What scaling learns from the training rows, and a checkpoint keeps.

    Attributes
    ----------
    scaler : MinMaxScaler
        ``[S]`` per series, on values.
    extra_scaler : MinMaxScaler
        ``[E]`` per extra feature: user columns, then calendar features.
    series_mean, series_std : ndarray
        ``[S]`` training mean and std (ddof 0, 1 where constant), original units: the ``*_z`` metrics'.
    series_train_rows : ndarray
        ``[S]`` training rows per series at fit time (0: the series has no scale and no windows).
    series_min, series_max : ndarray or None
        ``[S]`` minimum and maximum of each series' training rows, original units (what the network
        has seen; None in checkpoints written before they were kept).
    """

    scaler: MinMaxScaler
    extra_scaler: MinMaxScaler
    series_mean: np.ndarray
    series_std: np.ndarray
    series_train_rows: np.ndarray
    series_min: np.ndarray | None = None
    series_max: np.ndarray | None = None

    def training_range(self, method: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``(min [S], max [S])`` of each series' training rows in original units; for an older
        checkpoint the ``minmax`` scaler's range (the same numbers), None for its ``standard`` one."""
        if self.series_min is not None and self.series_max is not None:
            return self.series_min, self.series_max
        if method == "minmax":
            return self.scaler.data_min, self.scaler.data_min + self.scaler.data_range
        return None

    def state_dict(self) -> dict[str, Any]:
        """Tensors only, so checkpoints load with ``torch.load(weights_only=True)``."""
        return {
            "scaler": self.scaler.state_dict(),
            "extra_scaler": self.extra_scaler.state_dict(),
            "series_mean": torch.from_numpy(self.series_mean.copy()),
            "series_std": torch.from_numpy(self.series_std.copy()),
            "series_train_rows": torch.from_numpy(self.series_train_rows.copy()),
            **{
                name: torch.from_numpy(values.copy())
                for name, values in (("series_min", self.series_min), ("series_max", self.series_max))
                if values is not None
            },
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> FittedScalers:
        """From :meth:`state_dict`, or from the state of the wide-only datamodule (before one data
        model), which held one scaler over ``[series..., extras...]`` columns: the same numbers as a
        per-series value scaler plus an extra-feature scaler (every series had training rows)."""
        scaler, extra_scaler = state["scaler"], state.get("extra_scaler")
        num_series = len(state["series_mean"])
        if extra_scaler is None:
            scaler, extra_scaler = (
                {key: value[:num_series] for key, value in state["scaler"].items()},
                {key: value[num_series:] for key, value in state["scaler"].items()},
            )
        train_rows = state.get("series_train_rows", torch.ones(num_series, dtype=torch.int64))
        return cls(
            scaler=MinMaxScaler.from_state_dict(scaler),
            extra_scaler=MinMaxScaler.from_state_dict(extra_scaler),
            series_mean=state["series_mean"].numpy(),
            series_std=state["series_std"].numpy(),
            series_train_rows=train_rows.numpy(),
            series_min=state["series_min"].numpy() if "series_min" in state else None,
            series_max=state["series_max"].numpy() if "series_max" in state else None,
        )


def calendar_keys(frame: SeriesFrame, names: list[str]) -> CalendarKeys | None:
    """The calendar features ``names`` of the frame's rows as keys (None: no calendar features, or too
    many combinations; they are then float extras)."""
    present = frame.lengths > 0
    if not names or not present.any():
        return None
    first = frame.timestamps[frame.offsets[:-1][present]].min() - pd.Timedelta(days=1)  # a day of
    last = frame.timestamps[frame.offsets[1:][present] - 1].max() + pd.Timedelta(days=1)  # DST slack
    return CalendarKeys.build(first, last, names)


def calendar_table(keys: CalendarKeys, extra_scaler: MinMaxScaler) -> np.ndarray:
    """``[K, C]`` float32 scaled calendar features of every key (zeros for the padding key 0): the same
    numbers as scaling the features' floats (the last ``C`` columns of ``extra_scaler``)."""
    first = len(extra_scaler.data_min) - len(keys.names)
    scaler = MinMaxScaler(extra_scaler.data_min[first:], extra_scaler.data_range[first:])
    table = np.zeros((keys.num_keys, len(keys.names)), dtype=np.float32)
    table[1:] = scaler.transform(keys.table)
    return table


def series_scaler(
    method: str, data_min: np.ndarray, data_max: np.ndarray, mean: np.ndarray, std: np.ndarray
) -> MinMaxScaler:
    if method == "standard":
        return MinMaxScaler.from_mean_std(mean, std)
    return MinMaxScaler(data_min=data_min, data_range=data_max - data_min)


def scale_into_arrays(
    frame: SeriesFrame,
    window_size: int,
    calendar_names: list[str],
    method: str,
    train_rows: np.ndarray,
    fitted: FittedScalers | None = None,
) -> tuple[SeriesArrays, FittedScalers]:
    """Every row scaled into the padded float32 arrays, calendar features as keys, a few series at a
    time; the scalers are fitted on the first ``train_rows [S]`` rows of each series, unless ``fitted``
    (restored from a checkpoint) is given. A short series (:mod:`~lstm_forecast.data.short_series`)
    gets no windows, so it is left out of the fit too: no training rows, as for a series the model
    never saw (a later file in which it is long gets no forecast from an untrained embedding)."""
    short = short_series(frame.lengths, window_size)
    train_rows = np.where(short, 0, train_rows)
    keys = calendar_keys(frame, calendar_names)
    user = frame.extras.to_numpy(dtype=np.float64)  # [N, E] (a view of float columns)
    float_calendar = calendar_names if keys is None else []

    def float_extras(rows: slice) -> np.ndarray:
        """``[n, F]`` the rows' float features: user columns (and calendar features without keys)."""
        if not float_calendar:
            return user[rows]
        calendar = calendar_features(frame.timestamps[rows], float_calendar).to_numpy()
        return np.concatenate([user[rows], calendar], axis=1)

    num_floats = user.shape[1] + len(float_calendar)
    if fitted is None:
        float_scaler = _fit_rows(float_extras, num_floats, frame.offsets, train_rows, method)
        stats = np.zeros((4, frame.num_series))  # min, max, mean, std of each series' training rows
    else:
        check_num_extras(fitted.extra_scaler, user.shape[1] + len(calendar_names))
        extra = fitted.extra_scaler
        float_scaler = MinMaxScaler(extra.data_min[:num_floats], extra.data_range[:num_floats])
    arrays = SeriesArrays.zeros(frame.offsets, window_size, num_floats, None if keys is None else keys.dtype)
    padded_values, padded_extras = arrays.values.numpy(), arrays.extras.numpy()
    histogram = np.zeros(0 if keys is None else keys.num_keys, dtype=np.int64)
    offsets = frame.offsets
    for s0, s1 in series_chunks(offsets):
        rows = slice(offsets[s0], offsets[s1])
        lengths = np.diff(offsets[s0 : s1 + 1])
        series = np.repeat(np.arange(s1 - s0), lengths)  # [n] within the chunk
        padded = np.arange(offsets[s0], offsets[s1]) + (series + s0 + 1) * window_size
        values = frame.values[rows]
        if fitted is None:
            train = _leading_rows(lengths, train_rows[s0:s1])
            stats[:, s0:s1] = _series_stats(values[train], train_rows[s0:s1])
            scaler = series_scaler(method, *stats[:, s0:s1])
        else:
            scaler = MinMaxScaler(fitted.scaler.data_min[s0:s1], fitted.scaler.data_range[s0:s1])
        padded_values[padded] = scaler.transform(values, column_index=series)
        if num_floats:
            padded_extras[padded] = float_scaler.transform(float_extras(rows))
        if keys is not None:
            row_keys = keys.keys(frame.timestamps[rows])
            arrays.calendar.numpy()[padded] = row_keys
            if fitted is None:
                histogram += np.bincount(row_keys[train], minlength=keys.num_keys)
    if fitted is None:
        if keys is not None:
            float_scaler = _concat(float_scaler, _fit_table(keys.table, histogram[1:], method))
        fitted = _fitted(frame, method, train_rows, stats, float_scaler, short)
    if keys is None:
        return arrays, fitted
    return replace(arrays, calendar_table=torch.from_numpy(calendar_table(keys, fitted.extra_scaler))), fitted


def check_num_extras(extra_scaler: MinMaxScaler, count: int) -> None:
    if count != len(extra_scaler.data_min):
        raise UserError(
            f"the data has {count} extra features but the checkpoint's scaler was fitted on "
            f"{len(extra_scaler.data_min)}; use data with the training columns"
        )


def _fitted(
    frame: SeriesFrame,
    method: str,
    train_rows: np.ndarray,
    stats: np.ndarray,
    extra_scaler: MinMaxScaler,
    short: np.ndarray,
) -> FittedScalers:
    """The per-series scaler and z statistics and the extra-feature scaler; series without training
    rows are named in a warning, unless they are ``short [S]`` (named by their own warning)."""
    fitted = FittedScalers(
        scaler=series_scaler(method, *stats),
        extra_scaler=extra_scaler,
        series_mean=stats[2],
        series_std=np.where(stats[3] > 0, stats[3], 1.0),
        series_train_rows=np.asarray(train_rows, dtype=np.int64).copy(),
        series_min=stats[0],
        series_max=stats[1],
    )
    unscaled = [frame.series_names[s] for s in np.flatnonzero((fitted.series_train_rows == 0) & ~short)]
    if unscaled:
        log.warning(
            "%d series have no training rows and are left out of every split (no scale without "
            "leaking the future): %s",
            len(unscaled),
            unscaled[:10],
        )
    return fitted


def _leading_rows(lengths: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``[sum(lengths)]`` bool: the first ``counts[s]`` rows of each of the consecutive series."""
    local = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return local < np.repeat(counts, lengths)


def _series_stats(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``[4, S]`` min, max, mean and std (ddof 0) of consecutive groups of ``counts [S]`` values (0
    for an empty group), with ``ufunc.reduceat``."""
    stats = np.zeros((4, len(counts)))
    present = counts > 0
    if not present.any():
        return stats
    starts = (np.cumsum(counts) - counts)[present]
    sizes = counts[present]
    stats[0, present] = np.minimum.reduceat(values, starts)
    stats[1, present] = np.maximum.reduceat(values, starts)
    mean = np.add.reduceat(values, starts) / sizes
    deviation = values - np.repeat(mean, sizes)
    stats[2, present] = mean
    stats[3, present] = np.sqrt(np.add.reduceat(deviation * deviation, starts) / sizes)
    return stats


def _fit_rows(
    data: Callable[[slice], np.ndarray],
    num_columns: int,
    offsets: np.ndarray,
    counts: np.ndarray,
    method: str,
) -> MinMaxScaler:
    """:meth:`MinMaxScaler.fit` on the first ``counts[s]`` rows of each series of the ``[N, num_columns]``
    rows ``data(rows)``, a few series at a time (two passes for ``standard``)."""
    if num_columns == 0:
        return MinMaxScaler(data_min=np.zeros(0), data_range=np.zeros(0))
    chunks = [
        (slice(offsets[s0], offsets[s1]), _leading_rows(np.diff(offsets[s0 : s1 + 1]), counts[s0:s1]))
        for s0, s1 in series_chunks(offsets)
    ]
    data_min, data_max = np.full(num_columns, np.inf), np.full(num_columns, -np.inf)
    total = np.zeros(num_columns)
    for rows, train in chunks:
        part = data(rows)[train]
        if len(part):
            data_min = np.minimum(data_min, part.min(axis=0))
            data_max = np.maximum(data_max, part.max(axis=0))
            total += part.sum(axis=0)
    if method != "standard":
        return MinMaxScaler(data_min=data_min, data_range=data_max - data_min)
    count = int(counts.sum())
    mean = total / count
    squares = np.zeros(num_columns)
    for rows, train in chunks:
        squares += ((data(rows)[train] - mean) ** 2).sum(axis=0)
    return MinMaxScaler.from_mean_std(mean, np.sqrt(squares / count))


def _fit_table(table: np.ndarray, counts: np.ndarray, method: str) -> MinMaxScaler:
    """:meth:`MinMaxScaler.fit` on rows of which ``counts[k]`` equal ``table[k]`` (``[K, C]``): the
    calendar features of the training rows from their keys' histogram."""
    if method == "standard":
        total = counts.sum()
        mean = counts @ table / total
        variance = counts @ (table - mean) ** 2 / total
        return MinMaxScaler.from_mean_std(mean, np.sqrt(variance))
    seen = table[counts > 0]
    data_min = seen.min(axis=0)
    return MinMaxScaler(data_min=data_min, data_range=seen.max(axis=0) - data_min)


def _concat(first: MinMaxScaler, second: MinMaxScaler) -> MinMaxScaler:
    return MinMaxScaler(
        data_min=np.concatenate([first.data_min, second.data_min]),
        data_range=np.concatenate([first.data_range, second.data_range]),
    )
