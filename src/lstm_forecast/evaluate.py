"""``python -m lstm_forecast.evaluate``: the app ``lstm-evaluate`` (see :mod:`lstm_forecast.cli.evaluate`)."""

from lstm_forecast.cli.evaluate import main

if __name__ == "__main__":
    main()
