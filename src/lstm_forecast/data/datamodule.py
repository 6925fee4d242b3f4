"""The LightningDataModule: source -> features -> chronological split -> scaling -> lazy windows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from lstm_forecast.data.calendar import calendar_features as make_calendar_features
from lstm_forecast.data.scaling import SCALERS, MinMaxScaler
from lstm_forecast.data.sources import SourceFrame, load_source
from lstm_forecast.data.windows import PaddedArrays, WideWindows, WindowBatchSampler, WindowDataset
from lstm_forecast.errors import UserError

SPLITS = ("train", "val", "test")


def resolve_split(split: dict[str, float | int], num_rows: int) -> tuple[int, int, int]:
    """Rows of train / validation / test, from fractions (floats in (0, 1)) or row counts (ints).

    Splits are chronological and contiguous from the first row; rows after the test split are unused
    (as in ETTh1's published 8640 / 2880 / 2880 protocol).
    """
    if set(split) != set(SPLITS):
        raise UserError(f"data.split needs exactly the keys train, val, test; got {sorted(split)}")
    values = [split[name] for name in SPLITS]
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        rows = values
    elif all(isinstance(v, float) and 0 < v < 1 for v in values):
        if sum(values) > 1 + 1e-9:
            raise UserError(
                f"data.split fractions sum to {sum(values):.3f} > 1; make them add up to at most 1"
            )
        rows = [round(v * num_rows) for v in values]
        rows[0] = min(rows[0], num_rows - rows[1] - rows[2])
    else:
        raise UserError(f"data.split must be all row counts (ints) or all fractions in (0, 1); got {split}")
    if any(r < 1 for r in rows):
        raise UserError(f"data.split {split} leaves an empty split of {num_rows} rows; give every split rows")
    if sum(rows) > num_rows:
        raise UserError(f"data.split asks for {sum(rows)} rows but the data has {num_rows}; reduce the split")
    return rows[0], rows[1], rows[2]


def scaled_float32(scaler: MinMaxScaler, table: np.ndarray, rows_per_chunk: int = 4096) -> np.ndarray:
    """``scaler.transform(table)`` as float32, a block of rows at a time: the float64 temporaries of
    the transform never exceed one block, whatever the size of the table."""
    scaled = np.empty(table.shape, dtype=np.float32)
    for start in range(0, table.shape[0], rows_per_chunk):
        block = slice(start, start + rows_per_chunk)
        scaled[block] = scaler.transform(table[block])
    return scaled


class ForecastDataModule(pl.LightningDataModule):
    """Windows of many series for the embedding + BiLSTM network.

    The scaler and the z-normalisation statistics are fitted on the training rows in
    :meth:`setup`, on every rank, deterministically, and kept in :meth:`state_dict` (tensors and
    plain lists only), so a checkpoint alone can invert predictions.

    Parameters
    ----------
    source : dict
        ``kind`` (``synthetic`` or ``wide_file``) and that source's options.
    window_size : int
        Steps of context per window.
    horizon : int
        Steps predicted per window (targets ``t .. t+H-1``).
    split : dict
        ``train``, ``val``, ``test``: fractions or row counts.
    calendar_features : list of str
        Calendar features computed from the timestamps, appended after the user's extra columns.
    padding_mask : bool
        Feed a 0/1 mask marking the zero-padded warm-up steps (off reproduces the method).
    scaler : {"minmax", "standard"}
        How values and extra features are scaled, fitted on training rows: ``minmax`` maps the training
        range onto [-1, 1] (the method); ``standard`` uses z-scores, so the training loss weighs every
        series as the z-normalised metrics do.
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
        split: dict[str, float | int] | None = None,
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
            if not isinstance(value, int) or value < 1:
                raise UserError(f"data.{name} must be a positive integer, got {value!r}")
        if scaler not in SCALERS:
            raise UserError(f"data.scaler must be one of {list(SCALERS)}, got {scaler!r}")
        if "kind" not in source:
            raise UserError("data.source needs a 'kind' (synthetic or wide_file)")
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

        self._frame: SourceFrame | None = None
        self.scaler: MinMaxScaler | None = None
        self.series_mean: np.ndarray | None = None  # [S] training mean, original units
        self.series_std: np.ndarray | None = None  # [S] training std (ddof 0), 1 where constant
        self.windows: dict[str, WideWindows] = {}
        self.split_rows: tuple[int, int, int] | None = None

    # ----------------------------------------------------------------------------- source and layout
    def load_frame(self) -> SourceFrame:
        """The source rows (read once and cached)."""
        if self._frame is None:
            options = {k: v for k, v in self.source.items() if k != "kind"}
            self._frame = load_source(self.source["kind"], **options)
        return self._frame

    @property
    def series_names(self) -> list[str]:
        return [str(c) for c in self.load_frame().series.columns]

    @property
    def feature_names(self) -> list[str]:
        """Extra features per step, in ``x`` order: user columns, then calendar features."""
        return [str(c) for c in self.load_frame().extras.columns] + self.calendar_feature_names

    @property
    def num_series(self) -> int:
        return len(self.series_names)

    @property
    def num_features(self) -> int:
        """Features per step in ``x``: extras, the optional padding mask, the value."""
        return len(self.feature_names) + int(self.padding_mask) + 1

    @property
    def timestamps(self) -> pd.DatetimeIndex:
        return self.load_frame().timestamps

    @property
    def freq(self) -> str:
        """The timestamps' pandas frequency alias (``"h"``), or ``""`` when irregular or under 3 rows."""
        timestamps = self.timestamps
        return (pd.infer_freq(timestamps) or "") if len(timestamps) >= 3 else ""

    def feature_table(self) -> np.ndarray:
        """``[T, S + E]`` float64: series columns first, then extra features (the scaler's columns)."""
        frame = self.load_frame()
        calendar = make_calendar_features(frame.timestamps, self.calendar_feature_names)
        return np.concatenate([frame.series.to_numpy(), frame.extras.to_numpy(), calendar.to_numpy()], axis=1)

    # ----------------------------------------------------------------------------- setup
    def setup(self, stage: str | None = None) -> None:
        """Split, fit the scaler on training rows (unless restored from a checkpoint), build windows."""
        if self.windows:
            return
        table = self.feature_table()
        num_rows, num_series = table.shape[0], self.num_series
        n_train, n_val, n_test = resolve_split(self.split, num_rows)
        if n_train < max(self.window_size, 2):
            raise UserError(
                f"too few rows: the training split has {n_train} rows but data.window_size is "
                f"{self.window_size}; use a smaller window, a larger train split or more data"
            )
        if min(n_val, n_test) < self.horizon:
            raise UserError(
                f"too few rows: validation/test splits have {n_val}/{n_test} rows but the horizon is "
                f"{self.horizon}; give them at least that many rows"
            )
        self.split_rows = (n_train, n_val, n_test)
        if self.scaler is None:
            self.scaler = MinMaxScaler.fit(table[:n_train], self.scaler_method)
            train_series = table[:n_train, :num_series]
            self.series_mean = train_series.mean(axis=0)
            std = train_series.std(axis=0)
            self.series_std = np.where(std > 0, std, 1.0)
        elif len(self.scaler.data_min) != table.shape[1]:
            raise UserError(
                f"the data has {table.shape[1]} columns but the checkpoint's scaler was fitted on "
                f"{len(self.scaler.data_min)}; use data with the training columns"
            )
        scaled = torch.from_numpy(scaled_float32(self.scaler, table))
        del table  # peak memory stays a small multiple of the float32 data
        arrays = PaddedArrays.from_arrays(scaled[:, :num_series], scaled[:, num_series:], self.window_size)
        del scaled
        horizon, mask = self.horizon, self.padding_mask
        val_start, test_start = n_train, n_train + n_val
        self.windows = {
            # Training starts at target row 1: the first window holds row 0 alone (the warm-up).
            "train": WideWindows(arrays, 1, n_train - horizon, horizon, mask),
            "val": WideWindows(arrays, val_start, n_val - horizon + 1, horizon, mask),
            "test": WideWindows(arrays, test_start, n_test - horizon + 1, horizon, mask),
        }
        if self._use_device_arrays():
            device = self.trainer.strategy.root_device
            for windows in self.windows.values():
                windows.to(device)

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
        if not self.windows:
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

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", training=False)

    # ----------------------------------------------------------------------------- units
    def inverse_values(self, scaled: np.ndarray, series_index: np.ndarray) -> np.ndarray:
        """Scaled series values back to original units; ``series_index`` (from 0) broadcasts to them."""
        assert self.scaler is not None, "setup() or load_state_dict() first"
        return self.scaler.inverse_transform(scaled, column_index=series_index)

    def z_normalise(self, values: np.ndarray, series_index: np.ndarray) -> np.ndarray:
        """Original-unit values z-normalised with each series' training mean and std."""
        assert self.series_mean is not None and self.series_std is not None
        return (values - self.series_mean[series_index]) / self.series_std[series_index]

    # ----------------------------------------------------------------------------- checkpoint state
    def state_dict(self) -> dict[str, Any]:
        if self.scaler is None:
            return {}
        return {
            "scaler": self.scaler.state_dict(),
            "series_mean": torch.from_numpy(self.series_mean.copy()),
            "series_std": torch.from_numpy(self.series_std.copy()),
            "series_names": self.series_names,
            "feature_names": self.feature_names,
            "freq": self.freq,  # what predictions on new data must match
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        self.scaler = MinMaxScaler.from_state_dict(state_dict["scaler"])
        self.series_mean = state_dict["series_mean"].numpy()
        self.series_std = state_dict["series_std"].numpy()
        self.windows = {}
        if self._frame is not None and self.series_names != list(state_dict["series_names"]):
            raise UserError(
                f"the data's series {self.series_names} differ from the checkpoint's "
                f"{list(state_dict['series_names'])}; use data with the training columns"
            )
