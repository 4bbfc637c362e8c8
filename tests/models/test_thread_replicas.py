"""Scoring on thread replicas: the same scores as one thread, shared weights, and the thread count restored."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from qexp_models.alstm_net import ALSTMNet  # noqa: E402
from qexp_models.thread_replicas import ThreadReplicas, replica_threads  # noqa: E402


@pytest.fixture()
def net_and_data():
    torch.manual_seed(0)
    net = ALSTMNet(d_feat=6, hidden_size=16, num_layers=2).eval()
    x = torch.randn(301, 20, 6)
    y = torch.randn(301)
    return net, x, y


def _one_thread(net, x):
    with torch.inference_mode():
        return torch.cat([net(x[i:i + 64]) for i in range(0, len(x), 64)])


@pytest.mark.parametrize("threads", [2, 3])
def test_scores_and_sse_equal_one_thread(net_and_data, threads) -> None:
    net, x, y = net_and_data
    expected = _one_thread(net, x)
    with ThreadReplicas(net, threads) as reps:
        scores = reps.predict(x.numpy(), step=64)
        sse = reps.sse(x, y, step=64)
    assert scores.shape == (301,) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert sse == pytest.approx(float(torch.sum((expected.double() - y.double()) ** 2)), rel=1e-6)


def test_replicas_see_the_masters_weight_updates(net_and_data) -> None:
    net, x, _ = net_and_data
    with ThreadReplicas(net, 2) as reps:
        before = reps.predict(x.numpy(), step=64)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.05)                      # an optimizer step changes the master in place
        after = reps.predict(x.numpy(), step=64)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, _one_thread(net, x).numpy(), rtol=1e-5, atol=1e-6)


def test_close_restores_the_thread_count_and_needs_two_threads(net_and_data) -> None:
    net, x, _ = net_and_data
    threads = torch.get_num_threads()
    with ThreadReplicas(net, 2) as reps:
        reps.predict(x.numpy(), step=64)
    assert torch.get_num_threads() == threads
    with pytest.raises(ValueError, match="at least 2"):
        ThreadReplicas(net, 1)


def test_replica_threads_only_on_the_cpu_with_enough_rows() -> None:
    assert replica_threads(torch.device("cuda", 0), 10_000) == 1
    assert replica_threads(torch.device("cpu"), 10) == 1
    assert replica_threads(torch.device("cpu"), 10_000) == max(1, torch.get_num_threads())
