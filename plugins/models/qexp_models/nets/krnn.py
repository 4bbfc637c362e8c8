"""Qlib's KRNN and Sandwich networks: a 1-D convolution over the steps, then K parallel GRUs whose outputs are
averaged (the "K-RNN"); Sandwich stacks two such encoders. A linear head reads the last step.

Input ``[B, T, fea_dim]`` (the loop's steps layout; Alpha360 -> ``[B, 60, 6]``, oldest step first) or flat
rows ``[B, fea_dim * T]`` (GeneralPTNN on a DatasetH), read as the other nets read them. Qlib's own forward
views flat Alpha360 rows as ``[B, 60, 6]`` *without* the transpose its other models apply, so each of its
"steps" mixes lags of one price; here every net sees the same, time-ordered steps. ``device`` is accepted for
Qlib's signature (``pt_model_kwargs`` written for Qlib) and unused: the model moves the network.
"""
from __future__ import annotations

import torch
from torch import nn

from .rnn import as_steps


class CNNEncoderBase(nn.Module):
    def __init__(self, input_dim: int, output_dim: int, kernel_size: int):
        super().__init__()
        self.input_dim, self.output_dim = input_dim, output_dim
        self.conv = nn.Conv1d(input_dim, output_dim, kernel_size, padding=(kernel_size - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:             # [B, T, in] -> [B, T', out]
        return self.conv(x.transpose(1, 2)).transpose(1, 2)


class KRNNEncoderBase(nn.Module):
    """``dup_num`` GRUs over the same input, their outputs averaged."""

    def __init__(self, input_dim: int, output_dim: int, dup_num: int, rnn_layers: int, dropout: float):
        super().__init__()
        self.rnn_modules = nn.ModuleList([nn.GRU(input_dim, output_dim, num_layers=rnn_layers, dropout=dropout)
                                          for _ in range(dup_num)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:             # [B, T, in] -> [B, T, out]
        steps = x.transpose(0, 1)                                    # time-major, as Qlib's GRUs
        hids = torch.stack([rnn(steps)[0] for rnn in self.rnn_modules], dim=-1).mean(dim=-1)
        return hids.transpose(0, 1)


class CNNKRNNEncoder(nn.Module):
    def __init__(self, cnn_input_dim: int, cnn_output_dim: int, cnn_kernel_size: int, rnn_output_dim: int,
                 rnn_dup_num: int, rnn_layers: int, dropout: float):
        super().__init__()
        self.cnn_encoder = CNNEncoderBase(cnn_input_dim, cnn_output_dim, cnn_kernel_size)
        self.krnn_encoder = KRNNEncoderBase(cnn_output_dim, rnn_output_dim, rnn_dup_num, rnn_layers, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.krnn_encoder(self.cnn_encoder(x))


class KRNNModel(nn.Module):
    """``forward(x: [B, T, fea_dim]) -> [B]``."""

    def __init__(self, fea_dim: int, cnn_dim: int, cnn_kernel_size: int, rnn_dim: int, rnn_dups: int,
                 rnn_layers: int, dropout: float, device: object = None):
        super().__init__()
        self.fea_dim = fea_dim
        self.encoder = CNNKRNNEncoder(fea_dim, cnn_dim, cnn_kernel_size, rnn_dim, rnn_dups, rnn_layers, dropout)
        self.out_fc = nn.Linear(rnn_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_fc(self.encoder(as_steps(x, self.fea_dim))[:, -1, :])[..., 0]


class SandwichModel(nn.Module):
    """Two CNN-KRNN encoders in a row (``forward(x: [B, T, fea_dim]) -> [B]``)."""

    def __init__(self, fea_dim: int, cnn_dim_1: int, cnn_dim_2: int, cnn_kernel_size: int, rnn_dim_1: int,
                 rnn_dim_2: int, rnn_dups: int, rnn_layers: int, dropout: float, device: object = None):
        super().__init__()
        self.fea_dim = fea_dim
        self.first_encoder = CNNKRNNEncoder(fea_dim, cnn_dim_1, cnn_kernel_size, rnn_dim_1, rnn_dups, rnn_layers,
                                            dropout)
        self.second_encoder = CNNKRNNEncoder(rnn_dim_1, cnn_dim_2, cnn_kernel_size, rnn_dim_2, rnn_dups, rnn_layers,
                                             dropout)
        self.out_fc = nn.Linear(rnn_dim_2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_fc(self.second_encoder(self.first_encoder(as_steps(x, self.fea_dim)))[:, -1, :])[..., 0]
