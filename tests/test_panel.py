"""Long-format panels: ragged series, per-series split and scaling, gaps, static features, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY_MODEL, assert_one_line_error, run_app
from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.long_source import resolve_freq, synthetic_long_table
from lstm_forecast.data.short_series import short_series_message
from lstm_forecast.data.windows import Windows
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.tables import forecast_table
from lstm_forecast.inference.checkpoints import datamodule_from_checkpoint, read_checkpoint
from lstm_forecast.inference.forecasting import forecast_future, scaled_arrays
from lstm_forecast.models.net import EmbeddingBiLSTM
from lstm_forecast.training.run import train

WINDOW = 12
# Three series on their own timelines and scales: "b" is shorter than the window (left out of every
# split: lstm_forecast.data.short_series).
SERIES = {
    "a": ("2024-01-01 00:00", 30, 1.0),
    "b": ("2024-01-01 10:00", 8, 1_000.0),
    "c": ("2024-01-01 15:00", 20, 100_000.0),
}
CATEGORY = {"a": "shop", "b": "kiosk", "c": "shop"}


def ragged_table() -> pd.DataFrame:
    """Rows of every series, shuffled (the loader sorts them); values unique per series and step."""
    parts = []
    for name, (start, length, scale) in SERIES.items():
        steps = np.arange(length)
        parts.append(
            pd.DataFrame(
                {
                    "shop": name,
                    "when": pd.date_range(start, periods=length, freq="h"),
                    "sales": scale * (1 + 0.5 * np.sin(steps) + 0.01 * steps),
                    "promo": (steps % 3 == 0).astype(float),
                    "kind": CATEGORY[name],
                }
            )
        )
    return pd.concat(parts).sample(frac=1.0, random_state=0).reset_index(drop=True)


def write(tmp_path: Path, table: pd.DataFrame, name: str = "panel.csv") -> Path:
    path = tmp_path / name
    if path.suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False)
    return path


def source(path: Path, **options) -> dict:
    return {
        "kind": "long_file",
        "path": str(path),
        "series_column": "shop",
        "timestamp_column": "when",
        "value_column": "sales",
        "extra_columns": ["promo"],
        "static_columns": ["kind"],
        **options,
    }


def datamodule(path: Path, split: dict | None = None, **kwargs) -> ForecastDataModule:
    options = kwargs.pop("options", {})
    dm = ForecastDataModule(
        source=source(path, **options),
        window_size=WINDOW,
        split=split or {"train": 0.5, "val": 0.25, "test": 0.25},
        calendar_features=kwargs.pop("calendar_features", []),
        **kwargs,
    )
    dm.setup()
    return dm


def all_windows(dm: ForecastDataModule, split: str) -> dict[str, torch.Tensor]:
    return dm.windows[split].gather(torch.arange(len(dm.windows[split])))


def expected_scaled(table: pd.DataFrame, name: str, n_train: int) -> np.ndarray:
    """Series ``name`` scaled with the min and max of its own first ``n_train`` rows, computed here."""
    values = table[table.shop == name].sort_values("when").sales.to_numpy()
    low, high = values[:n_train].min(), values[:n_train].max()
    return -1 + 2 * (values - low) / (high - low)


def rows_per_split(length: int, fractions=(0.5, 0.25, 0.25)) -> tuple[int, int, int]:
    n_val, n_test = round(fractions[1] * length), round(fractions[2] * length)
    return min(round(fractions[0] * length), length - n_val - n_test), n_val, n_test


@pytest.fixture
def panel_csv(tmp_path: Path) -> Path:
    return write(tmp_path, ragged_table())


# ----------------------------------------------------------------------------------------- windows
def test_window_contents_stay_inside_their_series_with_zero_warm_up(panel_csv):
    table = ragged_table()
    dm = datamodule(panel_csv)
    names = dm.series_names
    assert names == ["a", "b", "c"]
    for split in ("train", "val", "test"):
        batch = all_windows(dm, split)
        timestamps = dm.timestamps[batch["target_row"].numpy()]
        for i in range(len(batch["x"])):
            name = names[int(batch["series_id"][i]) - 1]
            start, length, _ = SERIES[name]
            n_train = rows_per_split(length)[0]
            scaled = expected_scaled(table, name, n_train)
            step = int((timestamps[i] - pd.Timestamp(start)) / pd.Timedelta("1h"))
            padded = np.concatenate([np.zeros(WINDOW), scaled])
            np.testing.assert_allclose(batch["x"][i, :, -1].numpy(), padded[step : step + WINDOW], atol=1e-5)
            np.testing.assert_allclose(batch["y"][i, 0].item(), scaled[step], atol=1e-5)
            # The promo feature is zero on padded steps too: nothing leaks in from the series before.
            assert batch["x"][i, : max(WINDOW - step, 0), 0].abs().sum() == 0


def test_warm_up_windows_are_padded_and_a_series_shorter_than_the_window_has_none(panel_csv):
    dm = datamodule(panel_csv, padding_mask=True)
    batch = all_windows(dm, "train")
    first = batch["series_id"] == 1  # "a": 30 rows, 15 training rows, targets at steps 1..14
    mask = batch["x"][first][:3, :, -2]  # [3, W] padding mask of its first three windows: 1 on real rows
    np.testing.assert_array_equal(mask.sum(dim=1).numpy(), [1, 2, 3])
    assert (mask[:, -1] == 1).all() and (mask[:, 0] == 0).all()
    for split in ("train", "val", "test"):  # "b": 8 rows < window 12, though 4 are training rows
        assert not (all_windows(dm, split)["series_id"] == 2).any(), split


def test_windows_cost_one_index_per_target_and_rows_plus_padding(panel_csv):
    dm = datamodule(panel_csv)
    total_rows = sum(length for _, length, _ in SERIES.values())
    arrays = dm.windows["train"].arrays
    assert arrays.values.shape == (total_rows + len(SERIES) * WINDOW,)
    assert all(windows.arrays is arrays for windows in dm.windows.values())
    assert sum(len(w) for w in dm.windows.values()) <= total_rows
    assert (
        dm.windows["train"].targets.dtype == torch.int32
    )  # 4 bytes per window while the padded rows fit in int32


# ----------------------------------------------------------------------------------------- splits
def test_per_series_fraction_split_membership(panel_csv):
    dm = datamodule(panel_csv)
    for index, (name, (start, length, _)) in enumerate(SERIES.items()):
        n_train, n_val, n_test = rows_per_split(length)
        expected = {
            "train": range(1, n_train),
            "val": range(n_train, n_train + n_val),
            "test": range(n_train + n_val, n_train + n_val + n_test),
        }
        for split, steps in expected.items():
            steps = [] if length < WINDOW else steps  # a short series has no windows
            batch = all_windows(dm, split)
            mine = batch["series_id"] == index + 1
            stamps = dm.timestamps[batch["target_row"][mine].numpy()]
            got = ((stamps - pd.Timestamp(start)) / pd.Timedelta("1h")).astype(int).tolist()
            assert got == list(steps), (name, split)


def test_row_count_split_counts_from_each_series_first_row(panel_csv):
    # 14 / 5 / 5 rows from each series' own start: a leaves rows 24.. unused, b (8 rows) is shorter
    # than the window (no windows), c (20 rows) keeps the one test row it has.
    dm = datamodule(panel_csv, split={"train": 14, "val": 5, "test": 5})
    expected = {
        "train": {"a": range(1, 14), "c": range(1, 14)},
        "val": {"a": range(14, 19), "c": range(14, 19)},
        "test": {"a": range(19, 24), "c": range(19, 20)},
    }
    for split, per_series in expected.items():
        batch = all_windows(dm, split)
        got = {}
        for index, name in enumerate(dm.series_names):
            stamps = dm.timestamps[batch["target_row"][batch["series_id"] == index + 1].numpy()]
            steps = ((stamps - pd.Timestamp(SERIES[name][0])) / pd.Timedelta("1h")).astype(int).tolist()
            if steps:
                got[name] = steps
        assert got == {name: list(steps) for name, steps in per_series.items()}, split


def target_steps(dm: ForecastDataModule, split: str) -> dict[str, list[int]]:
    """Each series' target steps (from its own first row) in ``split``; series without any left out."""
    batch, got = all_windows(dm, split), {}
    for index, name in enumerate(dm.series_names):
        stamps = dm.timestamps[batch["target_row"][batch["series_id"] == index + 1].numpy()]
        steps = ((stamps - pd.Timestamp(SERIES[name][0])) / pd.Timedelta("1h")).astype(int).tolist()
        if steps:
            got[name] = steps
    return got


def test_val_test_counts_from_each_series_end(panel_csv, caplog):
    # The long default's spelling: the last 5 rows of every series are test, the 4 before them
    # validation. a (30 rows) and c (20) end at different times and keep their own last rows; b
    # (8 rows < the window, and <= 4 + 5: no training rows) is left out of every split, named in one
    # warning (the short-series one, not also the one about training rows).
    dm = datamodule(panel_csv, split={"train": None, "val": 4, "test": 5})
    assert {split: target_steps(dm, split) for split in ("train", "val", "test")} == {
        "train": {"a": list(range(1, 21)), "c": list(range(1, 11))},
        "val": {"a": list(range(21, 25)), "c": list(range(11, 15))},
        "test": {"a": list(range(25, 30)), "c": list(range(15, 20))},
    }
    assert short_series_message(["b"], WINDOW) in caplog.text and "no training rows" not in caplog.text
    dm = datamodule(panel_csv, split={"val": 4, "test": 5}, horizon=2)  # every horizon inside the split
    assert target_steps(dm, "test") == {"a": list(range(25, 29)), "c": list(range(15, 19))}


def test_too_few_rows_with_counts_from_the_end_name_the_counts_to_change(panel_csv):
    with pytest.raises(
        UserError,
        match=r"validation/test splits have 4/5 rows but the horizon is 6; .*"
        r"\(data.split.val=6 data.split.test=6\)",
    ):
        datamodule(panel_csv, split={"val": 4, "test": 5}, horizon=6)
    with pytest.raises(UserError, match=r"training split has 10 rows .* smaller data.split.val/test counts"):
        datamodule(panel_csv, split={"val": 10, "test": 10})
    with pytest.raises(UserError, match=r"training split has 10 rows .* a larger train split"):
        datamodule(panel_csv, split={"train": 10, "val": 10, "test": 10})


def test_date_split_leaves_series_out_of_splits_they_have_no_rows_in(tmp_path, caplog):
    table = ragged_table()
    late = pd.DataFrame(
        {"shop": "late", "when": pd.date_range("2024-01-02 00:00", periods=6, freq="h"), "sales": 5.0}
    )
    late = late.assign(sales=late.sales + np.arange(6), promo=0.0, kind="shop")
    path = write(tmp_path, pd.concat([table, late]))
    split = {
        "val_start": "2024-01-01 18:00",
        "test_start": "2024-01-01 22:00",
        "test_end": "2024-01-02 03:00",
    }
    dm = datamodule(path, split=split)
    cut_val, cut_test, end = (pd.Timestamp(v) for v in split.values())
    present = {}
    for name, lo, hi in (("train", None, cut_val), ("val", cut_val, cut_test), ("test", cut_test, end)):
        batch = all_windows(dm, name)
        stamps = dm.timestamps[batch["target_row"].numpy()]
        assert (stamps < hi).all() and (lo is None or (stamps >= lo).all())
        present[name] = {dm.series_names[int(i) - 1] for i in batch["series_id"]}
    # "b" (8 rows) and "late" (6 rows) are shorter than the window: no windows in any split, named in
    # one warning. (Otherwise "b", which ends at 17:00, would train only, and "late", which starts after
    # validation does, would have no training rows.)
    assert present == {"train": {"a", "c"}, "val": {"a", "c"}, "test": {"a", "c"}}
    assert short_series_message(["b", "late"], WINDOW) in caplog.text


def test_bad_split_is_a_user_error(panel_csv):
    with pytest.raises(UserError, match="val_start and test_start"):
        datamodule(panel_csv, split={"train": 0.5, "val": 0.25, "test": 0.25, "val_start": "2024-01-01"})
    with pytest.raises(UserError, match="must increase"):
        datamodule(panel_csv, split={"val_start": "2024-01-02", "test_start": "2024-01-01"})
    with pytest.raises(UserError, match=r"too few rows: validation/test splits have \d+/0 rows"):
        datamodule(panel_csv, split={"val_start": "2024-01-01 12:00", "test_start": "2024-03-01"})


# ----------------------------------------------------------------------------------------- scaling
def test_per_series_scaling_fits_training_rows_and_round_trips(panel_csv):
    table = ragged_table().sort_values(["shop", "when"])
    dm = datamodule(panel_csv)
    for split in ("train", "val", "test"):
        batch = all_windows(dm, split)
        series = (batch["series_id"] - 1).numpy()
        original = dm.inverse_values(batch["y"].numpy(), series[:, None])[:, 0]
        expected = table.sales.to_numpy()[batch["target_row"].numpy()]  # target_row: row of the sorted table
        np.testing.assert_allclose(original, expected, rtol=1e-5)
    # Each series spans exactly [-1, 1] over its own training rows, whatever its scale; "b", shorter
    # than the window, is not trained on, so not scaled.
    assert dm.series_train_rows.tolist() == [rows_per_split(30)[0], 0, rows_per_split(20)[0]]
    for index, (_, (_, length, _)) in enumerate(SERIES.items()):
        if length < WINDOW:
            continue
        n_train = rows_per_split(length)[0]
        rows = dm.windows["train"].arrays.values
        block = int(dm.windows["train"].arrays.block_start[index]) + WINDOW
        part = rows[block : block + n_train]
        assert part.min().item() == pytest.approx(-1.0) and part.max().item() == pytest.approx(1.0)
    assert dm.scaler.data_range[2] / dm.scaler.data_range[0] > 1e4
    np.testing.assert_allclose(
        dm.z_normalise(dm.series_mean, np.arange(3)), 0.0, atol=1e-12
    )  # each series' own training mean


def test_standard_scaler_scales_each_series_to_its_training_z_scores(panel_csv):
    dm = datamodule(panel_csv, scaler="standard")
    for split in ("train", "val", "test"):
        batch = all_windows(dm, split)
        series = (batch["series_id"] - 1).numpy()[:, None]
        original = dm.inverse_values(batch["y"].numpy(), series)
        np.testing.assert_allclose(batch["y"].numpy(), dm.z_normalise(original, series), atol=1e-4)


def test_state_round_trips_through_a_weights_only_checkpoint(panel_csv, tmp_path):
    dm = datamodule(panel_csv)
    torch.save(dm.state_dict(), tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    restored = ForecastDataModule(source=source(panel_csv), window_size=WINDOW, split=dict(dm.split))
    restored.load_state_dict(state)
    restored.setup()
    index = torch.arange(len(dm.windows["val"]))
    for key, value in dm.windows["val"].gather(index).items():
        torch.testing.assert_close(restored.windows["val"].gather(index)[key], value)


def test_checkpoint_series_order_wins_and_unknown_series_are_refused(panel_csv, tmp_path):
    dm = datamodule(panel_csv)
    state = dm.state_dict()
    only_c = write(tmp_path, ragged_table().query("shop == 'c'"), "c.csv")
    # setup refuses data in which no series has a full training window (the ridge baseline needs
    # one), restored scalers or not: c's 20 rows need a 60% training part to hold one of 12.
    split = {"train": 0.6, "val": 0.2, "test": 0.2}
    restored = ForecastDataModule(source=source(only_c), window_size=WINDOW, split=split)
    restored.load_frame()
    restored.load_state_dict(state)
    restored.setup()
    assert restored.series_names == ["a", "b", "c"]
    assert set(all_windows(restored, "test")["series_id"].tolist()) == {3}
    only_a = write(tmp_path, ragged_table().query("shop == 'a'"), "a.csv")  # trailing series absent
    restored = ForecastDataModule(source=source(only_a), window_size=WINDOW, split=split)
    restored.load_state_dict(state)
    restored.setup()
    assert restored.load_frame().lengths.tolist() == [30, 0, 0]
    assert set(all_windows(restored, "test")["series_id"].tolist()) == {1}
    other = write(tmp_path, ragged_table().replace({"shop": {"a": "zz"}}), "other.csv")
    stranger = ForecastDataModule(source=source(other), window_size=WINDOW)
    stranger.load_frame()
    with pytest.raises(UserError, match="not in the training data"):
        stranger.load_state_dict(state)


# ----------------------------------------------------------------------------------------- irregular data
def test_missing_step_is_reported_with_series_and_gap(tmp_path):
    table = ragged_table()
    gap = table[~((table.shop == "c") & (table.when == pd.Timestamp("2024-01-01 20:00")))]
    path = write(tmp_path, gap)
    with pytest.raises(UserError) as error:
        datamodule(path)
    message = str(error.value)
    assert "'c'" in message and "2024-01-01 19:00" in message and "2024-01-01 21:00" in message
    assert "fill_method" in message and "\n" not in message


@pytest.mark.parametrize(
    ("method", "expected"),
    [("ffill", "before"), ("bfill", "after"), ("interpolate", "mean"), ("zero", 0.0)],
)
def test_fill_methods_fill_gaps_and_missing_values_within_the_series(tmp_path, method, expected):
    table = ragged_table()
    stamp = pd.Timestamp("2024-01-01 20:00")
    is_c = table.shop == "c"
    row = table[is_c & (table.when == stamp)]
    before = table[is_c & (table.when == stamp - pd.Timedelta("1h"))].sales.item()
    after = table[is_c & (table.when == stamp + pd.Timedelta("1h"))].sales.item()
    table = table.drop(row.index)
    table.loc[is_c & (table.when == pd.Timestamp("2024-01-01 23:00")), "sales"] = np.nan
    path = write(tmp_path, table)
    dm = ForecastDataModule(source=source(path, fill_method=method), window_size=WINDOW)
    frame = dm.load_frame()
    assert frame.lengths.tolist() == [30, 8, 20]
    values = pd.Series(frame.values, index=frame.timestamps)[frame.offsets[2] : frame.offsets[3]]
    want = {"before": before, "after": after, "mean": (before + after) / 2}.get(expected, expected)
    assert values[stamp] == pytest.approx(want)
    assert np.isfinite(frame.values).all() and np.isfinite(frame.extras.to_numpy()).all()


def test_leading_missing_value_cannot_be_forward_filled(tmp_path):
    table = ragged_table()
    table.loc[(table.shop == "b") & (table.when == pd.Timestamp("2024-01-01 10:00")), "sales"] = np.nan
    path = write(tmp_path, table)
    with pytest.raises(UserError, match="'b' starts or ends with a missing value"):
        ForecastDataModule(source=source(path, fill_method="ffill"), window_size=WINDOW).load_frame()
    with pytest.raises(UserError, match=r"missing value .* series 'b'"):
        ForecastDataModule(source=source(path), window_size=WINDOW).load_frame()
    # interpolate and bfill take the nearest value at a series' edge (one fill for every layout).
    first_after = ragged_table().query("shop == 'b'").sort_values("when").sales.iloc[1]
    for method in ("interpolate", "bfill"):
        frame = ForecastDataModule(source=source(path, fill_method=method), window_size=WINDOW).load_frame()
        b = frame.values[frame.offsets[1] : frame.offsets[2]]
        assert len(b) == 8 and b[0] == pytest.approx(first_after)


def test_duplicates_off_grid_and_varying_static_are_refused(tmp_path):
    table = ragged_table()
    cases = {
        "duplicate timestamp": pd.concat([table, table.iloc[:1]]),
        "off its h grid": pd.concat([table, table.iloc[:1].assign(when=pd.Timestamp("2030-01-01 00:30"))]),
        "static column 'kind' changes": table.assign(kind=np.where(table.index % 2, "x", "y")),
    }
    for fragment, bad in cases.items():
        path = write(tmp_path, bad)
        with pytest.raises(UserError, match=fragment):
            ForecastDataModule(source=source(path, fill_method="zero"), window_size=WINDOW).load_frame()


def test_calendar_frequency_is_inferred_and_its_gaps_found(tmp_path):
    months = pd.date_range("2020-01-01", periods=24, freq="MS")
    table = pd.DataFrame({"shop": "a", "when": months, "sales": np.arange(24.0), "promo": 0.0, "kind": "x"})
    path = write(tmp_path, table, "monthly.parquet")
    frame = ForecastDataModule(source=source(path), window_size=WINDOW).load_frame()
    assert frame.freq.freqstr == "MS"
    np.testing.assert_array_equal(frame.values, np.arange(24.0))
    gappy = write(tmp_path, table.drop(index=[5]), "gappy.parquet")
    with pytest.raises(UserError, match="missing MS steps between 2020-05-01 00:00:00 and 2020-07-01"):
        ForecastDataModule(source=source(gappy, freq="MS"), window_size=WINDOW).load_frame()
    filled = ForecastDataModule(
        source=source(gappy, freq="MS", fill_method="interpolate"), window_size=WINDOW
    )
    np.testing.assert_allclose(filled.load_frame().values, np.arange(24.0))
    assert (filled.load_frame().timestamps == months).all()


def test_time_zones_are_kept_and_gaps_filled_across_a_clock_change(tmp_path):
    # 2024-03-31 02:00 does not exist in Berlin: the hourly grid runs in UTC.
    when = pd.date_range("2024-03-30 22:00", periods=10, freq="h", tz="UTC").tz_convert("Europe/Berlin")
    table = pd.DataFrame({"shop": "a", "when": when, "sales": np.arange(10.0), "promo": 0.0, "kind": "x"})
    path = write(tmp_path, table.drop(index=[4]), "berlin.parquet")
    frame = ForecastDataModule(
        source=source(path, fill_method="interpolate"), window_size=WINDOW
    ).load_frame()
    assert (frame.timestamps == when).all() and str(frame.timestamps.tz) == "Europe/Berlin"
    np.testing.assert_allclose(frame.values, np.arange(10.0))


def test_frequency_falls_back_to_the_most_common_step_within_series():
    # Series 0 has a gap (no pandas frequency), series 1 jumps back in time, series 2 and 3 are empty.
    stamps = pd.DatetimeIndex(
        ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 03:00", "2023-06-01 00:00", "2023-06-01 01:00"]
    )
    assert resolve_freq(None, stamps, np.array([0, 3, 5, 5, 5])) == pd.tseries.frequencies.to_offset("h")


# ----------------------------------------------------------------------------------------- static features
def test_static_columns_feed_embeddings_of_the_net(panel_csv):
    dm = datamodule(panel_csv)
    assert dm.static_vocabulary == [["kiosk", "shop"]] and dm.static_cardinalities == [3]
    batch = all_windows(dm, "train")
    expected = {1: 2, 2: 1, 3: 2}  # a: shop, b: kiosk, c: shop
    assert [expected[int(s)] for s in batch["series_id"]] == batch["static"][:, 0].tolist()

    torch.manual_seed(0)
    net = EmbeddingBiLSTM(
        3, dm.num_features, num_units=4, dense_size=4, dropout=0.0, static_cardinalities=[3]
    )
    net.eval()
    x, ids = batch["x"][:4], batch["series_id"][:4]
    other = (batch["static"][:4] % 2) + 1  # the other category
    assert not torch.allclose(net(x, ids, batch["static"][:4]), net(x, ids, other))
    plain = EmbeddingBiLSTM(3, dm.num_features, num_units=4, dense_size=4)
    same = EmbeddingBiLSTM(3, dm.num_features, num_units=4, dense_size=4, static_cardinalities=[])
    assert [p.shape for p in plain.parameters()] == [p.shape for p in same.parameters()]


def test_forecast_windows_continue_each_series_after_its_last_row(panel_csv):
    dm = datamodule(panel_csv, horizon=2)
    lengths = dm.load_frame().lengths
    # The window forecasting the step after each series' last row: its last W rows, scaled with the
    # training rows' scale. "b", shorter than the window, is not forecast.
    served = np.array([0, 2])
    arrays = scaled_arrays(dm)
    targets = torch.from_numpy(arrays.padded_rows(served, lengths[served]))
    windows = Windows(arrays, targets, 2, with_target=False, static=dm.static_codes())
    batch = windows.gather(torch.arange(len(windows)))
    assert "y" not in batch and batch["series_id"].tolist() == [1, 3]
    assert batch["target_row"].tolist() == dm.load_frame().offsets[served + 1].tolist()  # one past each end
    for i, name in enumerate(["a", "c"]):
        length = SERIES[name][1]
        scaled = expected_scaled(ragged_table(), name, rows_per_split(length)[0])
        padded = np.concatenate([np.zeros(WINDOW), scaled])
        np.testing.assert_allclose(batch["x"][i, :, -1].numpy(), padded[-WINDOW:], atol=1e-5)
    net = EmbeddingBiLSTM(3, dm.num_features, num_units=4, dense_size=4, horizon=2, static_cardinalities=[3])
    net.eval()
    forecasts = forecast_future(net, dm, horizon=2, model_horizon=2)
    # Exactly what the network makes of those windows.
    with torch.no_grad():
        direct = net(batch["x"], batch["series_id"], batch["static"]).numpy()
    np.testing.assert_allclose(forecasts.prediction, direct, rtol=1e-5, atol=1e-6)
    frame = forecast_table(forecasts, dm)
    assert list(frame.columns) == ["series", "timestamp", "step", "prediction", "actual"]
    assert frame.series.tolist() == ["a", "a", "c", "c"] and frame.step.tolist() == [1, 2] * 2
    last = {
        name: pd.Timestamp(start) + (length - 1) * pd.Timedelta("1h")
        for name, (start, length, _) in SERIES.items()
    }
    expected = [
        last[name] + step * pd.Timedelta("1h") for name, step in zip(frame.series, frame.step, strict=True)
    ]
    assert frame.timestamp.tolist() == expected
    assert np.isfinite(frame.prediction).all() and frame.actual.isna().all()


# ----------------------------------------------------------------------------------------- end to end
LONG_TINY = [
    *TINY_MODEL,
    "data=long_csv",
    "data.source.series_column=shop",
    "data.source.timestamp_column=when",
    "data.source.value_column=sales",
    "data.source.extra_columns=[promo]",
    "data.source.static_columns=[kind]",
    f"data.window_size={WINDOW}",
    "data.split.train=0.5",
    "data.split.val=0.25",
    "data.split.test=0.25",
    "data.batch_size=16",
]


@pytest.mark.slow
def test_train_and_evaluate_on_long_data_write_long_outputs(compose_train_cfg, panel_csv, tmp_path):
    cfg = compose_train_cfg(*LONG_TINY, f"data.source.path={panel_csv}", tiny=False)
    metrics, objects = train(cfg)
    scored = [n for _, n, _ in SERIES.values() if n >= WINDOW]  # "b" is shorter than the window
    assert metrics["test/num_targets"] == sum(rows_per_split(n)[2] for n in scored)
    assert objects["model"].hparams.static_cardinalities == [3]
    checkpoint = read_checkpoint(metrics["best_checkpoint"])  # weights_only=True inside
    assert "ForecastDataModule" in checkpoint
    assert isinstance(datamodule_from_checkpoint(checkpoint), ForecastDataModule)

    run_dir = tmp_path / "evaluate"
    result = run_app("evaluate", f"ckpt_path={metrics['best_checkpoint']}", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    evaluated = json.loads((run_dir / "metrics.json").read_text())
    assert evaluated["test/mse_z"] == pytest.approx(metrics["test/mse_z"], rel=1e-5)
    forecasts = pd.read_csv(run_dir / "forecasts.csv", parse_dates=["timestamp"])
    # 15 validation windows calibrate the 80 % interval but are too few for 95 % (19), left out.
    assert list(forecasts.columns) == [
        "series",
        "timestamp",
        "step",
        "prediction",
        "actual",
        "lo-80",
        "hi-80",
    ]
    actual = ragged_table().set_index(["shop", "when"]).sales
    np.testing.assert_allclose(
        forecasts.actual.to_numpy(),
        actual.loc[list(zip(forecasts.series, forecasts.timestamp, strict=True))].to_numpy(),
    )
    assert forecasts.groupby("series").size().to_dict() == {
        name: rows_per_split(n)[2] for name, (_, n, _) in SERIES.items() if n >= WINDOW
    }
    assert np.isfinite(forecasts.prediction).all()


@pytest.mark.slow
def test_cli_reports_a_gap_in_long_data_in_one_line(tmp_path):
    table = ragged_table()
    path = write(tmp_path, table[~((table.shop == "a") & (table.when == pd.Timestamp("2024-01-01 05:00")))])
    run_dir = tmp_path / "run"
    result = run_app("train", *LONG_TINY, f"data.source.path={path}", f"hydra.run.dir={run_dir}")
    assert_one_line_error(result, "series 'a'", "fill_method")
    assert not run_dir.exists()


def test_synthetic_long_table_is_ragged_and_multi_scale(tmp_path):
    table = synthetic_long_table(num_series=30, max_length=200, min_length=10, seed=1)
    spans = table.groupby("series", observed=True).timestamp.agg(["min", "max", "size"])
    assert spans["min"].nunique() > 1 and spans["max"].nunique() > 1 and spans["size"].min() >= 10
    levels = table.groupby("series", observed=True).value.mean()
    assert levels.max() / levels.min() > 100
    path = write(tmp_path, table, "synthetic.parquet")
    dm = ForecastDataModule(
        source={"kind": "long_file", "path": str(path), "static_columns": ["category"]},
        window_size=24,
        calendar_features=["hour"],
    )
    dm.setup()
    assert dm.num_series == 30 and dm.static_cardinalities == [4]
    # Series shorter than the window (24 rows) have none.
    n_train = [rows_per_split(n, (0.7, 0.15, 0.15))[0] for n in spans["size"] if n >= 24]
    assert len(dm.windows["train"]) == sum(n - 1 for n in n_train)


# Three hourly series on their own timelines: "short" (20 rows <= 12 + 12) has no training rows.
FROM_END_LENGTHS = {
    "long": ("2024-01-01 00:00", 80),
    "mid": ("2024-01-01 09:00", 50),
    "short": ("2024-01-02 05:00", 20),
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("layout", "split"),
    [("long", "data.split={val:12,test:12}"), ("wide", "data.split={train:null,val:12,test:12}")],
)
def test_the_documented_counts_from_the_end_score_each_series_last_rows(layout, split, tmp_path):
    # The command lines docs/data.md shows: Hydra merges the dict into data.split, so on a wide
    # file (whose default is fractions) train:null is what switches to counts from the end.
    parts = {
        name: pd.DataFrame({"series": name, "timestamp": pd.date_range(start, periods=n, freq="h")})
        for name, (start, n) in FROM_END_LENGTHS.items()
    }
    table = pd.concat(parts.values()).assign(
        value=lambda t: np.sin(t.timestamp.dt.hour / 3.0) + t.series.str.len()
    )
    if layout == "long":
        path, data = write(tmp_path, table), ["data=long_csv"]
        expected = {
            name: part.timestamp.iloc[-12:].tolist() for name, part in parts.items() if name != "short"
        }
    else:  # one 80-step timeline: every series is long enough
        stamps = parts["long"].timestamp
        values = {name: np.sin(np.arange(80) / (k + 2)) for k, name in enumerate(parts)}
        path, data = write(tmp_path, pd.DataFrame({"date": stamps, **values})), ["data=wide_file"]
        expected = {name: stamps.iloc[-12:].tolist() for name in parts}
    run_dir = tmp_path / "run"
    result = run_app(
        "train", *data, f"data.source.path={path}", split, *TINY_MODEL, f"hydra.run.dir={run_dir}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/num_targets"] == 12 * len(expected)
    evaluated = tmp_path / "evaluate"
    result = run_app("evaluate", f"run={run_dir}", f"hydra.run.dir={evaluated}")
    assert result.returncode == 0, result.stderr[-3000:]
    forecasts = pd.read_csv(evaluated / "forecasts.csv", parse_dates=["timestamp"])
    got = {name: group.timestamp.tolist() for name, group in forecasts.groupby("series")}
    assert got == expected
