"""``lstm-export``: a checkpoint as an ONNX or TorchScript file forecasting in original units.

Examples
--------
    lstm-export run=outputs/runs/train/<time>
    lstm-export ckpt_path=outputs/runs/train/<time>/checkpoints/last.ckpt format=torchscript
"""

from __future__ import annotations

from omegaconf import DictConfig

from lstm_forecast.cli.app import hydra_app


@hydra_app("export")
def main(cfg: DictConfig) -> None:
    # Imported when a run starts, not at start-up: --help, --cfg job and a rejected override answer
    # without loading torch and Lightning.
    from lstm_forecast.inference.export import export

    export(cfg)


if __name__ == "__main__":
    main()
