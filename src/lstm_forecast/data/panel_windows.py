"""Lazy windows over a ragged panel: each series behind its own ``window_size`` zero rows.

Every series gets ``window_size`` zero rows in front of its own rows in one padded, concatenated
array, so a window never reaches into another series and the method's zero-padded warm-up windows
come for free. A window set is an index array of target positions: one int64 per window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lstm_forecast.data.windows import Batch


@dataclass(frozen=True)
class PanelArrays:
    """Scaled rows of every series, each series preceded by ``window_size`` zero rows.

    Attributes
    ----------
    values : Tensor
        ``[N + S * W]`` series values.
    extras : Tensor
        ``[N + S * W, E]`` extra features.
    block_start : Tensor
        ``[S]`` long: padded row of series ``s``'s first zero row; its data row ``i`` (from 0) is
        padded row ``block_start[s] + W + i``.
    window_size : int
        Zero rows in front of each series (``W``).
    """

    values: torch.Tensor
    extras: torch.Tensor
    block_start: torch.Tensor
    window_size: int

    @classmethod
    def from_rows(
        cls, values: np.ndarray, extras: np.ndarray, offsets: np.ndarray, window_size: int
    ) -> PanelArrays:
        """Pad ``values [N]`` and ``extras [N, E]``, rows of series ``s`` at ``offsets[s]:offsets[s+1]``."""
        num_series = len(offsets) - 1
        row_series = np.repeat(np.arange(num_series), np.diff(offsets))
        padded_row = torch.from_numpy(np.arange(len(values)) + (row_series + 1) * window_size)  # [N]
        total = len(values) + num_series * window_size
        padded_values = torch.zeros(total, dtype=torch.float32)
        padded_values[padded_row] = torch.from_numpy(values.astype(np.float32))
        padded_extras = torch.zeros(total, extras.shape[1], dtype=torch.float32)
        padded_extras[padded_row] = torch.from_numpy(extras.astype(np.float32))
        block_start = torch.from_numpy(offsets[:-1] + np.arange(num_series) * window_size)
        return cls(padded_values, padded_extras, block_start.long(), window_size)

    @property
    def num_series(self) -> int:
        return len(self.block_start)

    def padded_rows(self, series: np.ndarray, local: np.ndarray) -> np.ndarray:
        """Padded row of step ``local`` (from 0) of series ``series`` (both ``[M]``)."""
        return self.block_start.cpu().numpy()[series] + self.window_size + local

    def to(self, device: torch.device | str) -> PanelArrays:
        return PanelArrays(
            self.values.to(device), self.extras.to(device), self.block_start.to(device), self.window_size
        )


class PanelWindows:
    """Windows whose targets are the padded rows ``targets``; same contract as ``WideWindows``.

    Window ``i`` forecasts padded rows ``targets[i] .. targets[i] + H - 1`` from the ``W`` rows before
    ``targets[i]``; those lie in the target's own series block (its rows or its zero padding), so a
    window never sees another series. Memory is one int64 per window.

    Parameters
    ----------
    arrays : PanelArrays
        The scaled, padded rows.
    targets : Tensor
        ``[M]`` long padded row of each window's first target, sorted (series, then time).
    horizon : int
        Steps predicted per window (``H``).
    padding_mask : bool
        Add a feature that is 1 on real steps and 0 on padded ones.
    with_target : bool
        Return ``y``; forecast windows past the end of a series have none.
    static : Tensor or None
        ``[S, K]`` long category codes per series (0: unknown), returned as ``static [B, K]``.
    """

    def __init__(
        self,
        arrays: PanelArrays,
        targets: torch.Tensor,
        horizon: int = 1,
        padding_mask: bool = False,
        with_target: bool = True,
        static: torch.Tensor | None = None,
    ) -> None:
        self.arrays = arrays
        self.targets = targets
        self.horizon = horizon
        self.padding_mask = padding_mask
        self.with_target = with_target
        self.static = static
        self._set_offsets(arrays.values.device)

    def _set_offsets(self, device: torch.device) -> None:
        self._context_offsets = torch.arange(-self.window_size, 0, device=device)
        self._horizon_offsets = torch.arange(self.horizon, device=device)

    def to(self, device: torch.device | str) -> PanelWindows:
        """Move the arrays (and so every gathered batch) to ``device``."""
        self.arrays = self.arrays.to(device)
        return self.share(self.arrays)

    def share(self, arrays: PanelArrays) -> PanelWindows:
        """Use ``arrays`` (the same data, already on a device) and move the index to their device."""
        device = arrays.values.device
        self.arrays = arrays
        self.targets = self.targets.to(device)
        self.static = self.static.to(device) if self.static is not None else None
        self._set_offsets(device)
        return self

    @property
    def window_size(self) -> int:
        return self.arrays.window_size

    @property
    def num_series(self) -> int:
        return self.arrays.num_series

    @property
    def num_features(self) -> int:
        """Features per step in ``x``: extras, the optional padding mask, the value."""
        return self.arrays.extras.shape[1] + int(self.padding_mask) + 1

    def __len__(self) -> int:
        return len(self.targets)

    def full_context_index(self) -> torch.Tensor:
        """Indices of the windows whose context lies wholly inside their series (no warm-up padding)."""
        targets, series = self.locate(torch.arange(len(self)))
        first_data_row = self.arrays.block_start.to(targets.device)[series] + self.window_size
        return torch.nonzero(targets - self.window_size >= first_data_row).flatten().cpu()

    def locate(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded target rows ``[B]`` and series (from 0) ``[B]`` of windows ``index [B]``."""
        targets = self.targets[index.to(self.targets.device)]
        # The step before the target is always in the target's block, also for forecast windows
        # whose target is one past the series' last row (the next block's first row).
        series = torch.searchsorted(self.arrays.block_start, targets - 1, right=True) - 1
        return targets, series

    def gather(self, index: torch.Tensor) -> Batch:
        """Cut the windows ``index [B]`` out of the arrays in one indexing operation.

        Returns
        -------
        dict
            ``x [B, W, F]`` float, ``series_id [B]`` long (from 1), ``target_row [B]`` long (row of the
            long table, sorted by series then time; one past the series' last row for forecast windows),
            ``static [B, K]`` long when the data has static columns and, with targets, ``y [B, H]``.
        """
        targets, series = self.locate(index)
        window = self.window_size
        rows = targets[:, None] + self._context_offsets  # [B, W]
        values = self.arrays.values[rows]  # [B, W]
        parts = [self.arrays.extras[rows]]  # [B, W, E]
        if self.padding_mask:
            real = rows - self.arrays.block_start[series][:, None] >= window  # [B, W]
            parts.append(real.to(values.dtype).unsqueeze(-1))  # [B, W, 1]
        parts.append(values.unsqueeze(-1))  # [B, W, 1]
        batch = {
            "x": torch.cat(parts, dim=-1),  # [B, W, F]
            "series_id": series + 1,  # [B]; 0 stays reserved
            "target_row": targets - (series + 1) * window,  # [B]
        }
        if self.static is not None:
            batch["static"] = self.static[series]  # [B, K]
        if self.with_target:
            batch["y"] = self.arrays.values[targets[:, None] + self._horizon_offsets]  # [B, H]
        return batch


def index_ranges(start: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(start[i], start[i] + count[i])`` over ``i`` (negative counts: none)."""
    count = np.maximum(count, 0)
    within = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    return np.repeat(start, count) + within
