"""The method's materialised arrays, for code written against the blog post's layout.

Each sample is ``[W, id + extras + value]`` (the series id, from 1, absent for univariate data);
samples are ordered time-major, then series, as in the post. Built from the same
:class:`~lstm_forecast.data.windows.Windows` as training, so both layouts cut identical windows.
"""

from __future__ import annotations

import numpy as np
import torch

from lstm_forecast.data.windows import SeriesArrays, Windows


def _series_arrays(source: np.ndarray, num_series: int, window_size: int) -> SeriesArrays:
    """A blog-layout source ``[rows, series + extras]`` (series first, scaled) as padded series rows."""
    source = np.asarray(source, dtype=np.float32)
    if source.ndim != 2 or not 1 <= num_series <= source.shape[1]:
        raise ValueError(f"source must be [rows, >= num_series] 2-D, got {source.shape} for {num_series}")
    num_rows = source.shape[0]
    values = source[:, :num_series].T.ravel()  # [S * T], series by series
    extras = np.tile(source[:, num_series:], (num_series, 1))  # [S * T, E]
    offsets = np.arange(num_series + 1) * num_rows
    return SeriesArrays.from_rows(values, extras, offsets, window_size)


def _time_major_windows(
    arrays: SeriesArrays, first_row: int, num_rows: int, with_target: bool = True
) -> Windows:
    """Windows targeting rows ``first_row .. first_row + num_rows - 1`` of every series, time-major."""
    rows = torch.arange(first_row, first_row + num_rows)  # [R]
    targets = arrays.block_start[None, :] + arrays.window_size + rows[:, None]  # [R, S]
    return Windows(arrays, targets.flatten(), with_target=with_target)


def _blog_layout(windows: Windows) -> tuple[np.ndarray, np.ndarray | None]:
    """All windows of a set in the blog's ``[samples, W, id + extras + value]`` layout."""
    batch = windows.gather(torch.arange(len(windows)))
    x = batch["x"]
    if windows.num_series > 1:  # univariate data carries no id
        ids = batch["series_id"].to(x.dtype)[:, None, None].expand(-1, x.shape[1], 1)
        x = torch.cat([ids, x], dim=-1)
    y = batch["y"].numpy() if windows.with_target else None
    return x.numpy(), y


def seed_arrays(
    source: np.ndarray, window_size: int, num_series: int, split_ratio: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The method's training and test arrays.

    ``source`` is ``[rows, series + extras]`` (series first, already scaled). Training starts with the
    zero-padded warm-up windows (``(n_train - 1) * S`` samples); test windows take context from the
    rows before them, so every test row is a target exactly once (``n_test * S`` samples).

    Returns
    -------
    tuple
        ``(X_train, Y_train, X_test, Y_test)`` as float32 arrays; ``Y`` is ``[samples, 1]``.
    """
    num_rows = np.asarray(source).shape[0]
    num_train = int(num_rows * split_ratio)
    if not 2 <= num_train < num_rows:
        raise ValueError(f"split_ratio {split_ratio} leaves no training or test rows of {num_rows}")
    arrays = _series_arrays(source, num_series, window_size)
    x_train, y_train = _blog_layout(_time_major_windows(arrays, 1, num_train - 1))
    x_test, y_test = _blog_layout(_time_major_windows(arrays, num_train, num_rows - num_train))
    return x_train, y_train, x_test, y_test


def seed_prediction_arrays(source: np.ndarray, window_size: int, num_series: int) -> np.ndarray:
    """The method's prediction array: every window full of real rows, ``rows - W + 1`` per series.

    Window ``j`` holds rows ``j .. j+W-1`` and forecasts row ``j + W`` (the last one the step after
    the data). Layout as in :func:`seed_arrays`.
    """
    num_rows = np.asarray(source).shape[0]
    if num_rows < window_size:
        raise ValueError(f"{num_rows} rows are fewer than one window of {window_size}")
    arrays = _series_arrays(source, num_series, window_size)
    windows = _time_major_windows(arrays, window_size, num_rows - window_size + 1, with_target=False)
    return _blog_layout(windows)[0]
