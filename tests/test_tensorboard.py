"""TensorBoard inspection: real tiny runs, event files read back with TensorBoard's own readers."""

from __future__ import annotations

import dataclasses
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from google.protobuf import text_format
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

from conftest import TINY_OVERRIDES, assert_one_line_error, run_app, tiny_cli_args
from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.report import score_models
from lstm_forecast.evaluation.window_forecasts import predict_windows
from lstm_forecast.models.checkpoint import read_checkpoint
from lstm_forecast.models.net import EmbeddingBiLSTM
from lstm_forecast.training.callbacks import GradNormMonitor
from lstm_forecast.training.figures import (
    ForecastFigures,
    figure_to_rgb,
    forecast_figure,
    per_series_mse_z,
    select_windows,
    series_error_figure,
)
from lstm_forecast.training.run import train

SERIES = ["series_1", "series_2", "series_3"]
EPOCHS = 2
# The tiny run with its forecast-figure setting left out, for configs without that callback.
TINY_WITHOUT_FIGURES = [o for o in TINY_OVERRIDES if not o.startswith("callbacks.forecast_figures.")]
# Target rows of the tiny data's training split (round(0.7 * 240), the first row is warm-up only) x series.
TRAIN_WINDOWS = (168 - 1) * 3
PER_EPOCH_TAGS = (
    "train/loss",
    "val/loss",
    "lr-Adam",
    "train/grad_norm",
    "train/grad_norm_max",
    "time/epoch_s",
    "time/val_s",
    "time/train_windows_per_s",
)
INSPECTION_TAGS = ("train/grad_norm", "time/epoch_s", "lr-Adam")
HPARAM_METRICS = {"val/loss_best", "val/mse_z", "test/mse_z", "test/mae_z"}


def event_files(log_dir: Path) -> list[Path]:
    return sorted(log_dir.rglob("events.out.tfevents.*"))


def accumulator(log_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def summary_tags(log_dir: Path) -> list[str]:
    """Every summary value's tag in the event files, in order, repeats included."""
    return [
        value.tag
        for path in event_files(log_dir)
        for event in EventFileLoader(str(path)).Load()
        for value in event.summary.value
    ]


def session_hparams(acc: EventAccumulator) -> dict[str, object]:
    content = acc.PluginTagToContent(hparams_metadata.PLUGIN_NAME)[hparams_metadata.SESSION_START_INFO_TAG]
    info = hparams_metadata.parse_session_start_info_plugin_data(content)
    return {
        name: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
        for name, value in info.hparams.items()
    }


def experiment_metrics(acc: EventAccumulator) -> set[str]:
    content = acc.PluginTagToContent(hparams_metadata.PLUGIN_NAME)[hparams_metadata.EXPERIMENT_TAG]
    experiment = hparams_metadata.parse_experiment_plugin_data(content)
    return {info.name.tag for info in experiment.metric_infos}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real training run through the CLI, figures every epoch."""
    run_dir = tmp_path_factory.mktemp("tensorboard_run")
    result = run_app(
        "train",
        *tiny_cli_args(
            run_dir,
            f"trainer.max_epochs={EPOCHS}",
            "callbacks.forecast_figures.every_n_epochs=1",
            "callbacks.forecast_figures.num_series=3",  # the default
        ),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_one_event_file_holds_the_whole_run(tiny_run: Path) -> None:
    # Lightning closes its loggers when fit returns; the run-end writes must not open a second file.
    assert len(event_files(tiny_run)) == 1


@pytest.mark.slow
def test_per_epoch_scalars(tiny_run: Path) -> None:
    acc = accumulator(tiny_run / "tensorboard")
    scalars = {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}
    for tag in PER_EPOCH_TAGS:
        assert len(scalars[tag]) == EPOCHS, tag
        assert all(math.isfinite(e.value) and e.value > 0 for e in scalars[tag]), (tag, scalars[tag])
    # Our epoch scalars sit at the same steps as Lightning's epoch losses.
    loss_steps = [e.step for e in scalars["train/loss"]]
    for tag in ("train/grad_norm", "time/epoch_s", "time/train_windows_per_s"):
        assert [e.step for e in scalars[tag]] == loss_steps, tag
    assert [e.value for e in scalars["lr-Adam"]] == pytest.approx([1e-3] * EPOCHS)
    for mean, largest in zip(scalars["train/grad_norm"], scalars["train/grad_norm_max"], strict=True):
        assert largest.value >= mean.value
    # Windows per second times the training part of the epoch is the number of training windows.
    for epoch, val, rate in zip(
        scalars["time/epoch_s"], scalars["time/val_s"], scalars["time/train_windows_per_s"], strict=True
    ):
        assert 0 < val.value < epoch.value
        assert rate.value * (epoch.value - val.value) == pytest.approx(TRAIN_WINDOWS, rel=0.01)
    assert "hp_metric" not in scalars


@pytest.mark.slow
def test_final_metrics_match_metrics_json(tiny_run: Path) -> None:
    acc = accumulator(tiny_run / "tensorboard")
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    last_epoch_step = acc.Scalars("train/loss")[-1].step
    for tag in (
        "test/mse_z",
        "test/mae_z",
        "test/mae_orig",
        "baseline/persistence/mse_z",
        "baseline/persistence/mae_z",
    ):
        events = acc.Scalars(tag)
        assert len(events) == 1, tag
        assert events[0].step > last_epoch_step
        assert events[0].value == pytest.approx(metrics[tag], rel=1e-6), tag
    assert acc.Scalars("val/loss_best")[-1].value == pytest.approx(metrics["val/loss_best"], rel=1e-6)


@pytest.mark.slow
def test_hparams_logged_once_with_final_metrics(tiny_run: Path) -> None:
    log_dir = tiny_run / "tensorboard"
    tags = summary_tags(log_dir)
    assert tags.count(hparams_metadata.SESSION_START_INFO_TAG) == 1
    assert tags.count(hparams_metadata.EXPERIMENT_TAG) == 1
    acc = accumulator(log_dir)
    hparams = session_hparams(acc)
    assert hparams["data.window_size"] == 12
    assert hparams["data.batch_size"] == 64
    assert hparams["model.net.num_units"] == 8
    assert hparams["model.net.embedding_dim"] == 3
    assert hparams["model.net.dropout"] == pytest.approx(0.2)
    assert hparams["model.lr"] == pytest.approx(1e-3)
    assert hparams["trainer.accelerator"] == "auto"
    assert hparams["trainer.precision"] == "32-true"
    # Keys set on the command line join them (what a sweep varies).
    assert hparams["callbacks.forecast_figures.every_n_epochs"] == 1
    assert not any(name.startswith("hydra") for name in hparams)
    assert experiment_metrics(acc) == HPARAM_METRICS
    for tag in HPARAM_METRICS:  # the HParams tab reads these scalars' last values
        assert acc.Scalars(tag), tag
    assert "model.lr" in (log_dir / "hparams.yaml").read_text()


def decoded(image_event) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(image_event.encoded_image_string)).convert("RGB"))


@pytest.mark.slow
def test_forecast_and_error_figures(tiny_run: Path) -> None:
    acc = accumulator(tiny_run / "tensorboard")
    images = set(acc.Tags()["images"])
    assert images == {f"forecast/{split}/{name}" for split in ("val", "test") for name in SERIES} | {
        "test/error_by_series"
    }
    loss_steps = [e.step for e in acc.Scalars("train/loss")]
    final_step = acc.Scalars("test/mse_z")[0].step
    for name in SERIES:
        assert len(acc.Images(f"forecast/val/{name}")) == EPOCHS  # every_n_epochs=1
        assert [e.step for e in acc.Images(f"forecast/test/{name}")] == [final_step]
    for tag in images:
        for event in acc.Images(tag):
            pixels = decoded(event)
            assert pixels.shape == (event.height, event.width, 3)
            assert event.width >= 400 and event.height >= 100, tag
            assert pixels.std() > 10, f"{tag} looks blank"
    assert max(e.step for e in acc.Images("forecast/val/series_1")) <= max(loss_steps) + 1


@pytest.mark.slow
def test_projector_holds_the_best_embeddings(tiny_run: Path) -> None:
    log_dir = tiny_run / "tensorboard"
    config = text_format.Parse((log_dir / "projector_config.pbtxt").read_text(), ProjectorConfig())
    assert len(config.embeddings) == 1
    embedding = config.embeddings[0]
    assert embedding.tensor_name.startswith("series_embedding")
    labels = (log_dir / embedding.metadata_path).read_text().splitlines()
    assert labels == SERIES
    vectors = np.loadtxt(log_dir / embedding.tensor_path, delimiter="\t", ndmin=2)
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    weights = read_checkpoint(metrics["best_checkpoint"])["state_dict"]["net.embedding.weight"]
    np.testing.assert_allclose(vectors, weights[1:].numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_inspection_switches_off(compose_train_cfg, tmp_path: Path) -> None:
    train(
        compose_train_cfg(
            *TINY_WITHOUT_FIGURES, "callbacks=training_only", "trainer.max_epochs=1", tiny=False
        )
    )
    log_dir = tmp_path / "tensorboard"
    assert len(event_files(log_dir)) == 1
    acc = accumulator(log_dir)
    assert acc.Tags()["images"] == []
    assert not set(INSPECTION_TAGS) & set(acc.Tags()["scalars"])
    assert {"train/loss", "val/loss", "test/mse_z"} <= set(acc.Tags()["scalars"])
    assert experiment_metrics(acc) == HPARAM_METRICS
    assert not (log_dir / "projector_config.pbtxt").exists()


@pytest.mark.slow
def test_single_callback_switches_off(compose_train_cfg, tmp_path: Path) -> None:
    train(
        compose_train_cfg(
            *TINY_WITHOUT_FIGURES,
            "callbacks.forecast_figures=null",
            "callbacks.grad_norm_monitor=null",
            "trainer.max_epochs=1",
            tiny=False,
        )
    )
    acc = accumulator(tmp_path / "tensorboard")
    assert acc.Tags()["images"] == ["test/error_by_series"]
    assert "train/grad_norm" not in acc.Tags()["scalars"]
    assert "time/epoch_s" in acc.Tags()["scalars"]


def test_lr_decay_schedule(compose_train_cfg, tmp_path: Path) -> None:
    # One constant epoch, then halved after each: Lightning's LearningRateMonitor logs the epoch's rate.
    train(compose_train_cfg("model.lr_decay=0.5", "model.lr_constant_epochs=1", "trainer.max_epochs=3"))
    rates = [e.value for e in accumulator(tmp_path / "tensorboard").Scalars("lr-Adam")]
    assert rates == pytest.approx([1e-3, 5e-4, 2.5e-4])


def test_runs_without_a_logger(compose_train_cfg, tmp_path: Path) -> None:
    metrics, _ = train(compose_train_cfg("logger=none", "trainer.max_epochs=1"))
    assert metrics["test/mse_z"] > 0
    assert "time/epoch_s" not in metrics  # timings go to TensorBoard only; here nothing is drawn
    assert not (tmp_path / "tensorboard").exists()


def test_unknown_series_name_is_a_user_error(compose_train_cfg) -> None:
    cfg = compose_train_cfg("callbacks.forecast_figures.series=[series_1,nope]")
    with pytest.raises(UserError, match=r"unknown series \['nope'\].*series_1, series_2, series_3"):
        train(cfg)


@pytest.mark.slow
def test_bad_figure_setting_is_one_line_error(tmp_path: Path) -> None:
    result = run_app("train", *tiny_cli_args(tmp_path / "run", "callbacks.forecast_figures.every_n_epochs=0"))
    assert_one_line_error(result, "forecast_figures.every_n_epochs", "positive integer")
    assert not (tmp_path / "run").exists()


def test_validation_figures_are_drawn_after_every_nth_epoch_as_lightning_counts() -> None:
    """Epochs N-1, 2N-1, ... counted from 0, as ``check_val_every_n_epoch``: a run shorter than N
    epochs has the test-period figures only."""
    drawn = [epoch for epoch in range(10) if ForecastFigures(every_n_epochs=5).draws_after(epoch)]
    assert drawn == [4, 9]
    assert all(ForecastFigures(every_n_epochs=1).draws_after(epoch) for epoch in range(EPOCHS))


@pytest.mark.slow
def test_sweep_jobs_compare_in_the_hparams_tab(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    result = run_app("train", "-m", *TINY_OVERRIDES, "trainer.max_epochs=1", "model.lr=0.01,0.002",
                     f"hydra.sweep.dir={sweep_dir}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    sessions = []
    for job in ("0", "1"):
        log_dir = sweep_dir / job / "tensorboard"
        assert len(event_files(log_dir)) == 1
        acc = accumulator(log_dir)
        assert experiment_metrics(acc) == HPARAM_METRICS
        sessions.append(session_hparams(acc))
    assert sorted(s["model.lr"] for s in sessions) == pytest.approx([0.002, 0.01])
    assert sessions[0].keys() == sessions[1].keys()


# --------------------------------------------------------------------------------------------- figure pieces
def tiny_datamodule(horizon: int = 1) -> ForecastDataModule:
    datamodule = ForecastDataModule(
        source={"kind": "synthetic", "num_series": 3, "num_rows": 240}, window_size=12, horizon=horizon
    )
    datamodule.setup()
    return datamodule


def untrained_net(datamodule: ForecastDataModule) -> EmbeddingBiLSTM:
    torch.manual_seed(0)
    return EmbeddingBiLSTM(
        datamodule.num_series, datamodule.num_features, embedding_dim=3, num_units=8, dense_size=8,
        horizon=datamodule.horizon,
    )  # fmt: skip


def test_per_series_errors_average_to_the_overall_error() -> None:
    datamodule = tiny_datamodule()
    forecasts = predict_windows(untrained_net(datamodule), datamodule.windows["test"])
    scores = score_models(forecasts, datamodule, "test")
    overall = scores.metrics
    model, baseline = per_series_mse_z(scores, datamodule.series_names)
    assert model.shape == baseline.shape == (3,)
    # Every series has as many test windows, so the overall error is the mean of the series' errors.
    assert model.mean() == pytest.approx(overall["test/mse_z"], rel=1e-9)
    assert baseline.mean() == pytest.approx(overall["baseline/persistence/mse_z"], rel=1e-9)
    assert np.ptp(model) > 0


def test_forecast_figure_draws_original_units_for_each_horizon_end() -> None:
    datamodule = tiny_datamodule(horizon=3)
    forecasts = predict_windows(untrained_net(datamodule), datamodule.windows["val"])
    mine = select_windows(forecasts, np.flatnonzero(forecasts.series_index == 1))
    figure = forecast_figure(mine, datamodule, "series_2: validation, epoch 0", (6.0, 2.0), 50)
    axes = figure.axes[0]
    assert [line.get_label() for line in axes.lines] == [
        "actual",
        "forecast, 1 step ahead",
        "forecast, 3 steps ahead",
    ]
    actual = datamodule.load_frame().values[mine.target_row]  # rows of series_2 in the frame
    np.testing.assert_allclose(axes.lines[0].get_ydata(), actual, rtol=1e-4)
    timestamps = datamodule.timestamps
    assert axes.lines[2].get_xdata()[0] == timestamps[mine.target_row[0] + 2].to_datetime64()
    assert axes.get_title().startswith("series_2: validation, epoch 0")
    assert figure_to_rgb(figure).shape == (100, 300, 3)


def test_error_chart_shows_the_worst_series_first() -> None:
    names = [f"s{i}" for i in range(5)]
    model = np.array([0.1, 0.9, 0.3, 0.5, np.nan])
    figure = series_error_figure(names, model, np.full(5, 0.2), max_series=2, dpi=50)
    axes = figure.axes[0]
    ticks = sorted(axes.get_yticklabels(), key=lambda label: -label.get_position()[1])
    assert [label.get_text() for label in ticks] == ["s1", "s3"]
    assert "2 worst of 5" in axes.get_title()


def drawn_outside(figure) -> str | None:
    """Where a draw of ``figure`` puts ink outside it (its tight box beyond its edges), else None."""
    figure_to_rgb(figure)
    drawn = figure.get_tightbbox(figure.canvas.get_renderer()).transformed(figure.dpi_scale_trans)
    inside = figure.bbox.padded(0.5)
    return None if all(inside.contains(x, y) for x, y in drawn.corners()) else f"{drawn} beyond {inside}"


@pytest.mark.parametrize(("scale", "calibrated"), [(1.0, False), (-123456.7, False), (1e-4, True)])
def test_forecast_figure_texts_fit_inside_it_with_the_axes_filling_the_rest(scale, calibrated) -> None:
    datamodule = tiny_datamodule(horizon=3)
    original_units = datamodule.inverse_values
    datamodule.inverse_values = lambda values, series: original_units(values, series) * scale
    forecasts = predict_windows(untrained_net(datamodule), datamodule.windows["val"])
    mine = select_windows(forecasts, np.flatnonzero(forecasts.series_index == 0))
    if calibrated:  # an interval band, and its coverage over time on a right-hand axis
        mine = dataclasses.replace(mine, intervals={0.95: (mine.prediction - 0.1, mine.prediction + 0.1)})
    figure = forecast_figure(mine, datamodule, "series_1: validation, epoch 12", (9.0, 3.0), 80)
    assert len(figure.axes) == (2 if calibrated else 1)
    assert drawn_outside(figure) is None
    placed = figure.axes[0].get_position()
    assert placed.width > 0.75 and placed.height > 0.6  # margins no wider than the texts need


def test_error_chart_texts_fit_inside_it_whatever_the_series_names() -> None:
    names = ["s1", "FOODS_3_090_CA_3_validation", "HOBBIES_1_001_WI_2_validation"]
    figure = series_error_figure(names, np.array([0.1, 2.5, 0.7]), np.full(3, 0.2), max_series=40, dpi=80)
    assert drawn_outside(figure) is None
    assert figure.axes[0].get_position().width > 0.5


class _Regression(pl.LightningModule):
    """y = x @ w on fixed random data: gradients of known size, no data module."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class _NormBeforeClipping(pl.Callback):
    """The reference: the norm of every gradient entry at once, where Lightning is about to clip."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        flat = torch.cat([p.grad.flatten() for p in pl_module.parameters()])
        self.norms.append(float(torch.linalg.vector_norm(flat)))


def test_grad_norm_monitor_logs_the_norm_before_clipping(tmp_path: Path) -> None:
    # Clipping at 1e-3 bites every step, so a norm taken after it (or of the wrong p) would differ.
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=generator)
    data = torch.utils.data.TensorDataset(x, 3 * x.sum(dim=1, keepdim=True))
    reference = _NormBeforeClipping()
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        callbacks=[GradNormMonitor(), reference],
        gradient_clip_val=1e-3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(_Regression(), torch.utils.data.DataLoader(data, batch_size=8))
    assert len(reference.norms) == 8 and min(reference.norms) > 1e-2
    logged = trainer.callback_metrics
    assert float(logged["train/grad_norm"]) == pytest.approx(np.mean(reference.norms), rel=1e-5)
    assert float(logged["train/grad_norm_max"]) == pytest.approx(max(reference.norms), rel=1e-5)
