"""``python -m lstm_forecast.export``: the app ``lstm-export`` (see :mod:`lstm_forecast.cli.export`)."""

from lstm_forecast.cli.export import main

if __name__ == "__main__":
    main()
