"""Scaling to [-1, 1], tanh's steep range, fitted on training rows only.

``minmax`` (the method) maps each column's training range onto [-1, 1]; ``standard`` maps
``[mean - std, mean + std]`` onto it, which is the z-score, the scale the published ETTh1 metrics use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

LOW, HIGH = -1.0, 1.0
SCALERS = ("minmax", "standard")


@dataclass(frozen=True)
class MinMaxScaler:
    """Per-column affine map of ``[data_min, data_min + data_range]`` onto ``[-1, 1]``.

    :meth:`fit` chooses that reference range: the training minimum and maximum (``minmax``), or the
    training mean minus and plus one standard deviation (``standard``, so scaled values are z-scores).

    A constant column (zero range) maps to 0, the middle of the range, and inverts to its value:
    no division by zero, no inf or NaN. Values outside the training range map outside [-1, 1]; they
    are not clipped, so the inverse is exact everywhere.

    Attributes
    ----------
    data_min, data_range : ndarray
        ``[C]`` float64 minimum and range per column, from the training rows.
    """

    data_min: np.ndarray
    data_range: np.ndarray

    @classmethod
    def fit(cls, data: np.ndarray, method: str = "minmax") -> MinMaxScaler:
        """Fit on ``data [N, C]`` (the training rows only) with ``method`` (``minmax`` or ``standard``)."""
        data = np.asarray(data, dtype=np.float64)
        if data.ndim != 2 or data.shape[0] == 0:
            raise ValueError(f"fit needs a non-empty [rows, columns] array, got shape {data.shape}")
        if method == "standard":
            return cls.from_mean_std(data.mean(axis=0), data.std(axis=0))
        if method != "minmax":
            raise ValueError(f"scaler method must be one of {list(SCALERS)}, got {method!r}")
        data_min = data.min(axis=0)
        return cls(data_min=data_min, data_range=data.max(axis=0) - data_min)

    @classmethod
    def from_mean_std(cls, mean: np.ndarray, std: np.ndarray) -> MinMaxScaler:
        """The z-score as this map: ``[mean - std, mean + std]`` onto [-1, 1] (zero std: constant)."""
        mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        return cls(data_min=mean - std, data_range=2.0 * std)

    def _params(self, column_index: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if column_index is None:
            data_min, data_range = self.data_min, self.data_range
        else:
            data_min, data_range = self.data_min[column_index], self.data_range[column_index]
        constant = data_range == 0
        return data_min, np.where(constant, 1.0, data_range), constant

    def transform(self, data: np.ndarray, column_index: np.ndarray | None = None) -> np.ndarray:
        """Scale ``data [..., C]``; or, with ``column_index`` (broadcastable to ``data``), each
        element with the parameters of the column it names."""
        data_min, safe_range, constant = self._params(column_index)
        scaled = LOW + (HIGH - LOW) * (np.asarray(data, dtype=np.float64) - data_min) / safe_range
        return np.where(constant, 0.5 * (LOW + HIGH), scaled)

    def inverse_transform(self, scaled: np.ndarray, column_index: np.ndarray | None = None) -> np.ndarray:
        """Invert :meth:`transform` (same ``column_index`` convention)."""
        data_min, safe_range, constant = self._params(column_index)
        data = data_min + (np.asarray(scaled, dtype=np.float64) - LOW) / (HIGH - LOW) * safe_range
        return np.where(constant, data_min, data)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only, so checkpoints load with ``torch.load(weights_only=True)``."""
        return {
            "data_min": torch.from_numpy(self.data_min.copy()),
            "data_range": torch.from_numpy(self.data_range.copy()),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> MinMaxScaler:
        return cls(
            data_min=state["data_min"].numpy().astype(np.float64),
            data_range=state["data_range"].numpy().astype(np.float64),
        )
