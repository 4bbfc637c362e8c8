"""Qlib's GRU and LSTM networks (``GRUModel``, ``LSTMModel``): a multi-layer RNN over the steps and a linear
head on the last step's hidden state. Module names match Qlib's (``rnn``, ``fc_out``), so Qlib's saved
``state_dict`` files load, and GATs/HIST/IGMTF can start from these weights.

``forward`` takes ``[B, T, d_feat]``; a flat ``[B, T * d_feat]`` input (Qlib's DatasetH layout, d_feat
blocks of T lags) is reshaped as Qlib does. On the CPU the GRU runs through :mod:`..gru_cpu` when training
and when scoring without gradients (same function and weights, faster than ``nn.GRU`` there).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


def as_steps(x: torch.Tensor, d_feat: int) -> torch.Tensor:
    """``[B, T, d_feat]`` from either ``[B, T, d_feat]`` or Qlib's flat ``[B, d_feat * T]``."""
    if x.dim() == 2:
        return x.reshape(len(x), d_feat, -1).permute(0, 2, 1)
    return x


class _RNNHead(nn.Module):
    rnn_class: Any = nn.GRU

    def __init__(self, d_feat: int = 6, hidden_size: int = 64, num_layers: int = 2, dropout: float = 0.0):
        super().__init__()
        self.rnn = self.rnn_class(input_size=d_feat, hidden_size=hidden_size, num_layers=num_layers,
                                  batch_first=True, dropout=dropout)
        self.fc_out = nn.Linear(hidden_size, 1)
        self.d_feat = d_feat

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The last step's hidden state ``[B, H]``."""
        out, _ = self.rnn(as_steps(x, self.d_feat))
        return out[:, -1, :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(self.hidden(x))[..., 0]


class GRUModel(_RNNHead):
    """``forward(x) -> [B]``; the CPU path uses the fast GRU (``fast_cpu_gru = False`` turns it off)."""

    rnn_class = nn.GRU
    fast_cpu_gru = True

    def __init__(self, d_feat: int = 6, hidden_size: int = 64, num_layers: int = 2, dropout: float = 0.0):
        super().__init__(d_feat, hidden_size, num_layers, dropout)
        self._workspace: Any = None

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        x = as_steps(x, self.d_feat)
        if not self._use_fast_gru(x):
            return super().hidden(x)
        from ..gru_cpu import Workspace, gru_forward
        if self._workspace is None:
            self._workspace = Workspace()
        return gru_forward(self.rnn, x.transpose(0, 1).contiguous(), self._workspace)[-1]

    def _use_fast_gru(self, x: torch.Tensor) -> bool:
        return (self.fast_cpu_gru and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
                and (self.training and torch.is_grad_enabled()
                     or not self.training and not torch.is_grad_enabled()))

    def release_workspace(self) -> None:
        self._workspace = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_workspace"] = None
        return state


class LSTMModel(_RNNHead):
    """``forward(x) -> [B]``."""

    rnn_class = nn.LSTM
