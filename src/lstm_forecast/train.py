"""``python -m lstm_forecast.train``: the app ``lstm-train`` (see :mod:`lstm_forecast.cli.train`)."""

from lstm_forecast.cli.train import main

if __name__ == "__main__":
    main()
