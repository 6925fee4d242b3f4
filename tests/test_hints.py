"""Messages that name the fix, checked where the apps' catalogue (test_bad_inputs.py) cannot reach: the
readers' own paths, the date options' defaults, and the unknown-key hint's fallback."""

from __future__ import annotations

import inspect
import logging

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from lstm_forecast.cli import key_hints
from lstm_forecast.cli.app import CONFIG_DIR, compose_config
from lstm_forecast.data import table_checks
from lstm_forecast.data.long_source import long_file_frame
from lstm_forecast.data.sources import wide_file_frame
from lstm_forecast.errors import UserError

MONTHS = 100
MONTH_STARTS = pd.date_range("2000-01-01", periods=MONTHS, freq="MS")


def monthly_csv(tmp_path, text_format: str = "%d/%m/%Y") -> str:
    """Two series of month starts, dates written with ``text_format``."""
    path = tmp_path / "monthly.csv"
    pd.DataFrame(
        {
            "series": np.repeat(["a", "b"], MONTHS),
            "timestamp": np.tile(MONTH_STARTS.strftime(text_format), 2),
            "value": np.arange(2 * MONTHS, dtype=np.float64),
        }
    ).to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize("reader", ["wide", "long"])
def test_date_options_default_as_the_config_says(reader):
    """One source of truth: the readers' Python defaults equal conf/data/*.yaml's."""
    function, config = {"wide": (wide_file_frame, "wide_file"), "long": (long_file_frame, "long_csv")}[reader]
    source = OmegaConf.load(f"{CONFIG_DIR}/data/{config}.yaml").source
    parameters = inspect.signature(function).parameters
    for option in ("dayfirst", "date_format"):
        assert parameters[option].default == source[option]


def test_day_first_month_starts_read_as_months_with_dayfirst(tmp_path):
    """Read month-first, 01/02/2000 is 2 January: 200 month starts would fill to thousands of days.
    With the hint followed they are 200 rows, monthly."""
    path = monthly_csv(tmp_path)
    with pytest.raises(UserError, match=r"dates may be misread: set data\.source\.dayfirst=true"):
        long_file_frame(path)
    frame = long_file_frame(path, dayfirst=True)
    assert frame.num_rows == 2 * MONTHS and frame.freqstr == "MS"
    assert frame.timestamps[: len(MONTH_STARTS)].equals(pd.DatetimeIndex(MONTH_STARTS).as_unit("ns"))


def test_a_fill_of_dwarfing_gaps_is_warned_about(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="lstm_forecast.data.long_checks"):
        frame = long_file_frame(monthly_csv(tmp_path), fill_method="ffill")
    assert frame.num_rows > 3 * 2 * MONTHS
    assert "dates may be misread: set data.source.dayfirst=true" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lstm_forecast.data.long_checks"):
        long_file_frame(monthly_csv(tmp_path), fill_method="ffill", dayfirst=True)
    assert "misread" not in caplog.text


def test_date_format_reads_the_dates_as_written(tmp_path):
    path = monthly_csv(tmp_path, "%d.%m.%Y")
    frame = long_file_frame(path, date_format="%d.%m.%Y")
    assert frame.num_rows == 2 * MONTHS and frame.freqstr == "MS"
    with pytest.raises(UserError, match=r"line 2 \('01.01.2000'\) does not match data.source.date_format"):
        long_file_frame(path, date_format="%Y-%m-%d")


def test_wide_file_reads_day_first_dates(tmp_path):
    path = tmp_path / "wide.csv"
    days = pd.date_range("2024-01-01", periods=40, freq="D")
    pd.DataFrame({"date": days.strftime("%d/%m/%Y"), "a": np.arange(40.0)}).to_csv(path, index=False)
    with pytest.raises(UserError, match=r"at line 14 \('13/01/2024'\): .* set data.source.dayfirst=true"):
        wide_file_frame(str(path))
    frame = wide_file_frame(str(path), dayfirst=True)
    assert frame.freqstr == "D" and frame.timestamps.equals(
        pd.DatetimeIndex(days).as_unit(frame.timestamps.unit)
    )


def test_interpolate_that_cannot_fill_names_the_fill_that_can(tmp_path):
    """A series with no value in a column: interpolate cannot fill it, so the message names zero
    (never interpolate again), and zero reads the file."""
    path = tmp_path / "long.csv"
    stamps = pd.date_range("2024-01-01", periods=6, freq="h")
    pd.DataFrame(
        {
            "series": ["a"] * 6 + ["b"] * 6,
            "timestamp": list(stamps) * 2,
            "value": np.arange(12.0),
            "promo": [1.0, np.nan, 2.0, 3.0, 4.0, 5.0] + [np.nan] * 6,
        }
    ).to_csv(path, index=False)
    with pytest.raises(UserError) as raised:
        long_file_frame(str(path), extra_columns=["promo"], fill_method="interpolate")
    message = str(raised.value)
    assert "series 'b' has no value in column 'promo'" in message
    assert message.endswith("use data.source.fill_method=zero")
    frame = long_file_frame(str(path), extra_columns=["promo"], fill_method="zero")
    np.testing.assert_array_equal(frame.extras["promo"].to_numpy()[6:], np.zeros(6))


def unknown_key_message(overrides: list[str]) -> str:
    with pytest.raises(UserError) as raised:
        compose_config("train", overrides)
    return str(raised.value)


def test_unknown_keys_are_named_with_close_keys_never_with_plus():
    message = unknown_key_message(
        ["experiment=etth1_h96", "data.source.dayfrst=true", "windw_size=24", "no_such_key=1", "experimnt=x"]
    )
    assert message.startswith(
        "unknown config keys data.source.dayfrst (did you mean data.source.dayfirst?), "
        "windw_size (did you mean data.window_size?), no_such_key (no key is close), "
        "experimnt (did you mean experiment?); "
    )
    assert "+" not in message


def test_unknown_keys_are_found_when_hydra_frame_is_not(monkeypatch):
    """Where Hydra's failing frame cannot be read, the config is composed again: the same message."""
    overrides = ["data=long_csv", "data.source.dayfrst=true", "model.net.num_unit=4"]
    expected = unknown_key_message(overrides)
    monkeypatch.setattr(key_hints, "_config_being_overridden", lambda error: None)
    assert unknown_key_message(overrides) == expected
    assert "data.source.dayfirst" in expected and "model.net.num_units" in expected


@pytest.mark.parametrize(
    ("values", "empty"), [([np.nan] * 7, True), ([np.nan] * 6 + [1.0], False), ([], False)]
)
def test_an_empty_column_is_told_chunk_by_chunk(monkeypatch, values, empty):
    """The check looks a few rows at a time (3 here): a value in the last chunk alone counts."""
    monkeypatch.setattr(table_checks, "CHECK_ROWS", 3)
    assert table_checks.has_no_values(np.array(values, dtype=np.float64)) is empty


def test_wide_day_first_month_starts_are_warned_about(tmp_path, caplog):
    """Month starts written day-first all read month-first, as an irregular timeline that training
    accepts: a warning names data.source.dayfirst=true, which reads them monthly."""
    path = tmp_path / "wide.csv"
    months = pd.date_range("2020-01-01", periods=36, freq="MS")
    pd.DataFrame({"date": months.strftime("%d/%m/%Y"), "a": np.arange(36.0)}).to_csv(path, index=False)
    with caplog.at_level(logging.WARNING, logger="lstm_forecast.data.sources"):
        assert wide_file_frame(str(path)).freq is None
    assert "every MS read day-first; set data.source.dayfirst=true" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lstm_forecast.data.sources"):
        assert wide_file_frame(str(path), dayfirst=True).freqstr == "MS"
    assert "day-first" not in caplog.text
