"""Qlib's ADD network (Tang et al. 2022, "Learning Informative Representations of Stock Time Series with
Adversarial Decomposition"): two GRU/LSTM encoders split each stock's sequence into an excess-return part and
a market part. Each part predicts its own target (the excess return; the market's regime, down/flat/up) and,
through a gradient reversal layer, an adversary tries to predict the other part's target from it, which
pushes the two parts to hold different information; a decoder rebuilds the input from both parts.

Module names match Qlib's (``enc_excess``, ``enc_market``, ``dec``, ``pred_excess``, ``adv_excess``,
``adv_market``, ``pred_market``). ``forward`` returns the excess-return prediction only; :meth:`outputs`
gives every head for training. The reversal strength follows Qlib's schedule, set per round by the model.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .rnn import as_steps


class _RevGradFunc(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -grad * ctx.alpha, None


class RevGrad(nn.Module):
    """Identity forward, gradient times ``-alpha`` backward. ``alpha`` after ``p`` rounds is
    ``min(gamma_clip, 2 / (1 + exp(-gamma * p)) - 1)`` (0 in the first round), as Qlib's ``step_alpha``."""

    def __init__(self, gamma: float = 0.1, gamma_clip: float = 0.4):
        super().__init__()
        self.gamma, self.gamma_clip = gamma, gamma_clip
        self.alpha = 0.0

    def set_round(self, p: int) -> None:
        self.alpha = 0.0 if p <= 0 else min(self.gamma_clip, 2 / (1 + math.exp(-self.gamma * p)) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _RevGradFunc.apply(x, self.alpha)


def _rnn(base_model: str, d_feat: int, hidden_size: int, num_layers: int, dropout: float) -> nn.Module:
    if base_model not in ("GRU", "LSTM"):
        raise ValueError(f"ADD: unknown base_model {base_model!r}; use 'GRU' or 'LSTM'")
    return getattr(nn, base_model)(input_size=d_feat, hidden_size=hidden_size, num_layers=num_layers,
                                   batch_first=True, dropout=dropout)


def _head(ctx: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(ctx, ctx), nn.BatchNorm1d(ctx), nn.Tanh(), nn.Linear(ctx, out))


class Decoder(nn.Module):
    def __init__(self, d_feat: int = 6, hidden_size: int = 128, num_layers: int = 1, dropout: float = 0.5,
                 base_model: str = "GRU"):
        super().__init__()
        self.rnn = _rnn(base_model, d_feat, hidden_size, num_layers, dropout)
        self.fc = nn.Linear(hidden_size, d_feat)

    def forward(self, x: torch.Tensor, hidden: Any) -> tuple[torch.Tensor, Any]:
        output, hidden = self.rnn(x.unsqueeze(1), hidden)
        return self.fc(output.squeeze(1)), hidden


class ADDModel(nn.Module):
    def __init__(self, d_feat: int = 6, hidden_size: int = 64, num_layers: int = 1, dropout: float = 0.0,
                 dec_dropout: float = 0.5, base_model: str = "GRU", gamma: float = 0.1, gamma_clip: float = 0.4):
        super().__init__()
        self.d_feat, self.base_model = d_feat, base_model
        self.enc_excess = _rnn(base_model, d_feat, hidden_size, num_layers, dropout)
        self.enc_market = _rnn(base_model, d_feat, hidden_size, num_layers, dropout)
        self.dec = Decoder(d_feat, 2 * hidden_size, num_layers, dec_dropout, base_model)
        ctx = hidden_size * num_layers
        self.pred_excess, self.adv_excess = _head(ctx, 1), _head(ctx, 1)
        self.adv_market, self.pred_market = _head(ctx, 3), _head(ctx, 3)
        self.before_adv_market, self.before_adv_excess = RevGrad(gamma, gamma_clip), RevGrad(gamma, gamma_clip)

    def set_round(self, p: int) -> None:
        self.before_adv_market.set_round(p)
        self.before_adv_excess.set_round(p)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Any, Any]:
        n = x.shape[0]
        _, h_excess = self.enc_excess(x)
        _, h_market = self.enc_market(x)
        last_e = h_excess[0] if self.base_model == "LSTM" else h_excess
        last_m = h_market[0] if self.base_model == "LSTM" else h_market
        # every layer's last hidden state, stock by stock: [N, layers * H]
        return last_e.permute(1, 0, 2).reshape(n, -1), last_m.permute(1, 0, 2).reshape(n, -1), h_excess, h_market

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feature_excess = self._encode(as_steps(x, self.d_feat))[0]
        return self.pred_excess(feature_excess)[:, 0]

    def outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every head: ``excess`` [N], ``market`` [N, 3], ``adv_excess`` [N], ``adv_market`` [N, 3] and
        ``reconstructed_feature`` [N, T, d_feat]."""
        x = as_steps(x, self.d_feat)
        feature_excess, feature_market, h_excess, h_market = self._encode(x)
        out = {"excess": self.pred_excess(feature_excess)[:, 0],
               "market": self.pred_market(feature_market),
               "adv_market": self.adv_market(self.before_adv_market(feature_excess)),
               "adv_excess": self.adv_excess(self.before_adv_excess(feature_market))[:, 0]}
        if self.base_model == "LSTM":
            hidden: Any = tuple(torch.cat([h_excess[i], h_market[i]], -1) for i in range(2))
        else:
            hidden = torch.cat([h_excess, h_market], -1)
        step = torch.zeros_like(x[:, 0, :])
        rebuilt = []
        for _ in range(x.shape[1]):
            step, hidden = self.dec(step, hidden)
            rebuilt.append(step)
        out["reconstructed_feature"] = torch.stack(rebuilt, 1)
        return out
