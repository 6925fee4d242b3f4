"""The batched gather against straightforward per-sample references, and the rank shards.

The references below are written the slow, obvious way (one window at a time, explicit row
arithmetic), so they share no code with :meth:`WideWindows.gather`.
"""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.windows import (
    PaddedArrays,
    WideWindows,
    WindowBatchSampler,
    WindowDataset,
    seed_arrays,
)
from lstm_forecast.models.module import ForecastModule


def random_arrays(num_rows: int, num_series: int, num_extras: int, seed: int = 0) -> np.ndarray:
    """``[rows, series + extras]`` float32 in [-1, 1], series columns first."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (num_rows, num_series + num_extras)).astype(np.float32)


def reference_window(
    source: np.ndarray, num_series: int, target_row: int, series: int, window_size: int, padding_mask: bool
) -> np.ndarray:
    """One window ``[W, F]`` built step by step: extras, (mask), value; zeros before row 0."""
    num_extras = source.shape[1] - num_series
    window = np.zeros((window_size, num_extras + int(padding_mask) + 1), dtype=np.float32)
    for step in range(window_size):
        row = target_row - window_size + step
        if row < 0:
            continue
        window[step, :num_extras] = source[row, num_series:]
        if padding_mask:
            window[step, num_extras] = 1.0
        window[step, -1] = source[row, series]
    return window


def reference_batch(
    source: np.ndarray,
    num_series: int,
    first_target: int,
    index: np.ndarray,
    window_size: int,
    horizon: int,
    padding_mask: bool,
) -> dict[str, np.ndarray]:
    """The windows ``index`` one at a time, the way a per-sample ``__getitem__`` would."""
    xs, ys, series_ids, target_rows = [], [], [], []
    for i in index:
        target_row, series = first_target + int(i) // num_series, int(i) % num_series
        xs.append(reference_window(source, num_series, target_row, series, window_size, padding_mask))
        ys.append(source[target_row : target_row + horizon, series])
        series_ids.append(series + 1)
        target_rows.append(target_row)
    return {
        "x": np.stack(xs),
        "y": np.stack(ys),
        "series_id": np.array(series_ids),
        "target_row": np.array(target_rows),
    }


def make_windows(
    source: np.ndarray, num_series: int, window_size: int, first_target: int, horizon: int, padding_mask: bool
) -> WideWindows:
    tensor = torch.from_numpy(source)
    arrays = PaddedArrays.from_arrays(tensor[:, :num_series], tensor[:, num_series:], window_size)
    num_targets = source.shape[0] - first_target - horizon + 1
    return WideWindows(arrays, first_target, num_targets, horizon, padding_mask)


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
    windows = make_windows(source, num_series, window_size, first_target, horizon, padding_mask)
    order = torch.randperm(len(windows), generator=torch.Generator().manual_seed(1))
    for index in (torch.arange(len(windows)), order[:17], order[-1:]):
        batch = windows.gather(index)
        expected = reference_batch(
            source, num_series, first_target, index.numpy(), window_size, horizon, padding_mask
        )
        assert batch["x"].shape == (len(index), window_size, windows.num_features)
        np.testing.assert_array_equal(batch["x"].numpy(), expected["x"])
        np.testing.assert_array_equal(batch["y"].numpy(), expected["y"])
        np.testing.assert_array_equal(batch["series_id"].numpy(), expected["series_id"])
        np.testing.assert_array_equal(batch["target_row"].numpy(), expected["target_row"])


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
    x_train, y_train, x_test, y_test = seed_arrays(source, window_size, num_series, split_ratio=0.75)
    expected_x, expected_y = blog_training_arrays(source, num_series, window_size, num_train=30)
    np.testing.assert_array_equal(x_train, expected_x)
    np.testing.assert_array_equal(y_train, expected_y)
    # Test samples forecast rows 30..39 with full windows of the rows just before them.
    for sample in range(len(x_test)):
        target_row, series = 30 + sample // num_series, sample % num_series
        window = reference_window(source, num_series, target_row, series, window_size, padding_mask=False)
        np.testing.assert_array_equal(x_test[sample, :, 1:], window)
        assert (x_test[sample, :, 0] == series + 1).all()
        assert y_test[sample, 0] == source[target_row, series]
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
    num_series = datamodule.num_series
    scaled = datamodule.scaler.transform(datamodule.feature_table()).astype(np.float32)
    loader = datamodule.train_dataloader()
    seen = []
    for batch in loader:
        assert isinstance(batch, dict) and batch["x"].shape[0] <= 32
        keys = (batch["target_row"] - windows.first_target) * num_series + batch["series_id"] - 1
        expected = reference_batch(scaled, num_series, windows.first_target, keys.numpy(), 10, 2, True)
        np.testing.assert_allclose(batch["x"].numpy(), expected["x"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(batch["y"].numpy(), expected["y"], rtol=0, atol=1e-6)
        seen.append(keys)
    seen = torch.cat(seen)
    assert sorted(seen.tolist()) == list(range(len(windows)))
    assert seen.tolist() != list(range(len(windows))), "training batches are shuffled"


def test_dataset_items_are_whole_batches():
    source = random_arrays(20, 2, 1)
    windows = make_windows(source, 2, 4, 1, 1, False)
    dataset = WindowDataset(windows)
    index = torch.tensor([3, 0, 7])
    batch = dataset[index]
    torch.testing.assert_close(batch["x"], windows.gather(index)["x"])
    assert len(dataset) == len(windows) == 19 * 2


class BatchRecorder(pl.Callback):
    """Writes the windows each rank trained and validated on, per epoch, to ``folder``."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.seen: dict[str, list[torch.Tensor]] = {"train": [], "val": []}

    def _record(self, split: str, trainer: pl.Trainer, batch: dict[str, torch.Tensor]) -> None:
        windows = trainer.datamodule.windows[split]
        keys = (batch["target_row"] - windows.first_target) * windows.num_series + batch["series_id"] - 1
        self.seen[split].append(keys.cpu())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._record("train", trainer, batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._record("val", trainer, batch)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        for split, batches in self.seen.items():
            path = f"{self.folder}/{split}_epoch{trainer.current_epoch}_rank{trainer.global_rank}.pt"
            torch.save(torch.cat(batches), path)
        self.seen = {"train": [], "val": []}


@pytest.mark.slow
@pytest.mark.ddp
def test_ddp_ranks_train_on_their_reshuffled_share_and_validate_every_window_once(tmp_path):
    datamodule = ForecastDataModule(
        source={"kind": "synthetic", "num_series": 3, "num_rows": 160, "seed": 2},
        window_size=8,
        split={"train": 100, "val": 30, "test": 30},
        batch_size=32,
        eval_batch_size=16,
    )
    model = ForecastModule(
        3, datamodule.num_features, net={"num_units": 4, "embedding_dim": 2, "dense_size": 4}
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=2,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[BatchRecorder(str(tmp_path))],
    )
    trainer.fit(model, datamodule=datamodule)
    num_train, num_val = 99 * 3, 30 * 3
    epochs = []
    for epoch in range(2):
        train = [torch.load(tmp_path / f"train_epoch{epoch}_rank{rank}.pt") for rank in range(2)]
        val = [torch.load(tmp_path / f"val_epoch{epoch}_rank{rank}.pt") for rank in range(2)]
        assert len(train[0]) == len(train[1]) == -(-num_train // 2)
        assert set(torch.cat(train).tolist()) == set(range(num_train))
        assert sorted(torch.cat(val).tolist()) == list(range(num_val))
        epochs.append(train[0].tolist())
    assert epochs[0] != epochs[1], "training shards are reshuffled every epoch"
