"""The fills that look ahead (``bfill``, ``interpolate``), done after the split and never across it.

A file is read with its missing steps inserted (the split counts rows) and, for these two methods, its
missing values left NaN; :func:`fill_by_split` then fills each value from rows of its own split or
earlier ones only, so no training row (nor a scaler fitted on training rows) takes a value from a
validation or test row, and no validation row one from a test row. A gap at the end of a split, whose
next known value lies in a later split, is filled as ``ffill`` does (the last earlier value); a gap
with no earlier value either is refused. ``ffill`` and ``zero`` never look ahead: they fill at read
time, unchanged.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from lstm_forecast.data.frame import LOOKAHEAD_FILLS, SeriesFrame, fill_within_series
from lstm_forecast.data.split import Bounds, split_bounds
from lstm_forecast.data.windows import series_chunks
from lstm_forecast.errors import UserError


def fill_after_split(frame: SeriesFrame, split: dict, fill_method: str | None) -> SeriesFrame:
    """``frame`` (read with ``split_fill``) with bfill/interpolate's missing values filled by split
    ``split`` (``data.split``); as it is for the other methods."""
    if fill_method not in LOOKAHEAD_FILLS:
        return frame
    return fill_by_split(frame, split_bounds(split, frame), fill_method)


def segment_ends(bounds: Bounds, lengths: np.ndarray) -> np.ndarray:
    """``[S, 4]`` end row (within each series) of its train, validation and test rows and of the rows
    after them: every row reads rows before the end of its own segment only."""
    ends = [bounds[name][1] for name in ("train", "val", "test")]
    return np.stack([*(np.minimum(end, lengths) for end in ends), lengths], axis=1)


def fill_by_split(frame: SeriesFrame, bounds: Bounds, method: str) -> SeriesFrame:
    """``frame`` with the NaNs of its values and extras filled by ``method`` within each series and
    split segment (see the module's notes), a chunk of series at a time (in place: the frame's arrays
    are its own, fresh from the file)."""
    ends = segment_ends(bounds, frame.lengths)
    # Filled in place; a read-only array (a view of pandas' copy-on-write data, a wide file's) is
    # copied once. A long file's arrays are its own: no [N] copy.
    values, extras = (
        array if array.flags.writeable else array.copy()
        for array in (frame.values, frame.extras.to_numpy(dtype=np.float64))
    )
    for s0, s1 in series_chunks(frame.offsets):
        a, b = int(frame.offsets[s0]), int(frame.offsets[s1])
        block = np.column_stack([values[a:b], extras[a:b]])  # the one temporary per chunk
        if not np.isnan(block).any():
            continue
        lengths = np.diff(frame.offsets[s0 : s1 + 1])
        row_series = np.repeat(np.arange(s1 - s0), lengths)
        starts = frame.offsets[s0:s1] - a
        local = np.arange(b - a) - starts[row_series]
        chunk_ends = ends[s0:s1]
        segment = (local[:, None] >= chunk_ends[row_series, :3]).sum(axis=1)
        limit = starts[row_series] + chunk_ends[row_series, segment]
        filled = fill_within_series(block, row_series, method, limit)
        still = np.isnan(filled).any(axis=1)
        if still.any():
            row = int(np.flatnonzero(still)[0])
            raise UserError(
                f"series {frame.series_names[s0 + int(row_series[row])]!r} has a missing value at "
                f"{frame.timestamps[a + row]} that fill_method={method} cannot fill from its own or "
                "earlier splits' rows (no known value before it); drop those rows or use "
                "data.source.fill_method=zero"
            )
        values[a:b] = filled[:, 0]
        extras[a:b] = filled[:, 1:]
    columns = list(frame.extras.columns)
    return dataclasses.replace(frame, values=values, extras=pd.DataFrame(extras, columns=columns, copy=False))
