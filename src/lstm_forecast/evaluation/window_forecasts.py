"""Run a network over a window set in whole batches, on one device."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from lstm_forecast.data.windows import Windows
from lstm_forecast.models.quantiles import point_forecast


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
    quantiles : ndarray or None
        ``[N, H, Q]`` scaled quantile forecasts of a quantile model (None for a point model).
    quantile_levels : tuple of float
        The ``Q`` levels of ``quantiles``.
    intervals : dict
        ``{level: (lo [N, H], hi [N, H])}`` scaled prediction intervals (see
        :mod:`lstm_forecast.evaluation.intervals`); empty until calibrated.
    """

    prediction: np.ndarray
    target: np.ndarray | None
    last_value: np.ndarray
    series_index: np.ndarray
    target_row: np.ndarray
    quantiles: np.ndarray | None = None
    quantile_levels: tuple[float, ...] = ()
    intervals: dict[float, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def subset(self, index: np.ndarray) -> WindowForecasts:
        """The forecasts of windows ``index [M]`` (positions in these forecasts)."""
        return WindowForecasts(
            prediction=self.prediction[index],
            target=None if self.target is None else self.target[index],
            last_value=self.last_value[index],
            series_index=self.series_index[index],
            target_row=self.target_row[index],
            quantiles=None if self.quantiles is None else self.quantiles[index],
            quantile_levels=self.quantile_levels,
            intervals={level: (lo[index], hi[index]) for level, (lo, hi) in self.intervals.items()},
        )


@torch.no_grad()
def predict_windows(
    net: nn.Module,
    windows: Windows,
    batch_size: int = 1024,
    device: torch.device | str | None = None,
    index: torch.Tensor | None = None,
) -> WindowForecasts:
    """Forecast every window of ``windows`` once, in order, with ``net`` in eval mode.

    ``net`` maps ``(x, series_id, static, x_future)`` to ``[B, H]`` point forecasts, or to ``[B, H, Q]``
    quantiles when it has non-empty ``quantile_levels`` (a quantile
    :class:`~lstm_forecast.models.module.ForecastModule`); the point forecast is then derived from them.
    ``index [N]`` (window indices) restricts the forecasts to those windows, in that order, e.g. the
    strided origins of a backtest.
    """
    levels = tuple(getattr(net, "quantile_levels", ()))
    device = torch.device(device) if device is not None else next(net.parameters()).device
    was_training = net.training
    net.eval()
    chunks: dict[str, list[torch.Tensor]] = {
        "prediction": [],
        "target": [],
        "last_value": [],
        "series": [],
        "row": [],
        "quantiles": [],
    }
    try:
        index = torch.arange(len(windows)) if index is None else index
        for chunk in torch.split(index, batch_size):
            batch = windows.gather(chunk)
            x = batch["x"].to(device)
            static = batch["static"].to(device) if "static" in batch else None
            future = batch["x_future"].to(device) if "x_future" in batch else None
            series_id = batch["series_id"].to(device)  # [B]
            output = net(x, series_id, static, future).float().cpu()  # [B, H] or [B, H, Q]
            if levels:
                chunks["quantiles"].append(output)
                output = point_forecast(output, levels)  # [B, H]
            chunks["prediction"].append(output)
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
        quantiles=stack("quantiles").reshape(len(index), -1, len(levels)) if levels else None,
        quantile_levels=levels,
    )
