"""The networks of Qlib's TRA model (``qlib/contrib/model/pytorch_tra.py``; Lin et al., "Learning Multiple
Stock Trading Patterns with Temporal Routing Adaptor and Optimal Transport", KDD 2021).

- backbones ``RNN`` (GRU/LSTM/RNN with the concat attention of Adv-ALSTM) and ``Transformer`` turn a
  ``[B, T, F]`` window into a latent representation ``[B, output_size]``;
- :class:`TRA` holds ``num_states`` linear predictors on that representation and a router that picks one per
  sample (or per day) from the representation (``LR``), from the predictors' recent errors read from the
  dataset's memory through a small RNN (``TPE``, temporal prediction errors), or both (``LR_TPE``);
- :func:`transport` computes, for a batch, every predictor's loss, the optimal-transport assignment of samples
  to predictors (Sinkhorn iterations on the min-max normalised losses fused with the historical ones by
  ``alpha``), the prediction (``router``: the Gumbel-softmax choice when training, the router's argmax when
  not; ``oracle``: the transport plan) and the loss to minimise.

Module names match Qlib's (``model``/``tra`` parts, ``input_proj``, ``rnn``, ``W``, ``u``, ``predictors``,
``router``, ``fc``), so Qlib's ``model.bin`` files (``{"model": ..., "tra": ...}``) load.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

EPS = 1e-12
SRC_INFO = ("LR", "TPE", "LR_TPE")
RNN_ARCHS = ("GRU", "LSTM", "RNN")


class RNN(nn.Module):
    """Qlib's TRA backbone ``RNN``: an optional linear compression (when ``hidden_size < input_size``), a
    multi-layer RNN, and ``[mean over layers of the last hidden states, attention over the steps]``."""

    def __init__(self, input_size: int = 16, hidden_size: int = 64, num_layers: int = 2, rnn_arch: str = "GRU",
                 use_attn: bool = True, dropout: float = 0.0, **kwargs: Any):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.rnn_arch, self.use_attn = rnn_arch, bool(use_attn)
        self.input_proj = nn.Linear(input_size, hidden_size) if hidden_size < input_size else None
        self.rnn = getattr(nn, rnn_arch)(input_size=min(input_size, hidden_size), hidden_size=hidden_size,
                                         num_layers=num_layers, batch_first=True,
                                         dropout=dropout if num_layers > 1 else 0.0)
        if self.use_attn:
            self.W = nn.Linear(hidden_size, hidden_size)
            self.u = nn.Linear(hidden_size, 1, bias=False)
            self.output_size = hidden_size * 2
        else:
            self.output_size = hidden_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_proj is not None:
            x = self.input_proj(x)
        rnn_out, last = self.rnn(x)
        if self.rnn_arch == "LSTM":
            last = last[0]
        out = last.mean(dim=0)
        if self.use_attn:
            scores = self.u(self.W(rnn_out).tanh()).softmax(dim=1)
            out = torch.cat([out, (rnn_out * scores).sum(dim=1)], dim=1)
        return out


class PositionalEncoding(nn.Module):
    """Sinusoidal positions added to time-major inputs ``[T, B, d]``, then dropout."""

    pe: torch.Tensor

    def __init__(self, d_model: int, dropout: float = 0.1, max_len: int = 5000):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        pe = torch.zeros(max_len, d_model)
        position = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term[: d_model // 2])  # an odd d_model has one cosine fewer
        self.register_buffer("pe", pe.unsqueeze(0).transpose(0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x + self.pe[: x.size(0), :])


class Transformer(nn.Module):
    """Qlib's TRA backbone ``Transformer``: positions added to the raw inputs, a linear projection to
    ``hidden_size``, ``num_layers`` encoder layers (feed-forward ``4 * hidden_size``); the last step's output."""

    def __init__(self, input_size: int = 16, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 2,
                 dropout: float = 0.0, **kwargs: Any):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"TRAModel: model_config.hidden_size={hidden_size} must be a multiple of "
                             f"num_heads={num_heads}")
        self.input_size, self.hidden_size, self.num_layers, self.num_heads = (input_size, hidden_size, num_layers,
                                                                              num_heads)
        self.input_proj = nn.Linear(input_size, hidden_size)
        self.pe = PositionalEncoding(input_size, dropout)
        layer = nn.TransformerEncoderLayer(nhead=num_heads, dropout=dropout, d_model=hidden_size,
                                           dim_feedforward=hidden_size * 4)
        self.encoder = nn.TransformerEncoder(layer, num_layers=num_layers, enable_nested_tensor=False)
        self.output_size = hidden_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pe(x.permute(1, 0, 2).contiguous())  # time first
        return self.encoder(self.input_proj(x))[-1]


BACKBONES: dict[str, Any] = {"RNN": RNN, "Transformer": Transformer}


class TRA(nn.Module):
    """Temporal Routing Adaptor: ``num_states`` predictors and a router (see the module docstring).

    ``forward(hidden, hist_loss)`` returns ``(preds [B, S], choice, prob)``: ``prob`` the router's softmax
    (temperature ``tau``), ``choice`` a hard Gumbel-softmax sample of it when training (None otherwise, so
    evaluation draws no random numbers); both None with one state.
    """

    def __init__(self, input_size: int, num_states: int = 1, hidden_size: int = 8, rnn_arch: str = "GRU",
                 num_layers: int = 1, dropout: float = 0.0, tau: float = 1.0, src_info: str = "LR_TPE"):
        super().__init__()
        self.num_states, self.tau, self.rnn_arch, self.src_info = num_states, tau, rnn_arch, src_info
        self.predictors = nn.Linear(input_size, num_states)
        self.router: nn.Module | None = None
        self.fc: nn.Module | None = None
        if num_states > 1:
            if "TPE" in src_info:
                self.router = getattr(nn, rnn_arch)(input_size=num_states, hidden_size=hidden_size,
                                                    num_layers=num_layers, batch_first=True,
                                                    dropout=dropout if num_layers > 1 else 0.0)
                self.fc = nn.Linear(hidden_size + input_size if "LR" in src_info else hidden_size, num_states)
            else:
                self.fc = nn.Linear(input_size, num_states)

    def reset_parameters(self) -> None:
        for child in self.children():
            child.reset_parameters()  # type: ignore[operator]

    def router_parameters(self) -> list[nn.Parameter]:
        return [p for m in (self.router, self.fc) if m is not None for p in m.parameters()]

    def forward(self, hidden: torch.Tensor, hist_loss: torch.Tensor) -> tuple[torch.Tensor, Any, Any]:
        preds = self.predictors(hidden)
        if self.num_states == 1:
            return preds, None, None
        assert self.fc is not None
        if self.router is not None:  # TPE: the predictors' recent errors through an RNN
            out = self.router(hist_loss)[1]
            if self.rnn_arch == "LSTM":
                out = out[0]
            out = out.mean(dim=0)
            if "LR" in self.src_info:
                out = torch.cat([hidden, out], dim=-1)
        else:
            out = hidden
        out = self.fc(out)
        choice = F.gumbel_softmax(out, dim=-1, tau=self.tau, hard=True) if self.training else None
        prob = torch.softmax(out / self.tau, dim=-1)
        return preds, choice, prob


class TRANet(nn.Module):
    """A backbone (``model``) and its :class:`TRA` head (``tra``), as one module for the shared loop."""

    def __init__(self, model: nn.Module, tra: TRA):
        super().__init__()
        self.model = model
        self.tra = tra

    def forward(self, data: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, Any, Any]:
        return self.tra(self.model(data), state)


# ---- optimal transport ------------------------------------------------------------------------------------
def minmax_norm(x: torch.Tensor) -> torch.Tensor:
    """Each row scaled to [0, 1]; a constant row becomes all ones."""
    lo = x.min(dim=-1, keepdim=True).values
    hi = x.max(dim=-1, keepdim=True).values
    out = (x - lo) / (hi - lo + EPS)
    return torch.where(lo == hi, torch.ones_like(out), out)


def sinkhorn(q: torch.Tensor, n_iters: int = 3, epsilon: float = 0.1) -> torch.Tensor:
    """The entropic optimal-transport plan of the scores ``q`` [n, S]: ``exp(q / epsilon)`` (an infinity
    replaced by the largest finite value), then columns and rows normalised in turn ``n_iters`` times."""
    with torch.no_grad():
        q = torch.exp(q / epsilon)
        inf = torch.isinf(q)
        if bool(inf.any()):
            q = torch.where(inf, q.masked_fill(inf, 0).max(), q)
        for _ in range(n_iters):
            q = q / q.sum(dim=0, keepdim=True)
            q = q / q.sum(dim=1, keepdim=True)
    return q


def masked_mse(pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the rows with a label (per column for ``[n, S]`` predictions)."""
    mask = ~torch.isnan(label)
    if pred.dim() == 2:
        return (pred[mask] - label[mask, None]).pow(2).mean(dim=0)
    return (pred[mask] - label[mask]).pow(2).mean()


def transport(all_preds: torch.Tensor, label: torch.Tensor, choice: Any, prob: Any, hist_loss: torch.Tensor,
              count: Any, method: str, alpha: float, training: bool) -> tuple[torch.Tensor, torch.Tensor,
                                                                              torch.Tensor, torch.Tensor]:
    """One batch's ``(loss, pred, L, P)``.

    ``count`` None: one routing per sample (``L``, ``P``: [samples, S]); else the samples per day of a daily
    batch (one routing per day; ``L``, ``P``: [days, S]). ``L`` is each predictor's min-max normalised loss
    (what the memory keeps), ``P`` the Sinkhorn plan on ``alpha * L + (1 - alpha) * hist_loss`` (both
    normalised). ``method`` ``"router"``: the prediction of the routed predictor, loss = its MSE; ``"oracle"``:
    the plan-weighted prediction and loss (it reads the labels: Qlib uses it to pretrain).
    """
    mask = ~torch.isnan(label)
    err = torch.where(mask[:, None], all_preds - torch.nan_to_num(label)[:, None], torch.zeros_like(all_preds))
    err = err.pow(2)                                                        # [samples, S]
    if count is None:
        all_loss = err
        day = None
    else:
        counts = torch.as_tensor(count, device=all_preds.device)
        day = torch.repeat_interleave(torch.arange(len(counts), device=all_preds.device), counts)
        sums = torch.zeros(len(counts), err.shape[1], dtype=err.dtype, device=err.device).index_add_(0, day, err)
        n = torch.zeros(len(counts), dtype=err.dtype, device=err.device).index_add_(0, day, mask.to(err.dtype))
        all_loss = sums / n.clamp(min=1)[:, None]                           # [days, S]; a day without labels: 0
    L = minmax_norm(all_loss.detach())  # noqa: N806 - the paper's names
    Lh = minmax_norm(L * alpha + minmax_norm(hist_loss) * (1 - alpha))  # noqa: N806
    P = sinkhorn(-Lh)  # noqa: N806
    per_sample = (lambda t: t) if day is None else (lambda t: t[day])
    if method == "router":
        if training:
            pred = (all_preds * per_sample(choice)).sum(dim=1)
        else:
            pick = per_sample(prob.argmax(dim=-1))
            pred = all_preds.gather(1, pick[:, None])[:, 0]
        loss = masked_mse(pred, label)
    else:
        pred = (all_preds * per_sample(P)).sum(dim=1)
        loss = (all_loss * P).sum(dim=1).mean()
    return loss, pred, L, P
