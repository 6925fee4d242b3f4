"""``lstm-evaluate``: recompute the test metrics from a checkpoint alone.

Examples
--------
    lstm-evaluate run=outputs/runs/train/<time>
    lstm-evaluate run=outputs/runs/train/<time> data.source.path=other.csv split=val
"""

from __future__ import annotations

from omegaconf import DictConfig

from lstm_forecast.cli.app import hydra_app


@hydra_app("evaluate")
def main(cfg: DictConfig) -> None:
    # Imported when a run starts, not at start-up: --help, --cfg job and a rejected override answer
    # without loading torch and Lightning.
    from lstm_forecast.inference.evaluate import evaluate

    evaluate(cfg)


if __name__ == "__main__":
    main()
