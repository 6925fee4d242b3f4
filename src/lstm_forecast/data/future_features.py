"""Future-known features: extra columns whose values are known for the forecast steps too.

``data.future_columns`` names them among ``data.source.extra_columns``; the calendar features, known
for any timestamp, join them. Batches carry them for the target steps as ``x_future [B, H, Ff]``,
cut from the same scaled arrays as the context's extra features.
"""

from __future__ import annotations

from typing import Any

import torch

from lstm_forecast.errors import UserError


def checked_columns(future_columns: list[str] | None, source: dict[str, Any]) -> list[str]:
    """``data.future_columns`` as a list, refused unless each is one of ``data.source.extra_columns``."""
    columns = [str(c) for c in future_columns or []]
    extra = [str(c) for c in source.get("extra_columns") or []]
    unknown = [c for c in columns if c not in extra]
    if unknown:
        raise UserError(
            f"data.future_columns {unknown} are not extra columns (data.source.extra_columns={extra}); "
            "list each future-known column in data.source.extra_columns too"
        )
    if len(set(columns)) < len(columns):
        raise UserError(f"data.future_columns={columns} repeats a column; list each once")
    return columns


def positions(user_columns: list[str], future_columns: list[str], num_calendar: int) -> torch.Tensor | None:
    """``[Ff]`` long positions, among a step's extra features (``user_columns`` then ``num_calendar``
    calendar features), of the future columns and every calendar feature; None without future
    columns (the method: no ``x_future``)."""
    if not future_columns:
        return None
    user = [i for i, name in enumerate(user_columns) if name in future_columns]
    calendar = range(len(user_columns), len(user_columns) + num_calendar)
    return torch.tensor([*user, *calendar], dtype=torch.long)


def check_same(found: list[str], trained: list[str]) -> None:
    """Refuse a data config whose future-known features differ from the checkpoint's."""
    if found != list(trained):
        raise UserError(
            f"the model was trained with future-known features {trained} but the data config gives "
            f"{found}; leave data.future_columns as in training"
        )
