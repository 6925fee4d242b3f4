"""The Python API: :class:`~lstm_forecast.api.forecaster.Forecaster` on pandas DataFrames."""

from lstm_forecast.api.forecaster import Forecaster

__all__ = ["Forecaster"]
