"""Run a network over a window set in whole batches, on one device."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lstm_forecast.data.windows import Windows


@dataclass(frozen=True)
class WindowForecasts:
    """Forecasts of every window of a set, in window order.

    Attributes
    ----------
    prediction : ndarray
        ``[N, H]`` scaled forecasts.
    target : ndarray or None
        ``[N, H]`` scaled actuals (None for windows past the data).
    last_value : ndarray
        ``[N]`` scaled value at the window's last step (what persistence predicts).
    series_index : ndarray
        ``[N]`` series of each window, from 0.
    target_row : ndarray
        ``[N]`` data row of the first forecast step.
    """

    prediction: np.ndarray
    target: np.ndarray | None
    last_value: np.ndarray
    series_index: np.ndarray
    target_row: np.ndarray


@torch.no_grad()
def predict_windows(
    net: nn.Module,
    windows: Windows,
    batch_size: int = 1024,
    device: torch.device | str | None = None,
    index: torch.Tensor | None = None,
) -> WindowForecasts:
    """Forecast every window of ``windows`` once, in order, with ``net`` in eval mode.

    ``index [N]`` (window indices) restricts the forecasts to those windows, in that order, e.g. the
    strided origins of a backtest.
    """
    device = torch.device(device) if device is not None else next(net.parameters()).device
    was_training = net.training
    net.eval()
    chunks: dict[str, list[torch.Tensor]] = {
        "prediction": [],
        "target": [],
        "last_value": [],
        "series": [],
        "row": [],
    }
    try:
        index = torch.arange(len(windows)) if index is None else index
        for chunk in torch.split(index, batch_size):
            batch = windows.gather(chunk)
            x = batch["x"].to(device)
            static = batch["static"].to(device) if "static" in batch else None
            future = batch["x_future"].to(device) if "x_future" in batch else None
            chunks["prediction"].append(net(x, batch["series_id"].to(device), static, future).float().cpu())
            chunks["last_value"].append(batch["x"][:, -1, -1].cpu())
            chunks["series"].append(batch["series_id"].cpu() - 1)
            chunks["row"].append(batch["target_row"].cpu())
            if "y" in batch:
                chunks["target"].append(batch["y"].cpu())
    finally:
        net.train(was_training)

    def stack(name: str) -> np.ndarray:
        return torch.cat(chunks[name]).numpy() if chunks[name] else np.empty(0)

    return WindowForecasts(
        prediction=stack("prediction").reshape(len(index), -1),
        target=stack("target").reshape(len(index), -1) if chunks["target"] else None,
        last_value=stack("last_value"),
        series_index=stack("series"),
        target_row=stack("row"),
    )
