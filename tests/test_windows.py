import numpy as np
import pytest
import torch

from lstm_forecast.data.windows import (
    PaddedArrays,
    WideWindows,
    WindowBatchSampler,
    seed_arrays,
    seed_prediction_arrays,
)


def make_source(rows: int, series: int, extras: int) -> np.ndarray:
    """Value of series s at row t is 100*s + t (recognisable); extras are 1000 + 10*e + t."""
    t = np.arange(rows)[:, None]
    values = 100 * np.arange(series)[None, :] + t
    extra = 1000 + 10 * np.arange(extras)[None, :] + t
    return np.concatenate([values, extra], axis=1).astype(np.float32)


def test_training_windows_start_with_the_method_warm_up_padding():
    source = make_source(rows=20, series=2, extras=1)
    x_train, y_train, _, _ = seed_arrays(source, window_size=4, num_series=2, split_ratio=0.5)
    assert x_train.shape == ((10 - 1) * 2, 4, 1 + 1 + 1)
    assert y_train.shape == (18, 1)
    # First window of series 2: only row 0 at the window's end, zeros before, target row 1.
    first = x_train[1]
    np.testing.assert_array_equal(first[:, 0], [2, 2, 2, 2])  # series id from 1
    np.testing.assert_array_equal(first[:, 2], [0, 0, 0, 100])
    np.testing.assert_array_equal(first[:, 1], [0, 0, 0, 1000])
    assert y_train[1, 0] == 101
    # The window grows one step at a time, then slides: sample of target row 6 holds rows 2..5.
    sample = x_train[(6 - 1) * 2 + 0]
    np.testing.assert_array_equal(sample[:, 2], [2, 3, 4, 5])
    assert y_train[(6 - 1) * 2, 0] == 6


def test_test_windows_take_context_before_the_split_and_cover_every_row_once():
    source = make_source(rows=20, series=3, extras=2)
    _, _, x_test, y_test = seed_arrays(source, window_size=5, num_series=3, split_ratio=0.5)
    assert x_test.shape == (10 * 3, 5, 1 + 2 + 1)
    targets = y_test[:, 0].reshape(10, 3)  # time-major, then series
    np.testing.assert_array_equal(targets, make_source(20, 3, 0)[10:, :3])
    # First test window of series 1 holds training rows 5..9.
    np.testing.assert_array_equal(x_test[0, :, -1], [5, 6, 7, 8, 9])


def test_univariate_layout_has_no_series_id():
    source = make_source(rows=12, series=1, extras=2)
    x_train, *_ = seed_arrays(source, window_size=3, num_series=1)
    assert x_train.shape[-1] == 2 + 1


def test_prediction_windows_are_always_full():
    source = make_source(rows=10, series=2, extras=1)
    x = seed_prediction_arrays(source, window_size=4, num_series=2)
    assert x.shape == ((10 - 4 + 1) * 2, 4, 3)
    np.testing.assert_array_equal(x[0, :, -1], [0, 1, 2, 3])
    np.testing.assert_array_equal(x[-1, :, -1], [106, 107, 108, 109])  # last window: the newest rows


def test_direct_horizon_targets_stay_inside_the_data():
    values = torch.arange(10, dtype=torch.float32)[:, None]
    arrays = PaddedArrays.from_arrays(values, torch.empty(10, 0), window_size=3)
    windows = WideWindows(arrays, first_target=5, num_targets=3, horizon=3)
    batch = windows.gather(torch.arange(3))
    np.testing.assert_array_equal(batch["y"].numpy(), [[5, 6, 7], [6, 7, 8], [7, 8, 9]])
    with pytest.raises(ValueError):
        WideWindows(arrays, first_target=5, num_targets=4, horizon=3)


def test_padding_mask_marks_padded_steps():
    values = torch.ones(6, 1)
    arrays = PaddedArrays.from_arrays(values, torch.empty(6, 0), window_size=4)
    batch = WideWindows(arrays, 1, 5, padding_mask=True).gather(torch.tensor([0, 4]))
    np.testing.assert_array_equal(batch["x"][:, :, 0].numpy(), [[0, 0, 0, 1], [1, 1, 1, 1]])


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_evaluation_shards_cover_every_window_exactly_once(world_size):
    seen = torch.cat(
        [
            torch.cat(
                list(
                    WindowBatchSampler(
                        101, 8, shuffle=False, rank=r, world_size=world_size, even_shards=False
                    )
                )
            )
            for r in range(world_size)
        ]
    )
    assert sorted(seen.tolist()) == list(range(101))


def test_training_shards_are_equal_and_reshuffled_each_epoch():
    samplers = [WindowBatchSampler(101, 8, shuffle=True, seed=1, rank=r, world_size=2) for r in range(2)]
    assert len(samplers[0]) == len(samplers[1]) == len(list(samplers[0]))
    first = torch.cat(list(samplers[0]))
    for sampler in samplers:
        sampler.set_epoch(1)
    assert not torch.equal(first, torch.cat(list(samplers[0])))
    both = torch.cat([torch.cat(list(s)) for s in samplers])
    assert set(both.tolist()) == set(range(101))
