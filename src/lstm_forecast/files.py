"""Writing outputs so that a reader never sees half a file: write a temporary file, then rename."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lstm_forecast.errors import UserError

if TYPE_CHECKING:  # pandas is imported by the callers that hand tables over; start-up stays light
    import pandas as pd


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make outputs unreadable to others
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def write_table(path: str | Path, frame: pd.DataFrame) -> Path:
    """Write ``frame`` atomically as CSV or Parquet, chosen by the suffix of ``path``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))
    if suffix in {".parquet", ".pq"}:
        return write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))
    raise UserError(f"unsupported output file type {suffix!r} for {path}; use .csv or .parquet")


def write_table_chunks(path: str | Path, chunks: Iterable[pd.DataFrame], dates_only: bool = False) -> Path:
    """Write the concatenation of ``chunks`` (same columns each) atomically as CSV (the header once,
    then appends) or Parquet (one row group per chunk), by the suffix of ``path``, never holding more
    than one chunk; a failure midway leaves no file.

    A CSV's naive timestamps are written as :func:`write_table` writes the whole table: dates only
    when ``dates_only`` (every timestamp of the table at midnight), else with their time of day even in
    a chunk that happens to hold midnights only.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in {".csv", ".parquet", ".pq"}:
        raise UserError(f"unsupported output file type {suffix!r} for {path}; use .csv or .parquet")

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            for number, chunk in enumerate(chunks):
                chunk.to_csv(
                    handle, index=False, header=number == 0, date_format=_csv_date_format(chunk, dates_only)
                )

    def write_parquet(tmp: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer = None
        try:
            for chunk in chunks:
                table = pa.Table.from_pandas(chunk, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table.cast(writer.schema))
        finally:
            if writer is not None:
                writer.close()

    return write_atomic(path, write_csv if suffix == ".csv" else write_parquet)


def _csv_date_format(chunk: pd.DataFrame, dates_only: bool) -> str | None:
    """The format pandas gives the whole table's naive timestamps, where a chunk alone would differ."""
    if dates_only:
        return None
    for column in chunk.columns:
        values = chunk[column]
        naive = values.dtype.kind == "M" and getattr(values.dtype, "tz", None) is None
        if naive and len(values) and (values.dt.normalize() == values).all():
            return "%Y-%m-%d %H:%M:%S"  # pandas would drop the (midnight) time of this chunk only
    return None
