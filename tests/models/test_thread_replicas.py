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


def _threads_seen_by_a_new_thread() -> int:
    import threading
    seen = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    return seen[0]


def test_close_restores_the_thread_count_and_needs_two_threads(net_and_data) -> None:
    net, x, _ = net_and_data
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the tests' fixture runs torch on one thread; the workers set 1
    try:
        with ThreadReplicas(net, 2) as reps:
            reps.predict(x.numpy(), step=64)
            assert _threads_seen_by_a_new_thread() == 1   # what the workers' setting leaks to new threads
        assert torch.get_num_threads() == 2 and _threads_seen_by_a_new_thread() == 2
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(ValueError, match="at least 2"):
        ThreadReplicas(net, 1)


def test_alstm_fit_and_predict_on_replicas_match_one_thread(ds360, monkeypatch) -> None:
    """With two torch threads ALSTM scores on replicas: the losses and predictions match one thread's, the
    worker threads are gone afterwards, and an interrupted fit stops them too."""
    import threading

    from qexp_models.alstm import ALSTM
    kwargs = {"d_feat": 6, "hidden_size": 8, "num_layers": 1, "n_epochs": 2, "batch_size": 1024, "seed": 0,
              "GPU": -1}
    threads = torch.get_num_threads()
    created = []
    real_init = ThreadReplicas.__init__

    def spy(self, net, n):
        created.append(n)
        real_init(self, net, n)

    monkeypatch.setattr(ThreadReplicas, "__init__", spy)
    try:
        one_evals, two_evals = {}, {}
        one = ALSTM(**kwargs).fit(ds360, evals_result=one_evals)
        torch.set_num_threads(1)
        p_one = one.predict(ds360)
        assert created == []
        torch.set_num_threads(2)
        two = ALSTM(**kwargs).fit(ds360, evals_result=two_evals)
        p_two = two.predict(ds360)
        assert created == [2, 2]                          # fit's scoring and predict
        np.testing.assert_allclose(two_evals["valid"], one_evals["valid"], rtol=1e-5)
        np.testing.assert_allclose(p_two.to_numpy(), p_one.to_numpy(), rtol=1e-4, atol=1e-6)
        assert p_two.index.equals(p_one.index)

        def interrupt(*args, **kwargs):
            raise KeyboardInterrupt
        monkeypatch.setattr(ThreadReplicas, "sse", interrupt)
        with pytest.raises(KeyboardInterrupt):
            ALSTM(**kwargs).fit(ds360)
        assert not [t for t in threading.enumerate() if t.name.startswith("qexp-replica")]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_replica_threads_only_on_the_cpu_with_enough_rows() -> None:
    assert replica_threads(torch.device("cuda", 0), 10_000) == 1
    assert replica_threads(torch.device("cpu"), 10) == 1
    assert replica_threads(torch.device("cpu"), 10_000) == max(1, torch.get_num_threads())
