"""The LocalCluster behind ``dask+local://N``: worker processes on 127.0.0.1 only, no dashboard."""
from __future__ import annotations

import logging
from typing import Any

from qexp.ext import usable_cores


def start_local_cluster(n_workers: int | None, threads: int, resources: dict[str, float], **kwargs: Any) -> Any:
    """A LocalCluster of ``n_workers`` processes (default: the usable cores) with ``threads`` threads each.

    Everything listens on 127.0.0.1 and on ports the system picks: the scheduler's HTTP server too (Dask
    puts it on 8787 otherwise, which another cluster on the machine may hold)."""
    from distributed import LocalCluster
    options: dict[str, Any] = dict(
        n_workers=n_workers or usable_cores(), threads_per_worker=threads, processes=True, host="127.0.0.1",
        protocol="tcp://", dashboard_address=None, worker_dashboard_address=None,
        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
        silence_logs=logging.WARNING)
    if resources:
        options["resources"] = resources
    options.update(kwargs)
    return LocalCluster(**options)
