"""Score a network on a split of a datamodule: the model and its baselines on the same targets."""

from __future__ import annotations

import torch
from torch import nn

from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.evaluation.baselines import persistence
from lstm_forecast.evaluation.inference import WindowForecasts, predict_windows
from lstm_forecast.evaluation.metrics import forecast_metrics


def score_forecasts(
    forecasts: WindowForecasts, datamodule: ForecastDataModule, prefix: str
) -> dict[str, float]:
    """Metrics of the model (``{prefix}/...``) and of persistence (``baseline/persistence/...``)."""
    assert forecasts.target is not None, "scoring needs windows with targets"

    def score(prediction):
        return forecast_metrics(
            prediction,
            forecasts.target,
            forecasts.series_index,
            datamodule.inverse_values,
            datamodule.z_normalise,
        )

    metrics = {f"{prefix}/{name}": value for name, value in score(forecasts.prediction).items()}
    metrics.update({f"baseline/persistence/{k}": v for k, v in score(persistence(forecasts)).items()})
    metrics[f"{prefix}/num_targets"] = int(forecasts.target.size)
    return metrics


def evaluate_split(
    net: nn.Module,
    datamodule: ForecastDataModule,
    split: str = "test",
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Forecast every window of ``split`` once, on one device, and score it."""
    datamodule.setup("test")
    forecasts = predict_windows(net, datamodule.windows[split], datamodule.eval_batch_size, device)
    return score_forecasts(forecasts, datamodule, split)
