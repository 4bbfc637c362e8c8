"""Qlib's TCN network (``TCNModel``, after Bai et al. 2018): dilated causal convolutions with weight
normalisation in residual blocks, and a linear head on the last step. ``forward`` takes ``[B, T, d_feat]``
or Qlib's flat ``[B, d_feat * T]`` (d_feat blocks of T lags, i.e. already channels-first)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class Chomp1d(nn.Module):
    """Drops the last ``chomp_size`` steps: the right padding that would let a step see the future."""

    def __init__(self, chomp_size: int):
        super().__init__()
        self.chomp_size = chomp_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, : -self.chomp_size].contiguous()


class TemporalBlock(nn.Module):
    def __init__(self, n_inputs: int, n_outputs: int, kernel_size: int, stride: int, dilation: int, padding: int,
                 dropout: float = 0.2):
        super().__init__()
        conv1 = nn.Conv1d(n_inputs, n_outputs, kernel_size, stride=stride, padding=padding, dilation=dilation)
        conv2 = nn.Conv1d(n_outputs, n_outputs, kernel_size, stride=stride, padding=padding, dilation=dilation)
        conv1.weight.data.normal_(0, 0.01)
        conv2.weight.data.normal_(0, 0.01)
        self.net = nn.Sequential(weight_norm(conv1), Chomp1d(padding), nn.ReLU(), nn.Dropout(dropout),
                                 weight_norm(conv2), Chomp1d(padding), nn.ReLU(), nn.Dropout(dropout))
        self.downsample = nn.Conv1d(n_inputs, n_outputs, 1) if n_inputs != n_outputs else None
        if self.downsample is not None:
            self.downsample.weight.data.normal_(0, 0.01)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = x if self.downsample is None else self.downsample(x)
        return self.relu(self.net(x) + res)


class TemporalConvNet(nn.Module):
    def __init__(self, num_inputs: int, num_channels: Sequence[int], kernel_size: int = 2, dropout: float = 0.2):
        super().__init__()
        layers = []
        for i, out_channels in enumerate(num_channels):
            dilation = 2 ** i
            in_channels = num_inputs if i == 0 else num_channels[i - 1]
            layers.append(TemporalBlock(in_channels, out_channels, kernel_size, stride=1, dilation=dilation,
                                        padding=(kernel_size - 1) * dilation, dropout=dropout))
        self.network = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)


class TCNModel(nn.Module):
    """``forward(x) -> [B]``."""

    def __init__(self, num_input: int, output_size: int = 1, num_channels: Sequence[int] = (128,) * 5,
                 kernel_size: int = 5, dropout: float = 0.5):
        super().__init__()
        self.num_input = num_input
        self.tcn = TemporalConvNet(num_input, list(num_channels), kernel_size, dropout=dropout)
        self.linear = nn.Linear(list(num_channels)[-1], output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.reshape(len(x), self.num_input, -1)      # Qlib's flat layout is channels-first already
        else:
            x = x.transpose(1, 2)                          # [B, T, F] -> [B, F, T]
        out = self.linear(self.tcn(x)[:, :, -1])
        return out[..., 0] if out.shape[-1] == 1 else out
