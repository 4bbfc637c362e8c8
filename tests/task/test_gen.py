"""RollingGen / TimeAdjuster segments against hand-checked tables (Qlib 0.9.7's rules on a known calendar).

The calendar is the 43 business days Jan 1 .. Feb 28, 2020 (conftest.CAL); positions used below:
Jan 1=0, 2=1, 8=5, 9=6, 10=7, 13=8, 14=9, 15=10, 17=12, 20=13, 22=15, 23=16, 24=17, 27=18, 30=21, 31=22,
Feb 3=23, 6=26, 7=27, 10=28, 12=30, 13=31, 14=32, 17=33, 20=36, 21=37, 24=38, 26=40, 27=41, 28=42.
"""
from __future__ import annotations

import copy

import pandas as pd
import pytest

from qexp.exceptions import ConfigError
from qexp.task import MultiHorizonGenBase, RollingGen, TaskGen, TimeAdjuster, task_generator

T = pd.Timestamp


def template(train, valid, test, handler_end="2020-02-28"):
    return {
        "model": {"class": "LGBModel"},
        "dataset": {"class": "DatasetH", "kwargs": {
            "handler": {"class": "Alpha158", "kwargs": {"start_time": "2020-01-01", "end_time": handler_end}},
            "segments": {"train": train, "valid": valid, "test": test}}},
        "record": ["SignalRecord"],
    }


def segs(tasks):
    return [{k: tuple(v) for k, v in t["dataset"]["kwargs"]["segments"].items()} for t in tasks]


def table(rows):
    return [{k: (T(a), None if b is None else T(b)) for k, (a, b) in row.items()} for row in rows]


BASE = template(("2020-01-01", "2020-01-12"), ("2020-01-13", "2020-01-19"), ("2020-01-18", "2020-02-14"))


def test_expanding_table(calendar_provider):
    tasks = RollingGen(step=5, rtype=RollingGen.ROLL_EX).generate(BASE)
    assert segs(tasks) == table([
        {"train": ("2020-01-01", "2020-01-10"), "valid": ("2020-01-13", "2020-01-17"), "test": ("2020-01-20", "2020-01-24")},
        {"train": ("2020-01-01", "2020-01-17"), "valid": ("2020-01-20", "2020-01-24"), "test": ("2020-01-27", "2020-01-31")},
        {"train": ("2020-01-01", "2020-01-24"), "valid": ("2020-01-27", "2020-01-31"), "test": ("2020-02-03", "2020-02-07")},
        {"train": ("2020-01-01", "2020-01-31"), "valid": ("2020-02-03", "2020-02-07"), "test": ("2020-02-10", "2020-02-14")},
    ])
    # the template is not changed, and each task is its own copy
    assert BASE["dataset"]["kwargs"]["segments"]["test"] == ("2020-01-18", "2020-02-14")
    assert tasks[0]["model"] is not tasks[1]["model"]


def test_sliding_table(calendar_provider):
    tasks = RollingGen(step=5, rtype=RollingGen.ROLL_SD).generate(BASE)
    assert segs(tasks) == table([
        {"train": ("2020-01-01", "2020-01-10"), "valid": ("2020-01-13", "2020-01-17"), "test": ("2020-01-20", "2020-01-24")},
        {"train": ("2020-01-08", "2020-01-17"), "valid": ("2020-01-20", "2020-01-24"), "test": ("2020-01-27", "2020-01-31")},
        {"train": ("2020-01-15", "2020-01-24"), "valid": ("2020-01-27", "2020-01-31"), "test": ("2020-02-03", "2020-02-07")},
        {"train": ("2020-01-22", "2020-01-31"), "valid": ("2020-02-03", "2020-02-07"), "test": ("2020-02-10", "2020-02-14")},
    ])


def test_trunc_days_table(calendar_provider):
    base = template(("2020-01-02", "2020-01-17"), ("2020-01-20", "2020-01-24"), ("2020-01-27", "2020-02-14"))
    tasks = RollingGen(step=5, trunc_days=2).generate(base)
    # test starts at 18: non-test ends are clipped to 16 (Jan 23) on the first task, then shifted
    assert segs(tasks) == table([
        {"train": ("2020-01-02", "2020-01-17"), "valid": ("2020-01-20", "2020-01-23"), "test": ("2020-01-27", "2020-01-31")},
        {"train": ("2020-01-02", "2020-01-24"), "valid": ("2020-01-27", "2020-01-30"), "test": ("2020-02-03", "2020-02-07")},
        {"train": ("2020-01-02", "2020-01-31"), "valid": ("2020-02-03", "2020-02-06"), "test": ("2020-02-10", "2020-02-14")},
    ])


def test_trunc_days_keeps_a_train_start_on_the_first_day(calendar_provider):
    # Qlib asserts position > 0 here and stops; the segment Qlib would compute otherwise is kept
    base = template(("2020-01-01", "2020-01-17"), ("2020-01-20", "2020-01-24"), ("2020-01-27", "2020-01-31"))
    tasks = RollingGen(step=5, trunc_days=2).generate(base)
    assert segs(tasks)[0]["train"] == (T("2020-01-01"), T("2020-01-17"))


def test_open_ended_table(calendar_provider):
    base = template(("2020-01-02", "2020-01-31"), ("2020-02-03", "2020-02-14"), ("2020-02-17", None))
    tasks = RollingGen(step=4, rtype=RollingGen.ROLL_SD).generate(base)
    assert segs(tasks) == table([
        {"train": ("2020-01-02", "2020-01-31"), "valid": ("2020-02-03", "2020-02-14"), "test": ("2020-02-17", "2020-02-20")},
        {"train": ("2020-01-08", "2020-02-06"), "valid": ("2020-02-07", "2020-02-20"), "test": ("2020-02-21", "2020-02-26")},
        {"train": ("2020-01-14", "2020-02-12"), "valid": ("2020-02-13", "2020-02-26"), "test": ("2020-02-27", None)},
    ])


def test_open_end_landing_one_past_the_calendar_stops(calendar_provider):
    # step 5 puts the third test start exactly one past the last day: Qlib fails comparing None with a
    # date there; the rolling simply ends
    base = template(("2020-01-02", "2020-01-31"), ("2020-02-03", "2020-02-14"), ("2020-02-17", None))
    tasks = RollingGen(step=5, rtype=RollingGen.ROLL_SD).generate(base)
    assert [s["test"] for s in segs(tasks)] == [(T("2020-02-17"), T("2020-02-21")), (T("2020-02-24"), T("2020-02-28"))]


def test_handler_end_time_extended_to_the_test_end(calendar_provider):
    base = template(("2020-01-01", "2020-01-12"), ("2020-01-13", "2020-01-19"), ("2020-01-18", "2020-02-14"),
                    handler_end="2020-01-31")
    tasks = RollingGen(step=5).generate(base)
    ends = [t["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] for t in tasks]
    assert ends == ["2020-01-31", "2020-01-31", T("2020-02-07"), T("2020-02-14")]
    assert [t["dataset"]["kwargs"]["handler"]["kwargs"]["start_time"] for t in tasks] == ["2020-01-01"] * 4
    # without ds_extra_mod_func the handler is left alone
    tasks = RollingGen(step=5, ds_extra_mod_func=None).generate(base)
    assert {t["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] for t in tasks} == {"2020-01-31"}


def test_roll_fit_window_moves_with_train(calendar_provider):
    tasks = RollingGen(step=5, rtype=RollingGen.ROLL_SD, roll_fit_window=True).generate(BASE)
    for t in tasks:
        kw = t["dataset"]["kwargs"]["handler"]["kwargs"]
        assert (kw["fit_start_time"], kw["fit_end_time"]) == t["dataset"]["kwargs"]["segments"]["train"]
    assert "fit_start_time" not in RollingGen(step=5).generate(BASE)[0]["dataset"]["kwargs"]["handler"]["kwargs"]


def test_gen_following_tasks_from_a_task(calendar_provider):
    rg = RollingGen(step=5)
    first = rg.generate(BASE)[0]
    following = list(rg.gen_following_tasks(first, T("2020-02-03")))
    assert [s["test"] for s in segs(following)] == [(T("2020-01-27"), T("2020-01-31")),
                                                    (T("2020-02-03"), T("2020-02-07"))]


def test_time_adjuster_rules(calendar_provider):
    ta = TimeAdjuster()
    assert ta.align_time("2020-01-04") == T("2020-01-06") and ta.align_time("2020-01-04", "end") == T("2020-01-03")
    assert ta.align_idx(None) is None and ta.get(None) is None and ta.get(43) is None and ta.max() == T("2020-02-28")
    assert ta.cal_interval("2020-01-10", "2020-01-06") == 4
    assert ta.shift((T("2020-01-06"), T("2020-01-10")), 2, ta.SHIFT_SD) == (T("2020-01-08"), T("2020-01-14"))
    assert ta.shift((T("2020-01-06"), T("2020-01-10")), 2, ta.SHIFT_EX) == (T("2020-01-06"), T("2020-01-14"))
    assert ta.shift((T("2020-02-26"), None), 2) == (T("2020-02-28"), None)
    with pytest.raises(KeyError):
        ta.shift((T("2020-02-27"), T("2020-02-28")), 3)
    ta.set_end_time("2020-01-31")
    assert ta.max() == T("2020-01-31")
    assert TimeAdjuster(calendar=["2020-01-03", "2020-01-01"]).cals[0] == T("2020-01-01")


def test_task_generator_is_a_cartesian_expansion(calendar_provider):
    class Copies(TaskGen):
        def __init__(self, n, key):
            self.n, self.key = n, key

        def generate(self, task):
            return [{**copy.deepcopy(task), self.key: i} for i in range(self.n)]

    tasks = task_generator([{"t": i} for i in range(3)], [Copies(2, "a"), Copies(3, "b")])
    assert len(tasks) == 18 and len({(t["t"], t["a"], t["b"]) for t in tasks}) == 18
    assert task_generator({"t": 0}, Copies(2, "a")) == [{"t": 0, "a": 0}, {"t": 0, "a": 1}]


def test_multi_horizon(calendar_provider):
    class Horizon(MultiHorizonGenBase):
        def set_horizon(self, task, hr):
            task["horizon"] = hr

    base = template(("2020-01-02", "2020-01-24"), ("2020-01-27", "2020-02-07"), ("2020-02-10", "2020-02-28"))
    tasks = Horizon(horizon=[1, 3], label_leak_n=2).generate(base)
    assert [t["horizon"] for t in tasks] == [1, 3]
    # test starts at 28: valid ends at 28 - (h + 2)
    assert [t["dataset"]["kwargs"]["segments"]["valid"][1] for t in tasks] == [T("2020-02-05"), T("2020-02-03")]


@pytest.mark.parametrize("step", [0, -3, 2.5, True])
def test_bad_step(calendar_provider, step):
    with pytest.raises(ConfigError, match="step must be a positive"):
        RollingGen(step=step)


def test_bad_rtype(calendar_provider):
    with pytest.raises(ConfigError, match="rtype"):
        RollingGen(step=5, rtype="rolling")


def test_task_without_segments(calendar_provider):
    task = template(("2020-01-02", "2020-01-17"), ("2020-01-20", "2020-01-24"), ("2020-01-27", "2020-02-14"))
    del task["dataset"]["kwargs"]["segments"]
    with pytest.raises(ConfigError, match=r"task\.dataset\.kwargs\.segments"):
        RollingGen(step=5).generate(task)
    task["dataset"]["kwargs"]["segments"] = {"train": ("2020-01-02", "2020-01-17")}
    with pytest.raises(ConfigError, match=r"task\.dataset\.kwargs\.segments\.test"):
        RollingGen(step=5).generate(task)


def test_test_segment_outside_the_calendar(calendar_provider):
    task = template(("2020-01-02", "2020-01-17"), ("2020-01-20", "2020-01-24"), ("2020-03-02", "2020-04-30"))
    with pytest.raises(ConfigError, match=r"segments\.test: starts 2020-03-02, after the last trading day 2020-02-28"):
        RollingGen(step=5).generate(task)
    task = template(("2019-01-02", "2019-01-17"), ("2020-01-20", "2020-01-24"), ("2020-01-27", "2020-02-14"))
    with pytest.raises(ConfigError, match=r"segments\.train: ends 2019-01-17, before the first trading day"):
        RollingGen(step=5).generate(task)
