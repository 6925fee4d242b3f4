"""Forecasts of series a model never saw in training (a new store or product of a long table).

An unseen series gets the **mean of the trained series' embeddings** (and of every other per-series
parameter: a per-series highway or window affine), and is scaled with its **own min-max** (the
checkpoint's ``data.scaler`` method) over the rows given for it: the only scale it has, as each
trained series' came from its own training rows. Both happen in memory on the checkpoint read for a
forecast, so training, checkpoints and the forecasts of trained series are unchanged, and every model
already trained can do it. Why the mean and not a learned "unknown" embedding: docs/predicting.md.

``unseen_series=refuse`` (``lstm-predict``) keeps the refusal. Wide data is refused as before: its
series are columns, whose order the checkpoint fixes.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.scaling import MinMaxScaler
from lstm_forecast.data.series_scaling import FittedScalers, series_scaler
from lstm_forecast.data.sources import source_table
from lstm_forecast.errors import UserError
from lstm_forecast.models.checkpoint import DATAMODULE_STATE_KEYS

log = logging.getLogger(__name__)

UNSEEN_CHOICES = ("mean_embedding", "refuse")
# Parameters of the networks with one row per series id (row 0: the reserved id), ``[S + 1, ...]``.
PER_SERIES_PARAMETERS = (
    "net.embedding.weight",
    "net.highway.weight",
    "net.highway.bias",
    "net.affine_log_gain",
    "net.affine_shift",
)
# The fitted scalers' per-series entries, and what an unseen series holds until its rows are read.
PLACEHOLDERS = {
    "series_mean": 0.0,
    "series_std": 1.0,
    "series_train_rows": 0,
    "series_min": 0.0,
    "series_max": 0.0,
}


def check_unseen_choice(choice: object) -> str:
    if choice not in UNSEEN_CHOICES:
        raise UserError(f"unseen_series must be one of {list(UNSEEN_CHOICES)}, got {choice!r}")
    return str(choice)


def unseen_names(checkpoint: dict[str, Any], source: dict[str, Any], table: pd.DataFrame | None) -> list[str]:
    """Sorted names of the long data's series (``source``: the data source options, ``table``: its rows
    in memory) that the checkpoint was not trained on; only the series column is read. Empty for other
    sources."""
    if source.get("kind") != "long_file":
        return []
    column = str(source.get("series_column") or "series")
    rows, _ = source_table(source.get("path"), table, columns=[column])
    if column not in rows.columns:
        return []  # the data source's own read names the missing column
    state = next(checkpoint[key] for key in DATAMODULE_STATE_KEYS if key in checkpoint)
    trained = {str(name) for name in state["series_names"]}
    values = rows[column]
    if isinstance(values.dtype, pd.CategoricalDtype):  # the used codes' names, not a string per row
        used = np.unique(values.cat.codes.to_numpy())
        names = values.cat.categories[used[used >= 0]]
    else:
        names = pd.unique(values.dropna())  # distinct values first: a string per series, not per row
    return sorted({str(name) for name in names} - trained)


def with_unseen_series(checkpoint: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """A copy of ``checkpoint`` that knows the series ``names`` too: appended to its series (ids
    ``S + 1 ...``), with the mean of the trained series' rows in every per-series parameter, and
    placeholder scalers (unscaled until :func:`scale_unseen_series` reads their rows)."""
    if not names:
        return checkpoint
    out = dict(checkpoint)
    key = next(key for key in DATAMODULE_STATE_KEYS if key in checkpoint)
    state = dict(checkpoint[key])
    num_series, count = len(state["series_names"]), len(names)
    trained = state.get("series_train_rows", torch.ones(num_series)).numpy() > 0  # [S] series learned
    state["series_names"] = [*state["series_names"], *names]
    for name, fill in PLACEHOLDERS.items():
        if name in state:
            state[name] = torch.cat([state[name], torch.full((count,), fill, dtype=state[name].dtype)])
    state["scaler"] = {
        name: torch.cat([values, torch.zeros(count, dtype=values.dtype)])
        for name, values in state["scaler"].items()
    }
    out[key] = state
    weights = dict(checkpoint["state_dict"])
    rows = torch.from_numpy(np.flatnonzero(trained) + 1)  # ids of the trained series
    for name in PER_SERIES_PARAMETERS:
        if name in weights and weights[name].shape[0] == num_series + 1:
            mean = weights[name][rows].mean(dim=0, keepdim=True)  # [1, ...]
            weights[name] = torch.cat([weights[name], mean.expand(count, *mean.shape[1:])])
    out["state_dict"] = weights
    out["hyper_parameters"] = {
        **copy.deepcopy(checkpoint["hyper_parameters"]),
        "num_series": num_series + count,
    }
    return out


def scale_unseen_series(datamodule: ForecastDataModule, first: int) -> None:
    """Scale series ``first ..`` (the unseen ones, appended by :func:`with_unseen_series`) on all their
    own rows, so they forecast like trained series; the warning names them."""
    frame, fitted = datamodule.load_frame(), datamodule.fitted
    unseen = np.arange(first, frame.num_series)
    stats = np.zeros((4, len(unseen)))  # min, max, mean, std
    for position, s in enumerate(unseen):
        values = frame.values[frame.offsets[s] : frame.offsets[s + 1]]
        values = values[~np.isnan(values)]
        if len(values):
            stats[:, position] = values.min(), values.max(), values.mean(), values.std()
    scaler = series_scaler(datamodule.scaler_method, *stats)
    rows = frame.lengths[unseen].astype(np.int64)
    datamodule.fitted = replace(
        fitted,
        scaler=MinMaxScaler(
            np.concatenate([fitted.scaler.data_min[:first], scaler.data_min]),
            np.concatenate([fitted.scaler.data_range[:first], scaler.data_range]),
        ),
        **_appended(fitted, first, stats, rows),
    )
    names = [frame.series_names[s] for s in unseen]
    log.warning(
        "%d series unseen in training are forecast with the mean series embedding, each scaled on its own "
        "rows: %s%s (unseen_series=refuse refuses them)",
        len(names),
        names[:10],
        " ..." if len(names) > 10 else "",
    )


def _appended(
    fitted: FittedScalers, first: int, stats: np.ndarray, rows: np.ndarray
) -> dict[str, np.ndarray]:
    """The per-series statistics of the trained series (``:first``) followed by the unseen ones'."""
    out = {
        "series_mean": np.concatenate([fitted.series_mean[:first], stats[2]]),
        "series_std": np.concatenate([fitted.series_std[:first], np.where(stats[3] > 0, stats[3], 1.0)]),
        "series_train_rows": np.concatenate([fitted.series_train_rows[:first], rows]),
    }
    if fitted.series_min is not None and fitted.series_max is not None:
        out["series_min"] = np.concatenate([fitted.series_min[:first], stats[0]])
        out["series_max"] = np.concatenate([fitted.series_max[:first], stats[1]])
    return out
