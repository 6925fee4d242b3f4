"""Reference forecasts scored on exactly the model's targets."""

from __future__ import annotations

import numpy as np

from lstm_forecast.evaluation.inference import WindowForecasts


def persistence(forecasts: WindowForecasts) -> np.ndarray:
    """Repeat the last observed value for every horizon step: ``[N, H]`` scaled."""
    horizon = forecasts.prediction.shape[1]
    return np.repeat(forecasts.last_value[:, None], horizon, axis=1)
