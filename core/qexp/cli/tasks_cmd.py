"""``qexp tasks list|stat|reset|wait`` (a task pool's state) and ``qexp worker`` (pull and train its tasks).

The task store is ``--tasks-uri`` / ``$QEXP_TASKS_URI``, else the one beside the tracking store ``--uri``
(``DIR/.qexp/tasks.sqlite`` for a file store). Reading a pool never creates a store: ``list``, ``stat``,
``reset`` and ``wait`` on a store that does not exist are a one-line error naming it, and name the store they
read on stderr.
"""
from __future__ import annotations

import sys
from typing import Any

import click

from .common import fail, uri_option
from .output import print_json, print_table

STATUSES = ["waiting", "running", "part_done", "done"]

pool_option = click.option("--pool", required=True, help="Task pool name (TrainerRM's task_pool; by default the "
                           "experiment's name).")
tasks_uri_option = click.option("--tasks-uri", envvar="QEXP_TASKS_URI", default=None, metavar="URI",
                                help="Task store: sqlite:///PATH or postgresql://USER@HOST:PORT/DB (default: "
                                     "$QEXP_TASKS_URI, else beside the tracking store).")


def _tasks_uri(tasks_uri: str | None, uri: str | None) -> str:
    from ..task.store import default_tasks_uri
    if tasks_uri:
        return tasks_uri
    from ..uri import default_uri
    return default_tasks_uri(uri or default_uri())


def _uri_source() -> str:
    """How the task store URI was chosen: ``--tasks-uri``, ``$QEXP_TASKS_URI`` or beside the tracking store."""
    from .common import option_source, uri_source
    return (option_source("tasks_uri", "QEXP_TASKS_URI")
            or f"beside the tracking store (whose URI came from {uri_source()})")


def _existing_store(tasks_uri: str | None, uri: str | None) -> str:
    """The task store URI of a read command, checked to exist: a SQLite file that is not there or a database
    without the tasks table is a one-line error naming it and how it was chosen (never an empty listing).
    The store read is named on stderr, as the tracking-store listings do."""
    from ..exceptions import QexpError
    from ..task.store import open_task_store
    store_uri = _tasks_uri(tasks_uri, uri)
    try:
        found = open_task_store(store_uri).exists()
    except QexpError as exc:
        fail(str(exc))
    if not found:
        fail(f"no task store at {_masked(store_uri)} (nothing was ever queued there); the task store URI came "
             f"from {_uri_source()}. Give the right one with --tasks-uri URI (or $QEXP_TASKS_URI, or the "
             f"tracking store's --uri); a task store is created when tasks are first queued (TrainerRM, "
             f"TaskManager.create_task)")
    click.echo(f"task store: {_masked(store_uri)} (from {_uri_source().split(' (')[0]})", err=True)
    return store_uri


def _manager(pool: str, tasks_uri: str | None, uri: str | None, **kwargs: Any) -> Any:
    from ..exceptions import QexpError
    from ..task.manage import TaskManager
    try:
        return TaskManager(pool, uri=_tasks_uri(tasks_uri, uri), **kwargs)
    except QexpError as exc:
        fail(str(exc))


def _guard(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from ..exceptions import QexpError
    try:
        return fn(*args, **kwargs)
    except QexpError as exc:
        fail(str(exc))


@click.group("tasks")
def tasks_group() -> None:
    """Task pools: what is waiting, running and done (TrainerRM, DelayTrainerRM, qexp worker)."""


@tasks_group.command("list")
@click.option("--pool", default=None, help="List this pool's tasks (without it: the pools and their counts).")
@click.option("--status", "status", type=click.Choice(STATUSES), default=None, help="Only tasks in this status.")
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many tasks (0: all).")
@tasks_uri_option
@uri_option
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
def list_cmd(pool: str | None, status: str | None, limit: int, tasks_uri: str | None, uri: str | None,
             as_json: bool) -> None:
    """The pools of the task store, or the tasks of one pool."""
    from ..task.manage import TaskManager
    store_uri = _existing_store(tasks_uri, uri)
    if pool is None:
        pools = _guard(TaskManager.list, uri=store_uri)
        rows = []
        for name in pools:
            stat = _guard(TaskManager(name, uri=store_uri).task_stat)
            rows.append([name, *[stat.get(s, 0) for s in STATUSES], sum(stat.values())])
        if as_json:
            print_json([dict(zip(["pool", *STATUSES, "total"], r)) for r in rows])
        else:
            print_table(["pool", *STATUSES, "total"], rows, title="task pools")
        return
    tm = _manager(pool, store_uri, None)
    query = {"status": status} if status else {}
    tasks = _guard(lambda: list(tm.query(query, decode=False)))
    shown = tasks if limit <= 0 else tasks[:limit]
    rows = [[t["_id"], t["status"], t["priority"], t["attempts"], _summary(t["filter"])] for t in shown]
    if as_json:
        print_json([{"_id": t["_id"], "status": t["status"], "priority": t["priority"], "attempts": t["attempts"],
                     "filter": t["filter"]} for t in shown])
        return
    more = f" (first {len(shown)} of {len(tasks)})" if len(shown) < len(tasks) else ""
    print_table(["_id", "status", "priority", "attempts", "task"], rows, title=f"pool {pool}{more}")


def _summary(task: Any) -> str:
    """``LGBModel test 2017-01-03..2017-04-04`` from a task's JSON."""
    if not isinstance(task, dict):
        return str(task)[:80]
    parts = []
    model = task.get("model")
    if isinstance(model, dict) and model.get("class"):
        parts.append(str(model["class"]).rsplit(".", 1)[-1])
    try:
        test = task["dataset"]["kwargs"]["segments"]["test"]
        parts.append("test " + "..".join(str(x)[:10] if x is not None else "open" for x in test))
    except (KeyError, TypeError):
        pass
    return " ".join(parts) or str(task)[:80]


def _masked(uri: str) -> str:
    from ..uri import mask_uri
    return mask_uri(uri)


@tasks_group.command("stat")
@pool_option
@tasks_uri_option
@uri_option
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
def stat_cmd(pool: str, tasks_uri: str | None, uri: str | None, as_json: bool) -> None:
    """How many tasks of the pool are in each status."""
    tm = _manager(pool, _existing_store(tasks_uri, uri), None)
    stat = _guard(tm.task_stat)
    if as_json:
        print_json({s: stat.get(s, 0) for s in STATUSES})
        return
    print_table(["status", "tasks"], [[s, stat.get(s, 0)] for s in STATUSES] + [["total", sum(stat.values())]],
                title=f"pool {pool}")


@tasks_group.command("reset")
@pool_option
@click.option("--from", "from_status", type=click.Choice(STATUSES), default="running", show_default=True,
              help="Tasks in this status ...")
@click.option("--to", "to_status", type=click.Choice(STATUSES), default="waiting", show_default=True,
              help="... are set to this one.")
@tasks_uri_option
@uri_option
def reset_cmd(pool: str, from_status: str, to_status: str, tasks_uri: str | None, uri: str | None) -> None:
    """Set the tasks of one status to another (by default running -> waiting, Qlib's reset_waiting; a crashed
    worker's task also comes back by itself when its lease ends)."""
    tm = _manager(pool, _existing_store(tasks_uri, uri), None)
    n = _guard(tm.reset_status, {"status": from_status}, to_status)
    click.echo(f"{n} task(s) of pool {pool} set from {from_status} to {to_status}")


@tasks_group.command("wait")
@pool_option
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds (exit status 1).")
@tasks_uri_option
@uri_option
def wait_cmd(pool: str, timeout: float | None, tasks_uri: str | None, uri: str | None) -> None:
    """Wait until no task of the pool is waiting, running or part_done."""
    tm = _manager(pool, _existing_store(tasks_uri, uri), None)
    try:
        _guard(tm.wait, timeout=timeout)
    except TimeoutError as exc:
        fail(str(exc))
    stat = _guard(tm.task_stat)
    click.echo(f"pool {pool}: " + ", ".join(f"{stat.get(s, 0)} {s}" for s in STATUSES))


@click.command("worker")
@pool_option
@click.option("--experiment-name", default=None, help="Experiment of the runs (default: the pool's name, as "
              "TrainerRM names its pool).")
@click.option("--end-train", is_flag=True, help="DelayTrainerRM's second phase: fit the part_done tasks.")
@click.option("--config", "config", default=None, type=click.Path(dir_okay=False),
              help="A workflow YAML whose qlib_init (provider_uri, region) this worker uses.")
@click.option("--provider-uri", default=None, help="Data folder (overrides the config's).")
@click.option("--region", default=None, help="Data region (cn, us).")
@click.option("--lease", "lease_s", type=float, default=30.0, show_default=True,
              help="Seconds a task stays leased without a heartbeat before another worker may take it.")
@tasks_uri_option
@uri_option
def worker_cmd(pool: str, experiment_name: str | None, end_train: bool, config: str | None,
               provider_uri: str | None, region: str | None, lease_s: float, tasks_uri: str | None,
               uri: str | None) -> None:
    """Pull and train the pool's tasks until none is left; Ctrl-C puts the current task back to waiting."""
    from ..exceptions import QexpError
    from ..session import init
    from ..task.manage import TaskManager, run_task
    from ..trainer import end_task_train, task_train
    settings: dict[str, Any] = {}
    if config is not None:
        from ..workflow import apply_sys, init_settings, load_workflow
        try:
            wf = load_workflow(config)
        except QexpError as exc:
            fail(str(exc))
        apply_sys(wf.config, wf.path.parent)
        settings = init_settings(wf.config, None)
    if uri:
        settings.pop("exp_manager", None)
        settings["uri"] = uri
    if provider_uri:
        settings["provider_uri"] = provider_uri
    if region:
        settings["region"] = region
    _guard(init, **settings)
    store_uri = tasks_uri or _tasks_uri(None, settings.get("uri"))
    tm = _manager(pool, store_uri, None, lease_s=lease_s)
    name = experiment_name or pool
    count = [0]
    func = end_task_train if end_train else task_train

    def one(param: Any, **kwargs: Any) -> Any:
        res = func(param, **kwargs)
        count[0] += 1
        return res

    before = TaskManager.STATUS_PART_DONE if end_train else TaskManager.STATUS_WAITING
    click.echo(f"worker {tm.owner}: pulling {before} tasks of pool {pool} from {_masked(tm.uri)}", err=True)
    try:
        _guard(run_task, one, tm, experiment_name=name, before_status=before)
    except KeyboardInterrupt:
        click.echo(f"stopped after {count[0]} task(s); the current task went back to {before}", err=True)
        sys.exit(130)
    click.echo(f"worker done: {count[0]} task(s) trained into experiment {name}")


def add_commands(cli: click.Group) -> None:
    cli.add_command(tasks_group)
    cli.add_command(worker_cmd)
