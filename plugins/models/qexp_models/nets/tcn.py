"""Qlib's TCN network (``TCNModel``, after Bai et al. 2018): dilated causal convolutions with weight
normalisation in residual blocks, and a linear head on the last step. ``forward`` takes ``[B, T, d_feat]``
or Qlib's flat ``[B, d_feat * T]`` (d_feat blocks of T lags, i.e. already channels-first).

Weight normalisation uses torch's parametrizations (``net.0.parametrizations.weight.original0/1``); Qlib's
networks use the older hook API, whose ``state_dict`` holds ``conv1.weight_g``/``weight_v`` (twice: also as
``net.0.weight_g``/``weight_v``). A block renames those keys when it loads, so Qlib's saved files load."""
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
        self.register_load_state_dict_pre_hook(_qlib_weight_norm_keys)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = x if self.downsample is None else self.downsample(x)
        return self.relu(self.net(x) + res)


# Qlib's block: conv1/conv2 are net.0/net.4; weight_g/weight_v are the parametrization's original0/original1
_QLIB_CONVS = {"conv1.": "net.0.", "conv2.": "net.4.", "net.0.": "net.0.", "net.4.": "net.4."}
_QLIB_PARTS = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1",
               "bias": "bias"}


def _qlib_weight_norm_keys(module: nn.Module, state_dict: dict, prefix: str, *args: object) -> None:
    """Rename a Qlib block's keys (old weight_norm API) to this block's, in place, before it loads."""
    if not any(k.startswith(prefix) and k.endswith(("weight_g", "weight_v")) for k in state_dict):
        return
    for old_conv, new_conv in _QLIB_CONVS.items():
        for old_part, new_part in _QLIB_PARTS.items():
            old = prefix + old_conv + old_part
            if old in state_dict:
                value = state_dict.pop(old)
                state_dict.setdefault(prefix + new_conv + new_part, value)


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
