import numpy as np
import pytest
import torch

from lstm_forecast.data.blog_layout import seed_arrays, seed_prediction_arrays
from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.loading import WindowBatchSampler
from lstm_forecast.data.windows import SeriesArrays, Windows


def make_source(rows: int, series: int, extras: int) -> np.ndarray:
    """Value of series s at row t is 100*s + t (recognisable); extras are 1000 + 10*e + t."""
    t = np.arange(rows)[:, None]
    values = 100 * np.arange(series)[None, :] + t
    extra = 1000 + 10 * np.arange(extras)[None, :] + t
    return np.concatenate([values, extra], axis=1).astype(np.float32)


def wide_arrays(values: np.ndarray, extras: np.ndarray, window_size: int) -> SeriesArrays:
    """A wide table (``values [T, S]``, ``extras [T, E]``) as series rows, series by series."""
    num_rows, num_series = values.shape
    return SeriesArrays.from_rows(
        values.T.ravel(), np.tile(extras, (num_series, 1)), np.arange(num_series + 1) * num_rows, window_size
    )


def targets(arrays: SeriesArrays, series: list[int], local: list[int]) -> torch.Tensor:
    return torch.from_numpy(arrays.padded_rows(np.array(series), np.array(local)))


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
    values = np.arange(10, dtype=np.float32)[:, None]
    arrays = wide_arrays(values, np.empty((10, 0)), window_size=3)
    windows = Windows(arrays, targets(arrays, [0, 0, 0], [5, 6, 7]), horizon=3)
    batch = windows.gather(torch.arange(3))
    np.testing.assert_array_equal(batch["y"].numpy(), [[5, 6, 7], [6, 7, 8], [7, 8, 9]])
    # The datamodule cuts a split's windows so that every horizon ends inside it: rows [5, 10) with
    # horizon 3 give exactly the targets 5, 6, 7 (8 and 9 would run past the end).
    datamodule = ForecastDataModule(
        source={"kind": "synthetic", "num_series": 1, "num_rows": 60},
        window_size=3,
        horizon=3,
        split={"train": 30, "val": 15, "test": 15},
    )
    datamodule.setup()
    cut = datamodule.split_windows(arrays, "test", lo=np.array([5]), hi=np.array([10]))
    assert len(cut) == 3
    np.testing.assert_array_equal(cut.locate(torch.arange(3))[0].numpy(), [5, 6, 7])
    np.testing.assert_array_equal(cut.gather(torch.arange(3))["y"].numpy(), batch["y"].numpy())


def test_horizon_windows_of_a_series_never_read_the_next_series():
    source = make_source(rows=8, series=3, extras=1)
    arrays = wide_arrays(source[:, :3], source[:, 3:], window_size=4)
    # The last window of every series whose horizon ends on its last row, and its first window.
    windows = Windows(arrays, targets(arrays, [0, 1, 2, 1], [6, 6, 6, 0]), horizon=2, padding_mask=True)
    batch = windows.gather(torch.arange(4))
    np.testing.assert_array_equal(batch["y"].numpy(), [[6, 7], [106, 107], [206, 207], [100, 101]])
    contexts = [[2, 3, 4, 5], [102, 103, 104, 105], [202, 203, 204, 205]]
    np.testing.assert_array_equal(batch["x"][:3, :, -1].numpy(), contexts)
    np.testing.assert_array_equal(batch["x"][3].numpy(), np.zeros((4, 3)))  # only warm-up padding
    np.testing.assert_array_equal(batch["series_id"].numpy(), [1, 2, 3, 2])
    np.testing.assert_array_equal(batch["target_row"].numpy(), [6, 8 + 6, 16 + 6, 8])  # row s * T + t


def test_padding_mask_marks_padded_steps():
    values = np.ones((6, 1), dtype=np.float32)
    arrays = wide_arrays(values, np.empty((6, 0)), window_size=4)
    windows = Windows(arrays, targets(arrays, [0] * 5, [1, 2, 3, 4, 5]), padding_mask=True)
    batch = windows.gather(torch.tensor([0, 4]))
    np.testing.assert_array_equal(batch["x"][:, :, 0].numpy(), [[0, 0, 0, 1], [1, 1, 1, 1]])


def test_padding_mask_restarts_with_every_series():
    values = np.ones((6, 2), dtype=np.float32)  # 0 on padding only where the mask says so
    arrays = wide_arrays(values, np.empty((6, 0)), window_size=4)
    windows = Windows(arrays, targets(arrays, [1, 1], [1, 5]), padding_mask=True)
    batch = windows.gather(torch.arange(2))
    np.testing.assert_array_equal(batch["x"][:, :, 0].numpy(), [[0, 0, 0, 1], [1, 1, 1, 1]])
    np.testing.assert_array_equal(batch["x"][:, :, 1].numpy(), [[0, 0, 0, 1], [1, 1, 1, 1]])


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
