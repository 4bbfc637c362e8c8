"""The ALSTM network (Qlib's ``ALSTMModel``): an input layer, a GRU/LSTM, temporal attention, and a linear
head on the last hidden state joined with the attention summary.

Module names match Qlib's (``net.fc_in``, ``rnn``, ``att_net.att_fc_in``, ``fc_out``...), so a Qlib
``state_dict`` loads into it. Unlike Qlib's, ``forward`` takes ``[batch, steps, d_feat]`` for both dataset
kinds: the model reshapes Alpha360's flat 360 columns once, when it loads the data, not per batch.
This module imports torch; the model imports it only when it fits or predicts.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

RNN_TYPES = ("GRU", "LSTM")


class ALSTMNet(nn.Module):
    """``forward(x: [B, T, d_feat]) -> [B]`` scores.

    A GRU on the CPU runs through :mod:`.gru_cpu` when training and when scoring without gradients (same
    function and weights, faster); set ``fast_cpu_gru = False`` to use ``nn.GRU`` there too. GPUs always use
    ``nn.GRU`` (cuDNN).
    """

    fast_cpu_gru = True

    def __init__(self, d_feat: int = 6, hidden_size: int = 64, num_layers: int = 2, dropout: float = 0.0,
                 rnn_type: str = "GRU"):
        super().__init__()
        rnn_type = rnn_type.upper()
        if rnn_type not in RNN_TYPES:
            raise ValueError(f"ALSTM: unknown rnn_type {rnn_type!r}; use one of {', '.join(RNN_TYPES)}")
        self.d_feat = d_feat
        self.hidden_size = hidden_size
        self.net = nn.Sequential()
        self.net.add_module("fc_in", nn.Linear(d_feat, hidden_size))
        self.net.add_module("act", nn.Tanh())
        self.rnn = getattr(nn, rnn_type)(input_size=hidden_size, hidden_size=hidden_size, num_layers=num_layers,
                                         batch_first=True, dropout=dropout)
        self.fc_out = nn.Linear(hidden_size * 2, 1)
        self.att_net = nn.Sequential()
        self.att_net.add_module("att_fc_in", nn.Linear(hidden_size, int(hidden_size / 2)))
        self.att_net.add_module("att_dropout", nn.Dropout(dropout))
        self.att_net.add_module("att_act", nn.Tanh())
        self.att_net.add_module("att_fc_out", nn.Linear(int(hidden_size / 2), 1, bias=False))
        self.att_net.add_module("att_softmax", nn.Softmax(dim=1))
        self._workspace: Any = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._use_fast_gru(x):
            return self._forward_time_major(x)
        rnn_out, _ = self.rnn(self.net(x))                       # [B, T, H]
        score = self.att_net(rnn_out)                            # [B, T, 1], softmax over time
        att = torch.sum(rnn_out * score, dim=1)                  # [B, H]
        out = self.fc_out(torch.cat((rnn_out[:, -1, :], att), dim=1))
        return out[..., 0]

    def _use_fast_gru(self, x: torch.Tensor) -> bool:
        # training (with gradients) or scoring (without); not an eval-mode pass that needs gradients
        return (self.fast_cpu_gru and x.device.type == "cpu" and isinstance(self.rnn, nn.GRU)
                and x.dtype in (torch.float32, torch.float64)
                and (self.training and torch.is_grad_enabled()
                     or not self.training and not torch.is_grad_enabled()))

    def _forward_time_major(self, x: torch.Tensor) -> torch.Tensor:
        """The same computation as ``forward``, time-major so each step's rows are contiguous."""
        from .gru_cpu import Workspace, gru_forward, linear_tanh, tanh
        if self._workspace is None:
            self._workspace = Workspace()
        fc_in: nn.Linear = self.net.fc_in  # type: ignore[assignment]  # Sequential children are typed Module
        inputs = linear_tanh(x.transpose(0, 1).contiguous(), fc_in)                   # [T, B, H]
        rnn_out = gru_forward(self.rnn, inputs, self._workspace)                       # [T, B, H]
        att: Any = self.att_net  # named children of a Sequential (Qlib's module names)
        score = att.att_fc_out(tanh(att.att_dropout(att.att_fc_in(rnn_out))))         # [T, B, 1]
        score = torch.softmax(score, dim=0)                                            # over time
        summary = torch.sum(rnn_out * score, dim=0)                                    # [B, H]
        out = self.fc_out(torch.cat((rnn_out[-1], summary), dim=1))
        return out[..., 0]

    def release_workspace(self) -> None:
        """Free the CPU training buffers (hundreds of MB at Qlib's sizes) once training is over."""
        self._workspace = None


def flat_to_steps(x: torch.Tensor, d_feat: int) -> torch.Tensor:
    """Qlib's reshape of flat features (Alpha360: 6 blocks of 60 lags) to ``[N, T, d_feat]``:
    ``x.reshape(N, d_feat, -1).permute(0, 2, 1)``, made contiguous once."""
    return x.reshape(len(x), d_feat, -1).permute(0, 2, 1).contiguous()
