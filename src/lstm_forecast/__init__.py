"""lstm-forecast: many time series, one shared embedding + bidirectional-LSTM network."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("lstm-forecast")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["Forecaster", "__version__"]


def __getattr__(name: str) -> Any:
    """``lstm_forecast.Forecaster`` imported on first use, so ``import lstm_forecast`` stays light
    (no torch, Lightning or Hydra until the API is used)."""
    if name == "Forecaster":
        from lstm_forecast.api import Forecaster

        return Forecaster
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
