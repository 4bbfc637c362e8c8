"""The loop of one ``process://`` worker: receive a call, run it under the caller's session, send back the
result; report the runs it opens on the way. Started with the spawn method (never fork: a forked child
inherits locks that the driver's threads may hold)."""
from __future__ import annotations

import os
import pickle
import signal
import threading
import time
import traceback
from typing import Any

from qexp.ext import CallSpec, run_call

PARENT_POLL_S = 0.5


def dumps(obj: Any) -> bytes:
    """Pickle ``obj``, with cloudpickle for what plain pickle refuses (lambdas, local functions) when present."""
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError):
        try:
            import cloudpickle
        except ImportError:
            raise
        return bytes(cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def dump_exception(exc: BaseException) -> tuple[bytes | None, str]:
    """The pickled exception (None when it does not pickle) and its formatted traceback."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        data = dumps(exc)
        pickle.loads(data)  # some exceptions pickle but cannot be rebuilt
    except Exception:
        return None, text
    return data, text


def _exit_with_parent(parent_pid: int) -> None:
    # a killed driver must not leave its workers training for nobody: their runs end FAILED as dead owners
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent_pid:
            os._exit(1)


def main(conn: Any, parent_pid: int) -> None:
    # Ctrl-C in a terminal reaches the whole process group; the driver decides what happens to the calls
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), name="qexp-parent-watch", daemon=True).start()
    lock = threading.Lock()

    def send(msg: tuple) -> None:
        with lock:
            conn.send(msg)

    send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        if msg is None:
            break
        call_id, settings, key, payload = msg
        try:
            fn, args, kwargs = pickle.loads(payload)
            def notify(event: tuple, c: str = call_id) -> None:
                send(("event", c, tuple(event)))

            result = run_call(CallSpec(call_id, settings, key), fn, args, kwargs, notify=notify)
            data = dumps(result)
        except BaseException as exc:  # SystemExit/KeyboardInterrupt from a call fail that call, not the worker
            send(("done", call_id, False, dump_exception(exc)))
        else:
            send(("done", call_id, True, data))
    conn.close()
