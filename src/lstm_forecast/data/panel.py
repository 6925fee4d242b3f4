"""The datamodule of long-format panels: per-series split and scaling over lazy ragged windows."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import numpy as np
import pandas as pd
import torch

from lstm_forecast.data.calendar import calendar_features as make_calendar_features
from lstm_forecast.data.datamodule import SPLITS, ForecastDataModule
from lstm_forecast.data.long_source import LONG_FILE_OPTIONS, PanelFrame, long_file_frame
from lstm_forecast.data.panel_windows import PanelArrays, PanelWindows, index_ranges
from lstm_forecast.data.scaling import MinMaxScaler
from lstm_forecast.errors import UserError

log = logging.getLogger(__name__)

DATE_SPLIT_KEYS = ("val_start", "test_start")


# --------------------------------------------------------------------------------------------- split
def _timestamp(value: Any, key: str, tz: Any) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as error:
        raise UserError(f"data.split.{key}={value!r} is not a date (e.g. 2024-03-01)") from error
    if tz is not None and stamp.tz is None:
        stamp = stamp.tz_localize(tz)
    return stamp


def split_bounds(split: dict[str, Any], frame: PanelFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Rows ``[lo, hi)`` (within each series, ``[S]`` each) of train, validation and test.

    ``split`` holds per-series fractions ``{train, val, test}`` (each series split by its own length;
    rows after the test part unused) and/or global cut-off dates ``{val_start, test_start}`` with an
    optional exclusive ``test_end`` (train: every row before ``val_start``); dates, when set (not
    null), take precedence. A series may have no rows in a split; it is then absent from it.
    """
    lengths = frame.lengths
    dates = {key: split[key] for key in (*DATE_SPLIT_KEYS, "test_end") if split.get(key) is not None}
    unknown = sorted(set(split) - {*SPLITS, *DATE_SPLIT_KEYS, "test_end"})
    if unknown:
        raise UserError(
            f"unknown data.split key(s) {unknown}; use train/val/test fractions or val_start/test_start"
        )
    if dates:
        if not set(DATE_SPLIT_KEYS) <= set(dates):
            raise UserError(f"data.split by date needs both val_start and test_start; got {dates}")
        tz = frame.timestamps.tz
        cut_offs = [_timestamp(value, key, tz) for key, value in dates.items()]
        if any(later <= earlier for earlier, later in itertools.pairwise(cut_offs)):
            raise UserError(
                f"data.split dates must increase (val_start < test_start < test_end); got {dates}"
            )
        row_series = frame.row_series
        counts = [
            np.bincount(row_series[frame.timestamps < date], minlength=len(lengths)) for date in cut_offs
        ]
        if len(counts) == 2:
            counts.append(lengths)
        cuts = [np.zeros_like(lengths), *counts]
    elif all(split.get(name) is not None for name in SPLITS):
        fractions = [split[name] for name in SPLITS]
        if not all(isinstance(f, float) and 0 < f < 1 for f in fractions):
            raise UserError(
                f"data.split for long data takes per-series fractions in (0, 1) or dates "
                f"(val_start, test_start[, test_end]); got {split}"
            )
        if sum(fractions) > 1 + 1e-9:
            raise UserError(
                f"data.split fractions sum to {sum(fractions):.3f} > 1; make them add up to at most 1"
            )
        n_val, n_test = (np.rint(f * lengths).astype(np.int64) for f in fractions[1:])
        n_train = np.minimum(np.rint(fractions[0] * lengths).astype(np.int64), lengths - n_val - n_test)
        n_train = np.maximum(n_train, 0)
        cuts = [np.zeros_like(lengths), n_train, n_train + n_val, n_train + n_val + n_test]
    else:
        raise UserError(
            "data.split for long data is either per-series fractions {train, val, test} or cut-off dates "
            f"{{val_start, test_start[, test_end]}}; got keys {sorted(split)}"
        )
    return {name: (cuts[i], cuts[i + 1]) for i, name in enumerate(SPLITS)}


# --------------------------------------------------------------------------------------------- datamodule
class PanelDataModule(ForecastDataModule):
    """Windows of a long-format panel: series of their own lengths and timelines.

    Same constructor, loaders and batch contract as :class:`ForecastDataModule`; ``source`` has
    ``kind: long_file`` and the options of :func:`long_file_frame`, ``split`` per-series fractions
    or cut-off dates (:func:`split_bounds`). Each series is min-max scaled with its own training rows;
    extra features are scaled globally on all training rows. A series without training rows cannot
    be scaled without leaking, so it is left out of every split (and reported).
    """

    _series_order: list[str] | None = None  # a checkpoint's series order, once restored
    _static_vocabulary: list[list[str]] | None = None  # per static column, labels of codes 1..C
    extra_scaler: MinMaxScaler | None = None
    series_train_rows: np.ndarray | None = None  # [S] training rows per series at fit time

    # ----------------------------------------------------------------------------- source and layout
    def load_frame(self) -> PanelFrame:
        """The sorted, checked (or filled) long table (read once and cached)."""
        if self._frame is None:
            options = {k: v for k, v in self.source.items() if k != "kind"}
            if self.source["kind"] != "long_file":
                raise UserError(
                    f"data.source.kind must be long_file for long data, got {self.source['kind']!r}"
                )
            unknown = sorted(set(options) - set(LONG_FILE_OPTIONS))
            if unknown:
                raise UserError(
                    f"unknown data.source option(s) {unknown} for long_file; use {LONG_FILE_OPTIONS}"
                )
            if "path" not in options:
                raise UserError("data.source.path is missing; give the long CSV or Parquet file")
            self._frame = long_file_frame(**options, series_names=self._series_order)
        return self._frame

    @property
    def series_names(self) -> list[str]:
        return list(self.load_frame().series_names)

    @property
    def feature_names(self) -> list[str]:
        """Extra features per step, in ``x`` order: user columns, then calendar features."""
        return [str(c) for c in self.load_frame().extras.columns] + self.calendar_feature_names

    @property
    def timestamps(self) -> pd.DatetimeIndex:
        """``[N]`` timestamp of every row of the long table; a batch's ``target_row`` indexes it."""
        return self.load_frame().timestamps

    @property
    def freq(self) -> str:
        """Every series' pandas frequency alias (the long table's rows are not one timeline)."""
        return self.load_frame().freq.freqstr

    @property
    def static_names(self) -> list[str]:
        return [str(c) for c in self.load_frame().static.columns]

    @property
    def static_vocabulary(self) -> list[list[str]]:
        """Per static column, the labels of codes ``1..C`` (code 0: a label unseen in training)."""
        if self._static_vocabulary is None:
            static = self.load_frame().static
            self._static_vocabulary = [sorted(set(static[c]) - {""}) for c in static.columns]
        return self._static_vocabulary

    @property
    def static_cardinalities(self) -> list[int]:
        """Codes per static column, including the unknown code 0 (the network's embedding sizes)."""
        return [len(labels) + 1 for labels in self.static_vocabulary]

    def static_codes(self) -> torch.Tensor | None:
        """``[S, K]`` long code of each series' static labels, or None without static columns."""
        static = self.load_frame().static
        if static.shape[1] == 0:
            return None
        codes = [
            pd.Categorical(static[column], categories=labels).codes.astype(np.int64) + 1
            for column, labels in zip(static.columns, self.static_vocabulary, strict=True)
        ]
        return torch.from_numpy(np.stack(codes, axis=1))

    def feature_table(self) -> np.ndarray:
        """``[N, E]`` float64 extra features of every row: user columns, then calendar features."""
        frame = self.load_frame()
        calendar = make_calendar_features(frame.timestamps, self.calendar_feature_names)
        return np.concatenate([frame.extras.to_numpy(), calendar.to_numpy()], axis=1)

    # ----------------------------------------------------------------------------- setup
    def setup(self, stage: str | None = None) -> None:
        """Split each series, fit the scalers on training rows (unless restored), build the windows."""
        if self.windows:
            return
        frame = self.load_frame()
        extras = self.feature_table()
        bounds = split_bounds(self.split, frame)
        row_series, local = frame.row_series, frame.local_index
        if self.scaler is None:
            self._fit_scalers(frame, extras, row_series, local < bounds["train"][1][row_series])
        elif len(self.extra_scaler.data_min) != extras.shape[1]:
            raise UserError(
                f"the data has {extras.shape[1]} extra features but the checkpoint's scaler was fitted on "
                f"{len(self.extra_scaler.data_min)}; use data with the training columns"
            )
        values = self.scaler.transform(frame.values, column_index=row_series)
        arrays = PanelArrays.from_rows(
            values, self.extra_scaler.transform(extras), frame.offsets, self.window_size
        )
        del values, extras
        scaled_series = self.series_train_rows > 0
        horizon, static = self.horizon, self.static_codes()
        self.windows = {}
        for name, (lo, hi) in bounds.items():
            # Training targets start at step 1: the first window holds step 0 alone (the warm-up).
            start = np.maximum(lo, 1) if name == "train" else lo
            count = np.where(scaled_series, hi - horizon + 1 - start, 0)
            local_targets = index_ranges(start, count)
            series = np.repeat(np.arange(len(lo)), np.maximum(count, 0))
            targets = torch.from_numpy(arrays.padded_rows(series, local_targets))
            self.windows[name] = PanelWindows(arrays, targets, horizon, self.padding_mask, True, static)
        empty = [name for name, windows in self.windows.items() if len(windows) == 0]
        if empty:
            raise UserError(
                f"no {'/'.join(empty)} windows: every series has fewer rows than the horizon ({horizon}) "
                f"there (data.split={self.split}); give those splits more rows or use a shorter horizon"
            )
        if self._use_device_arrays():
            device_arrays = arrays.to(self.trainer.strategy.root_device)
            for windows in self.windows.values():
                windows.share(device_arrays)

    def _fit_scalers(
        self, frame: PanelFrame, extras: np.ndarray, row_series: np.ndarray, train_rows: np.ndarray
    ) -> None:
        """Per-series value scaler and z statistics, global extra-feature scaler, from training rows."""
        num_series = len(frame.series_names)
        if not train_rows.any():
            raise UserError(f"no training rows with data.split={self.split}; move the cut-off later")
        train_values = pd.Series(frame.values[train_rows])
        stats = train_values.groupby(row_series[train_rows]).agg(["min", "max", "mean", "count"])
        stats["std"] = train_values.groupby(row_series[train_rows]).std(ddof=0)
        stats = stats.reindex(range(num_series))
        self.series_train_rows = stats["count"].fillna(0).to_numpy(dtype=np.int64)
        data_min = stats["min"].fillna(0.0).to_numpy()
        self.series_mean = stats["mean"].fillna(0.0).to_numpy()
        std = stats["std"].fillna(0.0).to_numpy()
        if self.scaler_method == "standard":
            self.scaler = MinMaxScaler.from_mean_std(self.series_mean, std)
        else:
            self.scaler = MinMaxScaler(
                data_min=data_min, data_range=stats["max"].fillna(0.0).to_numpy() - data_min
            )
        self.series_std = np.where(std > 0, std, 1.0)
        self.extra_scaler = MinMaxScaler.fit(extras[train_rows], self.scaler_method)
        unscaled = [
            name for name, rows in zip(frame.series_names, self.series_train_rows, strict=True) if not rows
        ]
        if unscaled:
            log.warning(
                "%d series have no training rows and are left out of every split (no scale without "
                "leaking the future): %s",
                len(unscaled),
                unscaled[:10],
            )

    # ----------------------------------------------------------------------------- forecasting
    def forecast_windows(self) -> PanelWindows:
        """One window per scaled series forecasting the ``horizon`` steps after its last row (no ``y``)."""
        self.setup()
        frame = self.load_frame()
        arrays = next(iter(self.windows.values())).arrays
        series = np.flatnonzero((frame.lengths > 0) & (self.series_train_rows > 0))
        targets = torch.from_numpy(arrays.padded_rows(series, frame.lengths[series]))
        return PanelWindows(arrays, targets, self.horizon, self.padding_mask, False, self.static_codes())

    def future_timestamps(self, series_index: np.ndarray, steps: int) -> pd.DatetimeIndex:
        """``[M * steps]`` timestamps of the ``steps`` steps after the last row of each series in
        ``series_index [M]`` (series-major)."""
        frame = self.load_frame()
        last = frame.timestamps[frame.offsets[np.asarray(series_index) + 1] - 1]  # [M]
        ahead = np.stack(
            [(last + (k + 1) * frame.freq).as_unit("ns").asi8 for k in range(steps)], axis=1
        )  # [M, steps]
        stamps = pd.DatetimeIndex(ahead.ravel().view("datetime64[ns]"))
        return stamps if last.tz is None else stamps.tz_localize("UTC").tz_convert(last.tz)

    # ----------------------------------------------------------------------------- checkpoint state
    def state_dict(self) -> dict[str, Any]:
        if self.scaler is None:
            return {}
        return {
            **super().state_dict(),
            "extra_scaler": self.extra_scaler.state_dict(),
            "series_train_rows": torch.from_numpy(self.series_train_rows.copy()),
            "static_names": self.static_names,
            "static_vocabulary": [list(labels) for labels in self.static_vocabulary],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        order = [str(name) for name in state_dict["series_names"]]
        if self._frame is not None and self._frame.series_names != order:
            self._frame = None  # re-read in the checkpoint's series order (its embedding rows)
        self._series_order = order
        self.scaler = MinMaxScaler.from_state_dict(state_dict["scaler"])
        self.extra_scaler = MinMaxScaler.from_state_dict(state_dict["extra_scaler"])
        self.series_mean = state_dict["series_mean"].numpy()
        self.series_std = state_dict["series_std"].numpy()
        self.series_train_rows = state_dict["series_train_rows"].numpy()
        self._static_vocabulary = [list(labels) for labels in state_dict["static_vocabulary"]]
        self.windows = {}
        if self.static_names != list(state_dict["static_names"]):
            raise UserError(
                f"the data's static columns {self.static_names} differ from the checkpoint's "
                f"{list(state_dict['static_names'])}; set data.source.static_columns as in training"
            )
