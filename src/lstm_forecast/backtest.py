"""``python -m lstm_forecast.backtest``: the app ``lstm-backtest`` (see :mod:`lstm_forecast.cli.backtest`)."""

from lstm_forecast.cli.backtest import main

if __name__ == "__main__":
    main()
