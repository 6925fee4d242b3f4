"""``lstm-predict``: forecasts in the data's units from a checkpoint alone.

Examples
--------
    lstm-predict run=outputs/runs/train/<time> data.source.path=new.csv
    lstm-predict run=outputs/runs/train/<time> horizon=24 future.path=future_extras.csv
"""

from __future__ import annotations

from omegaconf import DictConfig

from lstm_forecast.cli.app import hydra_app


@hydra_app("predict")
def main(cfg: DictConfig) -> None:
    # Imported when a run starts, not at start-up: --help, --cfg job and a rejected override answer
    # without loading torch and Lightning.
    from lstm_forecast.inference.predict import predict

    predict(cfg)


if __name__ == "__main__":
    main()
