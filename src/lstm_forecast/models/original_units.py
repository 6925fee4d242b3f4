"""A trained network with its fitted scalers folded in: windows in original units in, forecasts in
original units out (what ``lstm-export`` writes as ONNX or TorchScript).

The arithmetic is that of ``lstm-predict``: values and extra features are scaled in float64 with the
scalers fitted on the training rows (per series for the values, looked up by series id), cast to
float32 for the network, its output post-processed as every forecast is (a quantile model's sorted
into non-crossing quantiles, :func:`~lstm_forecast.models.quantiles.quantile_outputs`) and inverted in
float64 (a monotone map per series, so the order of the quantiles survives it).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lstm_forecast.data.scaling import HIGH, LOW, MinMaxScaler
from lstm_forecast.models.quantiles import quantile_outputs


class ScalerTable(nn.Module):
    """:class:`MinMaxScaler` as float64 buffers, so scaling is part of the exported graph.

    ``rows`` of the table are columns of the scaler; a table looked up by series id gets a row 0 in
    front (the reserved id), which scales everything to 0.
    """

    def __init__(self, scaler: MinMaxScaler, reserved_row: bool = False) -> None:
        super().__init__()
        data_min = np.asarray(scaler.data_min, dtype=np.float64)
        data_range = np.asarray(scaler.data_range, dtype=np.float64)
        if reserved_row:
            data_min, data_range = np.concatenate([[0.0], data_min]), np.concatenate([[0.0], data_range])
        constant = data_range == 0
        self.register_buffer("data_min", torch.from_numpy(data_min))  # [R]
        # A constant column scales to 0 and inverts to its minimum, as MinMaxScaler does.
        self.register_buffer("safe_range", torch.from_numpy(np.where(constant, 1.0, data_range)))  # [R]
        self.register_buffer("inverse_range", torch.from_numpy(np.where(constant, 0.0, data_range)))  # [R]
        self.register_buffer("constant", torch.from_numpy(constant))  # [R] bool

    def transform(self, data: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Scale float64 ``data [..., R]`` per column, or ``data [B, ...]`` with row ``rows[b]``."""
        data_min, safe_range, constant = self.data_min, self.safe_range, self.constant
        if rows is not None:  # [B] -> [B, 1, ...] against data [B, ...]
            shape = (-1,) + (1,) * (data.dim() - 1)
            data_min, safe_range = data_min[rows].view(shape), safe_range[rows].view(shape)
            constant = constant[rows].view(shape)
        scaled = LOW + (HIGH - LOW) * (data - data_min) / safe_range
        return torch.where(constant, torch.zeros_like(scaled), scaled)

    def inverse(self, scaled: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Invert :meth:`transform` of float64 ``scaled [B, ...]`` with row ``rows[b]`` of each."""
        shape = (-1,) + (1,) * (scaled.dim() - 1)
        data_min, inverse_range = self.data_min[rows].view(shape), self.inverse_range[rows].view(shape)
        return data_min + (scaled - LOW) / (HIGH - LOW) * inverse_range


class OriginalUnitsNet(nn.Module):
    """Any network of the ``net(x, series_id, static)`` contract, fed and read in original units.

    Parameters
    ----------
    net : nn.Module
        The trained network: ``x [B, W, F]`` scaled (extras, optional padding mask, value),
        ``series_id [B]``, optional ``static [B, K]`` -> scaled forecasts ``[B, H, ...]``.
    value_scaler : MinMaxScaler
        ``[S]`` the per-series value scaler; series id ``s`` uses column ``s - 1``.
    extra_scaler : MinMaxScaler
        ``[E]`` the extra features' scaler (user columns, then calendar features).
    padding_mask : bool
        The net was trained with a padding-mask feature; the windows given are full, so it is all ones.
    with_static : bool
        The net takes static category codes.
    quantile_levels : tuple of float
        The levels of a quantile model's last output axis (empty for a point model): its raw outputs
        are sorted, as :class:`~lstm_forecast.models.module.ForecastModule` sorts them.
    """

    def __init__(
        self,
        net: nn.Module,
        value_scaler: MinMaxScaler,
        extra_scaler: MinMaxScaler,
        padding_mask: bool = False,
        with_static: bool = False,
        quantile_levels: tuple[float, ...] = (),
    ) -> None:
        super().__init__()
        self.net = net.eval()
        self.values_table = ScalerTable(value_scaler, reserved_row=True)
        self.extras_table = ScalerTable(extra_scaler)
        self.num_extras = len(extra_scaler.data_min)
        self.padding_mask = padding_mask
        self.with_static = with_static
        self.quantile_levels = tuple(quantile_levels)

    def forward(self, values: torch.Tensor, series_id: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        """Forecast in original units.

        Parameters
        ----------
        values : Tensor
            ``[B, W]`` float64 the series' values, oldest first.
        series_id : Tensor
            ``[B]`` int64 series ids from 1.
        *rest : Tensor
            ``extras [B, W, E]`` float64 when the model has extra features, then ``static [B, K]``
            int64 when it has static columns, in that order.

        Returns
        -------
        Tensor
            ``[B, H]`` float64 forecasts of the steps after the window; ``[B, H, Q]`` for a quantile
            model, non-crossing, at levels ``quantile_levels``.
        """
        rest = list(rest)
        parts = []
        if self.num_extras:
            parts.append(self.extras_table.transform(rest.pop(0)).float())  # [B, W, E]
        if self.padding_mask:
            parts.append(torch.ones_like(values, dtype=torch.float32).unsqueeze(-1))  # [B, W, 1]
        parts.append(self.values_table.transform(values, series_id).float().unsqueeze(-1))  # [B, W, 1]
        x = torch.cat(parts, dim=-1)  # [B, W, F]
        static = (rest.pop(0),) if self.with_static else ()  # ([B, K],) or none
        raw = self.net(x, series_id, *static)  # [B, H] or [B, H, Q]
        scaled = quantile_outputs(raw, self.quantile_levels)  # [B, H] or [B, H, Q] sorted
        return self.values_table.inverse(scaled.double(), series_id)  # [B, H] or [B, H, Q]
