"""Missing values in input files: refused with row and column, or filled when the config asks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lstm_forecast.data.sources import wide_file_frame
from lstm_forecast.errors import UserError


@pytest.fixture
def gappy_csv(tmp_path):
    """Series ``a`` = 0, 1, NaN, NaN, 4, 5 and ``b`` = NaN, 10, 20, 30, 40, 50 (hourly)."""
    path = tmp_path / "gappy.csv"
    pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=6, freq="h"),
            "a": [0.0, 1.0, np.nan, np.nan, 4.0, 5.0],
            "b": [np.nan, 10.0, 20.0, 30.0, 40.0, 50.0],
        }
    ).to_csv(path, index=False)
    return path


def test_missing_value_is_refused_with_row_and_column(gappy_csv):
    with pytest.raises(
        UserError, match=r"missing value in .*gappy.csv at row 0, column 'b'; set data.source.fill"
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
def test_fill_methods(gappy_csv, method, a, b):
    frame = wide_file_frame(str(gappy_csv), fill_method=method)
    np.testing.assert_array_equal(frame.series["a"], a)
    np.testing.assert_array_equal(frame.series["b"], b)


def test_forward_fill_cannot_fill_a_leading_gap(gappy_csv):
    with pytest.raises(UserError, match=r"row 0, column 'b'; data.source.fill_method=ffill leaves it"):
        wide_file_frame(str(gappy_csv), fill_method="ffill")


def test_infinity_is_refused_even_with_a_fill_method(tmp_path):
    path = tmp_path / "inf.csv"
    path.write_text("date,a\n2024-01-01 00:00,1\n2024-01-01 01:00,inf\n2024-01-01 02:00,3\n")
    with pytest.raises(UserError, match=r"infinite value in .* at row 1, column 'a'"):
        wide_file_frame(str(path), fill_method="interpolate")


def test_a_column_with_a_stray_text_cell_is_reported_not_dropped(tmp_path):
    path = tmp_path / "text.csv"
    path.write_text("date,a,b\n2024-01-01 00:00,1,5\n2024-01-01 01:00,n/a?,6\n2024-01-01 02:00,3,7\n")
    with pytest.raises(UserError, match=r"column 'a' .* is not numeric \(row 1: 'n/a\?'\)"):
        wide_file_frame(str(path))
