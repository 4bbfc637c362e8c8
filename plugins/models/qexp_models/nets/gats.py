"""Qlib's GAT network (``GATModel``, after Velickovic et al. 2018, as used by Qlib's GATs): a GRU/LSTM encodes
each stock's sequence; one attention layer mixes the stocks of the same day (every pair), then
LeakyReLU(Linear) and a linear head. Module names match Qlib's (``rnn``, ``transformation``, ``a``, ``fc``,
``fc_out``), so a pretrained GRU/LSTM base model's ``rnn``/``fc_out`` weights load into it.

The attention score of stock i for stock j is ``LeakyReLU(a . [W h_j ; W h_i])``, softmax over j. Qlib builds
the ``[N, N, 2H]`` pair tensor; here the score is ``(W h) a_1`` (per j) plus ``(W h) a_2`` (per i), the same
numbers without the N^2 x 2H tensor.
"""
from __future__ import annotations

import torch
from torch import nn

from .rnn import as_steps


class GATModel(nn.Module):
    """``forward(x: one day's stocks [N, T, d_feat] or flat [N, d_feat * T]) -> [N]``."""

    def __init__(self, d_feat: int = 6, hidden_size: int = 64, num_layers: int = 2, dropout: float = 0.0,
                 base_model: str = "GRU"):
        super().__init__()
        if base_model not in ("GRU", "LSTM"):
            raise ValueError(f"GATs: unknown base_model {base_model!r}; use 'GRU' or 'LSTM'")
        self.rnn = getattr(nn, base_model)(input_size=d_feat, hidden_size=hidden_size, num_layers=num_layers,
                                           batch_first=True, dropout=dropout)
        self.hidden_size = hidden_size
        self.d_feat = d_feat
        self.transformation = nn.Linear(hidden_size, hidden_size)
        self.a = nn.Parameter(torch.randn(hidden_size * 2, 1))
        self.fc = nn.Linear(hidden_size, hidden_size)
        self.fc_out = nn.Linear(hidden_size, 1)
        self.leaky_relu = nn.LeakyReLU()

    def attention(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[N, N]`` weights, row i = how much stock i attends to each stock j of the day."""
        h = self.transformation(hidden)
        dim = h.shape[1]
        score_j = h @ self.a[:dim]            # [N, 1]: the part of the score from the attended stock
        score_i = h @ self.a[dim:]            # [N, 1]: the part from the attending stock
        return torch.softmax(self.leaky_relu(score_i + score_j.t()), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(as_steps(x, self.d_feat))
        hidden = out[:, -1, :]
        hidden = self.attention(hidden).mm(hidden) + hidden
        hidden = self.leaky_relu(self.fc(hidden))
        return self.fc_out(hidden)[..., 0]
