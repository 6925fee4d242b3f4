"""Missing values in input files: refused with row and column, or filled when the config asks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lstm_forecast.data.frame import SeriesFrame
from lstm_forecast.data.long_source import long_file_frame
from lstm_forecast.data.sources import wide_file_frame
from lstm_forecast.errors import UserError

A = [0.0, 1.0, np.nan, np.nan, 4.0, 5.0]
B = [np.nan, 10.0, 20.0, 30.0, 40.0, 50.0]


def series_values(frame: SeriesFrame, name: str) -> np.ndarray:
    s = frame.series_names.index(name)
    return frame.values[frame.offsets[s] : frame.offsets[s + 1]]


@pytest.fixture
def gappy_csv(tmp_path):
    """Series ``a`` = 0, 1, NaN, NaN, 4, 5 and ``b`` = NaN, 10, 20, 30, 40, 50 (hourly)."""
    path = tmp_path / "gappy.csv"
    pd.DataFrame({"date": pd.date_range("2024-01-01", periods=6, freq="h"), "a": A, "b": B}).to_csv(
        path, index=False
    )
    return path


@pytest.fixture
def gappy_long_csv(tmp_path):
    """The same two series as a long table (one row per series and step), rows shuffled."""
    path = tmp_path / "gappy_long.csv"
    stamps = pd.date_range("2024-01-01", periods=6, freq="h")
    table = pd.DataFrame({"series": ["a"] * 6 + ["b"] * 6, "timestamp": list(stamps) * 2, "value": A + B})
    table.sample(frac=1.0, random_state=0).to_csv(path, index=False)
    return path


def test_missing_value_is_refused_with_row_and_column(gappy_csv):
    with pytest.raises(
        UserError, match=r"missing value in .*gappy.csv at line 2, column 'b'; set data.source.fill"
    ):
        wide_file_frame(str(gappy_csv))


@pytest.mark.parametrize(
    ("method", "a", "b"),
    [
        ("interpolate", [0, 1, 2, 3, 4, 5], [10, 10, 20, 30, 40, 50]),
        ("bfill", [0, 1, 4, 4, 4, 5], [10, 10, 20, 30, 40, 50]),
        ("zero", [0, 1, 0, 0, 4, 5], [0, 10, 20, 30, 40, 50]),
    ],
)
def test_fill_methods(gappy_csv, gappy_long_csv, method, a, b):
    # One fill implementation: a wide file and the same series in a long file fill the same way
    # (interpolate takes the nearest value at a series' edge, bfill is accepted for both).
    for frame in (
        wide_file_frame(str(gappy_csv), fill_method=method),
        long_file_frame(str(gappy_long_csv), fill_method=method),
    ):
        assert frame.series_names == ["a", "b"]
        np.testing.assert_array_equal(series_values(frame, "a"), a)
        np.testing.assert_array_equal(series_values(frame, "b"), b)


def test_forward_fill_cannot_fill_a_leading_gap(gappy_csv):
    with pytest.raises(UserError, match=r"line 2, column 'b'; data.source.fill_method=ffill leaves it"):
        wide_file_frame(str(gappy_csv), fill_method="ffill")


def test_forward_fill_fills_within_each_series_never_from_the_one_before(gappy_long_csv, tmp_path):
    # a's last value (5) precedes b's leading gap in the row order (series by series): ffill must not
    # carry it over, in a long file either.
    with pytest.raises(UserError, match=r"'b' starts or ends with a missing value"):
        long_file_frame(str(gappy_long_csv), fill_method="ffill")
    only_a = tmp_path / "only_a.csv"
    pd.read_csv(gappy_long_csv).query("series == 'a'").to_csv(only_a, index=False)
    np.testing.assert_array_equal(
        long_file_frame(str(only_a), fill_method="ffill").values, [0, 1, 1, 1, 4, 5]
    )


def test_infinity_is_refused_even_with_a_fill_method(tmp_path):
    path = tmp_path / "inf.csv"
    path.write_text("date,a\n2024-01-01 00:00,1\n2024-01-01 01:00,inf\n2024-01-01 02:00,3\n")
    with pytest.raises(UserError, match=r"infinite value in .* at line 3, column 'a'"):
        wide_file_frame(str(path), fill_method="interpolate")


def test_a_column_with_a_stray_text_cell_is_reported_not_dropped(tmp_path):
    path = tmp_path / "text.csv"
    path.write_text("date,a,b\n2024-01-01 00:00,1,5\n2024-01-01 01:00,n/a?,6\n2024-01-01 02:00,3,7\n")
    with pytest.raises(UserError, match=r"column 'a' .* is not numeric \(line 3: 'n/a\?'\)"):
        wide_file_frame(str(path))
