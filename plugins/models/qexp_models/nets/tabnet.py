"""Qlib's TabNet networks (Arik and Pfister 2019, "TabNet: Attentive Interpretable Tabular Learning"): an
encoder of ``n_steps`` decision steps, each choosing features with a sparsemax mask over the input and
transforming them with gated linear units (GLU) behind ghost batch normalisation; a decoder that rebuilds
the input from the encoder's output (self-supervised pretraining); and the fine-tuning head.

Module names match Qlib's (``TabNet``: ``first_step``, ``steps``, ``fc``, ``bn``; the fine-tuned network:
``model`` and ``fc``), so Qlib's saved ``state_dict`` files load. Two differences from Qlib's code, both
the paper's and Qlib's stated intent: the prior scales of the feature masks are updated after each step
(``P <- P * (relax - M)``; Qlib's update is lost in a local variable), and the encoder takes ``n_d``,
``n_a``, ``n_shared``, ``n_ind`` and ``n_steps`` from the model's arguments (Qlib passes them only to the
decoder and builds the encoder with its defaults, which are the benchmark's values).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


class _Sparsemax(torch.autograd.Function):
    """Sparsemax over the last dimension (Martins and Astudillo 2016): the Euclidean projection onto the
    simplex; exactly zero weights outside the support."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor) -> torch.Tensor:
        z = z - z.max(dim=-1, keepdim=True).values
        srt = torch.sort(z, dim=-1, descending=True).values
        cum = srt.cumsum(-1) - 1
        k = torch.arange(1, z.shape[-1] + 1, device=z.device, dtype=z.dtype)
        support = (k * srt > cum).sum(dim=-1, keepdim=True)
        tau = cum.gather(-1, support - 1) / support.to(z.dtype)
        out = torch.clamp(z - tau, min=0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (out,) = ctx.saved_tensors
        on = out > 0
        g = torch.where(on, grad, torch.zeros_like(grad))
        mean = g.sum(-1, keepdim=True) / on.sum(-1, keepdim=True).clamp_min(1).to(grad.dtype)
        return torch.where(on, g - mean, torch.zeros_like(grad))


def sparsemax(z: torch.Tensor) -> torch.Tensor:
    return _Sparsemax.apply(z)


class GBN(nn.Module):
    """Ghost batch normalisation: batch norm over chunks of ``vbs`` rows (Qlib's ``x.size(0) // vbs``
    chunks)."""

    def __init__(self, inp: int, vbs: int = 1024, momentum: float = 0.01):
        super().__init__()
        self.bn = nn.BatchNorm1d(inp, momentum=momentum)
        self.vbs = vbs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.size(0) <= self.vbs:
            return self.bn(x)
        return torch.cat([self.bn(c) for c in torch.chunk(x, x.size(0) // self.vbs, 0)], 0)


class GLU(nn.Module):
    def __init__(self, inp_dim: int, out_dim: int, fc: nn.Module | None = None, vbs: int = 1024):
        super().__init__()
        self.fc = fc if fc is not None else nn.Linear(inp_dim, out_dim * 2)
        self.bn = GBN(out_dim * 2, vbs=vbs)
        self.od = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.fc(x))
        return x[:, : self.od] * torch.sigmoid(x[:, self.od:])


class FeatureTransformer(nn.Module):
    """GLU layers shared by all steps (their linear layers are shared) then the step's own, with scaled
    residual connections."""

    def __init__(self, inp_dim: int, out_dim: int, shared: nn.ModuleList | None, n_ind: int, vbs: int):
        super().__init__()
        self.shared: nn.ModuleList | None = None
        if shared:
            self.shared = nn.ModuleList([GLU(inp_dim, out_dim, shared[0], vbs=vbs)]
                                        + [GLU(out_dim, out_dim, fc, vbs=vbs) for fc in shared[1:]])
        first = not shared
        self.independ = nn.ModuleList()
        if first:
            self.independ.append(GLU(inp_dim, out_dim, vbs=vbs))
        for _ in range(int(first), n_ind):
            self.independ.append(GLU(out_dim, out_dim, vbs=vbs))
        self.scale = 0.5 ** 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shared:
            x = self.shared[0](x)
            for glu in self.shared[1:]:
                x = (x + glu(x)) * self.scale
        for glu in self.independ:
            x = (x + glu(x)) * self.scale
        return x


class AttentionTransformer(nn.Module):
    def __init__(self, d_a: int, inp_dim: int, relax: float, vbs: int = 1024):
        super().__init__()
        self.fc = nn.Linear(d_a, inp_dim)
        self.bn = GBN(inp_dim, vbs=vbs)
        self.r = relax

    def forward(self, a: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
        return sparsemax(self.bn(self.fc(a)) * priors)


class DecisionStep(nn.Module):
    def __init__(self, inp_dim: int, n_d: int, n_a: int, shared: nn.ModuleList | None, n_ind: int,
                 relax: float, vbs: int):
        super().__init__()
        self.atten_tran = AttentionTransformer(n_a, inp_dim, relax, vbs)
        self.fea_tran = FeatureTransformer(inp_dim, n_d + n_a, shared, n_ind, vbs)

    def forward(self, x: torch.Tensor, a: torch.Tensor, priors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mask = self.atten_tran(a, priors)
        sparse_loss = (-mask * torch.log(mask + 1e-10)).mean()
        return self.fea_tran(x * mask), sparse_loss, mask


def _shared_layers(inp_dim: int, width: int, n_shared: int) -> nn.ModuleList | None:
    if n_shared <= 0:
        return None
    return nn.ModuleList([nn.Linear(inp_dim, 2 * width)] + [nn.Linear(width, 2 * width) for _ in range(n_shared - 1)])


class TabNet(nn.Module):
    """The encoder: ``forward(x, priors) -> (features [B, out_dim], sparsity loss)``; ``priors`` [B, inp_dim]
    are the initial feature scales (ones; 1 - the pretraining mask)."""

    def __init__(self, inp_dim: int = 6, out_dim: int = 6, n_d: int = 64, n_a: int = 64, n_shared: int = 2,
                 n_ind: int = 2, n_steps: int = 5, relax: float = 1.2, vbs: int = 1024):
        super().__init__()
        self.shared = _shared_layers(inp_dim, n_d + n_a, n_shared)
        self.first_step = FeatureTransformer(inp_dim, n_d + n_a, self.shared, n_ind, vbs)
        self.steps = nn.ModuleList([DecisionStep(inp_dim, n_d, n_a, self.shared, n_ind, relax, vbs)
                                    for _ in range(n_steps - 1)])
        self.fc = nn.Linear(n_d, out_dim)
        self.bn = nn.BatchNorm1d(inp_dim, momentum=0.01)
        self.n_d, self.relax = n_d, relax

    def forward(self, x: torch.Tensor, priors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.bn(x)
        x_a = self.first_step(x)[:, self.n_d:]
        out = x.new_zeros(x.size(0), self.n_d)
        sparse = x.new_zeros(())
        for step in self.steps:
            x_te, loss, mask = step(x, x_a, priors)
            out = out + torch.relu(x_te[:, : self.n_d])
            x_a = x_te[:, self.n_d:]
            priors = priors * (self.relax - mask)  # a feature used now counts less in later steps
            sparse = sparse + loss
        return self.fc(out), sparse


class DecoderStep(nn.Module):
    def __init__(self, inp_dim: int, out_dim: int, shared: nn.ModuleList | None, n_ind: int, vbs: int):
        super().__init__()
        self.fea_tran = FeatureTransformer(inp_dim, out_dim, shared, n_ind, vbs)
        self.fc = nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.fea_tran(x))


class TabNet_Decoder(nn.Module):  # noqa: N801 - Qlib's name
    """Rebuilds the ``out_dim`` input features from the encoder's ``inp_dim`` output (pretraining)."""

    def __init__(self, inp_dim: int, out_dim: int, n_shared: int, n_ind: int, vbs: int, n_steps: int):
        super().__init__()
        self.out_dim = out_dim
        self.shared = _shared_layers(inp_dim, out_dim, n_shared)
        self.steps = nn.ModuleList([DecoderStep(inp_dim, out_dim, self.shared, n_ind, vbs) for _ in range(n_steps)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros(x.size(0), self.out_dim)
        for step in self.steps:
            out = out + step(x)
        return out


class FinetuneModel(nn.Module):
    """The encoder with a linear head: ``forward(x) -> [B]`` (priors of ones, as Qlib's fit and predict)."""

    def __init__(self, input_dim: int, output_dim: int, trained_model: TabNet):
        super().__init__()
        self.model = trained_model
        self.fc = nn.Linear(input_dim, output_dim)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(x, torch.ones_like(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x)[0])[..., 0]


class PretrainModel(nn.Module):
    """The encoder and the decoder for self-supervised pretraining: ``reconstruct(x, mask)`` rebuilds the
    features that ``mask`` (1 = hidden) removed from the input."""

    def __init__(self, encoder: TabNet, decoder: TabNet_Decoder):
        super().__init__()
        self.model = encoder
        self.decoder = decoder

    def reconstruct(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        vec, _ = self.model(x * (1 - mask), 1 - mask)
        return self.decoder(vec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # the loop's contract: one number per row
        return self.reconstruct(x, torch.zeros_like(x)).mean(dim=1)


def pretrain_loss(x: torch.Tensor, rebuilt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The paper's reconstruction loss: squared errors on the hidden entries, each feature scaled by its
    standard deviation in the batch (a constant feature counts unscaled), summed over features and averaged
    over rows."""
    std = x.std(dim=0, unbiased=False)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return (((rebuilt - x) * mask / std) ** 2).sum(dim=1).mean()
