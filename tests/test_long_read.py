"""The memory-lean long-file reader returns exactly the frame (and the errors) of the straightforward
one it replaced, kept here as the reference: whole-file read, lexsort, ``[N]`` checks.

Each case runs with the default chunk size and with chunks of a few rows, so every check crosses
chunk boundaries; sorted files take the no-sort path, unsorted ones the sort.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.tseries.frequencies import to_offset

from lstm_forecast.data import long_checks, long_source
from lstm_forecast.data.frame import SeriesFrame
from lstm_forecast.data.long_source import long_file_frame, synthetic_long_table
from lstm_forecast.errors import UserError

# ----------------------------------------------------------------------------- the reference reader


def reference_frame(
    path,
    series_column="series",
    timestamp_column="timestamp",
    value_column="value",
    extra_columns=(),
    static_columns=(),
    freq=None,
    fill_method=None,
    series_names=None,
):
    """The long reader before it was made lean (its logic; messages as in long_source)."""
    extra_columns, static_columns = list(extra_columns), list(static_columns)
    table = pd.read_csv(path) if str(path).endswith(".csv") else pd.read_parquet(path)
    long_source._check_roles(
        table, path, series_column, timestamp_column, value_column, extra_columns, static_columns
    )
    name_codes, names = ref_factorize(table[series_column])
    if (name_codes < 0).any():
        row = int(np.flatnonzero(name_codes < 0)[0])
        raise UserError(f"missing series name in {path} at {place(path, row)}; fill column {series_column!r}")
    vocabulary = sorted(names) if series_names is None else list(series_names)
    series_of_name = pd.Index(vocabulary).get_indexer(names)
    if (series_of_name < 0).any():
        unknown = sorted(names[series_of_name < 0])
        raise UserError(
            f"series {unknown[:5]} in {path} were not in the training data; "
            "a checkpoint forecasts only the series it was trained on"
        )
    codes = series_of_name[name_codes]
    column = table[timestamp_column]
    timestamps = pd.to_datetime(column, errors="coerce")
    if timestamps.isna().any():
        row = int(np.flatnonzero(timestamps.isna().to_numpy())[0])
        raise UserError(
            f"unparseable timestamp in {path} at {place(path, row)} ({column.iloc[row]!r}); "
            f"fix data.source.timestamp_column ({timestamp_column!r}) or the file"
        )
    timezone = timestamps.dt.tz
    if timezone is not None:
        timestamps = timestamps.dt.tz_convert(None)
    order = np.lexsort((timestamps.to_numpy(), codes))
    codes = codes[order].astype(np.int64)
    stamps = pd.DatetimeIndex(timestamps.to_numpy()[order]).as_unit("ns")
    offsets = np.searchsorted(codes, np.arange(len(vocabulary) + 1)).astype(np.int64)
    duplicate = np.flatnonzero((np.diff(codes) == 0) & (np.diff(stamps.asi8) == 0))
    if len(duplicate):
        row = int(duplicate[0])
        raise UserError(
            f"series {vocabulary[codes[row]]!r} has {len(duplicate)} duplicate timestamp(s) in "
            f"{path}, first {stamps[row]}; keep one row per series and timestamp"
        )
    numeric = np.column_stack([ref_numeric(table[c], c, path)[order] for c in [value_column, *extra_columns]])
    static = pd.DataFrame(index=pd.Index(vocabulary, name="series"))
    for column in static_columns:
        label_codes, labels = ref_factorize(table[column])
        label_codes = label_codes[order]
        changes = np.flatnonzero((np.diff(codes) == 0) & (np.diff(label_codes) != 0))
        if len(changes):
            raise UserError(
                f"static column {column!r} changes within series {vocabulary[codes[changes[0]]]!r} "
                f"in {path}; a static column holds one value per series (use extra_columns for "
                "per-step values)"
            )
        first = label_codes[np.minimum(offsets[:-1], len(codes) - 1)]
        static[column] = np.where(np.diff(offsets) > 0, np.append(labels, "")[first], "")
    offset = ref_freq(freq, stamps, offsets)
    stamps, numeric, offsets = ref_fill_or_refuse(
        stamps, numeric, offsets, offset, fill_method, codes, vocabulary, path, [value_column, *extra_columns]
    )
    if timezone is not None:
        stamps = stamps.tz_localize("UTC").tz_convert(timezone)
    return SeriesFrame(
        vocabulary,
        offsets,
        stamps,
        numeric[:, 0],
        pd.DataFrame(numeric[:, 1:], columns=extra_columns),
        static,
        offset,
    )


def ref_factorize(column):
    codes, uniques = pd.factorize(column)
    return codes.astype(np.int64), np.asarray(uniques.astype(str), dtype=object)


def ref_numeric(column, name, path):
    converted = pd.to_numeric(column, errors="coerce")
    bad = converted.isna() & column.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(
            f"column {name!r} in {path} is not numeric ({place(path, row)}: {column.iloc[row]!r}); "
            "fix the file or leave the column out of data.source"
        )
    values = converted.to_numpy(dtype=np.float64)
    if np.isinf(values).any():
        row = int(np.flatnonzero(np.isinf(values))[0])
        raise UserError(
            f"infinite value in {path} at {place(path, row)}, column {name!r}; fix or drop those rows"
        )
    return values


def place(path, row):
    """Where a row is: a CSV file's line (header line 1), another file's row from 0."""
    return f"line {row + 2}" if str(path).endswith(".csv") else f"row {row}"


def ref_freq(freq, timestamps, offsets):
    if freq is not None:
        return to_offset(freq)
    lengths = np.diff(offsets)
    longest = int(np.argmax(lengths))
    if lengths[longest] >= 3:
        inferred = pd.infer_freq(timestamps[offsets[longest] : offsets[longest + 1]])
        if inferred is not None:
            return to_offset(inferred)
    steps = np.diff(timestamps.asi8)
    same_series = np.ones(len(steps), dtype=bool)
    boundaries = offsets[1:-1]
    same_series[boundaries[(boundaries > 0) & (boundaries < len(timestamps))] - 1] = False
    values, counts = np.unique(steps[same_series & (steps > 0)], return_counts=True)
    return to_offset(pd.Timedelta(int(values[np.argmax(counts)]), unit="ns"))


def ref_positions(stamps, offsets, freq):
    first = np.repeat(offsets[:-1], np.diff(offsets))
    if isinstance(freq, pd.offsets.Tick):
        elapsed = stamps.asi8 - stamps.asi8[first]
        return elapsed // pd.Timedelta(freq).value, elapsed % pd.Timedelta(freq).value == 0
    grid = pd.date_range(start=stamps.min(), end=stamps.max(), freq=freq).as_unit("ns").asi8
    index = np.searchsorted(grid, stamps.asi8)
    on_grid = (index < len(grid)) & (grid[np.minimum(index, len(grid) - 1)] == stamps.asi8)
    return index - index[first], on_grid


def ref_fill_or_refuse(stamps, numeric, offsets, freq, fill_method, codes, vocabulary, path, names):
    position, on_grid = ref_positions(stamps, offsets, freq)
    if not on_grid.all():
        row = int(np.flatnonzero(~on_grid)[0])
        raise UserError(
            f"series {vocabulary[codes[row]]!r} has timestamp {stamps[row]} off its {freq.freqstr} "
            f"grid in {path} ({int((~on_grid).sum())} such rows); fix the timestamps or set "
            "data.source.freq"
        )
    local = np.arange(len(position)) - np.repeat(offsets[:-1], np.diff(offsets))
    gap = (local > 0) & (np.diff(position, prepend=0) > 1)
    missing_value = np.isnan(numeric).any(axis=1)
    if fill_method is None:
        if gap.any():
            row = int(np.flatnonzero(gap)[0])
            raise UserError(
                f"series {vocabulary[codes[row]]!r} has missing {freq.freqstr} steps between "
                f"{stamps[row - 1]} and {stamps[row]} in {path} ({len(np.unique(codes[gap]))} "
                "series with gaps); set data.source.fill_method=ffill|bfill|interpolate|zero to "
                "fill them"
            )
        if missing_value.any():
            row = int(np.flatnonzero(missing_value)[0])
            column = names[int(np.flatnonzero(np.isnan(numeric[row]))[0])]
            raise UserError(
                f"missing value in {path} in column {column!r} for series {vocabulary[codes[row]]!r} "
                f"at {stamps[row]}; set data.source.fill_method=ffill|bfill|interpolate|zero or drop "
                "those rows"
            )
        return stamps, numeric, offsets
    if not (gap.any() or missing_value.any()):
        return stamps, numeric, offsets
    stamps, numeric, offsets = long_checks.fill_panel(stamps, numeric, offsets, position, freq, fill_method)
    still = np.isnan(numeric).any(axis=1)
    if still.any():
        row = int(np.flatnonzero(still)[0])
        series = vocabulary[int(np.searchsorted(offsets, row, side="right") - 1)]
        column = names[int(np.flatnonzero(np.isnan(numeric[row]))[0])]
        what = "has no value" if fill_method == "interpolate" else "starts or ends with a missing value"
        works = "zero" if fill_method == "interpolate" else "interpolate"
        raise UserError(
            f"series {series!r} {what} in column {column!r} (at {stamps[row]}) that "
            f"fill_method={fill_method} cannot fill; drop those rows or use data.source.fill_method={works}"
        )
    return stamps, numeric, offsets


# --------------------------------------------------------------------------------------------- cases


def panel(seed: int = 0, freq: str = "h") -> pd.DataFrame:
    """Ragged series (own starts and ends), a static label, an extra column; sorted by series, time."""
    table = synthetic_long_table(num_series=7, max_length=40, min_length=3, freq="h", seed=seed)
    if freq != "h":  # the same steps on another grid (a calendar one for MS)
        step = (table["timestamp"] - table["timestamp"].min()) // pd.Timedelta("1h")
        table["timestamp"] = pd.date_range("2001-01-01", periods=step.max() + 1, freq=freq)[step]
    return table.assign(promo=np.arange(len(table)) % 5 / 4.0)


def shuffled(table: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    return table.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def within_series_reversed(table: pd.DataFrame) -> pd.DataFrame:
    """Series in order, but one series' times backwards: a file the no-sort path must not take."""
    first = table["series"] == table["series"].iloc[0]
    return pd.concat([table[first].iloc[::-1], table[~first]], ignore_index=True)


def swapped_at_a_chunk_boundary(table: pd.DataFrame, rows: int = 7) -> pd.DataFrame:
    """In order but for two rows of one series swapped across a boundary of ``rows``-row chunks."""
    same = table["series"].to_numpy()[:-1] == table["series"].to_numpy()[1:]
    k = next(k for k in range(rows, len(table), rows) if same[k - 1])
    return table.iloc[[*range(k - 1), k, k - 1, *range(k + 1, len(table))]].reset_index(drop=True)


def with_gaps_and_nans(table: pd.DataFrame) -> pd.DataFrame:
    table = table.drop(index=[5, 6, 30, 31, 32, 70]).reset_index(drop=True)
    table.loc[[10, 50, 51], "value"] = np.nan
    table.loc[[20], "promo"] = np.nan
    return table


def reference_frame_of(path, **options):
    try:
        return reference_frame(path, **options)
    except UserError as error:
        return error


def lean_frame_of(path, **options):
    try:
        return long_file_frame(str(path), **options)
    except UserError as error:
        return error


def assert_same(lean, reference) -> None:
    if isinstance(reference, UserError) or isinstance(lean, UserError):
        assert str(lean) == str(reference)
        return
    assert lean.series_names == reference.series_names
    assert lean.offsets.dtype == reference.offsets.dtype == np.int64
    np.testing.assert_array_equal(lean.offsets, reference.offsets)
    assert lean.timestamps.dtype == reference.timestamps.dtype and lean.timestamps.unit == "ns"
    assert lean.timestamps.equals(reference.timestamps)
    assert lean.values.dtype == reference.values.dtype == np.float64
    np.testing.assert_array_equal(lean.values, reference.values)
    assert lean.values.flags.writeable
    pd.testing.assert_frame_equal(lean.extras, reference.extras, check_exact=True)
    assert lean.extras.to_numpy().strides == reference.extras.to_numpy().strides  # scaling reads the same
    pd.testing.assert_frame_equal(lean.static, reference.static, check_exact=True)
    assert lean.freq == reference.freq


@pytest.fixture(params=[None, 7], ids=["default-chunks", "7-row-chunks"])
def chunk_rows(request, monkeypatch):
    if request.param is not None:
        monkeypatch.setattr(long_source, "CHUNK_ROWS", request.param)
        monkeypatch.setattr(long_checks, "CHUNK_ROWS", request.param)


def write(tmp_path, table: pd.DataFrame, suffix: str) -> str:
    path = tmp_path / f"panel{suffix}"
    if suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False)
    return str(path)


def tz_panel() -> pd.DataFrame:
    table = panel()
    return table.assign(timestamp=table["timestamp"].dt.tz_localize("UTC").dt.tz_convert("Europe/Berlin"))


def categorical_panel() -> pd.DataFrame:
    """Categorical series and static columns with categories no row holds, rows unsorted."""
    table = shuffled(panel())
    names = [*sorted(table["series"].astype(str).unique()), "unused"]
    return table.assign(
        series=pd.Categorical(table["series"].astype(str), categories=names[::-1]),
        category=pd.Categorical(table["category"], categories=["z", "c", "b", "a"]),
    )


STATIC = {"static_columns": ["category"], "extra_columns": ["promo"]}
CASES = {
    "sorted": (panel, STATIC),
    "unsorted": (lambda: shuffled(panel()), STATIC),
    "times-reversed-in-one-series": (lambda: within_series_reversed(panel()), STATIC),
    "swapped-at-a-chunk-boundary": (lambda: swapped_at_a_chunk_boundary(panel()), STATIC),
    "checkpoint-order": (
        lambda: shuffled(panel()),
        {**STATIC, "series_names": [f"s{i}" for i in range(8)][::-1]},
    ),
    "unknown-series": (panel, {"series_names": ["s0", "s1"]}),
    "time-zone": (tz_panel, {**STATIC, "fill_method": "ffill"}),
    "time-zone-unsorted": (lambda: shuffled(tz_panel()), STATIC),
    "categorical-columns": (categorical_panel, {**STATIC, "freq": "h"}),
    "inferred-calendar-freq": (lambda: panel(freq="MS"), STATIC),
    "calendar-freq-gaps": (lambda: with_gaps_and_nans(panel(freq="MS")), {**STATIC, "freq": "MS"}),
    "tick-freq-given": (lambda: shuffled(panel(freq="D")), {"freq": "D"}),
    "off-grid": (panel, {"freq": "2h"}),
    "gap-refused": (lambda: with_gaps_and_nans(panel()), STATIC),
    "nan-refused": (lambda: panel().assign(value=lambda t: t["value"].where(t.index != 9)), STATIC),
    "duplicates": (lambda: pd.concat([panel(), panel().iloc[[3, 40, 41]]], ignore_index=True), STATIC),
    "static-changes": (
        lambda: panel().assign(category=lambda t: np.where(t.index == 33, "q", t["category"])),
        STATIC,
    ),
    "late-faults": (  # first offenders past the first series (and chunk)
        lambda: pd.concat([panel(), panel().iloc[[100, 110]]], ignore_index=True).assign(
            category=lambda t: np.where(t.index == 90, "q", t["category"])
        ),
        STATIC,
    ),
    "late-static-change": (
        lambda: panel().assign(category=lambda t: np.where(t.index == 90, "q", t["category"])),
        STATIC,
    ),
    "missing-series-name": (
        lambda: panel().assign(series=lambda t: t["series"].astype(object).where(t.index != 12)),
        {},
    ),
    "bad-timestamp": (
        lambda: panel().assign(timestamp=lambda t: t["timestamp"].astype(str).where(t.index != 8, "x")),
        {},
    ),
    "not-numeric": (
        lambda: panel().assign(promo=lambda t: t["promo"].astype(str).where(t.index != 4, "x")),
        STATIC,
    ),
    "infinite": (lambda: panel().assign(promo=lambda t: t["promo"].where(t.index != 6, np.inf)), STATIC),
}
FILLS = ["ffill", "bfill", "interpolate", "zero"]


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
@pytest.mark.parametrize("case", list(CASES))
def test_lean_read_matches_the_reference(case, suffix, chunk_rows, tmp_path):
    make, options = CASES[case]
    path = write(tmp_path, make(), suffix)
    assert_same(lean_frame_of(path, **options), reference_frame_of(path, **options))


@pytest.mark.parametrize("fill_method", FILLS)
@pytest.mark.parametrize("freq", ["h", "MS", None])
def test_lean_fill_matches_the_reference(fill_method, freq, chunk_rows, tmp_path):
    table = shuffled(with_gaps_and_nans(panel(freq=freq or "h")))
    table.loc[table["series"] == "s3", "value"] = table["value"].where(table.index % 7 != 0)
    path = write(tmp_path, table, ".parquet")
    options = {**STATIC, "freq": freq, "fill_method": fill_method}
    assert_same(lean_frame_of(path, **options), reference_frame_of(path, **options))


def test_frequency_falls_back_to_the_most_common_step_as_before(chunk_rows, tmp_path):
    table = (
        panel().pipe(lambda t: t.drop(index=range(0, len(t), 3))).reset_index(drop=True)
    )  # no series has a pandas freq
    path = write(tmp_path, table, ".parquet")
    assert_same(lean_frame_of(path, fill_method="zero"), reference_frame_of(path, fill_method="zero"))
