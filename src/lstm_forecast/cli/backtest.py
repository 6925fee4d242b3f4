"""``lstm-backtest``: rolling-origin backtest of a checkpoint, optionally refitting it as it goes.

Examples
--------
    lstm-backtest run=outputs/runs/train/<time>
    lstm-backtest run=outputs/runs/train/<time> split=val stride=24
    lstm-backtest run=outputs/runs/train/<time> split=all start=2018-01-01 end="2018-02-28 23:00"
    lstm-backtest run=outputs/runs/train/<time> horizon=24 stride=24 refit_every=2
"""

from __future__ import annotations

from omegaconf import DictConfig

from lstm_forecast.cli.app import hydra_app


@hydra_app("backtest")
def main(cfg: DictConfig) -> None:
    # Imported when a run starts, not at start-up: --help, --cfg job and a rejected override answer
    # without loading torch and Lightning.
    from lstm_forecast.inference.backtest import backtest
    from lstm_forecast.training.refit import refit_checkpoint

    backtest(cfg, refit=refit_checkpoint)


if __name__ == "__main__":
    main()
