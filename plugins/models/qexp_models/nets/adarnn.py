"""Qlib's AdaRNN network (Du et al. 2021, "AdaRNN: Adaptive Learning and Forecasting of Time Series"):
stacked one-layer GRUs whose hidden states of two periods (domains) of the training data are pulled
together by a distribution distance, step by step and layer by layer, with importance weights per time step:
learned by a gate while pretraining, then boosted where the distance grows.

Module names match Qlib's (``features``, ``fc_out``, ``gate``, ``bn_lst``). ``forward`` predicts from the
last layer's last step; :meth:`layer_outputs`, :meth:`gate_weights` and :func:`transfer_loss` serve the
model's training step. Qlib's one-layer GRUs ignore their ``dropout``; here it applies between the layers.
"""
from __future__ import annotations

import torch
from torch import nn

from .rnn import as_steps

TRANSFER_LOSSES = ("mmd", "mmd_lin", "mmd_rbf", "coral", "cosine", "cos", "kl", "js", "pairwise")


class AdaRNNModel(nn.Module):
    def __init__(self, d_feat: int = 6, hidden_size: int = 64, num_layers: int = 2, dropout: float = 0.0,
                 len_seq: int = 60):
        super().__init__()
        self.d_feat, self.len_seq, self.num_layers = d_feat, len_seq, num_layers
        sizes = [d_feat] + [hidden_size] * num_layers
        self.features = nn.ModuleList([nn.GRU(input_size=a, hidden_size=b, num_layers=1, batch_first=True)
                                       for a, b in zip(sizes[:-1], sizes[1:])])
        self.drop = nn.Dropout(dropout)
        self.fc_out = nn.Linear(hidden_size, 1)
        gates = [nn.Linear(len_seq * hidden_size * 2, len_seq) for _ in range(num_layers)]
        for g in gates:
            nn.init.normal_(g.weight, 0, 0.05)
            nn.init.zeros_(g.bias)
        self.gate = nn.ModuleList(gates)
        self.bn_lst = nn.ModuleList([nn.BatchNorm1d(len_seq) for _ in range(num_layers)])

    def layer_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's hidden states ``[B, T, H]``."""
        outs = []
        h = as_steps(x, self.d_feat)
        for i, rnn in enumerate(self.features):
            h, _ = rnn(self.drop(h) if i else h)
            outs.append(h)
        return outs

    def head(self, last: torch.Tensor) -> torch.Tensor:
        return self.fc_out(last[:, -1, :])[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer_outputs(x)[-1])

    def gate_weights(self, out: torch.Tensor, layer: int) -> torch.Tensor:
        """``[T]`` importance of each step for the distance of layer ``layer``, from the states of a batch
        whose first half is one domain and second half the other."""
        half = out.shape[0] // 2
        both = torch.cat((out[:half], out[half:2 * half]), 2).reshape(half, -1)
        weight = torch.sigmoid(self.bn_lst[layer](self.gate[layer](both))).mean(dim=0)
        return torch.softmax(weight, dim=0)


def transfer_loss(kind: str, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Distances between the rows of ``s`` and ``t`` ``[T, B, H]`` at each of the ``T`` steps: ``[T]``.

    ``mmd``/``mmd_lin``: squared distance of the means; ``mmd_rbf``: MMD with five Gaussian kernels;
    ``coral``: squared Frobenius distance of the covariances / 4H^2; ``cosine``: 1 - cosine of the mean
    states (Qlib compares the scalar means, whose cosine is only their sign); ``kl``/``js``: divergences of
    each row's softmax over the hidden units (Qlib takes logs of states that may be negative); ``pairwise``:
    the norm of the row-to-row squared distances.
    """
    if kind in ("mmd", "mmd_lin"):
        d = s.mean(1) - t.mean(1)
        return (d * d).sum(-1)
    if kind in ("cosine", "cos"):
        return 1 - torch.cosine_similarity(s.mean(1), t.mean(1), dim=-1)
    if kind == "coral":
        h = s.shape[-1]
        return ((_cov(s) - _cov(t)) ** 2).sum((1, 2)) / (4 * h * h)
    if kind in ("kl", "js"):
        n = min(s.shape[1], t.shape[1])
        p, q = torch.softmax(s[:, :n], -1), torch.softmax(t[:, :n], -1)
        if kind == "kl":
            return _kl(q, p)
        m = 0.5 * (p + q)
        return 0.5 * (_kl(p, m) + _kl(q, m))
    if kind == "mmd_rbf":
        return torch.stack([_mmd_rbf(s[i], t[i]) for i in range(s.shape[0])])
    if kind == "pairwise":
        return torch.stack([torch.norm(torch.cdist(s[i], t[i]) ** 2) for i in range(s.shape[0])])
    raise ValueError(f"unknown transfer loss {kind!r}; use one of {', '.join(TRANSFER_LOSSES)}")


def _cov(x: torch.Tensor) -> torch.Tensor:
    xc = x - x.mean(1, keepdim=True)
    return xc.transpose(1, 2) @ xc / max(x.shape[1] - 1, 1)


def _kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per step, averaged over rows: ``[T]``."""
    return (p * (torch.log(p + 1e-12) - torch.log(q + 1e-12))).sum(-1).mean(-1)


def _mmd_rbf(x: torch.Tensor, y: torch.Tensor, mul: float = 2.0, num: int = 5) -> torch.Tensor:
    total = torch.cat([x, y])
    d2 = torch.cdist(total, total) ** 2
    n = len(total)
    bandwidth = d2.detach().sum() / max(n * n - n, 1) / mul ** (num // 2)
    kernel = torch.stack([torch.exp(-d2 / (bandwidth * mul ** i + 1e-12)) for i in range(num)]).sum(0)
    b = len(x)
    return kernel[:b, :b].mean() + kernel[b:, b:].mean() - kernel[:b, b:].mean() - kernel[b:, :b].mean()
