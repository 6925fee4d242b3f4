"""The batched gather against straightforward per-sample references, and the rank shards.

The references below are written the slow, obvious way (one window at a time, explicit row
arithmetic within each series, zeros before a series' first row), so they share no code with
:meth:`Windows.gather`.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from pytorch_lightning.callbacks import Checkpoint

from lstm_forecast.data.blog_layout import seed_arrays
from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.loading import WindowBatchSampler, WindowDataset
from lstm_forecast.data.windows import SeriesArrays, Windows
from lstm_forecast.training.guards import ProcessGroupRelease
from lstm_forecast.training.run import build

# One series: (values [T], extras [T, E]).
Series = tuple[np.ndarray, np.ndarray]


def random_arrays(num_rows: int, num_series: int, num_extras: int, seed: int = 0) -> np.ndarray:
    """``[rows, series + extras]`` float32 in [-1, 1], series columns first."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (num_rows, num_series + num_extras)).astype(np.float32)


def wide_series(source: np.ndarray, num_series: int) -> list[Series]:
    """The series of a wide table: each column with the shared extra columns."""
    return [(source[:, s], source[:, num_series:]) for s in range(num_series)]


def ragged_series(lengths: list[int], num_extras: int, seed: int = 0) -> list[Series]:
    """Series of their own lengths (possibly none), each with its own extras, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    return [
        (
            rng.uniform(-1, 1, length).astype(np.float32),
            rng.uniform(-1, 1, (length, num_extras)).astype(np.float32),
        )
        for length in lengths
    ]


def offsets_of(series: list[Series]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum([len(values) for values, _ in series])])


def reference_window(series: Series, target_row: int, window_size: int, padding_mask: bool) -> np.ndarray:
    """One window ``[W, F]`` built step by step: extras, (mask), value; zeros before the series' row 0."""
    values, extras = series
    num_extras = extras.shape[1]
    window = np.zeros((window_size, num_extras + int(padding_mask) + 1), dtype=np.float32)
    for step in range(window_size):
        row = target_row - window_size + step
        if row < 0:
            continue
        window[step, :num_extras] = extras[row]
        if padding_mask:
            window[step, num_extras] = 1.0
        window[step, -1] = values[row]
    return window


def reference_batch(
    series: list[Series],
    pairs: list[tuple[int, int]],
    window_size: int,
    horizon: int,
    padding_mask: bool,
    with_target: bool = True,
) -> dict[str, np.ndarray]:
    """The windows ``(series, step)`` one at a time, the way a per-sample ``__getitem__`` would."""
    offsets = offsets_of(series)
    xs, ys, series_ids, target_rows = [], [], [], []
    for s, step in pairs:
        xs.append(reference_window(series[s], step, window_size, padding_mask))
        if with_target:
            target = series[s][0][step : step + horizon]
            assert len(target) == horizon, "the reference never reads past a series' end"
            ys.append(target)
        series_ids.append(s + 1)
        target_rows.append(offsets[s] + step)  # the row of the frame, sorted by series then time
    batch = {"x": np.stack(xs), "series_id": np.array(series_ids), "target_row": np.array(target_rows)}
    if with_target:
        batch["y"] = np.stack(ys)
    return batch


def make_windows(
    series: list[Series],
    window_size: int,
    pairs: list[tuple[int, int]],
    horizon: int,
    padding_mask: bool,
    with_target: bool = True,
) -> Windows:
    values = np.concatenate([v for v, _ in series])
    extras = np.concatenate([e for _, e in series])
    arrays = SeriesArrays.from_rows(values, extras, offsets_of(series), window_size)
    s, step = (np.array([p[i] for p in pairs], dtype=np.int64) for i in (0, 1))
    targets = torch.from_numpy(arrays.padded_rows(s, step))
    return Windows(arrays, targets, horizon, padding_mask, with_target)


def split_pairs(series: list[Series], first_target: int, horizon: int) -> list[tuple[int, int]]:
    """Series-major: every target step ``first_target ..`` of each series whose horizon fits in it."""
    return [
        (s, step)
        for s, (values, _) in enumerate(series)
        for step in range(first_target, len(values) - horizon + 1)
    ]


def check_gather(windows: Windows, series, pairs, window_size, horizon, padding_mask, with_target=True):
    order = torch.randperm(len(windows), generator=torch.Generator().manual_seed(1))
    for index in (torch.arange(len(windows)), order[:17], order[-1:]):
        batch = windows.gather(index)
        expected = reference_batch(
            series, [pairs[i] for i in index.tolist()], window_size, horizon, padding_mask, with_target
        )
        assert batch["x"].shape == (len(index), window_size, windows.num_features)
        np.testing.assert_array_equal(batch["x"].numpy(), expected["x"])
        np.testing.assert_array_equal(batch["series_id"].numpy(), expected["series_id"])
        np.testing.assert_array_equal(batch["target_row"].numpy(), expected["target_row"])
        target_row, located_series = windows.locate(index)
        np.testing.assert_array_equal(target_row.numpy(), expected["target_row"])
        np.testing.assert_array_equal(located_series.numpy() + 1, expected["series_id"])
        if with_target:
            np.testing.assert_array_equal(batch["y"].numpy(), expected["y"])
        else:
            assert "y" not in batch


@pytest.mark.parametrize(
    ("num_series", "num_extras", "window_size", "first_target", "horizon", "padding_mask"),
    [
        (3, 2, 5, 1, 1, False),  # the training layout: starts with warm-up windows
        (4, 0, 7, 1, 3, True),  # no extras, multi-step targets, padding mask
        (1, 3, 4, 10, 2, False),  # one series, windows entirely inside the data
        (5, 4, 12, 6, 1, True),  # window longer than the rows before the first target
    ],
)
def test_gather_matches_per_sample_reference(
    num_series, num_extras, window_size, first_target, horizon, padding_mask
):
    source = random_arrays(30, num_series, num_extras, seed=num_series + window_size)
    series = wide_series(source, num_series)
    pairs = split_pairs(series, first_target, horizon)
    windows = make_windows(series, window_size, pairs, horizon, padding_mask)
    check_gather(windows, series, pairs, window_size, horizon, padding_mask)


@pytest.mark.parametrize(
    ("lengths", "num_extras", "window_size", "first_target", "horizon", "padding_mask"),
    [
        ([30, 5, 17], 2, 8, 1, 1, True),  # a series shorter than the window
        ([12, 0, 25, 3], 1, 6, 0, 2, False),  # an empty series between others; step 0 targets
        ([40, 9], 0, 4, 2, 3, True),  # no extras, windows mostly inside the data
    ],
)
def test_gather_matches_per_sample_reference_on_ragged_series(
    lengths, num_extras, window_size, first_target, horizon, padding_mask
):
    series = ragged_series(lengths, num_extras, seed=sum(lengths))
    pairs = split_pairs(series, first_target, horizon)
    windows = make_windows(series, window_size, pairs, horizon, padding_mask)
    check_gather(windows, series, pairs, window_size, horizon, padding_mask)
    # Forecast windows: the step after each non-empty series' last row, no target.
    future = [(s, len(values)) for s, (values, _) in enumerate(series) if len(values)]
    forecast = make_windows(series, window_size, future, horizon, padding_mask, with_target=False)
    check_gather(forecast, series, future, window_size, horizon, padding_mask, with_target=False)


def blog_training_arrays(source: np.ndarray, num_series: int, window_size: int, num_train: int):
    """The method's training arrays by its own recipe: a window of zeros slid over the rows.

    Sample ``(r - 1) * S + s`` forecasts row ``r`` of series ``s`` (``r = 1 .. n_train - 1``) from
    at most ``window_size`` rows before it, right-aligned; features ``[id, extras..., value]``.
    """
    num_extras = source.shape[1] - num_series
    count = (num_train - 1) * num_series
    x = np.zeros((count, window_size, num_extras + 2), dtype=np.float32)
    y = np.zeros((count, 1), dtype=np.float32)
    for target_row in range(1, num_train):
        start = max(0, target_row - window_size)
        length = target_row - start
        for series in range(num_series):
            sample = (target_row - 1) * num_series + series
            x[sample, :, 0] = series + 1
            x[sample, window_size - length :, 1 : 1 + num_extras] = source[start:target_row, num_series:]
            x[sample, window_size - length :, -1] = source[start:target_row, series]
            y[sample, 0] = source[target_row, series]
    return x, y


def test_seed_arrays_match_the_blog_recipe():
    num_series, window_size = 3, 6
    source = random_arrays(40, num_series, 2, seed=3)
    series = wide_series(source, num_series)
    x_train, y_train, x_test, y_test = seed_arrays(source, window_size, num_series, split_ratio=0.75)
    expected_x, expected_y = blog_training_arrays(source, num_series, window_size, num_train=30)
    np.testing.assert_array_equal(x_train, expected_x)
    np.testing.assert_array_equal(y_train, expected_y)
    # Test samples forecast rows 30..39 with full windows of the rows just before them (time-major).
    for sample in range(len(x_test)):
        target_row, s = 30 + sample // num_series, sample % num_series
        window = reference_window(series[s], target_row, window_size, padding_mask=False)
        np.testing.assert_array_equal(x_test[sample, :, 1:], window)
        assert (x_test[sample, :, 0] == s + 1).all()
        assert y_test[sample, 0] == source[target_row, s]
    assert len(x_test) == 10 * num_series


def rank_batches(num_windows: int, batch_size: int, world_size: int, **options) -> list[list[torch.Tensor]]:
    samplers = [
        WindowBatchSampler(num_windows, batch_size, rank=rank, world_size=world_size, **options)
        for rank in range(world_size)
    ]
    batches = [list(sampler) for sampler in samplers]
    for sampler, rank_list in zip(samplers, batches, strict=True):
        assert len(sampler) == len(rank_list)
        assert all(len(batch) <= batch_size for batch in rank_list)
    return batches


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("num_windows", [1, 10, 97, 256])
def test_evaluation_shards_cover_every_window_exactly_once(world_size, num_windows):
    batches = rank_batches(num_windows, 16, world_size, shuffle=False, even_shards=False)
    # A rank may hold no windows at all (fewer windows than ranks): it then yields no batch.
    seen = torch.cat([batch for rank_list in batches for batch in rank_list])
    assert sorted(seen.tolist()) == list(range(num_windows))
    # Contiguous, ordered shards: concatenated by rank they are the windows in order.
    assert seen.tolist() == list(range(num_windows))


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_training_shards_are_even_complete_and_reshuffled(world_size):
    num_windows, batch_size = 100, 8
    samplers = [
        WindowBatchSampler(num_windows, batch_size, shuffle=True, seed=5, rank=rank, world_size=world_size)
        for rank in range(world_size)
    ]
    orders = []
    for epoch in range(3):
        for sampler in samplers:
            sampler.set_epoch(epoch)
        shards = [torch.cat(list(sampler)) for sampler in samplers]
        assert len({len(shard) for shard in shards}) == 1, "ranks must take the same number of steps"
        assert len({len(sampler) for sampler in samplers}) == 1
        seen = torch.cat(shards)
        counts = torch.bincount(seen, minlength=num_windows)
        assert (counts >= 1).all(), "every window is trained on every epoch"
        assert counts.sum() - num_windows == len(seen) - num_windows < world_size
        if world_size == 1:
            assert (counts == 1).all()
        orders.append(seen.tolist())
        # The same epoch gives the same order again (every rank computes it independently).
        assert torch.cat([torch.cat(list(sampler)) for sampler in samplers]).tolist() == orders[-1]
    assert orders[0] != orders[1] != orders[2] != orders[0]


def test_datamodule_epoch_yields_every_training_window_once_with_reference_values():
    datamodule = ForecastDataModule(
        source={"kind": "synthetic", "num_series": 3, "num_rows": 200, "seed": 1},
        window_size=10,
        horizon=2,
        split={"train": 120, "val": 40, "test": 40},
        calendar_features=["hour", "workday"],
        padding_mask=True,
        batch_size=32,
    )
    datamodule.setup("fit")
    windows = datamodule.windows["train"]
    frame = datamodule.load_frame()
    # Each series scaled onto [-1, 1] by its own first 120 (training) rows, computed here.
    values = frame.values.reshape(3, 200)
    low, high = values[:, :120].min(axis=1, keepdims=True), values[:, :120].max(axis=1, keepdims=True)
    scaled = (-1 + 2 * (values - low) / (high - low)).astype(np.float32)
    extras = datamodule.extra_scaler.transform(datamodule.feature_table()).astype(np.float32)
    series = [(scaled[s], extras[frame.offsets[s] : frame.offsets[s + 1]]) for s in range(3)]
    loader = datamodule.train_dataloader()
    seen = []
    for batch in loader:
        assert isinstance(batch, dict) and batch["x"].shape[0] <= 32
        series_index = (batch["series_id"] - 1).tolist()
        steps = (batch["target_row"].numpy() - frame.offsets[series_index]).tolist()
        expected = reference_batch(series, list(zip(series_index, steps, strict=True)), 10, 2, True)
        np.testing.assert_allclose(batch["x"].numpy(), expected["x"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(batch["y"].numpy(), expected["y"], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(batch["target_row"].numpy(), expected["target_row"])
        seen.append(batch["target_row"])
    seen = torch.cat(seen)
    # Every training target row of every series exactly once: steps 1..118 (the horizon's second
    # step, 119, is the last training row), rows s * 200 + step of the frame.
    expected_rows = [s * 200 + step for s in range(3) for step in range(1, 119)]
    assert len(windows) == len(expected_rows)
    assert sorted(seen.tolist()) == expected_rows
    assert seen.tolist() != expected_rows, "training batches are shuffled"


def test_dataset_items_are_whole_batches():
    series = wide_series(random_arrays(20, 2, 1), 2)
    windows = make_windows(series, 4, split_pairs(series, 1, 1), 1, False)
    dataset = WindowDataset(windows)
    index = torch.tensor([3, 0, 7])
    batch = dataset[index]
    torch.testing.assert_close(batch["x"], windows.gather(index)["x"])
    assert len(dataset) == len(windows) == 19 * 2


def test_a_spawned_rank_releases_its_process_group_when_its_stage_ends(tmp_path, monkeypatch):
    """A gloo group left alive when a spawned rank exits can abort it after a finished fit ("terminate
    called without an active exception"): the rank destroys its group first. (The sharding of a
    spawned DDP run's epochs is checked on the accelerator sweep's DDP job, tests/test_ddp.py.)"""
    import torch.distributed as dist
    from pytorch_lightning.strategies.launchers import _MultiProcessingLauncher

    monkeypatch.setattr(dist, "barrier", lambda: None)  # the one rank has no other to wait for
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        spawned = _MultiProcessingLauncher.__new__(_MultiProcessingLauncher)
        trainer = types.SimpleNamespace(strategy=types.SimpleNamespace(launcher=spawned))
        ProcessGroupRelease().teardown(trainer, None, "fit")
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_the_process_group_is_released_after_every_other_teardown_hook(compose_train_cfg):
    # The default callbacks, logger and bar, as lstm-train builds them.
    _, _, trainer = build(compose_train_cfg("trainer.enable_progress_bar=true"))
    names = [type(callback).__name__ for callback in trainer.callbacks]
    after_release = trainer.callbacks[names.index(ProcessGroupRelease.__name__) + 1 :]
    # Lightning moves checkpoint callbacks to the end; they use no collective when tearing down.
    assert all(isinstance(callback, Checkpoint) for callback in after_release), names
