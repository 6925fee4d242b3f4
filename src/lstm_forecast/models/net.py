"""The embedding + bidirectional-LSTM network (a plain ``nn.Module``; knows nothing of Lightning)."""

from __future__ import annotations

import torch
from torch import nn


class EmbeddingBiLSTM(nn.Module):
    """Series-id embedding + stacked BiLSTM + dense head, as in the method.

    ``embedding(series_id)`` is repeated along the window and concatenated with each step's features
    (extras and value) -> BiLSTM returning sequences -> dropout -> ... -> last BiLSTM summarised by the
    final state of BOTH directions (forward after the last step, backward after the first, as Keras'
    ``return_sequences=False``) -> dropout -> concat with the embedding -> dense (tanh) -> dense.

    Univariate data (``num_series == 1``) has no id and no embedding.

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
    ) -> None:
        super().__init__()
        if min(num_series, num_features, num_units, num_lstm_layers, dense_size, horizon) < 1:
            raise ValueError("sizes must be positive")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.horizon = horizon
        self.embedding_dim = embedding_dim if num_series > 1 else 0
        self.embedding = nn.Embedding(num_series + 1, embedding_dim) if self.embedding_dim else None
        # One multi-layer LSTM is the stack "BiLSTM -> dropout -> BiLSTM" (dropout between layers)
        # and runs as a single fused kernel (cuDNN on GPUs).
        self.lstm = nn.LSTM(
            input_size=self.embedding_dim + num_features,
            hidden_size=num_units,
            num_layers=num_lstm_layers,
            bidirectional=True,
            batch_first=True,
            dropout=dropout if num_lstm_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(2 * num_units + self.embedding_dim, dense_size)
        self.head = nn.Linear(dense_size, horizon)

    def forward(self, x: torch.Tensor, series_id: torch.Tensor) -> torch.Tensor:
        """Forecast from windows.

        Parameters
        ----------
        x : Tensor
            ``[B, W, F]`` per-step features, value last.
        series_id : Tensor
            ``[B]`` long series ids from 1 (ignored for univariate nets).

        Returns
        -------
        Tensor
            ``[B, H]`` scaled forecasts for steps ``t .. t+H-1``.
        """
        parts = [x]
        if self.embedding is not None:
            embedded = self.embedding(series_id)  # [B, D]
            parts.insert(0, embedded.unsqueeze(1).expand(-1, x.shape[1], -1))  # [B, W, D]
        _, (h_n, _) = self.lstm(torch.cat(parts, dim=-1))  # h_n: [layers * 2, B, U]
        summary = torch.cat([h_n[-2], h_n[-1]], dim=-1)  # last layer, forward and backward: [B, 2U]
        summary = self.dropout(summary)
        if self.embedding is not None:
            summary = torch.cat([summary, embedded], dim=-1)  # [B, 2U + D]
        return self.head(torch.tanh(self.dense(summary)))  # [B, H]
