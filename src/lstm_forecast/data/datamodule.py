"""The LightningDataModule: source -> frame -> chronological split -> scaling -> lazy windows.

One implementation for every layout: a wide file is a frame whose series share one timeline, a long
file one whose series have their own. Nothing above ``data/`` asks which it holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from lstm_forecast.data.calendar import CalendarKeys
from lstm_forecast.data.calendar import calendar_features as make_calendar_features
from lstm_forecast.data.frame import SeriesFrame
from lstm_forecast.data.scaling import SCALERS, MinMaxScaler
from lstm_forecast.data.sources import load_source
from lstm_forecast.data.split import SPLITS, Bounds, split_bounds
from lstm_forecast.data.windows import (
    SeriesArrays,
    WindowBatchSampler,
    WindowDataset,
    Windows,
    series_chunks,
)
from lstm_forecast.errors import UserError

log = logging.getLogger(__name__)

SOURCE_KINDS = ("synthetic", "wide_file", "long_file")


class ForecastDataModule(pl.LightningDataModule):
    """Windows of many series for the embedding + BiLSTM network.

    Each series is scaled with its own training rows (a wide file's columns: the same numbers as
    fitting per column); extra features are scaled on all training rows. The scalers and the
    z-normalisation statistics are fitted in :meth:`setup`, on every rank, deterministically, and
    kept in :meth:`state_dict` (tensors and plain lists only), so a checkpoint alone can invert
    predictions. A series without training rows cannot be scaled without leaking: it is left out of
    every split (and reported).

    Parameters
    ----------
    source : dict
        ``kind`` (``synthetic``, ``wide_file`` or ``long_file``) and that source's options.
    window_size : int
        Steps of context per window.
    horizon : int
        Steps predicted per window (targets ``t .. t+H-1``).
    split : dict
        See :func:`~lstm_forecast.data.split.split_bounds`: fractions, row counts or dates.
    calendar_features : list of str
        Calendar features computed from the timestamps, appended after the user's extra columns.
    padding_mask : bool
        Feed a 0/1 mask marking the zero-padded warm-up steps (off reproduces the method).
    scaler : {"minmax", "standard"}
        ``minmax`` maps the training range onto [-1, 1] (the method); ``standard`` uses z-scores, so
        the training loss weighs every series as the z-normalised metrics do.
    batch_size : int
        Global training batch; each of N processes takes ``batch_size / N``.
    eval_batch_size : int
        Global batch for validation, test and prediction.
    seed : int
        Seed of the training shuffle.
    device_resident : bool or "auto"
        Keep the scaled arrays on the training device and gather batches there; ``auto`` does so on GPUs.
    """

    def __init__(
        self,
        source: dict[str, Any],
        window_size: int = 48,
        horizon: int = 1,
        split: dict[str, Any] | None = None,
        calendar_features: list[str] | None = None,
        padding_mask: bool = False,
        scaler: str = "minmax",
        batch_size: int = 256,
        eval_batch_size: int = 1024,
        seed: int = 0,
        device_resident: bool | str = "auto",
    ) -> None:
        super().__init__()
        for name, value in (
            ("window_size", window_size),
            ("horizon", horizon),
            ("batch_size", batch_size),
            ("eval_batch_size", eval_batch_size),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"data.{name} must be a positive integer, got {value!r}")
        if scaler not in SCALERS:
            raise UserError(f"data.scaler must be one of {list(SCALERS)}, got {scaler!r}")
        if source.get("kind") not in SOURCE_KINDS:
            raise UserError(
                f"data.source.kind must be one of {list(SOURCE_KINDS)}, got {source.get('kind')!r}"
            )
        # logger=False: the run logs hyperparameters once, with the final metrics.
        self.save_hyperparameters(logger=False)
        self.source = dict(source)
        self.window_size = window_size
        self.horizon = horizon
        self.split = dict(split or {"train": 0.7, "val": 0.15, "test": 0.15})
        self.calendar_feature_names = list(calendar_features or [])
        self.padding_mask = padding_mask
        self.scaler_method = scaler
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.device_resident = device_resident

        self._frame: SeriesFrame | None = None
        self._series_order: list[str] | None = None  # a checkpoint's series order, once restored
        self._static_vocabulary: list[list[str]] | None = None  # per static column, labels of codes 1..C
        self.scaler: MinMaxScaler | None = None  # per series, on values
        self.extra_scaler: MinMaxScaler | None = None  # per extra feature
        self.series_mean: np.ndarray | None = None  # [S] training mean, original units
        self.series_std: np.ndarray | None = None  # [S] training std (ddof 0), 1 where constant
        self.series_train_rows: np.ndarray | None = None  # [S] training rows per series at fit time
        self.bounds: Bounds | None = None  # rows [lo, hi) of each split, per series
        self.arrays: SeriesArrays | None = None  # every row of every series, scaled
        self.windows: dict[str, Windows] = {}

    # ----------------------------------------------------------------------------- the frame
    def load_frame(self) -> SeriesFrame:
        """The source rows, sorted by series then time (read once and cached)."""
        if self._frame is None:
            options = {k: v for k, v in self.source.items() if k != "kind"}
            if self.source["kind"] == "long_file":
                if options.get("path") is None:
                    raise UserError("data.source.path is missing; give the long CSV or Parquet file")
                options["series_names"] = self._series_order
            frame = load_source(self.source["kind"], **options)
            if self._series_order is not None:
                check_same_names("series", frame.series_names, self._series_order, options.get("path"))
            self._frame = frame
        return self._frame

    @property
    def series_names(self) -> list[str]:
        return list(self.load_frame().series_names)

    @property
    def num_series(self) -> int:
        return len(self.series_names)

    @property
    def feature_names(self) -> list[str]:
        """Extra features per step, in ``x`` order: user columns, then calendar features."""
        return [str(c) for c in self.load_frame().extras.columns] + self.calendar_feature_names

    @property
    def num_features(self) -> int:
        """Features per step in ``x``: extras, the optional padding mask, the value."""
        return len(self.feature_names) + int(self.padding_mask) + 1

    @property
    def timestamps(self) -> pd.DatetimeIndex:
        """``[N]`` timestamp of every row of the frame; a batch's ``target_row`` indexes it."""
        return self.load_frame().timestamps

    @property
    def freq(self) -> str:
        """The series' pandas frequency alias (``"h"``), ``""`` when a wide file's rows are irregular."""
        return self.load_frame().freqstr

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

    def feature_table(
        self, timestamps: pd.DatetimeIndex | None = None, extras: np.ndarray | None = None
    ) -> np.ndarray:
        """``[N, E]`` float64 extra features: user columns, then calendar features of ``timestamps``.

        Defaults to every row of the frame; give ``timestamps`` and the user columns' ``extras`` for
        other rows (steps after the data).
        """
        if timestamps is None:
            frame = self.load_frame()
            timestamps, extras = frame.timestamps, frame.extras.to_numpy()
        calendar = make_calendar_features(timestamps, self.calendar_feature_names).to_numpy()
        return np.concatenate([extras, calendar], axis=1)

    def scaled_extras(self, table: np.ndarray) -> np.ndarray:
        """``[M, E]`` extra features scaled with the fitted (or restored) scaler."""
        self._check_num_extras(table.shape[1])
        return self.extra_scaler.transform(table)

    def _check_num_extras(self, count: int) -> None:
        if count != len(self.extra_scaler.data_min):
            raise UserError(
                f"the data has {count} extra features but the checkpoint's scaler was fitted on "
                f"{len(self.extra_scaler.data_min)}; use data with the training columns"
            )

    def calendar_keys(self) -> CalendarKeys | None:
        """The calendar features of the frame's rows as keys (None: no calendar features, or too many
        combinations; they are then float extras)."""
        frame = self.load_frame()
        present = frame.lengths > 0
        if not self.calendar_feature_names or not present.any():
            return None
        first = frame.timestamps[frame.offsets[:-1][present]].min() - pd.Timedelta(days=1)  # a day of
        last = frame.timestamps[frame.offsets[1:][present] - 1].max() + pd.Timedelta(days=1)  # DST slack
        return CalendarKeys.build(first, last, self.calendar_feature_names)

    def calendar_table(self, keys: CalendarKeys) -> np.ndarray:
        """``[K, C]`` float32 scaled calendar features of every key (zeros for the padding key 0): the
        same numbers as scaling the features' floats."""
        first = len(self.extra_scaler.data_min) - len(keys.names)
        scaler = MinMaxScaler(self.extra_scaler.data_min[first:], self.extra_scaler.data_range[first:])
        table = np.zeros((keys.num_keys, len(keys.names)), dtype=np.float32)
        table[1:] = scaler.transform(keys.table)
        return table

    # ----------------------------------------------------------------------------- setup
    def setup(self, stage: str | None = None) -> None:
        """Split each series, fit the scalers on training rows (unless restored), build the windows."""
        if self.windows:
            return
        frame = self.load_frame()
        bounds = split_bounds(self.split, frame)
        self._check_split_sizes(bounds)
        arrays = self._scaled_arrays(frame, bounds["train"][1])
        self.bounds = bounds
        self.windows = {name: self.split_windows(arrays, name) for name in SPLITS}
        empty = [name for name, windows in self.windows.items() if len(windows) == 0]
        if empty:
            raise UserError(
                f"no {'/'.join(empty)} windows: every series has fewer rows than the horizon "
                f"({self.horizon}) there (data.split={self.split}); give those splits more rows or use a "
                "shorter horizon"
            )
        if self._use_device_arrays():
            arrays = arrays.to(self.trainer.strategy.root_device)
            for windows in self.windows.values():
                windows.share(arrays)
        self.arrays = arrays

    def _check_split_sizes(self, bounds: Bounds) -> None:
        """Refuse splits that leave no series a full training window or a horizon of targets."""
        train_rows = int((bounds["train"][1] - bounds["train"][0]).max(initial=0))
        if train_rows < max(self.window_size, 2):
            raise UserError(
                f"too few rows: the training split has {train_rows} rows but data.window_size is "
                f"{self.window_size}; use a smaller window, a larger train split or more data"
            )
        val_rows, test_rows = (int((hi - lo).max(initial=0)) for lo, hi in (bounds["val"], bounds["test"]))
        if min(val_rows, test_rows) < self.horizon:
            raise UserError(
                f"too few rows: validation/test splits have {val_rows}/{test_rows} rows but the horizon is "
                f"{self.horizon}; give them at least that many rows"
            )

    def split_windows(
        self, arrays: SeriesArrays, split: str, lo: np.ndarray | None = None, hi: np.ndarray | None = None
    ) -> Windows:
        """Windows of every target row ``[lo, hi)`` of each scaled series whose horizon ends inside it
        (default: the split's rows); training targets start at step 1 (step 0 has no history at all)."""
        if lo is None or hi is None:
            lo, hi = (
                self.bounds[split]
                if self.bounds is not None
                else split_bounds(self.split, self.load_frame())[split]
            )
        start = np.maximum(lo, 1) if split == "train" else lo
        count = np.where(self.series_train_rows > 0, hi - self.horizon + 1 - start, 0)
        targets = arrays.padded_ranges(start, count)
        return Windows(arrays, targets, self.horizon, self.padding_mask, True, self.static_codes())

    def _scaled_arrays(self, frame: SeriesFrame, train_rows: np.ndarray) -> SeriesArrays:
        """Every row scaled into the padded float32 arrays, calendar features as keys, a few series at
        a time; fits the scalers on the first ``train_rows [S]`` rows of each series first (unless
        restored from a checkpoint).

        No ``[N]`` float64 temporary is made: per-series statistics come from ``ufunc.reduceat`` over
        each chunk's training rows, the calendar features' statistics from their keys' histogram.
        """
        keys = self.calendar_keys()
        user = frame.extras.to_numpy(dtype=np.float64)  # [N, E] (a view of float columns)
        float_calendar = self.calendar_feature_names if keys is None else []

        def float_extras(rows: slice) -> np.ndarray:
            """``[n, F]`` the rows' float features: user columns (and calendar features without keys)."""
            if not float_calendar:
                return user[rows]
            calendar = make_calendar_features(frame.timestamps[rows], float_calendar).to_numpy()
            return np.concatenate([user[rows], calendar], axis=1)

        num_floats = user.shape[1] + len(float_calendar)
        fit = self.scaler is None
        if fit:
            if not (train_rows > 0).any():
                raise UserError(f"no training rows with data.split={self.split}; move the cut-off later")
            float_scaler = _fit_rows(float_extras, num_floats, frame.offsets, train_rows, self.scaler_method)
            stats = np.zeros((4, frame.num_series))  # min, max, mean, std of each series' training rows
        else:
            self._check_num_extras(user.shape[1] + len(self.calendar_feature_names))
            float_scaler = MinMaxScaler(
                self.extra_scaler.data_min[:num_floats], self.extra_scaler.data_range[:num_floats]
            )
        arrays = SeriesArrays.zeros(
            frame.offsets, self.window_size, num_floats, None if keys is None else keys.dtype
        )
        padded_values, padded_extras = arrays.values.numpy(), arrays.extras.numpy()
        histogram = np.zeros(0 if keys is None else keys.num_keys, dtype=np.int64)
        offsets = frame.offsets
        for s0, s1 in series_chunks(offsets):
            rows = slice(offsets[s0], offsets[s1])
            lengths = np.diff(offsets[s0 : s1 + 1])
            series = np.repeat(np.arange(s1 - s0), lengths)  # [n] within the chunk
            padded = np.arange(offsets[s0], offsets[s1]) + (series + s0 + 1) * self.window_size
            values = frame.values[rows]
            if fit:
                train = _leading_rows(lengths, train_rows[s0:s1])
                stats[:, s0:s1] = _series_stats(values[train], train_rows[s0:s1])
                scaler = self._series_scaler(*stats[:, s0:s1])
            else:
                scaler = MinMaxScaler(self.scaler.data_min[s0:s1], self.scaler.data_range[s0:s1])
            padded_values[padded] = scaler.transform(values, column_index=series)
            if num_floats:
                padded_extras[padded] = float_scaler.transform(float_extras(rows))
            if keys is not None:
                row_keys = keys.keys(frame.timestamps[rows])
                arrays.calendar.numpy()[padded] = row_keys
                if fit:
                    histogram += np.bincount(row_keys[train], minlength=keys.num_keys)
        if fit:
            if keys is not None:
                float_scaler = _concat(
                    float_scaler, _fit_table(keys.table, histogram[1:], self.scaler_method)
                )
            self._keep_fit(frame, train_rows, stats, float_scaler)
        if keys is None:
            return arrays
        return replace(arrays, calendar_table=torch.from_numpy(self.calendar_table(keys)))

    def _series_scaler(
        self, data_min: np.ndarray, data_max: np.ndarray, mean: np.ndarray, std: np.ndarray
    ) -> MinMaxScaler:
        if self.scaler_method == "standard":
            return MinMaxScaler.from_mean_std(mean, std)
        return MinMaxScaler(data_min=data_min, data_range=data_max - data_min)

    def _keep_fit(
        self,
        frame: SeriesFrame,
        train_rows: np.ndarray,
        stats: np.ndarray,
        extra_scaler: MinMaxScaler,
    ) -> None:
        """Keep the fitted per-series scaler and z statistics and the extra-feature scaler (user
        columns, then calendar features)."""
        self.series_train_rows = np.asarray(train_rows, dtype=np.int64).copy()
        self.scaler = self._series_scaler(*stats)
        self.series_mean = stats[2]
        self.series_std = np.where(stats[3] > 0, stats[3], 1.0)
        self.extra_scaler = extra_scaler
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

    def _use_device_arrays(self) -> bool:
        if self.trainer is None:
            return False
        if self.device_resident == "auto":
            return self.trainer.strategy.root_device.type == "cuda"
        return bool(self.device_resident)

    # ----------------------------------------------------------------------------- loaders
    def _distribution(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def _per_rank(self, batch_size: int, key: str) -> int:
        world_size = self._distribution()[1]
        if batch_size % world_size:
            raise UserError(
                f"data.{key}={batch_size} does not divide over {world_size} processes; "
                f"use a multiple of {world_size}"
            )
        return batch_size // world_size

    def _loader(self, split: str, training: bool) -> DataLoader:
        self.setup()
        windows = self.windows[split]
        rank, world_size = self._distribution()
        batch_size = (
            self._per_rank(self.batch_size, "batch_size")
            if training
            else self._per_rank(self.eval_batch_size, "eval_batch_size")
        )
        sampler = WindowBatchSampler(
            len(windows),
            batch_size,
            shuffle=training,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            even_shards=training,
        )
        return DataLoader(WindowDataset(windows), batch_size=None, sampler=sampler)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", training=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", training=False)

    # ----------------------------------------------------------------------------- units
    def inverse_values(self, scaled: np.ndarray, series_index: np.ndarray) -> np.ndarray:
        """Scaled series values back to original units; ``series_index`` (from 0) broadcasts to them."""
        if self.scaler is None:
            raise RuntimeError("setup() or load_state_dict() first")
        return self.scaler.inverse_transform(scaled, column_index=series_index)

    def scaled_values(self, values: np.ndarray, series_index: np.ndarray) -> np.ndarray:
        """Original-unit series values scaled with each series' fitted scaler."""
        return self.scaler.transform(values, column_index=series_index)

    def z_normalise(self, values: np.ndarray, series_index: np.ndarray) -> np.ndarray:
        """Original-unit values z-normalised with each series' training mean and std."""
        return (values - self.series_mean[series_index]) / self.series_std[series_index]

    # ----------------------------------------------------------------------------- checkpoint state
    def state_dict(self) -> dict[str, Any]:
        if self.scaler is None:
            return {}
        return {
            "scaler": self.scaler.state_dict(),
            "extra_scaler": self.extra_scaler.state_dict(),
            "series_mean": torch.from_numpy(self.series_mean.copy()),
            "series_std": torch.from_numpy(self.series_std.copy()),
            "series_train_rows": torch.from_numpy(self.series_train_rows.copy()),
            "series_names": self.series_names,
            "feature_names": self.feature_names,
            "freq": self.freq,  # what predictions on new data must match
            "static_names": self.static_names,
            "static_vocabulary": [list(labels) for labels in self.static_vocabulary],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        state_dict = upgrade_wide_state(state_dict)
        self._series_order = [str(name) for name in state_dict["series_names"]]
        self._frame = None  # (re-)read in the checkpoint's series order (its embedding rows), checked
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


def check_same_names(kind: str, found: list[str], expected: list[str], source: str | None) -> None:
    """Refuse data whose series (or extra feature) names differ from the training data's."""
    if found == expected:
        return
    missing = [c for c in expected if c not in found]
    unexpected = [c for c in found if c not in expected]
    detail = f"missing {missing[:10]}, unexpected {unexpected[:10]}" if missing or unexpected else "reordered"
    raise UserError(
        f"the {kind} columns of {source or 'the data'} differ from the training data's ({detail}); "
        "give data with the training columns"
    )


def upgrade_wide_state(state: dict[str, Any]) -> dict[str, Any]:
    """A datamodule state of the wide-only datamodule (before one data model) in today's form.

    That state held one scaler over ``[series..., extras...]`` columns; it is the same numbers as a
    per-series value scaler plus an extra-feature scaler. Every series had training rows.
    """
    if "extra_scaler" in state:
        return state
    num_series = len(state["series_names"])
    scaler = state["scaler"]
    return {
        **state,
        "scaler": {key: value[:num_series] for key, value in scaler.items()},
        "extra_scaler": {key: value[num_series:] for key, value in scaler.items()},
        "series_train_rows": torch.ones(num_series, dtype=torch.int64),
        "static_names": [],
        "static_vocabulary": [],
    }


# ----------------------------------------------------------------------------- fitting, chunk by chunk
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
