"""Quantile forecasts from any net that emits ``Q`` outputs per step: the levels, their order, the loss
and the point forecast. The net knows nothing of this; :class:`~lstm_forecast.models.module.ForecastModule`
and the evaluation code apply it to the raw ``[B, H, Q]`` outputs.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Sequence

import numpy as np
import torch

from lstm_forecast.errors import UserError

LOSSES = ("mse", "mae", "quantile")
MEDIAN = 0.5


def check_quantile_levels(levels: object) -> tuple[float, ...]:
    """``model.quantiles`` as a tuple of floats: a non-empty, strictly increasing list inside (0, 1)."""
    if not isinstance(levels, Sequence) or isinstance(levels, str) or not levels:
        raise UserError(
            f"model.quantiles must be a list of levels in (0, 1), e.g. [0.1,0.5,0.9]; got {levels!r}"
        )
    if not all(isinstance(q, numbers.Real) and not isinstance(q, bool) for q in levels):
        raise UserError(
            f"model.quantiles must hold numbers in (0, 1), e.g. [0.1,0.5,0.9]; got {list(levels)}"
        )
    outside = [q for q in levels if not 0 < q < 1]
    if outside:
        raise UserError(
            f"model.quantiles must lie strictly between 0 and 1; {outside} do not (got {list(levels)})"
        )
    if any(b <= a for a, b in itertools.pairwise(levels)):
        raise UserError(
            f"model.quantiles must be sorted without repeats, e.g. [0.1,0.5,0.9]; got {list(levels)}"
        )
    return tuple(float(q) for q in levels)


def monotone_quantiles(raw: torch.Tensor) -> torch.Tensor:
    """Non-crossing quantiles ``[..., Q]`` from raw outputs ``[..., Q]``: sorted along the last axis.

    Sorting (Chernozhukov, Fernandez-Val and Galichon's rearrangement) rather than "first quantile plus
    cumulative softplus increments": the net adds its window reference and highway to every output
    alike, so its outputs are levels, not increments; sorting leaves already ordered outputs exactly as
    they are and never increases the pinball loss of any target.
    """
    return torch.sort(raw, dim=-1).values


def quantile_outputs(output: torch.Tensor, levels: Sequence[float]) -> torch.Tensor:
    """What a model forecasts from its net's raw ``output`` (``[B, H]``, or ``[B, H, Q]``): unchanged
    for a point model (no ``levels``), non-crossing quantiles ``[B, H, Q]`` at ``levels`` for a quantile
    model. The one post-processing of every forecast: training, ``lstm-predict`` and exported files."""
    if not levels:
        return output  # [B, H]
    if output.dim() == 2:  # one level: the net's [B, H] convention for Q = 1
        output = output.unsqueeze(-1)  # [B, H, 1]
    return monotone_quantiles(output)  # [B, H, Q]


def pinball_loss(quantiles: torch.Tensor, target: torch.Tensor, levels: Sequence[float]) -> torch.Tensor:
    """Mean pinball (quantile) loss of ``quantiles [..., Q]`` at ``levels [Q]`` for ``target [...]``.

    Per element ``max(q (y - f), (q - 1) (y - f))``, averaged over every element and level.
    """
    tau = torch.as_tensor(levels, dtype=quantiles.dtype, device=quantiles.device)  # [Q]
    error = target.unsqueeze(-1) - quantiles  # [..., Q]
    return torch.maximum(tau * error, (tau - 1) * error).mean()


def point_forecast(
    quantiles: torch.Tensor | np.ndarray, levels: Sequence[float]
) -> torch.Tensor | np.ndarray:
    """The point forecast ``[...]`` of ``quantiles [..., Q]``: the median when 0.5 is a level (what the
    absolute error rewards), else the mean of the quantiles (a quadrature of the mean of the
    distribution, what the squared error rewards)."""
    if MEDIAN in levels:
        return quantiles[..., list(levels).index(MEDIAN)]
    return quantiles.mean(-1) if isinstance(quantiles, torch.Tensor) else quantiles.mean(axis=-1)
