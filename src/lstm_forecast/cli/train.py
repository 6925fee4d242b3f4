"""``lstm-train``: fit the embedding + BiLSTM forecaster, then score its best checkpoint.

Examples
--------
    python -m lstm_forecast.train
    python -m lstm_forecast.train data=etth1 data.source.path=../shared/data/ETTh1.csv
    python -m lstm_forecast.train -m data.window_size=24,48 model.net.num_units=32,64
    python -m lstm_forecast.train -m hparams_search=optuna
    python -m lstm_forecast.train trainer=ddp trainer.devices=4
"""

from __future__ import annotations

from omegaconf import DictConfig

from lstm_forecast.cli.app import hydra_app
from lstm_forecast.training.distributed import (
    refuse_unsupported_precision,
    spawn_ranks_in_local_multirun,
)


@hydra_app("train")
def main(cfg: DictConfig) -> float | None:
    # Imported when a run starts, not at start-up: --help, --cfg job and a rejected override answer
    # without loading torch and Lightning.
    from lstm_forecast.training.run import objective_value, torch_threads, train

    spawn_ranks_in_local_multirun(cfg.trainer)
    refuse_unsupported_precision(cfg.trainer)
    torch_threads(cfg)
    metrics, _ = train(cfg)
    return objective_value(cfg, metrics)


if __name__ == "__main__":
    main()
