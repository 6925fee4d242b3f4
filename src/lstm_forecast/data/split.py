"""Chronological splits of every series into train, validation and test rows."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd

from lstm_forecast.data.frame import SeriesFrame
from lstm_forecast.data.windows import series_chunks
from lstm_forecast.errors import UserError

SPLITS = ("train", "val", "test")
DATE_SPLIT_KEYS = ("val_start", "test_start")
SPLIT_KEYS = (*SPLITS, *DATE_SPLIT_KEYS, "test_end")

Bounds = dict[str, tuple[np.ndarray, np.ndarray]]


def split_bounds(split: dict[str, Any], frame: SeriesFrame) -> Bounds:
    """Rows ``[lo, hi)`` (within each series, ``[S]`` each) of train, validation and test.

    ``split`` holds one of:

    - fractions ``{train, val, test}`` in (0, 1): each series split by its own length;
    - row counts ``{train, val, test}`` (ints) from each series' first row, as in ETTh1's published
      8640 / 2880 / 2880 protocol;
    - row counts ``{val, test}`` (ints, ``train`` absent or null) back from each series' end, as M4,
      M5 and neuralforecast's ``cross_validation`` do: the last ``test`` rows of every series are
      its test rows, the ``val`` rows before them its validation rows, every row before those its
      training rows (none in a series of at most ``val + test`` rows);
    - cut-off dates ``{val_start, test_start}`` with an optional exclusive ``test_end`` (train: every
      row before ``val_start``); dates, when set (not null), take precedence.

    Rows after the test part are unused. A series may have no rows in a split; it is then absent
    from it.
    """
    unknown = sorted(set(split) - set(SPLIT_KEYS))
    if unknown:
        raise UserError(
            f"unknown data.split key(s) {unknown}; use train/val/test fractions or row counts, "
            "val/test row counts from each series' end, or val_start/test_start dates"
        )
    dates = {key: split[key] for key in (*DATE_SPLIT_KEYS, "test_end") if split.get(key) is not None}
    if dates:
        cuts = _date_cuts(dates, frame)
    elif all(split.get(name) is not None for name in SPLITS):
        cuts = _size_cuts([split[name] for name in SPLITS], split, frame.lengths)
    elif split.get("val") is not None and split.get("test") is not None:
        cuts = _cuts_from_end(split["val"], split["test"], frame.lengths)
    else:
        raise UserError(
            "data.split is fractions or row counts {train, val, test}, row counts {val, test} from "
            "each series' end, or cut-off dates {val_start, test_start[, test_end]}; got "
            f"{ {key: value for key, value in split.items() if value is not None} }"
        )
    return {name: (cuts[i], cuts[i + 1]) for i, name in enumerate(SPLITS)}


def counts_from_end(split: dict[str, Any]) -> bool:
    """Whether ``split`` counts val/test rows back from each series' end (no dates, no train)."""
    return (
        all(split.get(key) is None for key in (*DATE_SPLIT_KEYS, "test_end", "train"))
        and split.get("val") is not None
        and split.get("test") is not None
    )


def more_train_rows(split: dict[str, Any]) -> str:
    """How to give the training split more rows, in ``split``'s own spelling."""
    return "smaller data.split.val/test counts" if counts_from_end(split) else "a larger train split"


def more_eval_rows(split: dict[str, Any], horizon: int) -> str:
    """The overrides giving validation and test ``horizon`` rows or more, when ``split`` counts them
    back from each series' end (else empty)."""
    if not counts_from_end(split):
        return ""
    return f" (data.split.val={max(horizon, split['val'])} data.split.test={max(horizon, split['test'])})"


def _timestamp(value: Any, key: str, tz: Any) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as error:
        raise UserError(f"data.split.{key}={value!r} is not a date (e.g. 2024-03-01)") from error
    if tz is not None and stamp.tz is None:
        stamp = stamp.tz_localize(tz)
    return stamp


def _date_cuts(dates: dict[str, Any], frame: SeriesFrame) -> list[np.ndarray]:
    if not set(DATE_SPLIT_KEYS) <= set(dates):
        raise UserError(f"data.split by date needs both val_start and test_start; got {dates}")
    tz = frame.timestamps.tz
    cut_offs = [_timestamp(value, key, tz) for key, value in dates.items()]
    if any(later <= earlier for earlier, later in itertools.pairwise(cut_offs)):
        raise UserError(f"data.split dates must increase (val_start < test_start < test_end); got {dates}")
    lengths = frame.lengths
    counts = [_rows_before(frame, date) for date in cut_offs]
    if len(counts) == 2:
        counts.append(lengths)
    return [np.zeros_like(lengths), *counts]


def _rows_before(frame: SeriesFrame, date: pd.Timestamp) -> np.ndarray:
    """``[S]`` rows of each series before ``date``, a few series at a time (no ``[N]`` int64 array)."""
    offsets = frame.offsets
    counts = np.zeros(frame.num_series, dtype=np.int64)
    for s0, s1 in series_chunks(offsets):
        before = np.concatenate([[0], np.cumsum(frame.timestamps[offsets[s0] : offsets[s1]] < date)])
        counts[s0:s1] = np.diff(before[offsets[s0 : s1 + 1] - offsets[s0]])
    return counts


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _cuts_from_end(n_val: Any, n_test: Any, lengths: np.ndarray) -> list[np.ndarray]:
    """Cuts of the last ``n_val + n_test`` rows of each series (``train`` absent or null)."""
    for key, value in (("val", n_val), ("test", n_test)):
        if isinstance(value, float):
            raise UserError(
                f"data.split.{key}={value} is a fraction but data.split.train is null; give three "
                "fractions (data.split={train:0.7,val:0.15,test:0.15}) or val/test row counts from "
                "each series' end (data.split={train:null,val:24,test:24})"
            )
        if not _is_count(value) or value < 1:
            raise UserError(
                f"data.split.{key}={value!r}: val and test count rows back from each series' end and "
                "must be positive integers (e.g. data.split={train:null,val:24,test:24})"
            )
    longest = int(lengths.max(initial=0))
    if n_val + n_test >= longest:
        raise UserError(
            f"data.split holds back the last {n_val}+{n_test} rows of each series for validation/test "
            f"but the longest series has {longest} rows, which leaves none for training; use smaller "
            "data.split.val/test counts"
        )
    val_start = np.maximum(lengths - n_val - n_test, 0)
    return [np.zeros_like(lengths), val_start, np.maximum(lengths - n_test, 0), lengths]


def _size_cuts(sizes: list[Any], split: dict[str, Any], lengths: np.ndarray) -> list[np.ndarray]:
    """Cuts from fractions of each series' length, or from row counts."""
    train, val, test = sizes
    if isinstance(train, float) and _is_count(val) and _is_count(test):
        raise UserError(
            f"data.split mixes a train fraction ({train}) with row counts (val={val}, test={test}); "
            "to count val/test rows back from each series' end set data.split.train=null "
            f"(data.split={{train:null,val:{val},test:{test}}}), or give three fractions"
        )
    if all(isinstance(v, int) and not isinstance(v, bool) for v in sizes):
        if any(v < 1 for v in sizes):
            raise UserError(f"data.split {split} leaves an empty split; give every split rows")
        longest = int(lengths.max(initial=0))
        if sum(sizes) > longest:
            raise UserError(
                f"data.split asks for {sum(sizes)} rows but the data has {longest}; reduce the split"
            )
        n_train, n_val, n_test = (np.full_like(lengths, v) for v in sizes)
    elif all(isinstance(v, float) and 0 < v < 1 for v in sizes):
        if sum(sizes) > 1 + 1e-9:
            raise UserError(
                f"data.split fractions sum to {sum(sizes):.3f} > 1; make them add up to at most 1"
            )
        n_val, n_test = (np.rint(f * lengths).astype(np.int64) for f in sizes[1:])
        n_train = np.maximum(
            np.minimum(np.rint(sizes[0] * lengths).astype(np.int64), lengths - n_val - n_test), 0
        )
    else:
        raise UserError(f"data.split must be all row counts (ints) or all fractions in (0, 1); got {split}")
    ends = np.cumsum([n_train, n_val, n_test], axis=0)
    return [np.zeros_like(lengths), *np.minimum(ends, lengths)]


def check_split_sizes(bounds: Bounds, split: dict[str, Any], window_size: int, horizon: int) -> None:
    """Refuse splits that leave no series a full training window or a horizon of targets."""
    train_rows = int((bounds["train"][1] - bounds["train"][0]).max(initial=0))
    if train_rows < max(window_size, 2):
        raise UserError(
            f"too few rows: the training split has {train_rows} rows but data.window_size is "
            f"{window_size}; use a smaller window, {more_train_rows(split)} or more data"
        )
    val_rows, test_rows = (int((hi - lo).max(initial=0)) for lo, hi in (bounds["val"], bounds["test"]))
    if min(val_rows, test_rows) < horizon:
        raise UserError(
            f"too few rows: validation/test splits have {val_rows}/{test_rows} rows but the horizon is "
            f"{horizon}; give them at least that many rows{more_eval_rows(split, horizon)}"
            " or use a shorter horizon"
        )
