"""The segment BiLSTM network (a plain ``nn.Module``): the idea of SegRNN (Lin et al. 2023) with a
bidirectional LSTM, our series embedding and our extra features.

A window of ``W`` steps is read as ``N = ceil(W / seg_len)`` segments, so the recurrence runs over
``N`` steps instead of ``W`` (4 instead of 96 at the defaults); a window that is not a multiple of
``seg_len`` gets zeros in front of its earliest segment (after ``window_norm``), and the horizon is decoded as
``M = ceil(H / seg_len)`` segments in one batched pass: every output segment starts from the encoder's
final state and differs only by its learned position embedding, so no output segment waits for
(or feeds errors into) another.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lstm_forecast.errors import UserError
from lstm_forecast.models.net import (
    RECURRENT_PARTS,
    WINDOW_NORMS,
    check_choice,
    check_dropout,
    check_future_features,
    check_positive_int,
    normalise_window,
    series_conditioning,
)

# RevIN's learned affine on the window-normalised values: off, one (gain, shift) shared by all
# series, or one per series (RevIN's per channel: a channel is a series here).
WINDOW_AFFINES = ("none", "shared", "per_series")


class SegmentBiLSTM(nn.Module):
    """Segment embedding + BiLSTM over segments + parallel multi-step decoding.

    Each segment (``seg_len`` steps of all ``F`` features: extras and value) -> linear map and ReLU
    -> concat with the series (and static) embeddings -> BiLSTM over the ``N`` segments -> final
    state of BOTH directions of the last layer (``h`` and ``c``, ``[B, 2U]`` each) -> for every
    output segment ``m`` at once: one LSTM cell step from that state with input
    ``[position embedding m, series embedding]`` -> dropout -> linear map to ``seg_len * Q`` values
    -> the ``M * seg_len`` steps cropped to ``H``.

    With future-known features (``num_future_features = Ff > 0``) output segment ``m`` also gets its
    own ``seg_len`` steps of ``x_future`` (zero past ``H``), flattened and mapped linearly to the size
    of its input ``[P + C]`` and added to it: as the segments of the window are embedded, and a
    segment's forecast depends on no other segment's covariates.

    Univariate data (``num_series == 1``) has no series id and no embedding.

    Parameters
    ----------
    num_series : int
        Number of series; the embedding has ``num_series + 1`` rows (id 0 is reserved).
    num_features : int
        Features per step in ``x`` (extras, optional padding mask, value).
    window_size : int
        Steps per window (from the data), any number: ``N * seg_len - W`` zero steps go in front of the
        earliest segment when it is not a multiple of ``seg_len``, after ``window_norm`` (whose
        statistics never see them); a multiple pads nothing.
    horizon : int
        Steps emitted at once (``H``).
    seg_len : int
        Steps per segment, in the window and in the horizon.
    segment_dim : int
        Size of each segment's embedding (``E``).
    embedding_dim : int
        Size of the series embedding (``D``).
    num_units : int
        Hidden units per direction of each encoder BiLSTM layer (``U``); the decoder cell has ``2U``.
    num_lstm_layers : int
        Stacked encoder BiLSTM layers.
    position_dim : int
        Size of the output-segment position embedding (``P``).
    dropout : float
        Dropout between encoder layers and on the decoder's outputs.
    window_norm : {"none", "last", "standard"}
        How each window's values (the last feature) are referenced before the network sees them, the
        inverse applied to its output: as :class:`~lstm_forecast.models.net.EmbeddingBiLSTM`.
    window_affine : {"none", "shared", "per_series"}
        RevIN's learned affine (``gain * normalised + shift``, inverted on the output) after
        ``window_norm``: off, shared by all series, or one per series. The gain is learned as its
        logarithm (``affine_log_gain``), so it stays positive and its inverse finite; checkpoints
        that stored the gain itself (``affine_gain``) load into it.
    recurrent : {"lstm", "linear"}
        ``linear`` (an ablation): the encoder BiLSTM becomes one linear map of the flattened segment
        embeddings ``[N x (E + C)]`` to the summary ``[2U]``, and the decoder's LSTM cell a linear map
        of its inputs ``[P + C + 2U]`` (position, conditioning, summary) to ``[2U]``: no recurrence.
    outputs_per_step : int
        Values per forecast step (``Q``): 1 returns ``[B, H]``; more (e.g. quantiles) ``[B, H, Q]``.
    static_cardinalities : list of int
        Codes per static category column (code 0: unknown); each gets an embedding of
        ``static_embedding_dim``, used like the series embedding.
    static_embedding_dim : int
        Size of each static embedding.
    num_future_features : int
        Features per forecast step in ``x_future`` (``Ff``, from the data); 0 (the default): none.
    """

    def __init__(
        self,
        num_series: int,
        num_features: int,
        window_size: int,
        horizon: int = 1,
        seg_len: int = 24,
        segment_dim: int = 64,
        embedding_dim: int = 8,
        num_units: int = 64,
        num_lstm_layers: int = 1,
        position_dim: int = 16,
        dropout: float = 0.1,
        window_norm: str = "last",
        window_affine: str = "none",
        recurrent: str = "lstm",
        outputs_per_step: int = 1,
        static_cardinalities: list[int] | None = None,
        static_embedding_dim: int = 4,
        num_future_features: int = 0,
    ) -> None:
        super().__init__()
        for key, value in (
            ("num_series (series in the data)", num_series),
            ("num_features (features per step in the data)", num_features),
            ("window_size (data.window_size)", window_size),
            ("model.horizon", horizon),
            ("model.net.seg_len", seg_len),
            ("model.net.segment_dim", segment_dim),
            ("model.net.embedding_dim", embedding_dim),
            ("model.net.num_units", num_units),
            ("model.net.num_lstm_layers", num_lstm_layers),
            ("model.net.position_dim", position_dim),
            ("model.net.outputs_per_step", outputs_per_step),
            ("model.net.static_embedding_dim", static_embedding_dim),
        ):
            check_positive_int(key, value)
        for cardinality in static_cardinalities or []:
            check_positive_int("static_cardinalities (codes per static column in the data)", cardinality)
        check_dropout(dropout)
        check_choice("model.net.window_norm", window_norm, WINDOW_NORMS)
        check_choice("model.net.window_affine", window_affine, WINDOW_AFFINES)
        check_choice("model.net.recurrent", recurrent, RECURRENT_PARTS)
        check_future_features(num_future_features)
        if window_affine != "none" and window_norm == "none":
            raise UserError(
                "model.net.window_affine scales normalised windows: set model.net.window_norm=last "
                "or standard, or window_affine=none"
            )
        self.horizon = horizon
        self.seg_len = seg_len
        self.num_segments = math.ceil(window_size / seg_len)  # N
        self.front_padding = self.num_segments * seg_len - window_size  # N * S - W zero steps
        self.num_positions = math.ceil(horizon / seg_len)  # M
        self.outputs_per_step = outputs_per_step  # Q
        self.window_norm = window_norm
        self.recurrent = recurrent
        self.embedding = nn.Embedding(num_series + 1, embedding_dim) if num_series > 1 else None
        self.static_embeddings = nn.ModuleList(
            nn.Embedding(cardinality, static_embedding_dim) for cardinality in static_cardinalities or []
        )
        # C: the series and static embeddings, fed to every segment and every output position.
        series_dim = embedding_dim if self.embedding is not None else 0
        conditioning_dim = series_dim + static_embedding_dim * len(self.static_embeddings)
        rows = num_series + 1 if window_affine == "per_series" else 1
        # gain = exp(affine_log_gain): positive, 1 at the start.
        self.affine_log_gain = nn.Parameter(torch.zeros(rows)) if window_affine != "none" else None
        self.affine_shift = nn.Parameter(torch.zeros(rows)) if window_affine != "none" else None
        self.segment_embedding = nn.Linear(seg_len * num_features, segment_dim)
        encoder_in, summary_dim = segment_dim + conditioning_dim, 2 * num_units
        if recurrent == "lstm":
            self.encoder = nn.LSTM(
                input_size=encoder_in,
                hidden_size=num_units,
                num_layers=num_lstm_layers,
                bidirectional=True,
                batch_first=True,
                dropout=dropout if num_lstm_layers > 1 else 0.0,
            )
            self.decoder = nn.LSTMCell(position_dim + conditioning_dim, summary_dim)
        else:
            self.encoder = nn.Linear(self.num_segments * encoder_in, summary_dim)
            self.decoder = nn.Linear(position_dim + conditioning_dim + summary_dim, summary_dim)
        self.position_embedding = nn.Embedding(self.num_positions, position_dim)
        # Each output segment's future-known features, onto its decoder input [P + C].
        self.future_embedding = (
            nn.Linear(seg_len * num_future_features, position_dim + conditioning_dim)
            if num_future_features
            else None
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(summary_dim, seg_len * outputs_per_step)

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
            ``[B, H]`` scaled forecasts for steps ``t .. t+H-1`` (``outputs_per_step == 1``), else
            ``[B, H, Q]``.
        """
        values = x[..., -1]  # [B, W]
        normalised, offset, scale = normalise_window(values, self.window_norm)  # [B, W], [B, 1], [B, 1]
        gain, shift = self.window_affine(series_id, values)  # [B, 1] each
        normalised = normalised * gain + shift  # [B, W]
        x = torch.cat([x[..., :-1], normalised.unsqueeze(-1)], dim=-1)  # [B, W, F]
        forecast = self.forecast_normalised(x, series_id, static, x_future)  # [B, H, Q]
        forecast = (forecast - shift.unsqueeze(-1)) / gain.unsqueeze(-1)  # [B, H, Q]; gain > 0
        forecast = forecast * scale.unsqueeze(-1) + offset.unsqueeze(-1)  # [B, H, Q]
        return forecast.squeeze(-1) if self.outputs_per_step == 1 else forecast  # [B, H] or [B, H, Q]

    def forecast_normalised(
        self,
        x: torch.Tensor,
        series_id: torch.Tensor,
        static: torch.Tensor | None,
        x_future: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The network between ``window_norm`` and its inverse: windows ``x [B, W, F]`` with
        normalised values (and ``x_future [B, H, Ff]``) -> normalised forecasts ``[B, H, Q]``."""
        batch, _, features = x.shape  # B, W, F
        if self.front_padding:
            x = nn.functional.pad(x, (0, 0, self.front_padding, 0))  # [B, W, F] -> [B, N * S, F]
        segments = x.reshape(batch, self.num_segments, self.seg_len * features)  # [B, N, S * F]
        embedded = torch.relu(self.segment_embedding(segments))  # [B, N, E]
        conditioning = series_conditioning(
            self.embedding, self.static_embeddings, series_id, static
        )  # [B, C]
        if conditioning is not None:
            repeated = conditioning.unsqueeze(1).expand(-1, self.num_segments, -1)  # [B, N, C]
            embedded = torch.cat([embedded, repeated], dim=-1)  # [B, N, E + C]
        hidden, cell = self.encode(embedded)  # [B, 2U] each (cell: None when linear)
        decoded = self.decode(hidden, cell, conditioning, self.future_inputs(x_future))  # [B, M, 2U]
        segment_values = self.head(self.dropout(decoded))  # [B, M, S * Q]
        return segment_values.reshape(batch, -1, self.outputs_per_step)[:, : self.horizon]  # [B, H, Q]

    def window_affine(
        self, series_id: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(gain [B, 1], shift [B, 1])`` of the learned affine for ``series_id [B]`` (1 and 0, in the
        dtype of ``values [B, W]``, when off)."""
        if self.affine_log_gain is None:
            ones = values.new_ones(values.shape[0], 1)  # [B, 1]
            return ones, torch.zeros_like(ones)
        rows = series_id if self.affine_log_gain.shape[0] > 1 else torch.zeros_like(series_id)  # [B]
        gain = torch.exp(self.affine_log_gain[rows]).unsqueeze(-1)  # [B, 1]
        return gain, self.affine_shift[rows].unsqueeze(-1)  # [B, 1] each

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object) -> None:
        """A checkpoint that stored RevIN's gain itself (``affine_gain``, before ``affine_log_gain``)
        loads as its logarithm: the same forecasts (to float rounding). A gain trained to 0 or below
        has no logarithm, and its forecasts no positive equivalent: refused in one line."""
        old_key = prefix + "affine_gain"
        if old_key in state_dict and prefix + "affine_log_gain" not in state_dict:
            gain = state_dict.pop(old_key)
            if not bool((gain > 0).all()):
                raise UserError(
                    f"this checkpoint's learned window gain ({old_key}) is not positive "
                    f"(min {float(gain.min()):.3g}); retrain it with this version"
                )
            state_dict[prefix + "affine_log_gain"] = torch.log(gain)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def encode(self, embedded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Segment embeddings ``[B, N, E + C]`` -> the summary ``h [B, 2U]`` and cell state
        ``c [B, 2U]`` of the last layer, forward direction (after the last segment) beside the
        backward one (after the first); ``c`` is None for the linear ablation."""
        if self.recurrent == "linear":
            return self.encoder(embedded.flatten(1)), None  # [B, N * (E + C)] -> [B, 2U]
        _, (h_n, c_n) = self.encoder(embedded)  # [layers * 2, B, U] each
        hidden = torch.cat([h_n[-2], h_n[-1]], dim=-1)  # [B, 2U]
        cell = torch.cat([c_n[-2], c_n[-1]], dim=-1)  # [B, 2U]
        return hidden, cell

    def future_inputs(self, x_future: torch.Tensor | None) -> torch.Tensor | None:
        """Each output segment's future-known features ``x_future [B, H, Ff]``, zero-padded to
        ``M * seg_len`` steps, embedded: ``[B, M, P + C]``; None for a net without them."""
        if self.future_embedding is None:
            return None
        if x_future is None:
            raise ValueError("this net takes future-known features: pass x_future [B, H, Ff]")
        batch, steps, features = x_future.shape  # B, H, Ff
        padding = self.num_positions * self.seg_len - steps  # M * S - H
        padded = nn.functional.pad(x_future, (0, 0, 0, padding))  # [B, M * S, Ff]
        segments = padded.reshape(batch, self.num_positions, self.seg_len * features)  # [B, M, S * Ff]
        return self.future_embedding(segments)  # [B, M, P + C]

    def decode(
        self,
        hidden: torch.Tensor,
        cell: torch.Tensor | None,
        conditioning: torch.Tensor | None,
        future: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Every output segment at once: ``hidden [B, 2U]``, ``cell [B, 2U]`` or None, ``conditioning
        [B, C]`` or None, embedded future-known features ``future [B, M, P + C]`` or None ->
        ``[B, M, 2U]``. Position ``m`` sees only the encoder state, its own position embedding, the
        conditioning and its own segment's future features, never another position's output."""
        batch = hidden.shape[0]  # B
        queries = self.position_embedding.weight.unsqueeze(0).expand(batch, -1, -1)  # [B, M, P]
        if conditioning is not None:
            repeated = conditioning.unsqueeze(1).expand(-1, self.num_positions, -1)  # [B, M, C]
            queries = torch.cat([queries, repeated], dim=-1)  # [B, M, P + C]
        if future is not None:
            queries = queries + future  # [B, M, P + C]
        queries = queries.reshape(batch * self.num_positions, -1)  # [B * M, P + C]
        hidden = hidden.repeat_interleave(self.num_positions, dim=0)  # [B * M, 2U]
        if self.recurrent == "linear":
            decoded = self.decoder(torch.cat([queries, hidden], dim=-1))  # [B * M, P + C + 2U] -> [B * M, 2U]
        else:
            cell = cell.repeat_interleave(self.num_positions, dim=0)  # [B * M, 2U]
            decoded, _ = self.decoder(queries, (hidden, cell))  # [B * M, 2U]
        return decoded.reshape(batch, self.num_positions, -1)  # [B, M, 2U]
