"""Qlib's MLP (``pytorch_nn.Net``): input dropout 0.05, then per layer Linear -> BatchNorm1d -> LeakyReLU(0.1)
(or SiLU), dropout 0.05 and a linear head; Kaiming-normal weights. Module names match Qlib's (``dnn_layers``)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class Net(nn.Module):
    """``forward(x: [B, input_dim]) -> [B, output_dim]``."""

    def __init__(self, input_dim: int, output_dim: int = 1, layers: Sequence[int] = (256,), act: str = "LeakyReLU"):
        super().__init__()
        if act not in ("LeakyReLU", "SiLU"):
            raise ValueError(f"Net: unknown act {act!r}; use 'LeakyReLU' or 'SiLU'")
        sizes = [int(input_dim)] + [int(s) for s in layers]
        blocks: list[nn.Module] = [nn.Dropout(0.05)]
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            activation = nn.LeakyReLU(negative_slope=0.1) if act == "LeakyReLU" else nn.SiLU()
            blocks.append(nn.Sequential(nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), activation))
        blocks.append(nn.Dropout(0.05))
        blocks.append(nn.Linear(sizes[-1], output_dim))
        self.dnn_layers = nn.ModuleList(blocks)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, a=0.1, mode="fan_in", nonlinearity="leaky_relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.dnn_layers:
            x = layer(x)
        return x
