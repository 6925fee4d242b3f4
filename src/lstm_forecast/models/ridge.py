"""A ridge regression over windows, solved in closed form: the ridge baseline, and the least-squares
start of a network's highway (:meth:`~lstm_forecast.models.module.ForecastModule.fit_highway`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lstm_forecast.data.windows import Windows, index_chunks
from lstm_forecast.errors import UserError

DEFAULT_RIDGE_ALPHAS = (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def _batches(
    windows: Windows, index: torch.Tensor | None, batch_size: int, full_context: bool = False
) -> Iterator[dict[str, torch.Tensor]]:
    """Value batches (:meth:`Windows.gather_values`) of ``batch_size`` windows of ``index`` (None: every
    window, never indexed all at once), only those with a full context if ``full_context`` (the
    batches are then those of the filtered index, whatever the chunking)."""
    if index is not None:
        for chunk in torch.split(index, batch_size):
            yield windows.gather_values(chunk)
        return
    carry = torch.empty(0, dtype=torch.long)
    for chunk in index_chunks(len(windows)):
        if full_context:
            chunk = chunk[windows.full_context(chunk)]
        carry = torch.cat([carry, chunk])
        whole = len(carry) - len(carry) % batch_size
        for batch in torch.split(carry[:whole], batch_size):
            yield windows.gather_values(batch)
        carry = carry[whole:]
    if len(carry):
        yield windows.gather_values(carry)


# Maps a value batch (Windows.gather_values) to the regression's (inputs [B, K], targets [B, H]).
Regression = Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]


def window_values(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The ridge baseline's regression: the window's values onto the targets."""
    return batch["values"], batch["y"]


def _design(inputs: torch.Tensor) -> torch.Tensor:
    """``inputs [B, K]`` -> ``[B, K + 1]`` float64 on the CPU: the inputs and a constant 1 (the intercept)."""
    inputs = inputs.double().cpu()
    return torch.cat([inputs, torch.ones(inputs.shape[0], 1, dtype=inputs.dtype)], dim=1)


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
        train: Windows,
        val: Windows,
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

        The normal equations are accumulated batch by batch over the values alone (``O(K^2)`` memory
        per model whatever the number of windows; no extra features gathered) and solved once per
        ``alpha`` with a least-squares solver, so ``alpha = 0`` (plain least squares) works even when
        the Gram matrix is singular. The intercept is not penalised.
        """
        alphas = [float(a) for a in alphas]
        if not alphas or any(a < 0 for a in alphas):
            raise UserError(f"evaluation.ridge_alphas must be non-negative numbers, got {alphas}")

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
        for batch in _batches(train, None, batch_size, full_context=True):
            for group, design, targets in grouped(batch):
                grams[group] = grams.get(group, 0) + design.T @ design
                moments[group] = moments.get(group, 0) + design.T @ targets
        if not grams:
            raise UserError("the ridge baseline needs training windows with a full context; use more rows")
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
        for batch in _batches(val, None, batch_size):
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
        self, windows: Windows, index: torch.Tensor | None = None, batch_size: int = 4096
    ) -> np.ndarray:
        """Forecast windows ``index`` (default: all, in order) of ``windows``: ``[N, H]`` scaled."""
        chunks = [
            _design(window_values(batch)[0]) @ self.weights for batch in _batches(windows, index, batch_size)
        ]
        if not chunks:
            return np.empty((0, self.weights.shape[1]))
        return torch.cat(chunks).numpy()
