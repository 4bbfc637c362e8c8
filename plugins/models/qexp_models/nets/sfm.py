"""Qlib's SFM network (Zhang, Aggarwal, Qi 2017, "Stock Price Prediction via Discovering Multi-Frequency
Trading Patterns"): an LSTM-like cell whose memory is a (hidden x frequency) matrix of complex amplitudes; the
forget gate is the outer product of a state gate and a frequency gate, and the output reads the amplitudes
``|S|^2`` through ``U_a``. Parameter names match Qlib's (``W_i``, ``U_i``, ..., ``fc_out``).

``forward`` takes ``[B, T, d_feat]`` or Qlib's flat ``[B, d_feat * T]``. Qlib's dropout masks are constant
ones (its ``dropout_W``/``dropout_U`` have no effect); so are these.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import init

from .rnn import as_steps


def _w(*shape: int, orthogonal: bool = False) -> nn.Parameter:
    t = torch.empty(*shape)
    return nn.Parameter(init.orthogonal_(t) if orthogonal else init.xavier_uniform_(t))


class SFM_Model(nn.Module):  # noqa: N801 - Qlib's name
    def __init__(self, d_feat: int = 6, output_dim: int = 1, freq_dim: int = 10, hidden_size: int = 64,
                 dropout_W: float = 0.0, dropout_U: float = 0.0, device: object = None):  # noqa: N803
        super().__init__()
        d, h, k = d_feat, hidden_size, freq_dim
        self.input_dim, self.hidden_dim, self.freq_dim, self.output_dim = d, h, k, output_dim
        self.W_i, self.U_i, self.b_i = _w(d, h), _w(h, h, orthogonal=True), nn.Parameter(torch.zeros(h))
        self.W_ste, self.U_ste, self.b_ste = _w(d, h), _w(h, h, orthogonal=True), nn.Parameter(torch.ones(h))
        self.W_fre, self.U_fre, self.b_fre = _w(d, k), _w(h, k, orthogonal=True), nn.Parameter(torch.ones(k))
        self.W_c, self.U_c, self.b_c = _w(d, h), _w(h, h, orthogonal=True), nn.Parameter(torch.zeros(h))
        self.W_o, self.U_o, self.b_o = _w(d, h), _w(h, h, orthogonal=True), nn.Parameter(torch.zeros(h))
        self.U_a, self.b_a = _w(k, 1, orthogonal=True), nn.Parameter(torch.zeros(h))
        self.W_p, self.b_p = _w(h, output_dim), nn.Parameter(torch.zeros(output_dim))
        self.activation = nn.Tanh()
        self.inner_activation = nn.Hardsigmoid()
        self.dropout_W, self.dropout_U = dropout_W, dropout_U
        self.fc_out = nn.Linear(output_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = as_steps(x, self.input_dim)
        batch, steps = x.shape[0], x.shape[1]
        h = x.new_zeros(batch, self.hidden_dim)
        s_re = x.new_zeros(batch, self.hidden_dim, self.freq_dim)
        s_im = x.new_zeros(batch, self.hidden_dim, self.freq_dim)
        freq = torch.arange(self.freq_dim, device=x.device, dtype=x.dtype) / self.freq_dim
        # the input projections of all steps at once: [B, T, ...]
        x_i, x_ste = x @ self.W_i + self.b_i, x @ self.W_ste + self.b_ste
        x_fre, x_c, x_o = x @ self.W_fre + self.b_fre, x @ self.W_c + self.b_c, x @ self.W_o + self.b_o
        p = x.new_zeros(batch, self.output_dim)
        for t in range(steps):
            i = self.inner_activation(x_i[:, t] + h @ self.U_i)
            ste = self.inner_activation(x_ste[:, t] + h @ self.U_ste)
            fre = self.inner_activation(x_fre[:, t] + h @ self.U_fre)
            f = ste.unsqueeze(2) * fre.unsqueeze(1)                          # [B, H, K]
            c = (i * self.activation(x_c[:, t] + h @ self.U_c)).unsqueeze(2)  # [B, H, 1]
            omega = 2 * math.pi * (t + 1) * freq                              # [K]
            s_re = f * s_re + c * torch.cos(omega)
            s_im = f * s_im + c * torch.sin(omega)
            amplitude = s_re * s_re + s_im * s_im                             # [B, H, K]
            a = self.activation((amplitude @ self.U_a)[..., 0] + self.b_a)    # [B, H]
            o = self.inner_activation(x_o[:, t] + h @ self.U_o)
            h = o * a
            p = h @ self.W_p + self.b_p
        return self.fc_out(p)[..., 0]
