"""The embedding + bidirectional-LSTM network (a plain ``nn.Module``; knows nothing of Lightning)."""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch import nn

from lstm_forecast.data.scaling import HIGH, LOW
from lstm_forecast.errors import UserError

WINDOW_NORMS = ("none", "last", "standard")
# What computes the summary of the window: the BiLSTM, or (an ablation) a linear map of the same inputs.
RECURRENT_PARTS = ("lstm", "linear")
# The smallest scale window_norm=standard divides by: 1% of a series' scaled training range (minmax
# maps it onto [LOW, HIGH]; the standard scaler's unit, one training std, is of the same order).
WINDOW_SCALE_FLOOR = 0.01 * (HIGH - LOW)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_int(key: str, value: Any) -> None:
    if not (_is_int(value) and value >= 1):
        raise UserError(f"{key} must be a positive integer, got {value!r}")


def check_bool(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise UserError(f"{key} must be true or false, got {value!r}")


def check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise UserError(f"{key} must be one of {list(choices)}, got {value!r}")


def check_dropout(value: Any) -> None:
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value < 1):
        raise UserError(f"model.net.dropout must be a number in [0, 1), got {value!r}")


def check_future_features(value: Any) -> None:
    if not _is_int(value) or value < 0:
        raise UserError(
            "num_future_features (future-known features per step in the data) must be 0 or more, "
            f"got {value!r}"
        )


def real_steps(values: torch.Tensor) -> torch.Tensor:
    """``[B, W]`` bool: which steps of the windows' values ``[B, W]`` are data, not warm-up padding.

    The padding is the window's leading exact zeros: steps before a series' first row are zeros of
    the SCALED arrays, and scaled 0 is the middle of a series' training range (minmax) or its training
    mean (standard), which real data hits exactly only by chance. So the net needs no mask feature
    to find it (the padding mask, when the data has one, marks the same steps); a real value exactly
    at scaled 0 at the start of a window is taken for padding too, which moves the window's mean and
    spread by at most that one value's share.
    """
    return torch.cumsum((values != 0).int(), dim=1) > 0  # [B, W]


def window_reference(values: torch.Tensor, window_norm: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(offset [B, 1], scale [B, 1])`` that ``window_norm`` removes from the values ``[B, W]``.

    ``standard`` takes the mean and standard deviation over the real steps only (:func:`real_steps`),
    the scale floored at :data:`WINDOW_SCALE_FLOOR`: a window of padding alone, or of one repeated
    value (an intermittent series' zeros), is referenced at its value with that scale, not blown up.
    """
    if window_norm == "last":
        return values[:, -1:], torch.ones_like(values[:, -1:])
    if window_norm == "standard":
        real = real_steps(values).to(values.dtype)  # [B, W]
        count = real.sum(dim=1, keepdim=True).clamp_min(1.0)  # [B, 1]
        mean = (values * real).sum(dim=1, keepdim=True) / count  # [B, 1]
        variance = (((values - mean) * real) ** 2).sum(dim=1, keepdim=True) / count  # [B, 1]
        return mean, torch.sqrt(variance).clamp_min(WINDOW_SCALE_FLOOR)  # [B, 1] each
    return torch.zeros_like(values[:, -1:]), torch.ones_like(values[:, -1:])


def normalise_window(values: torch.Tensor, window_norm: str) -> tuple[torch.Tensor, ...]:
    """``(normalised [B, W], offset [B, 1], scale [B, 1])`` of the values ``[B, W]``: ``(values -
    offset) / scale``, the warm-up padding kept at 0 under ``standard`` (whose statistics leave it
    out; ``none`` and ``last`` treat it as data, as they always have)."""
    offset, scale = window_reference(values, window_norm)  # [B, 1] each
    normalised = (values - offset) / scale  # [B, W]
    if window_norm == "standard":
        normalised = torch.where(real_steps(values), normalised, torch.zeros_like(normalised))  # [B, W]
    return normalised, offset, scale


def series_conditioning(
    embedding: nn.Embedding | None,
    static_embeddings: nn.ModuleList,
    series_id: torch.Tensor,
    static: torch.Tensor | None,
) -> torch.Tensor | None:
    """The series embedding and the static embeddings side by side: ``[B, D + K * Ds]``, or None
    when the net has neither (univariate data without static columns)."""
    tables = [embedding(series_id)] if embedding is not None else []  # [B, D]
    if len(static_embeddings):
        if static is None:
            raise ValueError("this net has static embeddings: pass static [B, K]")
        tables += [table(static[:, k]) for k, table in enumerate(static_embeddings)]  # [B, Ds] each
    return torch.cat(tables, dim=-1) if tables else None  # [B, D + K * Ds]


class Highway(nn.Module):
    """A linear map from ``k`` inputs to ``H`` outputs, one per series or one shared by all.

    ``weight [rows, k, H]`` and ``bias [rows, H]``: ``rows`` is ``num_series + 1`` per series (row 0,
    the reserved id, unused) or 1 shared; initialised as :class:`torch.nn.Linear` is.
    """

    def __init__(self, inputs: int, outputs: int, rows: int = 1) -> None:
        super().__init__()
        bound = inputs**-0.5
        self.weight = nn.Parameter(torch.empty(rows, inputs, outputs).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(rows, outputs).uniform_(-bound, bound))

    def forward(self, inputs: torch.Tensor, series_id: torch.Tensor) -> torch.Tensor:
        """``inputs [B, k]``, ``series_id [B]`` -> ``[B, H]``."""
        if self.weight.shape[0] == 1:
            return inputs @ self.weight[0] + self.bias[0]
        return torch.einsum("bk,bkh->bh", inputs, self.weight[series_id]) + self.bias[series_id]


class EmbeddingBiLSTM(nn.Module):
    """Series-id embedding + stacked BiLSTM + dense head, as in the method.

    ``embedding(series_id)`` is repeated along the window and concatenated with each step's features
    (extras and value) -> BiLSTM returning sequences -> dropout -> ... -> last BiLSTM summarised by the
    final state of BOTH directions (forward after the last step, backward after the first, as Keras'
    ``return_sequences=False``) -> dropout -> concat with the embedding -> dense (tanh) -> dense.

    Univariate data (``num_series == 1``) has no id and no embedding.

    With future-known features (``num_future_features > 0``) the head works per forecast step: step
    ``h``'s features ``x_future[:, h]``, mapped linearly to the dense layer's width, are added to the
    dense layer's input from the summary before the tanh, and the head's row ``h`` reads step ``h``'s
    hidden vector. Per step rather than flattened (``[B, H * Ff]`` into the dense layer): the same
    weights learn how a covariate moves the forecast at every step, their number does not grow with
    ``H``, and a step's forecast depends on no other step's covariates (so the steps past a requested
    horizon, forecast but dropped, need none). With ``x_future`` zero and its map's bias zero this is
    the method's head exactly.

    Parameters
    ----------
    num_series : int
        Number of series; the embedding has ``num_series + 1`` rows (id 0 is reserved).
    num_features : int
        Features per step in ``x`` (extras, optional padding mask, value).
    embedding_dim : int
        Size of the series embedding.
    num_units : int
        Hidden units per direction of each BiLSTM.
    num_lstm_layers : int
        Stacked BiLSTMs (the method uses 2).
    dense_size : int
        Width of the tanh dense layer.
    dropout : float
        Dropout after each BiLSTM.
    horizon : int
        Steps emitted at once (1: the next step).
    window_norm : {"none", "last", "standard"}
        How each window's values (the last feature) are referenced before the network sees them, the
        inverse being applied to its output. ``none``: the method (levels in, levels out). ``last``:
        subtract the window's last value, so the network predicts the change from it (as NLinear does).
        ``standard``: subtract the window's mean and divide by its standard deviation (RevIN without
        the learned affine), both over the window's real steps, not its warm-up padding (which stays
        0), the deviation floored at 1% of the scaled training range (:func:`window_reference`).
    last_value_skip : bool
        Add the window's last value to the output (a residual from persistence); inputs unchanged.
    highway_window : int
        When positive, a linear map of the window's last ``highway_window`` values (after
        ``window_norm``) is added to the output: LSTNet's autoregressive highway, so the network only
        has to learn what a linear model on the window misses. 0 (the default) is the method.
    highway_per_series : bool
        One highway per series instead of one shared by all (LTSF-Linear's ``individual=True``).
    static_cardinalities : list of int
        Codes per static category column (code 0: unknown); each gets an embedding of
        ``static_embedding_dim`` used like the series embedding. Empty (the default): the method's net.
    static_embedding_dim : int
        Size of each static embedding.
    num_future_features : int
        Features per forecast step in ``x_future`` (future-known columns and calendar features, from
        the data); 0 (the default) is the method's net, with the same parameters and outputs.
    recurrent : {"lstm", "linear"}
        ``lstm``: the method. ``linear`` (an ablation, to show what the LSTM adds): the BiLSTM stack is
        replaced by one linear map of the same inputs, the flattened window ``[W x (F + D)]``, to a
        summary of the same size ``[2U]`` (``num_lstm_layers`` then unused).
    window_size : int or None
        Steps per window (from the data): needed by ``recurrent=linear``, and checked against
        ``highway_window`` when given.
    outputs_per_step : int
        Outputs per forecast step (``Q``): 1 (the method) returns ``[B, H]``; more returns the raw
        ``[B, H, Q]`` (e.g. one per quantile), ``window_norm``'s reference, the highway and
        ``last_value_skip`` applied to each alike. What the ``Q`` outputs mean (and any ordering
        between them) is the caller's business. With future-known features, step ``h``'s ``Q``
        outputs all read step ``h``'s hidden vector (which its features shift), each through its own
        head row: the features' effect is per (step, output).
    """

    def __init__(
        self,
        num_series: int,
        num_features: int,
        embedding_dim: int = 8,
        num_units: int = 64,
        num_lstm_layers: int = 2,
        dense_size: int = 32,
        dropout: float = 0.2,
        horizon: int = 1,
        window_norm: str = "none",
        last_value_skip: bool = False,
        highway_window: int = 0,
        highway_per_series: bool = False,
        static_cardinalities: list[int] | None = None,
        static_embedding_dim: int = 4,
        num_future_features: int = 0,
        recurrent: str = "lstm",
        window_size: int | None = None,
        outputs_per_step: int = 1,
    ) -> None:
        super().__init__()
        # Each size named as its config key (num_series, num_features and static_cardinalities come
        # from the data), so a bad value is one line, not a traceback from inside torch.
        for key, value in (
            ("num_series (series in the data)", num_series),
            ("num_features (features per step in the data)", num_features),
            ("model.net.embedding_dim", embedding_dim),
            ("model.net.num_units", num_units),
            ("model.net.num_lstm_layers", num_lstm_layers),
            ("model.net.dense_size", dense_size),
            ("model.horizon", horizon),
            ("model.net.static_embedding_dim", static_embedding_dim),
            ("outputs_per_step (model.quantiles)", outputs_per_step),
        ):
            check_positive_int(key, value)
        check_dropout(dropout)
        check_bool("model.net.last_value_skip", last_value_skip)
        check_bool("model.net.highway_per_series", highway_per_series)
        for cardinality in static_cardinalities or []:
            check_positive_int("static_cardinalities (codes per static column in the data)", cardinality)
        check_choice("model.net.window_norm", window_norm, WINDOW_NORMS)
        check_choice("model.net.recurrent", recurrent, RECURRENT_PARTS)
        if window_size is not None:
            check_positive_int("window_size (data.window_size)", window_size)
        elif recurrent == "linear":
            raise UserError("model.net.recurrent=linear needs the window size: pass window_size")
        if last_value_skip and window_norm != "none":
            raise UserError(
                "model.net.last_value_skip adds the last value that window_norm already adds back; "
                "use one of them (last_value_skip=false or window_norm=none)"
            )
        check_future_features(num_future_features)
        if not _is_int(highway_window) or highway_window < 0:
            raise UserError(
                "model.net.highway_window must be 0 (off) or a positive number of steps, "
                f"got {highway_window!r}"
            )
        if window_size is not None and highway_window > window_size:
            raise UserError(
                f"model.net.highway_window={highway_window} is longer than the window "
                f"(data.window_size={window_size}); use at most the window size"
            )
        self.horizon = horizon
        self.outputs_per_step = outputs_per_step
        self.window_norm = window_norm
        self.last_value_skip = last_value_skip
        self.embedding_dim = embedding_dim if num_series > 1 else 0
        self.embedding = nn.Embedding(num_series + 1, embedding_dim) if self.embedding_dim else None
        self.static_embeddings = nn.ModuleList(
            nn.Embedding(cardinality, static_embedding_dim) for cardinality in static_cardinalities or []
        )
        # Series and static embeddings together: repeated along the window and fed to the dense layer.
        self.conditioning_dim = self.embedding_dim + static_embedding_dim * len(self.static_embeddings)
        # One multi-layer LSTM is the stack "BiLSTM -> dropout -> BiLSTM" (dropout between layers)
        # and runs as a single fused kernel (cuDNN on GPUs).
        self.lstm = (
            nn.LSTM(
                input_size=self.conditioning_dim + num_features,
                hidden_size=num_units,
                num_layers=num_lstm_layers,
                bidirectional=True,
                batch_first=True,
                dropout=dropout if num_lstm_layers > 1 else 0.0,
            )
            if recurrent == "lstm"
            else None
        )
        steps_in = (window_size or 0) * (self.conditioning_dim + num_features)
        self.linear_summary = nn.Linear(steps_in, 2 * num_units) if recurrent == "linear" else None
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(2 * num_units + self.conditioning_dim, dense_size)
        self.head = nn.Linear(dense_size, horizon * outputs_per_step)
        # Each step's future-known features, into the dense layer's width (added before the tanh).
        self.future_proj = nn.Linear(num_future_features, dense_size) if num_future_features else None
        self.highway_window = highway_window
        rows = num_series + 1 if highway_per_series else 1
        self.highway = Highway(highway_window, horizon, rows) if highway_window else None

    def forward(
        self,
        x: torch.Tensor,
        series_id: torch.Tensor,
        static: torch.Tensor | None = None,
        x_future: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Forecast from windows.

        Parameters
        ----------
        x : Tensor
            ``[B, W, F]`` per-step features, value last.
        series_id : Tensor
            ``[B]`` long series ids from 1 (ignored for univariate nets).
        static : Tensor or None
            ``[B, K]`` long static category codes, one column per static embedding.
        x_future : Tensor or None
            ``[B, H, Ff]`` future-known features of the forecast steps (nets with
            ``num_future_features > 0`` only).

        Returns
        -------
        Tensor
            ``[B, H]`` scaled forecasts for steps ``t .. t+H-1``; ``[B, H, Q]`` with
            ``outputs_per_step = Q > 1``.
        """
        values = x[..., -1]  # [B, W]
        normalised, offset, scale = normalise_window(values, self.window_norm)  # [B, W], [B, 1], [B, 1]
        if self.window_norm != "none":
            x = torch.cat([x[..., :-1], normalised.unsqueeze(-1)], dim=-1)  # [B, W, F]
        if self.highway is not None and x.shape[1] < self.highway_window:
            raise ValueError(
                f"windows of {x.shape[1]} steps are shorter than highway_window={self.highway_window}"
            )
        parts = [x]
        embedded = series_conditioning(
            self.embedding, self.static_embeddings, series_id, static
        )  # [B, D + K * Ds]
        if embedded is not None:
            parts.insert(0, embedded.unsqueeze(1).expand(-1, x.shape[1], -1))  # [B, W, D + K * Ds]
        inputs = torch.cat(parts, dim=-1)  # [B, W, D + K * Ds + F]
        if self.lstm is not None:
            _, (h_n, _) = self.lstm(inputs)  # h_n: [layers * 2, B, U]
            summary = torch.cat([h_n[-2], h_n[-1]], dim=-1)  # last layer, forward and backward: [B, 2U]
        else:
            summary = self.linear_summary(inputs.flatten(1))  # [B, W * (D + K * Ds + F)] -> [B, 2U]
        summary = self.dropout(summary)
        if self.conditioning_dim:
            summary = torch.cat([summary, embedded], dim=-1)  # [B, 2U + D + K * Ds]
        forecast = self.decode(self.dense(summary), x_future)  # [B, H, Q]
        if self.highway is not None:
            highway = self.highway(x[:, -self.highway_window :, -1], series_id)  # [B, H]
            forecast = forecast + highway.unsqueeze(-1)  # [B, H, Q]
        forecast = forecast * scale.unsqueeze(-1) + offset.unsqueeze(-1)  # [B, H, Q]
        if self.last_value_skip:
            forecast = forecast + values[:, -1:].unsqueeze(-1)  # [B, H, Q]
        return forecast.squeeze(-1) if self.outputs_per_step == 1 else forecast  # [B, H] or [B, H, Q]

    def decode(self, hidden: torch.Tensor, x_future: torch.Tensor | None) -> torch.Tensor:
        """The head: the dense layer's output ``hidden [B, Dd]`` (before its tanh), with the forecast
        steps' ``x_future [B, H, Ff]`` when the net takes them, -> ``[B, H, Q]``."""
        batch, steps_out, outputs = hidden.shape[0], self.horizon, self.outputs_per_step
        if self.future_proj is None:
            forecast = self.head(torch.tanh(hidden))  # [B, Dd] -> [B, H * Q]
            return forecast.view(batch, steps_out, outputs)  # [B, H, Q]
        if x_future is None:
            raise ValueError("this net takes future-known features: pass x_future [B, H, Ff]")
        steps = torch.tanh(hidden.unsqueeze(1) + self.future_proj(x_future))  # [B, H, Dd]
        weight = self.head.weight.view(steps_out, outputs, -1)  # [H * Q, Dd] -> [H, Q, Dd]
        bias = self.head.bias.view(steps_out, outputs)  # [H * Q] -> [H, Q]
        # Rows (h, q) of the head read step h's hidden vector: [B, H, Dd] x [H, Q, Dd] -> [B, H, Q]
        forecast = torch.einsum("bhd,hqd->bhq", steps, weight) + bias  # [B, H, Q]
        # einsum batches over h, leaving [B, H, Q] strided as [H, B, Q]; callers may view() it.
        return forecast.contiguous()  # [B, H, Q]

    def normalise(self, values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(normalised [B, W], offset [B, 1], scale [B, 1])``: :func:`normalise_window` of the values
        ``[B, W]`` with this net's ``window_norm``."""
        return normalise_window(values, self.window_norm)
