"""Online serving: OnlineManager simulate, OnlineToolR tags, PredUpdater / LabelUpdater."""
from __future__ import annotations

import pandas as pd
import pytest

import qexp
from qexp import R
from qexp.online import LabelUpdater, OnlineManager, OnlineToolR, PredUpdater, RollingStrategy
from qexp.task import RollingGen
from qexp.trainer import DelayTrainerR, TrainerR

from .tasks import small_task


@pytest.fixture
def session(tmp_path, tiny_market):
    qexp.init(uri=str(tmp_path / "runs"), provider_uri=str(tiny_market))
    return tmp_path / "runs"


def trading_days(start, end):
    return qexp.ext.get_provider().calendar(start_time=start, end_time=end)


@pytest.mark.parametrize("trainer_cls", [TrainerR, DelayTrainerR])
def test_simulate_gives_signals_for_every_day(session, trainer_cls):
    template = small_task(test=("2019-07-01", "2019-07-31"))
    strategy = RollingStrategy("sim", template, RollingGen(step=10, rtype=RollingGen.ROLL_SD))
    manager = OnlineManager(strategy, trainer=trainer_cls(), begin_time="2019-07-01")
    signals = manager.simulate(end_time="2019-08-30")
    days = trading_days("2019-07-01", "2019-08-30")
    got = set(signals.index.get_level_values("datetime"))
    assert set(days) <= got, sorted(set(days) - got)
    assert signals.notna().all() and isinstance(signals, pd.Series)
    assert manager.status == OnlineManager.STATUS_ONLINE
    # the first tasks cover July; the routines trained the windows after it as the days passed
    recs = list(R.list_recorders(experiment_name="sim").values())
    tests = sorted(r.load_object("task")["dataset"]["kwargs"]["segments"]["test"][0] for r in recs)
    assert len(tests) >= 5 and str(tests[-1].date()) >= "2019-08-26"
    online = OnlineToolR("sim").online_models()
    assert len(online) == 1 and online[0].load_object("task")["dataset"]["kwargs"]["segments"]["test"][0] == tests[-1]
    assert all(r.list_tags()["train_status"] == "end_task_train" for r in recs)
    # the history says which model served at each routine
    assert len(manager.history) == len(days)


def test_online_tool_tags(session):
    recs = TrainerR(experiment_name="tags")([small_task(), small_task(alpha=2.0)])
    tool = OnlineToolR("tags")
    assert tool.online_models() == [] and tool.get_online_tag(recs[0]) == "offline"
    tool.reset_online_tag(recs[1])
    assert [r.id for r in tool.online_models()] == [recs[1].id]
    tool.reset_online_tag(recs)
    assert {r.id for r in tool.online_models()} == {r.id for r in recs}
    with pytest.raises(ValueError, match="needs a specific experiment"):
        OnlineToolR().online_models()


def test_pred_updater_extends_the_predictions(session):
    (rec,) = TrainerR(experiment_name="upd")([small_task(test=("2019-04-01", "2019-05-31"))])
    old = rec.load_object("pred.pkl")
    PredUpdater(rec, to_date="2019-06-28").update()
    new = rec.load_object("pred.pkl")
    days = new.index.get_level_values("datetime")
    assert str(days.max().date()) == "2019-06-28"
    assert set(trading_days("2019-04-01", "2019-06-28")) == set(days)
    pd.testing.assert_frame_equal(new.loc[old.index], old)  # the old rows are kept
    pd.testing.assert_frame_equal(rec.load_object("pred.pkl.prev"), old)
    # the model's own prediction on those days, for a dataset built for June
    model = rec.load_object("params.pkl")
    from qexp.online.update import RMDLoader
    june = RMDLoader(rec).get_dataset("2019-06-03", "2019-06-28")
    expected = model.predict(june)
    assert new.loc["2019-06-03":, "score"].to_numpy() == pytest.approx(expected.to_numpy(), rel=1e-6)
    # up to date: nothing to do; a date past the calendar is clipped to its last day
    assert PredUpdater(rec, to_date="2019-06-28").update(ret_new=True) is None
    updater = PredUpdater(rec, to_date="2030-01-01")
    assert updater.to_date == qexp.ext.get_provider().calendar()[-1]
    LabelUpdater(rec, to_date="2019-06-28").update()
    label = rec.load_object("label.pkl")
    assert str(label.index.get_level_values("datetime").max().date()) == "2019-06-28"
    assert set(label.index.get_level_values("datetime")) == set(trading_days("2019-04-01", "2019-06-28"))
    assert label.loc["2019-06-03":].notna().mean().iloc[0] > 0.9  # the synthetic market has a few suspensions


def test_online_manager_routine_updates_online_predictions(session):
    template = small_task(test=("2019-04-01", "2019-04-30"))
    strategy = RollingStrategy("live", template, RollingGen(step=40))
    manager = OnlineManager(strategy, begin_time="2019-04-01")
    manager.first_train()
    (online,) = OnlineToolR("live").online_models()
    # within the step no model is trained; online, the online model's predictions reach the latest data (Qlib)
    manager.routine("2019-05-15")
    assert [r.id for r in OnlineToolR("live").online_models()] == [online.id]
    pred = online.load_object("pred.pkl")
    assert str(pred.index.get_level_values("datetime").max().date()) == "2019-12-31"
    signals = manager.get_signals()
    assert str(signals.index.get_level_values("datetime").max().date()) == "2019-12-31"
    # saved between routines, as Qlib's examples do
    manager.to_pickle(session.parent / "manager.pkl")
    again = OnlineManager.load(session.parent / "manager.pkl")
    pd.testing.assert_series_equal(again.get_signals(), signals)
    assert again.strategies[0].name_id == "live" and again.cur_time == pd.Timestamp("2019-05-15")
