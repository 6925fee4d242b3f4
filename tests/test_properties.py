"""Property-based tests: window index arithmetic, the batch sampler and the scaler, for any valid sizes."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lstm_forecast.data.blog_layout import seed_arrays
from lstm_forecast.data.loading import WindowBatchSampler
from lstm_forecast.data.scaling import MinMaxScaler
from lstm_forecast.data.windows import SeriesArrays, Windows

FAST = settings(max_examples=40, deadline=None)


def recognisable(rows: int, series: int, extras: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Values ``100 * s + t + 1`` and extras ``-(1000 * e + t + 1)``: every cell is unique and non-zero,
    so a zero in a window can only be padding."""
    t = torch.arange(rows, dtype=torch.float64)[:, None]
    values = 100 * torch.arange(series, dtype=torch.float64)[None, :] + t + 1
    extra = -(1000 * torch.arange(extras, dtype=torch.float64)[None, :] + t + 1)
    return values, extra


def series_rows(lengths: list[int], extras: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of series of ``lengths`` (series by series): value ``100 * s + t + 1``, extras
    ``-(10000 * e + 100 * s + t + 1)``, every cell unique and non-zero (a zero can only be padding)."""
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    series = np.repeat(np.arange(len(lengths)), lengths)
    step = np.arange(offsets[-1]) - offsets[series]
    values = (100 * series + step + 1).astype(np.float64)
    extra = -(10000 * np.arange(extras)[None, :] + (100 * series + step + 1)[:, None]).astype(np.float64)
    return values, extra, offsets


@st.composite
def window_sets(draw):
    num_series = draw(st.integers(1, 5))
    wide = draw(st.booleans())  # every series on one timeline, or ragged (some possibly empty)
    if wide:
        lengths = [draw(st.integers(1, 40))] * num_series
    else:
        lengths = draw(st.lists(st.integers(0, 40), min_size=num_series, max_size=num_series))
    extras = draw(st.integers(0, 3))
    window = draw(st.integers(1, 12))
    horizon = draw(st.integers(1, max(max(lengths), 1)))
    mask = draw(st.booleans())
    values, extra, offsets = series_rows(lengths, extras)
    arrays = SeriesArrays.from_rows(values, extra, offsets, window)
    pairs = []  # (series, step), series-major: a run of targets per series whose horizon fits
    for s, length in enumerate(lengths):
        if length < horizon:
            continue
        first = draw(st.integers(0, length - horizon))
        count = draw(st.integers(0, length - horizon + 1 - first))
        pairs += [(s, step) for step in range(first, first + count)]
    series = np.array([p[0] for p in pairs], dtype=np.int64)
    steps = np.array([p[1] for p in pairs], dtype=np.int64)
    targets = torch.from_numpy(arrays.padded_rows(series, steps))
    windows = Windows(arrays, targets, horizon, mask)
    return windows, pairs, values, extra, offsets


@FAST
@given(window_sets(), st.data())
def test_window_gather_matches_the_rows_it_names(case, data):
    windows, pairs, values, extra, offsets = case
    num_windows = len(windows)
    assert num_windows == len(pairs)
    if num_windows == 0:
        return
    index = torch.tensor(data.draw(st.lists(st.integers(0, num_windows - 1), min_size=1, max_size=16)))
    batch = windows.gather(index)
    size, window, horizon = len(index), windows.window_size, windows.horizon
    num_series = len(offsets) - 1
    assert batch["x"].shape == (size, window, windows.num_features)
    assert batch["y"].shape == (size, horizon)
    assert batch["series_id"].min() >= 1 and batch["series_id"].max() <= num_series
    np.testing.assert_array_equal(windows.series_index(), [s for s, _ in pairs])
    for b, i in enumerate(index.tolist()):
        s, t = pairs[i]
        assert batch["target_row"][b] == offsets[s] + t and batch["series_id"][b] == s + 1
        for k in range(window):
            step = t - window + k
            real = step >= 0
            row = offsets[s] + step
            assert batch["x"][b, k, -1] == (values[row] if real else 0)
            expected = extra[row] if real else np.zeros(extra.shape[1])
            np.testing.assert_array_equal(batch["x"][b, k, : extra.shape[1]].numpy(), expected)
            if windows.padding_mask:
                assert batch["x"][b, k, -2] == float(real)
        first = offsets[s] + t
        np.testing.assert_array_equal(batch["y"][b].numpy(), values[first : first + horizon])
    # Full-context windows are exactly those whose whole window lies in their series' rows.
    full = {i for i, (_, t) in enumerate(pairs) if t >= window}
    everything = torch.arange(num_windows)
    assert set(everything[windows.full_context(everything)].tolist()) == full
    # The value-only reads (scoring, the ridge baseline) are the same numbers as the full gather.
    observed, values_only = windows.observed(index), windows.gather_values(index)
    np.testing.assert_array_equal(observed["last_value"].numpy(), batch["x"][:, -1, -1].numpy())
    np.testing.assert_array_equal(values_only["values"].numpy(), batch["x"][..., -1].numpy())
    for key in ("series_id", "y"):
        np.testing.assert_array_equal(observed[key].numpy(), batch[key].numpy())
        np.testing.assert_array_equal(values_only[key].numpy(), batch[key].numpy())
    np.testing.assert_array_equal(observed["target_row"].numpy(), batch["target_row"].numpy())


@FAST
@given(
    num_windows=st.integers(0, 300),
    batch_size=st.integers(1, 64),
    world_size=st.integers(1, 4),
    shuffle=st.booleans(),
    even_shards=st.booleans(),
    seed=st.integers(0, 2**31),
    epoch=st.integers(0, 50),
)
# Fewer windows than ranks: the padding must wrap around more than once (it once gave rank 2 nothing).
@example(num_windows=1, batch_size=1, world_size=3, shuffle=False, even_shards=True, seed=0, epoch=0)
def test_sampler_shards_cover_every_window(
    num_windows, batch_size, world_size, shuffle, even_shards, seed, epoch
):
    shards = []
    for rank in range(world_size):
        sampler = WindowBatchSampler(num_windows, batch_size, shuffle, seed, rank, world_size, even_shards)
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert all(1 <= len(b) <= batch_size for b in batches)
        again = WindowBatchSampler(num_windows, batch_size, shuffle, seed, rank, world_size, even_shards)
        again.set_epoch(epoch)  # the order depends only on (seed, epoch): what a resumed run relies on
        assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
        shards.append(torch.cat(batches) if batches else torch.empty(0, dtype=torch.long))
    seen = torch.cat(shards)
    assert set(seen.tolist()) == set(range(num_windows))
    if even_shards and world_size > 1:
        assert len({len(shard) for shard in shards}) == 1  # same number of steps on every rank
        assert len(seen) - num_windows < world_size
    else:
        assert len(seen) == num_windows  # every window exactly once


@FAST
@given(
    rows=st.integers(3, 30),
    series=st.integers(1, 4),
    extras=st.integers(0, 2),
    window=st.integers(1, 8),
    ratio=st.floats(0.1, 0.9),
)
def test_seed_arrays_shapes_and_targets(rows, series, extras, window, ratio):
    values, extra = recognisable(rows, series, extras)
    source = torch.cat([values, extra], dim=1).numpy()
    num_train = int(rows * ratio)
    if not 2 <= num_train < rows:
        return
    x_train, y_train, x_test, y_test = seed_arrays(source, window, series, ratio)
    features = extras + 1 + (series > 1)
    assert x_train.shape == ((num_train - 1) * series, window, features)
    assert x_test.shape == ((rows - num_train) * series, window, features)
    assert y_train.shape == (len(x_train), 1) and y_test.shape == (len(x_test), 1)
    np.testing.assert_array_equal(y_test[:, 0].reshape(-1, series), values[num_train:].numpy())
    np.testing.assert_array_equal(y_train[:, 0].reshape(-1, series), values[1:num_train].numpy())


finite_tables = st.integers(1, 6).flatmap(
    lambda columns: arrays(
        np.float64,
        st.tuples(st.integers(1, 30), st.just(columns)),
        # Micro-unit resolution: a training range of 1e-300 would make any later value overflow.
        elements=st.floats(-1e6, 1e6).map(lambda value: round(value, 6)),
    )
)


@FAST
@given(train=finite_tables, data=st.data())
def test_scaler_round_trip_bounds_and_shapes(train, data):
    scaler = MinMaxScaler.fit(train)
    scaled = scaler.transform(train)
    assert scaled.shape == train.shape
    assert np.isfinite(scaled).all()
    assert scaled.min() >= -1 - 1e-9 and scaled.max() <= 1 + 1e-9  # training rows land in [-1, 1]
    np.testing.assert_allclose(scaler.inverse_transform(scaled), train, rtol=1e-9, atol=1e-6)
    constant = scaler.data_range == 0
    assert (scaled[:, constant] == 0).all()

    later = data.draw(
        arrays(np.float64, (data.draw(st.integers(1, 10)), train.shape[1]), elements=st.floats(-1e7, 1e7))
    )
    np.testing.assert_allclose(
        scaler.inverse_transform(scaler.transform(later))[:, ~constant],
        later[:, ~constant],
        rtol=1e-9,
        atol=1e-5,
    )
    # Per-element column parameters agree with the per-column transform.
    columns = np.broadcast_to(np.arange(train.shape[1]), later.shape)
    np.testing.assert_allclose(scaler.transform(later, column_index=columns), scaler.transform(later))

    restored = MinMaxScaler.from_state_dict(scaler.state_dict())
    np.testing.assert_array_equal(restored.transform(later), scaler.transform(later))
