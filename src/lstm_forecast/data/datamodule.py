"""The LightningDataModule: source -> frame -> chronological split -> scaling -> lazy windows.

One implementation for every layout: a wide file is a frame whose series share one timeline, a long
file one whose series have their own. Nothing above ``data/`` asks which it holds.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

import lstm_forecast.data.future_features as future_features
from lstm_forecast.data.calendar import calendar_features as make_calendar_features
from lstm_forecast.data.frame import SeriesFrame, check_same_names, static_codes, static_vocabulary
from lstm_forecast.data.loading import fixed_sample, window_loader
from lstm_forecast.data.scaling import SCALERS, MinMaxScaler
from lstm_forecast.data.series_scaling import FittedScalers, check_num_extras, scale_into_arrays
from lstm_forecast.data.short_series import served_series, warn_left_out_series
from lstm_forecast.data.sources import load_source
from lstm_forecast.data.split import SPLITS, Bounds, check_split_sizes, split_bounds
from lstm_forecast.data.split_fill import fill_after_split
from lstm_forecast.data.windows import SeriesArrays, Windows
from lstm_forecast.errors import UserError, check_count

log = logging.getLogger(__name__)

SOURCE_KINDS = ("synthetic", "wide_file", "long_file")


class ForecastDataModule(pl.LightningDataModule):
    """Windows of many series for the embedding + BiLSTM network.

    Each series is scaled with its own training rows (a wide file's columns: the same numbers as
    fitting per column); extra features are scaled on all training rows. The scalers and the
    z-normalisation statistics are fitted in :meth:`setup`, on every rank, deterministically, and
    kept in :meth:`state_dict` (tensors and plain lists only), so a checkpoint alone can invert
    predictions. A series without training rows (no scale without leaking) or shorter than a window
    (:mod:`~lstm_forecast.data.short_series`) is left out of every split, and named in a warning.

    Parameters
    ----------
    source : dict
        ``kind`` (``synthetic``, ``wide_file`` or ``long_file``) and that source's options.
    window_size : int
        Steps of context per window.
    horizon : int
        Steps predicted per window (targets ``t .. t+H-1``).
    split : dict
        See :func:`~lstm_forecast.data.split.split_bounds`: fractions, row counts from each series'
        start or (``val``/``test`` only) back from its end, or dates.
    calendar_features : list of str
        Calendar features computed from the timestamps, appended after the user's extra columns.
    future_columns : list of str
        Extra columns known for the forecast steps too (see :mod:`~lstm_forecast.data.future_features`);
        empty (the default): the method, which sees extra features for the context steps only.
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
        Seed of the training shuffle, of the sampled epochs and of the validation sample.
    windows_per_epoch : int or None
        Train each epoch on this many training windows, drawn uniformly anew every epoch (seeded,
        disjoint equal shards under DDP); None: every training window once an epoch (the method).
        An epoch's cost is then set by this number, not by the size of the panel.
    val_windows : int or None
        Validate during the fit (``val/loss``: early stopping, checkpoint selection) on this many
        validation windows, drawn once (seeded) from all of them, the same every epoch and on every
        rank; None: every validation window. The scores of the best checkpoint in ``metrics.json``
        are computed on every window either way; conformal intervals are calibrated on the sample.
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
        future_columns: list[str] | None = None,
        padding_mask: bool = False,
        scaler: str = "minmax",
        batch_size: int = 256,
        eval_batch_size: int = 1024,
        seed: int = 0,
        device_resident: bool | str = "auto",
        windows_per_epoch: int | None = None,
        val_windows: int | None = None,
    ) -> None:
        super().__init__()
        sizes = {"window_size": window_size, "horizon": horizon, "batch_size": batch_size}
        for name, value in {**sizes, "eval_batch_size": eval_batch_size}.items():
            check_count(f"data.{name}", value)
        for name, value in (("windows_per_epoch", windows_per_epoch), ("val_windows", val_windows)):
            check_count(f"data.{name}", value, "null (every window)")
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
        self.future_columns = future_features.checked_columns(future_columns, self.source)
        self.padding_mask = padding_mask
        self.scaler_method = scaler
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.device_resident = device_resident
        self.windows_per_epoch = windows_per_epoch
        self.val_windows = val_windows

        self._frame: SeriesFrame | None = None
        self._table: pd.DataFrame | None = None  # rows handed over in memory, never a hyperparameter
        self._series_order: list[str] | None = None  # a checkpoint's series order, once restored
        self._static_vocabulary: list[list[str]] | None = None  # per static column, labels of codes 1..C
        self.fitted: FittedScalers | None = None  # fitted in setup, or restored from a checkpoint
        self.bounds: Bounds | None = None  # rows [lo, hi) of each split, per series
        self.arrays: SeriesArrays | None = None  # every row of every series, scaled
        self.windows: dict[str, Windows] = {}
        # The validation sample (data.val_windows): window positions in windows["val"], sorted.
        self.val_sample: torch.Tensor | None = None

    # ----------------------------------------------------------------------------- the frame
    def use_table(self, table: pd.DataFrame) -> None:
        """Read the file source's rows from ``table`` (a DataFrame in memory) instead of
        ``source.path``, with the same column roles. The table stays out of the hyperparameters, so
        a checkpoint records the roles only and reloads with any file of that layout."""
        if self.source["kind"] == "synthetic":
            raise UserError("this model was trained on the built-in synthetic data, which reads no table")
        self._table = table
        self._frame = None
        self.windows = {}

    def load_frame(self) -> SeriesFrame:
        """The source rows, sorted by series then time (read once and cached)."""
        if self._frame is None:
            options = {k: v for k, v in self.source.items() if k != "kind"}
            if self._table is not None:
                options["table"] = self._table
            if self.source["kind"] == "long_file":
                options["series_names"] = self._series_order
            frame = load_source(self.source["kind"], **options, split_fill=True)  # filled below
            if self._series_order is not None:
                check_same_names("series", frame.series_names, self._series_order, options.get("path"))
            frame = fill_after_split(frame, self.split, options.get("fill_method"))
            restored = None if self.fitted is None else self.fitted.series_train_rows
            warn_left_out_series(frame.series_names, frame.lengths, self.window_size, restored)
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
    def future_feature_names(self) -> list[str]:
        """Features of ``x_future`` in ``x`` order: future columns, then calendar features, or none."""
        index = self.future_index()
        return [] if index is None else [self.feature_names[i] for i in index.tolist()]

    def future_index(self) -> torch.Tensor | None:
        """``[Ff]`` positions of the future-known features among :attr:`feature_names` (None: none)."""
        user = [str(c) for c in self.load_frame().extras.columns]
        return future_features.positions(user, self.future_columns, len(self.calendar_feature_names))

    def window_set(
        self,
        arrays: SeriesArrays,
        targets: torch.Tensor,
        horizon: int | None = None,
        with_target: bool = True,
    ) -> Windows:
        """Windows of padded targets ``targets [M]`` over ``arrays``, with this data's features."""
        horizon = self.horizon if horizon is None else horizon
        static, future = self.static_codes(), self.future_index()
        return Windows(arrays, targets, horizon, self.padding_mask, with_target, static, future)

    @property
    def timestamps(self) -> pd.DatetimeIndex:
        """``[N]`` timestamp of every row of the frame; a batch's ``target_row`` indexes it."""
        return self.load_frame().timestamps

    @property
    def freq(self) -> str:
        """The series' pandas frequency alias (``"h"``), ``""`` when a wide file's rows are irregular."""
        return self.load_frame().freqstr

    # The fitted scaling (None before setup or a checkpoint's state): see FittedScalers.
    @property
    def scaler(self) -> MinMaxScaler | None:
        return None if self.fitted is None else self.fitted.scaler

    @property
    def extra_scaler(self) -> MinMaxScaler | None:
        return None if self.fitted is None else self.fitted.extra_scaler

    @property
    def series_mean(self) -> np.ndarray | None:
        return None if self.fitted is None else self.fitted.series_mean

    @property
    def series_std(self) -> np.ndarray | None:
        return None if self.fitted is None else self.fitted.series_std

    @property
    def series_train_rows(self) -> np.ndarray | None:
        return None if self.fitted is None else self.fitted.series_train_rows

    @property
    def static_names(self) -> list[str]:
        return [str(c) for c in self.load_frame().static.columns]

    @property
    def static_vocabulary(self) -> list[list[str]]:
        """Per static column, the labels of codes ``1..C`` (code 0: a label unseen in training)."""
        if self._static_vocabulary is None:
            self._static_vocabulary = static_vocabulary(self.load_frame().static)
        return self._static_vocabulary

    @property
    def static_cardinalities(self) -> list[int]:
        """Codes per static column, including the unknown code 0 (the network's embedding sizes)."""
        return [len(labels) + 1 for labels in self.static_vocabulary]

    def static_codes(self) -> torch.Tensor | None:
        """``[S, K]`` long code of each series' static labels, or None without static columns."""
        codes = static_codes(self.load_frame().static, self.static_vocabulary)
        return None if codes is None else torch.from_numpy(codes)

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
        check_num_extras(self.extra_scaler, table.shape[1])
        return self.extra_scaler.transform(table)

    # ----------------------------------------------------------------------------- setup
    def setup(self, stage: str | None = None) -> None:
        """Split each series, fit the scalers on training rows (unless restored), build the windows."""
        if self.windows:
            return
        frame = self.load_frame()
        bounds = split_bounds(self.split, frame)
        check_split_sizes(bounds, self.split, self.window_size, self.horizon)
        train_rows = bounds["train"][1]  # every split starts at a series' first row or later
        if self.fitted is None and not (train_rows > 0).any():
            raise UserError(f"no training rows with data.split={self.split}; move the cut-off later")
        arrays, fitted = scale_into_arrays(
            frame, self.window_size, self.calendar_feature_names, self.scaler_method, train_rows, self.fitted
        )
        self.fitted = fitted
        self.bounds = bounds
        self.windows = {name: self.split_windows(arrays, name) for name in SPLITS}
        empty = [name for name, windows in self.windows.items() if len(windows) == 0]
        if empty:
            raise UserError(
                f"no {'/'.join(empty)} windows: every series has fewer rows than the horizon "
                f"({self.horizon}) there (data.split={self.split}); give those splits more rows or use a "
                "shorter horizon"
            )
        self.val_sample = fixed_sample(len(self.windows["val"]), self.val_windows, self.seed)
        if self._use_device_arrays():
            arrays = arrays.to(self.trainer.strategy.root_device)
            for windows in self.windows.values():
                windows.share(arrays)
        self.arrays = arrays

    def split_windows(
        self, arrays: SeriesArrays, split: str, lo: np.ndarray | None = None, hi: np.ndarray | None = None
    ) -> Windows:
        """Windows of every target row ``[lo, hi)`` of each scaled series whose horizon ends inside it
        (default: the split's rows); training targets start at step 1 (step 0 has no history at all)."""
        if lo is None or hi is None:
            lo, hi = (self.bounds or split_bounds(self.split, self.load_frame()))[split]
        start = np.maximum(lo, 1) if split == "train" else lo
        served = served_series(self.load_frame().lengths, self.series_train_rows, self.window_size)
        count = np.where(served, hi - self.horizon + 1 - start, 0)
        return self.window_set(arrays, arrays.padded_ranges(start, count))

    def _use_device_arrays(self) -> bool:
        if self.trainer is None:
            return False
        if self.device_resident == "auto":
            return self.trainer.strategy.root_device.type == "cuda"
        return bool(self.device_resident)

    def validation_windows(self) -> Windows:
        """The windows validated on during the fit: the sample of ``val_windows``, else every one."""
        self.setup()
        windows = self.windows["val"]
        if self.val_sample is None:
            return windows
        return self.window_set(windows.arrays, windows.targets[self.val_sample.to(windows.targets.device)])

    # ----------------------------------------------------------------------------- loaders
    def _loader(self, windows: Windows, training: bool) -> DataLoader:
        rank, world_size = (
            (0, 1) if self.trainer is None else (self.trainer.global_rank, self.trainer.world_size)
        )
        key = "batch_size" if training else "eval_batch_size"
        sampled = self.windows_per_epoch if training else None
        return window_loader(windows, getattr(self, key), key, training, self.seed, rank, world_size, sampled)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.windows["train"], training=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.validation_windows(), training=False)

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
            **self.fitted.state_dict(),
            "series_names": self.series_names,
            "feature_names": self.feature_names,
            "freq": self.freq,  # what predictions on new data must match
            "static_names": self.static_names,
            "static_vocabulary": [list(labels) for labels in self.static_vocabulary],
            "future_feature_names": self.future_feature_names,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        self._series_order = [str(name) for name in state_dict["series_names"]]
        self._frame = None  # (re-)read in the checkpoint's series order (its embedding rows), checked
        self.fitted = FittedScalers.from_state_dict(state_dict)
        self._static_vocabulary = [list(labels) for labels in state_dict.get("static_vocabulary", [])]
        self.windows = {}
        if self.static_names != list(state_dict.get("static_names", [])):
            raise UserError(
                f"the data's static columns {self.static_names} differ from the checkpoint's "
                f"{list(state_dict.get('static_names', []))}; set data.source.static_columns as in training"
            )
        future_features.check_same(self.future_feature_names, state_dict.get("future_feature_names", []))
