"""``lstm-export``: a checkpoint as one ONNX or TorchScript file that forecasts in original units.

The file holds the network with its fitted scalers folded in (:class:`OriginalUnitsNet`), so a caller
without this package passes the last ``window_size`` values of a series, its id and the extra features
of those steps, and reads forecasts in the data's units. ``model.json`` beside it says what goes in:
input names, shapes (the batch is dynamic), dtypes, the extra features' order, how calendar features
are encoded, and the series ids. Only the checkpoint is read, never the data.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from lstm_forecast.data.calendar import CALENDAR_ENCODING
from lstm_forecast.data.series_scaling import FittedScalers
from lstm_forecast.errors import UserError
from lstm_forecast.files import write_atomic, write_json
from lstm_forecast.inference.checkpoints import checkpoint_path, datamodule_state
from lstm_forecast.models.checkpoint import module_from_checkpoint, read_checkpoint
from lstm_forecast.models.original_units import OriginalUnitsNet

log = logging.getLogger(__name__)

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
SPEC_FILE = "model.json"
OUTPUT_NAME = "forecast"
# ONNX opset of the graph: onnxruntime 1.17+ runs it (LSTM, Gather, Where are all older than it).
ONNX_OPSET = 17


def input_specs(window: int, num_extras: int, num_static: int) -> list[dict[str, Any]]:
    """The exported model's inputs, in call order (``extras`` and ``static`` only when the model has them)."""
    specs = [
        {
            "name": "values",
            "shape": ["batch", window],
            "dtype": "float64",
            "meaning": "the series' last window_size values, oldest first, original units",
        },
        {"name": "series_id", "shape": ["batch"], "dtype": "int64", "meaning": "the series' id (series_ids)"},
    ]
    if num_extras:
        specs.append(
            {
                "name": "extras",
                "shape": ["batch", window, num_extras],
                "dtype": "float64",
                "meaning": "the extra features of the same steps, in extra_features order, original units",
            }
        )
    if num_static:
        specs.append(
            {
                "name": "static",
                "shape": ["batch", num_static],
                "dtype": "int64",
                "meaning": "the series' code per static column (static_codes; 0: a label unseen in training)",
            }
        )
    return specs


def model_spec(
    checkpoint: dict[str, Any], output_shape: list[Any], quantile_levels: tuple[float, ...] = ()
) -> dict[str, Any]:
    """What a caller needs to feed the exported model, and what comes out (written as ``model.json``);
    ``quantile_levels``: a quantile model's levels, the output's last axis."""
    hparams, state = checkpoint["datamodule_hyper_parameters"], datamodule_state(checkpoint)
    fitted = FittedScalers.from_state_dict(state)
    series_names = [str(name) for name in state["series_names"]]
    features = [str(name) for name in state["feature_names"]]
    calendar = list(hparams.get("calendar_features") or [])
    static_names = [str(name) for name in state.get("static_names", [])]
    scaled = fitted.series_train_rows > 0  # a series without training rows has no scale: no forecasts
    spec = {
        "inputs": input_specs(int(hparams["window_size"]), len(features), len(static_names)),
        "outputs": [
            {
                "name": OUTPUT_NAME,
                "shape": output_shape,
                "dtype": "float64",
                "meaning": "forecasts of steps 1..horizon after the window (axis 1), original units"
                + (", at quantile_levels (axis 2, increasing, never crossing)" if quantile_levels else ""),
            }
        ],
        "quantile_levels": [float(level) for level in quantile_levels],
        "window_size": int(hparams["window_size"]),
        "horizon": int(output_shape[1]),
        "freq": str(state.get("freq") or ""),
        "extra_features": features,
        "user_features": features[: len(features) - len(calendar)],
        "calendar_features": {name: CALENDAR_ENCODING[name] for name in calendar},
        "series_ids": {name: i + 1 for i, name in enumerate(series_names) if scaled[i]},
        "series_without_training_rows": [name for i, name in enumerate(series_names) if not scaled[i]],
        "static_codes": {
            column: {str(label): code + 1 for code, label in enumerate(labels)}
            for column, labels in zip(static_names, state.get("static_vocabulary", []), strict=True)
        },
        "scaler": str(hparams.get("scaler", "minmax")),
    }
    training_range = fitted.training_range(spec["scaler"])
    if training_range is not None:
        spec["training_range"] = {
            name: [float(training_range[0][i]), float(training_range[1][i])]
            for i, name in enumerate(series_names)
            if scaled[i]
        }
    return spec


def exportable(checkpoint: dict[str, Any]) -> tuple[OriginalUnitsNet, tuple[torch.Tensor, ...]]:
    """The checkpoint's network in original units, on the CPU, and example inputs (a batch of 2)."""
    hparams, state = checkpoint["datamodule_hyper_parameters"], datamodule_state(checkpoint)
    fitted = FittedScalers.from_state_dict(state)
    static_names = list(state.get("static_names", []))
    module = module_from_checkpoint(checkpoint)
    model = OriginalUnitsNet(
        module.net,
        fitted.scaler,
        fitted.extra_scaler,
        padding_mask=bool(hparams.get("padding_mask", False)),
        with_static=bool(static_names),
        quantile_levels=module.quantile_levels,  # sorted as lstm-predict sorts them
    ).eval()
    window, batch = int(hparams["window_size"]), 2
    series_id = torch.from_numpy(np.flatnonzero(fitted.series_train_rows > 0)[:1] + 1).repeat(batch)
    example = [
        torch.from_numpy(fitted.scaler.data_min[series_id.numpy() - 1]).unsqueeze(1).repeat(1, window),
        series_id,
    ]
    if model.num_extras:
        example.append(torch.from_numpy(fitted.extra_scaler.data_min).expand(batch, window, -1).clone())
    if static_names:
        example.append(torch.zeros(batch, len(static_names), dtype=torch.int64))
    return model, tuple(example)


def write_onnx(
    model: OriginalUnitsNet, example: tuple[torch.Tensor, ...], names: list[str], path: Path
) -> None:
    """Export with torch's TorchScript-based ONNX exporter (``dynamo=False``): it needs the onnx
    package (torch writes the graph with it) and no other, so it works offline, and it is ~10x faster
    than the ``torch.export`` path, which needs ``onnxscript``. LSTMs become ONNX LSTM nodes; the
    batch axis of every input is dynamic."""
    batch_axes = {name: {0: "batch"} for name in [*names, OUTPUT_NAME]}
    with warnings.catch_warnings():
        # The legacy exporter's deprecation notice, and its caution about LSTM batch sizes (the
        # initial states are zeros sized from the input; tests run other batch sizes than the example).
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*batch_size other than 1.*")
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # see write_torchscript
        torch.onnx.export(
            model,
            example,
            str(path),
            input_names=names,
            output_names=[OUTPUT_NAME],
            dynamic_axes=batch_axes,
            opset_version=ONNX_OPSET,
            dynamo=False,
        )


def write_torchscript(model: OriginalUnitsNet, example: tuple[torch.Tensor, ...], path: Path) -> None:
    """Trace the model (no data-dependent control flow: shapes and options are fixed at trace time)."""
    with warnings.catch_warnings():
        # nn.LSTM compares its input's feature size and hidden state's shape with Python ``if``s: fixed
        # for a model (only the batch varies, which the tests run at other sizes than the example's).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, example)
    torch.jit.save(traced, str(path))


def export(cfg: DictConfig) -> dict[str, Path]:
    """Write the checkpoint (``ckpt_path`` or ``run``) as ``model.onnx`` or ``model.pt`` (``cfg.format``)
    and its ``model.json`` into the run folder.

    Returns
    -------
    dict
        Paths written: ``model`` and ``spec``.
    """
    fmt = str(cfg.get("format"))
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; use format=onnx or format=torchscript")
    if fmt == "onnx" and importlib.util.find_spec("onnx") is None:  # torch writes ONNX with it
        raise UserError(
            'format=onnx needs the onnx package: pip install -e ".[export]", or use format=torchscript'
        )
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    path = checkpoint_path(cfg)
    checkpoint = read_checkpoint(path)
    if checkpoint["hyper_parameters"].get("num_future_features"):
        raise UserError(
            f"{path} takes future-known features (data.future_columns), which lstm-export does not feed "
            "yet; export a model trained without data.future_columns, or forecast with lstm-predict"
        )
    model, example = exportable(checkpoint)
    with torch.no_grad():
        output_shape = ["batch", *model(*example).shape[1:]]
    spec = {
        "format": fmt,
        "model_file": f"model{FORMATS[fmt]}",
        "checkpoint": str(path.resolve()),
        **model_spec(checkpoint, output_shape, model.quantile_levels),
    }
    names = [item["name"] for item in spec["inputs"]]
    output_dir = Path(cfg.paths.output_dir)
    model_path = output_dir / spec["model_file"]
    if fmt == "onnx":
        write_atomic(model_path, lambda tmp: write_onnx(model, example, names, tmp))
    else:
        write_atomic(model_path, lambda tmp: write_torchscript(model, example, tmp))
    written = {"model": model_path, "spec": write_json(output_dir / SPEC_FILE, spec)}
    for name, written_path in written.items():
        log.info("%s: %s", name, written_path)
    return written
