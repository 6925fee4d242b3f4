"""``python -m lstm_forecast.summarize``: the app ``lstm-summarize`` (:mod:`lstm_forecast.cli.summarize`)."""

from lstm_forecast.cli.summarize import main

if __name__ == "__main__":
    main()
