"""The one line that says what was read: series, rows, frequency, the role of every column and what a
fill inserted, so no choice the readers make is silent."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lstm_forecast.data.datamodule import ForecastDataModule

LISTED = 5  # column names shown in a list; beyond that, their count


def _listed(names: Sequence[object]) -> str:
    """``['a', 'b']``, or the first :data:`LISTED` and the count: ``['a', ..., 'e', ...] (30)``."""
    names = [str(name) for name in names]
    if len(names) <= LISTED:
        return repr(names)
    shown = ", ".join(repr(name) for name in names[:LISTED])
    return f"[{shown}, ...] ({len(names)})"


def read_summary(datamodule: ForecastDataModule) -> str:
    """One line: ``read panel.csv: 20 series, 4,123 rows (20 to 400 a series), frequency h; series
    'store', timestamps 'day', values 'sales'; extras ['promo'], future-known ['promo'], static
    ['region'], calendar [...]; fill_method=ffill inserted 12 missing steps, filled 3 missing values``."""
    frame = datamodule.load_frame()
    notes = frame.notes
    where = "the built-in synthetic data" if notes is None else notes.source
    lengths = frame.lengths
    if np.all(lengths == lengths[0]):
        rows = f"{frame.num_series} series of {int(lengths[0]):,} rows each"
    else:
        spread = f"{lengths.min():,} to {lengths.max():,} a series"
        rows = f"{frame.num_series} series, {frame.num_rows:,} rows ({spread})"
    parts = [f"read {where}: {rows}, frequency {frame.freqstr or 'irregular'}"]
    columns = {} if notes is None else notes.columns
    if "series" in columns:  # a long table
        parts.append(
            f"series {columns['series']!r}, timestamps {columns['timestamp']!r}, values {columns['value']!r}"
        )
    elif "timestamp" in columns:  # a wide table: its series are the value columns
        parts.append(f"timestamps {columns['timestamp']!r}, values {_listed(frame.series_names)}")
    roles = [
        f"extras {_listed(frame.extras.columns)}",
        f"future-known {_listed(datamodule.future_columns)}",
        f"static {_listed(datamodule.static_names)}",
        f"calendar {_listed(datamodule.calendar_feature_names)}",
    ]
    parts.append(", ".join(roles))
    if notes is not None and (notes.inserted_steps or notes.filled_values):
        method = datamodule.source.get("fill_method")
        parts.append(
            f"fill_method={method} inserted {notes.inserted_steps:,} missing steps, "
            f"filled {notes.filled_values:,} missing values"
        )
    return "; ".join(parts)
