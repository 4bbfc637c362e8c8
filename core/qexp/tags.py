"""The tag, param and metric names qexp writes on runs, defined once for the modules that write them (the
worker, ``qexp rolling``, ``qexp sweep``) and those that read them (``qexp ui``). MLflow's and Qlib's names are
kept where users know them."""
from __future__ import annotations

RUN_NAME_TAG = "mlflow.runName"
PARENT_TAG = "mlflow.parentRunId"          # a child run (sweep trial, nested run) names its parent
FAILURE_TAG = "qexp.failure_reason"        # why a run ended FAILED (an exception, a killed process)

# qexp sweep: the parent run and one child per trial
SWEEP_TAG = "qexp.sweep_id"                # on the parent and every trial
SWEEP_METRIC_TAG = "qexp.sweep.metric"     # the objective
SWEEP_GOAL_TAG = "qexp.sweep.goal"         # maximize | minimize
TRIAL_TAG = "qexp.trial"                   # the trial number
TRIAL_STATE_TAG = "qexp.trial_state"       # COMPLETE | PRUNED | FAIL

# qexp rolling: window runs in experiment <name>_models, the combined run in <name>
ROLLING_TAG = "qexp.rolling"               # on both; the combined run's names the windows' experiment
ROLLING_WINDOW_TAG = "rolling.window"      # on a window run only: its index
ROLLING_WINDOW_TEST_PARAM = "rolling.window.{}.test"      # on the combined run: "YYYY-MM-DD..YYYY-MM-DD"
ROLLING_WINDOW_RUN_PARAM = "rolling.window.{}.run_id"     # on the combined run: the window's run id
ROLLING_IC_METRIC = "rolling/IC"           # on the combined run: each window's IC at step = window index
