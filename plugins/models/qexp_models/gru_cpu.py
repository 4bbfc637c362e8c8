"""The ALSTM network's GRU (and its tanh layers) on the CPU: the same function and weights as
``torch.nn.GRU``, faster for training and for scoring.

Why: on the CPU, ``nn.GRU``'s backward pass multiplies small matrices once per time step for the
hidden-to-hidden weight gradient and allocates fresh multi-megabyte tensors on every batch (each one page-
faulted into memory again), and ``torch.tanh`` is several times slower than ``torch.sigmoid``. Here:

- the weight gradients of all time steps are one matrix product over ``[T * B, 3H]``;
- every large intermediate lives in a :class:`Workspace` reused from batch to batch;
- the input projection is computed step by step, so the gates read it from cache;
- tanh is ``2 * sigmoid(2x) - 1`` (equal to within 1.2e-7 in float32).

The layer is time-major (``[T, B, features]``). Equations (PyTorch's, gates in the order r, z, n)::

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h  =  n + z * (h - n)
"""
from __future__ import annotations

from typing import Any

import torch

_tanh_backward = torch.ops.aten.tanh_backward.grad_input
_sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input


def tanh_(x: torch.Tensor) -> torch.Tensor:
    """In-place tanh as ``2 * sigmoid(2x) - 1``: the same values to within 1.2e-7 (float32), and several
    times faster than ``torch.tanh`` on the CPU, whose kernel is far slower than ``sigmoid``'s."""
    return x.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)


class _Tanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = tanh_(x.clone())
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


def tanh(x: torch.Tensor) -> torch.Tensor:
    """Differentiable :func:`tanh_` (out of place)."""
    return _Tanh.apply(x)


class _LinearTanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        y = tanh_(torch.nn.functional.linear(x, weight, bias))
        ctx.save_for_backward(x, weight, y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        x, weight, y = ctx.saved_tensors
        d_pre = torch.ops.aten.tanh_backward(grad, y).reshape(-1, y.shape[-1])
        x2 = x.reshape(-1, x.shape[-1])
        # (x' d)' rather than d' x: with few input features and many rows, the second form is several times
        # slower in MKL
        d_weight = (x2.t().contiguous() @ d_pre).t()
        d_x = (d_pre @ weight).view(x.shape) if ctx.needs_input_grad[0] else None
        return d_x, d_weight, d_pre.sum(0)


def linear_tanh(x: torch.Tensor, linear: torch.nn.Linear) -> torch.Tensor:
    """``tanh(linear(x))``, differentiable, with the fast tanh and a faster weight gradient."""
    return _LinearTanh.apply(x, linear.weight, linear.bias)


class Workspace:
    """Named buffers reused across batches; a buffer grows when a batch needs more room.

    ``generation`` counts forward passes, so a backward pass can tell that a later forward pass has
    overwritten the activations it needs.
    """

    def __init__(self) -> None:
        self._bufs: dict[str, torch.Tensor] = {}
        self.generation = 0

    def get(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        n = 1
        for s in shape:
            n *= s
        buf = self._bufs.get(name)
        if buf is None or buf.numel() < n or buf.dtype != like.dtype or buf.device != like.device:
            # normal tensors even when scoring under inference_mode: training saves these buffers for backward
            with torch.inference_mode(False):
                buf = torch.empty(n, dtype=like.dtype, device=like.device)
            self._bufs[name] = buf
        return buf[:n].view(shape)

    def clear(self) -> None:
        self._bufs.clear()

    @property
    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self._bufs.values())


def _layer_steps(x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor,
                 ws: Workspace, key: str, keep: bool) -> torch.Tensor:
    """Run one layer over ``x`` [T, B, in]; returns the hidden states [T + 1, B, H] (``h_0 = 0`` first).

    With ``keep`` the gates of every step stay in the workspace for the backward pass; without it (scoring)
    one step's worth of scratch is reused, which keeps the working set in cache.
    """
    steps, batch, n_in = x.shape
    hid = w_hh.shape[1]
    span = steps if keep else 1
    # the input projection is computed step by step, so it is still in cache when the gates read it (one
    # product over all steps would write and re-read T * B * 3H floats through main memory)
    gi = ws.get(key + "gi1", (batch, 3 * hid), x)
    gh = ws.get(key + "gh", (span, batch, 3 * hid), x)       # hidden projections (the n part is needed later)
    rz = ws.get(key + "rz", (span, batch, 2 * hid), x)       # gates r and z
    n = ws.get(key + "n", (span, batch, hid), x)
    hs = ws.get(key + "hs", (steps + 1, batch, hid), x)
    tmp = ws.get(key + "tmp", (batch, hid), x)
    hs[0].zero_()
    w_ih_t = w_ih.t()
    w_hh_t = w_hh.t()
    for t in range(steps):
        k = t if keep else 0
        torch.addmm(b_ih, x[t], w_ih_t, out=gi)
        torch.addmm(b_hh, hs[t], w_hh_t, out=gh[k])
        torch.add(gi[:, :2 * hid], gh[k, :, :2 * hid], out=rz[k]).sigmoid_()
        tanh_(torch.addcmul(gi[:, 2 * hid:], rz[k, :, :hid], gh[k, :, 2 * hid:], out=n[k]))
        torch.sub(hs[t], n[k], out=tmp)
        torch.addcmul(n[k], rz[k, :, hid:], tmp, out=hs[t + 1])
    return hs


class GRULayerFunction(torch.autograd.Function):
    """One GRU layer over a whole sequence, with a hand-written backward pass (BPTT)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor,
                b_hh: torch.Tensor, ws: Workspace, key: str) -> torch.Tensor:
        x = x.contiguous()
        hs = _layer_steps(x, w_ih, w_hh, b_ih, b_hh, ws, key, keep=True)
        ctx.save_for_backward(x, w_ih, w_hh)
        ctx.ws, ctx.key, ctx.generation = ws, key, ws.generation
        return hs[1:]

    @staticmethod
    def backward(ctx: Any, d_out: torch.Tensor) -> tuple:
        ws, key = ctx.ws, ctx.key
        if ws.generation != ctx.generation:  # checked first: autograd's own message would be obscure
            raise RuntimeError("the CPU GRU training path reuses its buffers, so each forward pass must be "
                               "followed by its backward pass before the next forward pass; set "
                               "ALSTMNet.fast_cpu_gru = False to accumulate several forward passes")
        x, w_ih, w_hh = ctx.saved_tensors
        steps, batch, n_in = x.shape
        hid = w_hh.shape[1]
        d_out = d_out.contiguous()
        gh = ws.get(key + "gh", (steps, batch, 3 * hid), x)
        rz = ws.get(key + "rz", (steps, batch, 2 * hid), x)
        n = ws.get(key + "n", (steps, batch, hid), x)
        hs = ws.get(key + "hs", (steps + 1, batch, hid), x)
        # gradients of the pre-activations: [dr, dz, dn * r] for the hidden projection, and dn alone for the
        # input projection of the n gate
        dgh = ws.get(key + "dgh", (steps, batch, 3 * hid), x)
        dgi_n = ws.get(key + "dgin", (steps, batch, hid), x)
        dh = ws.get(key + "dh", (batch, hid), x)
        dh_z = ws.get(key + "dhz", (batch, hid), x)
        d_rz = ws.get(key + "drz", (batch, 2 * hid), x)
        dh.zero_()
        for t in range(steps - 1, -1, -1):
            dh.add_(d_out[t])
            z = rz[t, :, hid:]
            torch.mul(dh, z, out=dh_z)                                  # dh -> h_{t-1} through z * h
            torch.sub(dh, dh_z, out=d_rz[:, :hid])                       # dh * (1 - z), scratch
            _tanh_backward(d_rz[:, :hid], n[t], grad_input=dgi_n[t])     # d(pre-tanh of n)
            torch.sub(hs[t], n[t], out=d_rz[:, hid:]).mul_(dh)           # dz
            torch.mul(dgi_n[t], gh[t, :, 2 * hid:], out=d_rz[:, :hid])   # dr
            _sigmoid_backward(d_rz, rz[t], grad_input=dgh[t, :, :2 * hid])
            torch.mul(dgi_n[t], rz[t, :, :hid], out=dgh[t, :, 2 * hid:])
            torch.addmm(dh_z, dgh[t], w_hh, out=dh)                      # dh_{t-1}
        # weight gradients of all steps in a few large products
        rows = steps * batch
        dgh2 = dgh.view(rows, 3 * hid)
        dgi_n2 = dgi_n.view(rows, hid)
        x2 = x.view(rows, n_in)
        d_w_hh = dgh2.t() @ hs[:steps].reshape(rows, hid)
        d_b_hh = dgh2.sum(0)
        d_w_ih = torch.cat((dgh2[:, :2 * hid].t() @ x2, dgi_n2.t() @ x2))
        d_b_ih = torch.cat((d_b_hh[:2 * hid], dgi_n2.sum(0)))
        dx = None
        if ctx.needs_input_grad[0]:
            dx = torch.mm(dgh2[:, :2 * hid], w_ih[:2 * hid]).addmm_(dgi_n2, w_ih[2 * hid:]).view(steps, batch, n_in)
        return dx, d_w_ih, d_w_hh, d_b_ih, d_b_hh, None, None


def gru_forward(gru: torch.nn.GRU, x: torch.Tensor, ws: Workspace) -> torch.Tensor:
    """Run ``gru`` (unidirectional, no initial state) on time-major ``x`` [T, B, in]; returns [T, B, H].

    With gradients enabled it records the layers for a backward pass; otherwise (scoring) it only computes.
    """
    if not torch.is_grad_enabled():
        out = x
        for layer in range(gru.num_layers):
            out = _layer_steps(out, *_weights(gru, layer), ws, f"l{layer}.", keep=False)[1:]
        return out
    ws.generation += 1
    out = x
    for layer in range(gru.num_layers):
        if layer and gru.dropout and gru.training:
            out = torch.nn.functional.dropout(out, gru.dropout, training=True)
        out = GRULayerFunction.apply(out, *_weights(gru, layer), ws, f"l{layer}.")
    return out


def _weights(gru: torch.nn.GRU, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    w_ih, w_hh, b_ih, b_hh = (getattr(gru, f"{w}_l{layer}") for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    return w_ih, w_hh, b_ih, b_hh
