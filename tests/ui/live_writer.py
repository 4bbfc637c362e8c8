"""A run in progress, for the UI tests: ``python live_writer.py URI FOLDER live|kill``.

``live`` logs ``loss`` and a system metric every 0.2 s, without calling flush() (the backend's own time bound,
``QEXP_METRIC_FLUSH_INTERVAL``, writes them); when FOLDER/trigger appears it logs ``late_metric = 42`` once; it
stops when FOLDER/stop appears. ``kill`` logs a little and waits to be killed.
FOLDER/<mode>.ready receives the run id once the first points are in the store."""
from __future__ import annotations

import math
import os
import sys
import time


def main() -> None:
    uri, folder, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    import qexp
    from qexp import R
    qexp.init(uri=uri)
    with R.start(experiment_name="live", recorder_name="live-training" if mode == "live" else "killed-training"):
        rec = R.get_recorder()
        R.log_params(**{"model.class": "GRU", "model.kwargs.lr": 0.001, "mode": mode})
        step = 0
        triggered = False
        deadline = time.time() + 900
        while time.time() < deadline:
            R.log_metrics(step=step, loss=1.0 / (1 + 0.1 * step) + 0.01 * math.sin(step))
            R.log_metrics(step=step, **{"system/cpu_utilization_percentage": 20 + 5 * math.sin(step / 3),
                                        "system/system_memory_usage_megabytes": 900 + step})
            if step == 2:  # the first points in the store before the tests start looking
                rec.flush()
                with open(os.path.join(folder, f"{mode}.ready.tmp"), "w") as f:
                    f.write(rec.id)
                os.replace(os.path.join(folder, f"{mode}.ready.tmp"), os.path.join(folder, f"{mode}.ready"))
            if mode == "live" and not triggered and os.path.exists(os.path.join(folder, "trigger")):
                R.log_metrics(step=step, late_metric=42.0)  # no flush(): the store writes it within ~1 s
                triggered = True
            if os.path.exists(os.path.join(folder, "stop")):
                break
            step += 1
            time.sleep(0.2 if mode == "live" else 1.0)


if __name__ == "__main__":
    main()
