"""Qlib's Transformer and Localformer networks: a linear feature layer, sinusoidal positions, a
``TransformerEncoder`` (Localformer: each layer's input plus a 1-D convolution of it, then a GRU) and a
linear head on the last step. Module names match Qlib's. ``forward`` takes ``[B, T, d_feat]`` or Qlib's flat
``[B, d_feat * T]``."""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from .rnn import as_steps


class PositionalEncoding(nn.Module):
    pe: torch.Tensor

    def __init__(self, d_model: int, max_len: int = 1000):
        super().__init__()
        pe = torch.zeros(max_len, d_model)
        position = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe.unsqueeze(0).transpose(0, 1))   # [max_len, 1, d_model]

    def forward(self, x: torch.Tensor) -> torch.Tensor:                # [T, B, d_model]
        return x + self.pe[: x.size(0), :]


class Transformer(nn.Module):
    """``forward(x) -> [B]``; Qlib's layer sizes (``nn.TransformerEncoderLayer`` defaults: 2048 feed-forward
    units, ReLU, post-norm; time-major)."""

    def __init__(self, d_feat: int = 6, d_model: int = 8, nhead: int = 4, num_layers: int = 2,
                 dropout: float = 0.5, device: object = None):
        super().__init__()
        if d_model % nhead:
            raise ValueError(f"Transformer: d_model={d_model} must be a multiple of nhead={nhead}")
        self.feature_layer = nn.Linear(d_feat, d_model)
        self.pos_encoder = PositionalEncoding(d_model)
        self.encoder_layer = nn.TransformerEncoderLayer(d_model=d_model, nhead=nhead, dropout=dropout)
        self.transformer_encoder = self._encoder(num_layers, d_model)
        self.decoder_layer = nn.Linear(d_model, 1)
        self.d_feat = d_feat

    def _encoder(self, num_layers: int, d_model: int) -> nn.Module:
        return nn.TransformerEncoder(self.encoder_layer, num_layers=num_layers, enable_nested_tensor=False)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        src = self.feature_layer(as_steps(x, self.d_feat)).transpose(1, 0)   # [T, B, d_model]
        return self.transformer_encoder(self.pos_encoder(src), None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.encode(x)
        return self.decoder_layer(out[-1])[..., 0]


class LocalformerEncoder(nn.Module):
    """Encoder layers whose input is the previous output plus a width-3 convolution of it over time."""

    def __init__(self, encoder_layer: nn.Module, num_layers: int, d_model: int):
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(encoder_layer) for _ in range(num_layers)])
        self.conv = nn.ModuleList([nn.Conv1d(d_model, d_model, 3, 1, 1) for _ in range(num_layers)])
        self.num_layers = num_layers

    def forward(self, src: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        output = out = src
        for layer, conv in zip(self.layers, self.conv):
            out = conv(output.permute(1, 2, 0)).permute(2, 0, 1)            # [T, B, F] -> [B, F, T] and back
            output = layer(output + out, src_mask=mask)
        return output + out


class Localformer(Transformer):
    """Qlib's ``pytorch_localformer.Transformer``: the Localformer encoder followed by a GRU."""

    def __init__(self, d_feat: int = 6, d_model: int = 8, nhead: int = 4, num_layers: int = 2,
                 dropout: float = 0.5, device: object = None):
        super().__init__(d_feat, d_model, nhead, num_layers, dropout, device)
        self.rnn = nn.GRU(input_size=d_model, hidden_size=d_model, num_layers=num_layers, batch_first=False,
                          dropout=dropout)

    def _encoder(self, num_layers: int, d_model: int) -> nn.Module:
        return LocalformerEncoder(self.encoder_layer, num_layers, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.encode(x))
        return self.decoder_layer(out[-1])[..., 0]
