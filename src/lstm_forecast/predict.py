"""``python -m lstm_forecast.predict``: the app ``lstm-predict`` (see :mod:`lstm_forecast.cli.predict`)."""

from lstm_forecast.cli.predict import main

if __name__ == "__main__":
    main()
