"""lstm-forecast: many time series, one shared embedding + bidirectional-LSTM network."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lstm-forecast")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
