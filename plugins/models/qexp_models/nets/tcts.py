"""Qlib's TCTS networks (Wu et al. 2021, "Temporally Correlated Task Scheduling for Sequence Learning"): the
forecasting GRU (``fore``, Qlib's ``GRUModel``) and the scheduler (``weight``, Qlib's ``MLPModel``), which
reads a sample (its features, the forecaster's errors on every task, the labels, the forecast and the target
task's one-hot code) and gives a softmax weight per task. ``forward`` is the forecaster's."""
from __future__ import annotations

import torch
from torch import nn

from .rnn import GRUModel


class MLPModel(nn.Module):
    def __init__(self, d_feat: int, hidden_size: int = 256, num_layers: int = 3, dropout: float = 0.0,
                 output_dim: int = 1):
        super().__init__()
        self.mlp = nn.Sequential()
        for i in range(num_layers):
            if i > 0:
                self.mlp.add_module(f"drop_{i}", nn.Dropout(dropout))
            self.mlp.add_module(f"fc_{i}", nn.Linear(d_feat if i == 0 else hidden_size, hidden_size))
            self.mlp.add_module(f"relu_{i}", nn.ReLU())
        self.mlp.add_module("fc_out", nn.Linear(hidden_size, output_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.mlp(x), dim=1)


class TCTSModel(nn.Module):
    def __init__(self, d_feat: int = 6, hidden_size: int = 64, num_layers: int = 2, dropout: float = 0.0,
                 input_dim: int = 360, output_dim: int = 5):
        super().__init__()
        self.fore = GRUModel(d_feat, hidden_size, num_layers, dropout)
        self.weight = MLPModel(input_dim + 3 * output_dim + 1, hidden_size, num_layers, dropout, output_dim)
        self.output_dim = output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fore(x)

    def task_weights(self, x: torch.Tensor, pred: torch.Tensor, labels: torch.Tensor, target: int) -> torch.Tensor:
        """``[B, tasks]`` softmax weights for the rows ``x`` [B, F] with forecasts ``pred`` [B] and labels
        [B, tasks]."""
        code = torch.zeros(len(x), self.output_dim, device=x.device, dtype=x.dtype)
        code[:, target] = 1
        dis = pred[:, None] - labels
        return self.weight(torch.cat((x.reshape(len(x), -1), dis, labels, pred[:, None], code), 1))
