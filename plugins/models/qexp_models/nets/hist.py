"""Qlib's HIST network (Xu et al. 2021, "HIST: A Graph-based Framework for Stock Trend Forecasting via Mining
Concept-Oriented Shared Information"): a GRU/LSTM encodes each stock; a predefined-concept module passes
information stock -> concept -> stock (cosine attention), a hidden-concept module does the same with concepts
found among the stocks themselves, and the rest is the individual part; the three forecasts are added.

The concept matrix (stocks x concepts, user-supplied) is a buffer of the network, so a saved model predicts
without the file. Each input row carries its stock's row of that matrix as an index in the last feature of
the last step (the model adds it when it loads data); ``forward`` takes one day's stocks.
Module names match Qlib's, so a pretrained GRU/LSTM base model's ``rnn``/``fc_out`` load into it.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .rnn import as_steps


def _linear(h: int) -> nn.Linear:
    layer = nn.Linear(h, h)
    nn.init.xavier_uniform_(layer.weight)
    return layer


def cos_similarity(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    xy = x.mm(y.t())
    x_norm = torch.sqrt(torch.sum(x * x, dim=1)).reshape(-1, 1)
    y_norm = torch.sqrt(torch.sum(y * y, dim=1)).reshape(-1, 1)
    return xy / (x_norm.mm(y_norm.t()) + 1e-6)


class HISTModel(nn.Module):
    concepts: torch.Tensor

    def __init__(self, d_feat: int = 6, hidden_size: int = 64, num_layers: int = 2, dropout: float = 0.0,
                 base_model: str = "GRU", concepts: np.ndarray | None = None):
        super().__init__()
        if base_model not in ("GRU", "LSTM"):
            raise ValueError(f"HIST: unknown base_model {base_model!r}; use 'GRU' or 'LSTM'")
        self.d_feat, self.hidden_size = d_feat, hidden_size
        self.rnn = getattr(nn, base_model)(input_size=d_feat, hidden_size=hidden_size, num_layers=num_layers,
                                           batch_first=True, dropout=dropout)
        h = hidden_size
        self.fc_es, self.fc_is = _linear(h), _linear(h)
        self.fc_es_middle, self.fc_is_middle = _linear(h), _linear(h)
        self.fc_es_fore, self.fc_is_fore, self.fc_indi_fore = _linear(h), _linear(h), _linear(h)
        self.fc_es_back, self.fc_is_back = _linear(h), _linear(h)
        self.fc_indi = _linear(h)
        self.leaky_relu = nn.LeakyReLU()
        self.fc_out_es, self.fc_out_is, self.fc_out_indi = nn.Linear(h, 1), nn.Linear(h, 1), nn.Linear(h, 1)
        self.fc_out = nn.Linear(h, 1)
        # rows: the stocks of the concept file, then one row of zeros for stocks it does not list
        matrix = np.zeros((1, 1), dtype=np.float32) if concepts is None else np.asarray(concepts, np.float32)
        self.register_buffer("concepts", torch.from_numpy(np.vstack([matrix, np.zeros((1, matrix.shape[1]),
                                                                                      np.float32)])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x[:, -1, -1].long() if x.dim() == 3 else x[:, -1].long()
        x = x[..., :-1]
        out, _ = self.rnn(as_steps(x, self.d_feat))
        x_hidden = out[:, -1, :]
        concept_matrix = self.concepts[rows]                                        # [N, C]
        # predefined concepts: stock -> concept (weights normalised by concept size) -> stock
        weight = concept_matrix / (concept_matrix.sum(0, keepdim=True) * concept_matrix + 1.0)
        hidden = weight.t().mm(x_hidden)
        hidden = hidden[hidden.sum(1) != 0]
        e_shared = torch.softmax(cos_similarity(x_hidden, hidden), dim=1).mm(hidden)
        e_shared = self.fc_es(e_shared)
        e_shared_back = self.fc_es_back(e_shared)
        output_es = self.leaky_relu(self.fc_es_fore(e_shared))
        # hidden concepts: each stock's most similar other stock defines a concept
        i_shared = x_hidden - e_shared_back
        sim = cos_similarity(i_shared, i_shared)
        n = sim.shape[0]
        diag = sim.diagonal(0)
        sim = sim * (1 - torch.eye(n, device=x.device))
        value, column = sim.max(1)
        link = torch.zeros_like(sim)
        link[torch.arange(n, device=x.device), column] = value
        link = link + torch.diag_embed((link.sum(0) != 0).float() * diag)
        hidden = i_shared.t().mm(link).t()
        hidden = hidden[hidden.sum(1) != 0]
        i_info = torch.softmax(cos_similarity(i_shared, hidden), dim=1).mm(hidden)
        i_info = self.fc_is(i_info)
        i_shared_back = self.fc_is_back(i_info)
        output_is = self.leaky_relu(self.fc_is_fore(i_info))
        # the individual part
        output_indi = self.leaky_relu(self.fc_indi(x_hidden - e_shared_back - i_shared_back))
        return self.fc_out(output_es + output_is + output_indi)[..., 0]
