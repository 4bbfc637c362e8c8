"""The CPU GRU path computes nn.GRU's function and gradients (to float64 rounding), and refuses to run a
backward pass whose activations a later forward pass has overwritten."""
from __future__ import annotations

import copy

import pytest
import torch

from qexp_models.alstm_net import ALSTMNet
from qexp_models.gru_cpu import tanh


def _pair(**kw):
    torch.manual_seed(0)
    fast = ALSTMNet(**kw).double()
    ref = copy.deepcopy(fast)
    ref.fast_cpu_gru = False
    return fast, ref


@pytest.mark.parametrize("layers, hidden", [(1, 8), (2, 16), (3, 5)])
def test_gradients_equal_nn_gru(layers: int, hidden: int) -> None:
    fast, ref = _pair(d_feat=6, hidden_size=hidden, num_layers=layers)
    x = torch.randn(23, 9, 6, dtype=torch.float64)
    y = torch.randn(23, dtype=torch.float64)
    for net in (fast, ref):
        net.train()
        ((net(x) - y) ** 2).mean().backward()
    for (name, p), (_, q) in zip(fast.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12, msg=name)


def test_scoring_equals_nn_gru_and_training_can_follow() -> None:
    fast, ref = _pair(d_feat=6, hidden_size=12, num_layers=2)
    x = torch.randn(40, 15, 6, dtype=torch.float64)
    fast.eval(), ref.eval()
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), ref(x), rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), ref(x), rtol=1e-12, atol=1e-12)
    fast.train()  # buffers first made under inference_mode must serve a backward pass
    fast(x).sum().backward()
    assert all(p.grad is not None for p in fast.parameters())


def test_dropout_between_layers_trains() -> None:
    torch.manual_seed(0)
    net = ALSTMNet(d_feat=6, hidden_size=8, num_layers=2, dropout=0.5).train()
    out = net(torch.randn(10, 7, 6))
    out.sum().backward()
    assert torch.isfinite(net.rnn.weight_ih_l0.grad).all()


def test_two_forward_passes_before_backward_is_an_error() -> None:
    net = ALSTMNet(d_feat=6, hidden_size=8, num_layers=1).train()
    first = net(torch.randn(10, 7, 6)).sum()
    net(torch.randn(10, 7, 6))
    # autograd's view check or ours, whichever meets the overwritten buffers first: never wrong gradients
    with pytest.raises(RuntimeError, match="modified inplace|each forward pass must be followed by its backward"):
        first.backward()


def test_fast_tanh_is_tanh() -> None:
    x = torch.linspace(-12, 12, 10001, requires_grad=True)
    y = tanh(x)
    torch.testing.assert_close(y, torch.tanh(x), rtol=0, atol=2.5e-7)
    y.sum().backward()
    torch.testing.assert_close(x.grad, 1 - torch.tanh(x.detach()) ** 2, rtol=0, atol=5e-7)


def test_release_workspace_frees_the_buffers() -> None:
    net = ALSTMNet(d_feat=6, hidden_size=8, num_layers=1).train()
    net(torch.randn(10, 7, 6)).sum().backward()
    assert net._workspace.nbytes > 0
    net.release_workspace()
    assert net._workspace is None
