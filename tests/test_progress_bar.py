"""The terminal's progress bar: the same bar whatever else is installed, redrawn by time, not per batch."""

from __future__ import annotations

import pytest
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.callbacks.progress import tqdm_progress

from lstm_forecast.errors import UserError
from lstm_forecast.training.callbacks import ThrottledProgressBar
from lstm_forecast.training.run import build


def fit_counting_redraws(compose_train_cfg, monkeypatch, min_interval_s: float) -> tuple[list[int], int]:
    """Fit one epoch with the bar configured, as a user would, at ``min_interval_s``: the batch counts
    the training bar was redrawn at, and the epoch's batches."""
    cfg = compose_train_cfg(
        "trainer.enable_progress_bar=true",
        "data.batch_size=16",
        "trainer.max_epochs=1",
        "+callbacks.bar._target_=lstm_forecast.training.callbacks.ThrottledProgressBar",
        f"+callbacks.bar.min_interval_s={min_interval_s}",
    )
    redraws = []
    real_update = tqdm_progress._update_n

    def counting_update(bar, value):
        if bar.desc.startswith("Epoch"):
            redraws.append(value)
        real_update(bar, value)

    monkeypatch.setattr(tqdm_progress, "_update_n", counting_update)
    datamodule, model, trainer = build(cfg)
    trainer.fit(model, datamodule=datamodule)
    return redraws, trainer.num_training_batches


def test_within_its_interval_the_bar_is_redrawn_at_most_once_before_the_last_batch(
    compose_train_cfg, monkeypatch
):
    redraws, batches = fit_counting_redraws(compose_train_cfg, monkeypatch, min_interval_s=3600.0)
    assert batches >= 5
    # The last batch always; before it, at most the first (none here: the sanity check's bar drew last).
    assert redraws[-1] == batches
    assert len(redraws) <= 2


def test_a_zero_interval_redraws_every_batch(compose_train_cfg, monkeypatch):
    redraws, batches = fit_counting_redraws(compose_train_cfg, monkeypatch, min_interval_s=0.0)
    assert redraws == list(range(1, batches + 1))


def test_every_run_gets_the_throttled_bar_unless_it_configures_its_own_or_none(compose_train_cfg):
    _, _, trainer = build(compose_train_cfg("trainer.enable_progress_bar=true"))
    assert type(trainer.progress_bar_callback) is ThrottledProgressBar
    _, _, trainer = build(compose_train_cfg("trainer.enable_progress_bar=false"))
    assert trainer.progress_bar_callback is None
    rich = "+callbacks.bar._target_=pytorch_lightning.callbacks.RichProgressBar"
    _, _, trainer = build(compose_train_cfg("trainer.enable_progress_bar=true", rich))
    assert type(trainer.progress_bar_callback) is RichProgressBar


def test_a_negative_interval_is_refused():
    with pytest.raises(UserError, match="min_interval_s must be >= 0"):
        ThrottledProgressBar(min_interval_s=-1.0)
