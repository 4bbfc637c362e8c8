"""Qlib's IGMTF network (Xu et al. 2021, "IGMTF: An Instance-wise Graph-based Framework for Multivariate Time
Series Forecasting"): a GRU/LSTM and two linear layers encode each stock; the day's mean encoding picks the
``k_day`` most similar training days from a memory of the training set's encodings, each stock takes its
``n_neighbor`` most similar stocks of those days (cosine similarity of projections) and the prediction reads
its own encoding and the similarity-weighted mean of those neighbours'.

Module names match Qlib's (``rnn``, ``lins``, ``project1``, ``project2``, ``fc_out_pred``; ``fc_output`` is
built but unused, as there), so a pretrained GRU/LSTM base model's ``rnn`` loads into it. The memory is set
by the model before training rounds and before predicting (:meth:`set_memory`); it is not a parameter.
Qlib's sparse top-n mask is written here as a dense scatter (the same numbers).
"""
from __future__ import annotations

import torch
from torch import nn

from .hist import cos_similarity
from .rnn import as_steps


class IGMTFModel(nn.Module):
    """``forward(x: one day's stocks [N, T, d_feat] or flat [N, d_feat * T]) -> [N]``."""

    def __init__(self, d_feat: int = 6, hidden_size: int = 64, num_layers: int = 2, dropout: float = 0.0,
                 base_model: str = "GRU", k_day: int = 10, n_neighbor: int = 10):
        super().__init__()
        if base_model not in ("GRU", "LSTM"):
            raise ValueError(f"IGMTF: unknown base_model {base_model!r}; use 'GRU' or 'LSTM'")
        self.rnn = getattr(nn, base_model)(input_size=d_feat, hidden_size=hidden_size, num_layers=num_layers,
                                           batch_first=True, dropout=dropout)
        self.lins = nn.Sequential()
        for i in range(2):
            self.lins.add_module(f"linear{i}", nn.Linear(hidden_size, hidden_size))
            self.lins.add_module(f"leakyrelu{i}", nn.LeakyReLU())
        self.fc_output = nn.Linear(hidden_size * 2, hidden_size * 2)
        self.project1 = nn.Linear(hidden_size, hidden_size, bias=False)
        self.project2 = nn.Linear(hidden_size, hidden_size, bias=False)
        self.fc_out_pred = nn.Linear(hidden_size * 2, 1)
        self.leaky_relu = nn.LeakyReLU()
        self.d_feat, self.k_day, self.n_neighbor = d_feat, k_day, n_neighbor
        self.memory: tuple[torch.Tensor, list[tuple[int, int]], torch.Tensor] | None = None

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(as_steps(x, self.d_feat))
        return self.lins(out[:, -1, :])

    def set_memory(self, x: torch.Tensor, days: list[tuple[int, int]]) -> None:
        """Encode the training rows ``x`` (one day per span of ``days``) without gradients: the memory the
        days of a batch are compared with."""
        was_training = self.training
        self.eval()
        with torch.no_grad():
            rows = torch.cat([self.hidden(x[a:b]) for a, b in days])
        self.train(was_training)
        means = torch.stack([rows[a:b].mean(dim=0) for a, b in days])
        self.memory = (rows, days, means)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.memory is None:
            raise RuntimeError("IGMTF: the memory of training days is not set (set_memory)")
        rows, days, means = self.memory
        out = self.hidden(x)
        day_sim = cos_similarity(out.mean(dim=0, keepdim=True), means)           # [1, D]
        picked = torch.topk(day_sim, min(self.k_day, len(days)), dim=1)[1][0].tolist()
        sample = self.lins(torch.cat([rows[days[d][0]:days[d][1]] for d in picked]))
        key = self.project2(sample)
        sim = cos_similarity(self.project1(out), key)                            # [N, M]
        top = torch.topk(sim, min(self.n_neighbor, sim.shape[1]), dim=1)
        weight = torch.zeros_like(sim).scatter(1, top.indices, top.values / self.n_neighbor)
        agg = weight.mm(key)
        return self.fc_out_pred(torch.cat([out, agg], dim=1))[..., 0]
