"""Scoring a torch network on the CPU with one replica per thread, each on its own range of rows.

Why: when scoring ALSTM (batches of ~1000 rows, 64 hidden units, hundreds of small ops per batch) splitting
each op over two OpenMP threads gains almost nothing (measured 1.07x on 2 cores), while giving each core its
own rows, with one intra-op thread each, gains about 1.6x: torch releases the GIL inside every op, so the
threads overlap all but the Python dispatch. Training gains nothing from the same split (measured: most of
its time is in the large weight-gradient products, which two intra-op threads already share well), so it
stays on the plain path.

The replicas share the master network's parameter and buffer storage (in-place updates such as an
optimizer step or ``load_state_dict`` reach them; replacing a parameter tensor, ``.to()`` or
``load_state_dict(assign=True)`` does not: make new replicas then) and keep their own scratch buffers. A row's
score is the one-thread score up to float rounding: the row may land in a batch of another size, and matrix
products round differently by size (seen: 7.5e-9).
"""
from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
import torch

# Below this many rows per thread a split costs more than it saves.
MIN_ROWS_PER_THREAD = 64
# Each replica keeps its own scratch buffers (~36 MB at Qlib's ALSTM sizes): bound them on many-core hosts.
MAX_REPLICAS = 8


class ThreadReplicas:
    """``n`` copies of ``net`` on ``n`` worker threads (one intra-op thread each), for scoring. Use as a
    context manager, or call :meth:`close`: it stops the threads and restores torch's thread count."""

    def __init__(self, net: torch.nn.Module, n: int):
        if n < 2:
            raise ValueError(f"ThreadReplicas needs at least 2 threads, got {n}")
        self.net = net
        self.replicas = [_share_parameters(net) for _ in range(n)]
        self._threads = torch.get_num_threads()
        self._pool = ThreadPoolExecutor(n, thread_name_prefix="qexp-replica", initializer=torch.set_num_threads,
                                        initargs=(1,))

    def __enter__(self) -> ThreadReplicas:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        # a worker's set_num_threads(1) becomes the default of threads that touch torch later
        torch.set_num_threads(self._threads)
        for rep in self.replicas:
            release = getattr(rep, "release_workspace", None)
            if callable(release):
                release()

    def _map(self, fn: Callable[[int, Any], Any], parts: list) -> list:
        futures = [self._pool.submit(fn, k, part) for k, part in enumerate(parts)]
        return [f.result() for f in futures]  # in replica order: sums are deterministic

    # ---- scoring -----------------------------------------------------------------------------
    def sse(self, x: torch.Tensor, y: torch.Tensor, step: int) -> float:
        """Sum of squared errors of the network over all rows (eval mode, no gradients), as float64."""
        def part(k: int, span: tuple[int, int]) -> float:
            rep = self.replicas[k]
            rep.eval()
            total = torch.zeros((), dtype=torch.float64)
            with torch.inference_mode():
                for start in range(span[0], span[1], step):
                    stop = min(start + step, span[1])
                    total += torch.sum((rep(x[start:stop]) - y[start:stop]) ** 2, dtype=torch.float64)
            return float(total)

        return float(sum(self._map(part, self._spans(len(y)))))

    def predict(self, x: np.ndarray, step: int) -> np.ndarray:
        """The network's float32 outputs for the rows of ``x`` (a numpy array), in order."""
        def part(k: int, span: tuple[int, int]) -> list[np.ndarray]:
            rep = self.replicas[k]
            rep.eval()
            out = []
            with torch.inference_mode():
                for start in range(span[0], span[1], step):
                    xb = torch.from_numpy(x[start:min(start + step, span[1])])
                    out.append(rep(xb).float().numpy())
            return out

        pieces = [a for chunk in self._map(part, self._spans(len(x))) for a in chunk]
        return np.concatenate(pieces) if pieces else np.empty(0, dtype=np.float32)

    def _spans(self, n_rows: int) -> list[tuple[int, int]]:
        edges = np.linspace(0, n_rows, len(self.replicas) + 1).round().astype(int)
        return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def replica_threads(device: torch.device, rows: int) -> int:
    """Threads for :class:`ThreadReplicas`: torch's intra-op thread count on the CPU (at most
    ``MAX_REPLICAS``), at most one per ``MIN_ROWS_PER_THREAD`` rows; 1 (no replicas) on a GPU or for few rows."""
    if device.type != "cpu":
        return 1
    return max(1, min(torch.get_num_threads(), MAX_REPLICAS, rows // MIN_ROWS_PER_THREAD))


def _share_parameters(net: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``net`` whose parameters and buffers use the master's storage."""
    rep = copy.deepcopy(net)
    for (_, mine), (_, theirs) in zip(rep.named_parameters(), net.named_parameters()):
        mine.data = theirs.data
        mine.grad = None
    for (_, buf), (_, master) in zip(rep.named_buffers(), net.named_buffers()):
        buf.data = master.data
    return rep
