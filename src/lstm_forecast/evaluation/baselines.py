"""Reference forecasts scored on exactly the model's targets.

All baselines work in the network's scaled units on the same windows as the model:

- persistence: the last observed value, repeated over the horizon;
- seasonal naive: the value one season before each target step (``period`` rows back, or a multiple
  of it for steps beyond one season), so it never uses a value after the forecast origin;
- ridge: one linear model of the window's values, shared by every series, fitted in closed form on
  the training windows, its regularisation chosen on the validation windows (a DLinear/NLinear-style
  linear baseline without the decomposition).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from lstm_forecast.data.windows import PaddedArrays, WideWindows
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.inference import WindowForecasts

DEFAULT_RIDGE_ALPHAS = (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def persistence(forecasts: WindowForecasts) -> np.ndarray:
    """Repeat the last observed value for every horizon step: ``[N, H]`` scaled."""
    horizon = forecasts.prediction.shape[1]
    return np.repeat(forecasts.last_value[:, None], horizon, axis=1)


def default_seasonal_period(timestamps: pd.DatetimeIndex) -> int:
    """The season length implied by the sampling interval.

    Sub-daily data: the steps in one day (24 for hourly, 96 for 15-minute data); daily: 7; weekly: 52;
    monthly: 12; quarterly: 4; anything coarser (or a single row): 1.
    """
    if len(timestamps) < 2:
        return 1
    step = pd.Series(timestamps).diff().median()
    day = pd.Timedelta(days=1)
    if step < day:
        return max(1, round(day / step))
    for limit, period in ((day, 7), (7 * day, 52), (31 * day, 12), (92 * day, 4)):
        if step <= limit * 1.01:
            return period
    return 1


def seasonal_naive(
    arrays: PaddedArrays,
    target_row: np.ndarray,
    series_index: np.ndarray,
    horizon: int,
    period: int,
) -> np.ndarray:
    """The value ``k * period`` rows before each target step, the smallest ``k`` that reaches the past.

    Step ``h`` (from 0) of a window whose first target row is ``t`` takes row
    ``t + h - period * ceil((h + 1) / period)``: always before ``t``. Rows before the data read the
    zero warm-up padding, as the network's windows do.

    Parameters
    ----------
    arrays : PaddedArrays
        The scaled data the windows were cut from.
    target_row, series_index : ndarray
        ``[N]`` first target row and series (from 0) of each window.

    Returns
    -------
    ndarray
        ``[N, H]`` scaled forecasts.
    """
    if not isinstance(period, int) or period < 1:
        raise UserError(f"evaluation.seasonal_period must be a positive integer, got {period!r}")
    steps = np.arange(horizon)
    back = period * ((steps + 1 + period - 1) // period)  # [H] rows back from each target step
    series = np.asarray(series_index)
    values = arrays.values.cpu()
    if values.dim() == 1:
        # A long panel: series s's rows follow its own block of zero rows (block_start[s]); rows
        # further back than the block read its first zero row, never another series.
        block_start = arrays.block_start.cpu().numpy()[series][:, None]  # [N, 1]
        rows = np.asarray(target_row)[:, None] + (series[:, None] + 1) * arrays.window_size + steps - back
        return values[torch.from_numpy(np.maximum(rows, block_start))].double().numpy()
    rows = np.asarray(target_row)[:, None] + steps - back + arrays.window_size  # [N, H] padded rows
    rows = np.maximum(rows, 0)
    return values[torch.from_numpy(rows), torch.from_numpy(series)[:, None]].double().numpy()


def _batches(windows: WideWindows, index: torch.Tensor, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    for chunk in torch.split(index, batch_size):
        yield windows.gather(chunk)


# Maps a batch to the regression's (inputs [B, K], targets [B, H]).
Regression = Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]


def window_values(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The ridge baseline's regression: the window's values onto the targets."""
    return batch["x"][..., -1], batch["y"]


def _design(inputs: torch.Tensor) -> torch.Tensor:
    """``inputs [B, K]`` -> ``[B, K + 1]`` float64 on the CPU: the inputs and a constant 1 (the intercept)."""
    inputs = inputs.double().cpu()
    return torch.cat([inputs, torch.ones(inputs.shape[0], 1, dtype=inputs.dtype)], dim=1)


def full_context_index(windows: WideWindows) -> torch.Tensor:
    """Indices of the windows whose context lies wholly inside the data (no warm-up padding)."""
    return windows.full_context_index()


@dataclass(frozen=True)
class RidgeBaseline:
    """A linear map from a window's values (and an intercept) to its ``H`` targets, shared by all series.

    Attributes
    ----------
    weights : Tensor
        ``[W + 1, H]`` float64; the last row is the intercept (``[num_series + 1, K + 1, H]`` per series).
    alpha : float
        The chosen regularisation, relative to the mean diagonal of the training Gram matrix.
    validation_mse : dict of float to float
        Scaled validation MSE of every candidate ``alpha``.
    """

    weights: torch.Tensor
    alpha: float
    validation_mse: dict[float, float]

    @classmethod
    def fit(
        cls,
        train: WideWindows,
        val: WideWindows,
        alphas: Sequence[float] = DEFAULT_RIDGE_ALPHAS,
        batch_size: int = 4096,
        regression: Regression = window_values,
        per_series: bool = False,
    ) -> RidgeBaseline:
        """Fit on the full-context training windows; choose ``alpha`` by validation MSE.

        ``regression`` maps a batch to its ``(inputs [B, K], targets [B, H])``; by default the
        window's ``W`` values onto its targets (the baseline), otherwise e.g. a network's own view of
        them (see :meth:`ForecastModule.fit_highway`). ``per_series`` fits one model per series id
        (``weights [num_series + 1, K + 1, H]``, row 0 unused) with one ``alpha`` for all.
        :meth:`predict` assumes the defaults.

        The normal equations are accumulated batch by batch (``O(K^2)`` memory per model whatever the
        number of windows) and solved once per ``alpha`` with a least-squares solver, so ``alpha = 0``
        (plain least squares) works even when the Gram matrix is singular. The intercept is not penalised.
        """
        alphas = [float(a) for a in alphas]
        if not alphas or any(a < 0 for a in alphas):
            raise UserError(f"evaluation.ridge_alphas must be non-negative numbers, got {alphas}")
        train_index = full_context_index(train)
        if len(train_index) == 0:
            raise UserError("the ridge baseline needs training windows with a full context; use more rows")

        def grouped(batch: dict[str, torch.Tensor]) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
            """``(group, design [b, K + 1], targets [b, H])`` for each group (series) in the batch."""
            inputs, targets = regression(batch)
            design, targets = _design(inputs), targets.double().cpu()
            if not per_series:
                yield 0, design, targets
                return
            series_id = batch["series_id"].cpu()
            for group in series_id.unique().tolist():
                rows = series_id == group
                yield group, design[rows], targets[rows]

        grams: dict[int, torch.Tensor] = {}  # X^T X [K + 1, K + 1] per group
        moments: dict[int, torch.Tensor] = {}  # X^T Y [K + 1, H] per group
        for batch in _batches(train, train_index, batch_size):
            for group, design, targets in grouped(batch):
                grams[group] = grams.get(group, 0) + design.T @ design
                moments[group] = moments.get(group, 0) + design.T @ targets
        groups = range(max(grams) + 1)  # a group without training windows gets zeros, solved as 0
        gram = torch.stack([grams.get(g, torch.zeros_like(grams[max(grams)])) for g in groups])
        moment = torch.stack([moments.get(g, torch.zeros_like(moments[max(grams)])) for g in groups])
        penalty = torch.ones(gram.shape[:2], dtype=torch.float64)  # [G, K + 1]
        penalty[:, -1] = 0.0  # the intercept
        penalty *= gram.diagonal(dim1=1, dim2=2)[:, :-1].mean(dim=1, keepdim=True)
        candidates = torch.stack(
            [
                torch.linalg.lstsq(gram + a * torch.diag_embed(penalty), moment, driver="gelsd").solution
                for a in alphas
            ]
        )  # [A, G, K + 1, H]
        squared_error = torch.zeros(len(alphas), dtype=torch.float64)
        count = 0
        for batch in _batches(val, torch.arange(len(val)), batch_size):
            for group, design, targets in grouped(batch):
                if group >= candidates.shape[1]:
                    continue  # a series without training windows (a long panel's late starter)
                predictions = design @ candidates[:, group]  # [A, b, H]
                squared_error += ((predictions - targets) ** 2).sum(dim=(1, 2))
                count += targets.numel()
        validation_mse = (squared_error / max(count, 1)).tolist()
        best = int(np.argmin(validation_mse))
        return cls(
            weights=candidates[best] if per_series else candidates[best, 0],
            alpha=alphas[best],
            validation_mse=dict(zip(alphas, validation_mse, strict=True)),
        )

    def predict(
        self, windows: WideWindows, index: torch.Tensor | None = None, batch_size: int = 4096
    ) -> np.ndarray:
        """Forecast windows ``index`` (default: all, in order) of ``windows``: ``[N, H]`` scaled."""
        index = torch.arange(len(windows)) if index is None else index
        chunks = [
            _design(window_values(batch)[0]) @ self.weights for batch in _batches(windows, index, batch_size)
        ]
        if not chunks:
            return np.empty((0, self.weights.shape[1]))
        return torch.cat(chunks).numpy()
