"""The backend conformance suite: what "works" means for a tracking backend, as a class to subclass.

A backend's own tests provide one fixture, ``store_uri``: the URI of a fresh, empty store (it may call
``pytest.skip`` when a service is unavailable, and may be parametrised over several kinds of store)::

    import pytest
    from qexp.testing import BackendConformance

    class TestMyBackend(BackendConformance):
        @pytest.fixture
        def store_uri(self, tmp_path):
            return f"mybackend://{tmp_path}/store"

Every test goes through the public ``R`` / ExpManager / Recorder API only, with ``qexp.init(uri=store_uri)``
done by the ``store`` fixture. The backend's plugin must be loaded (an installed entry point, or
``qexp.ext.register_plugin`` in a fixture of the test module). qexp's own backends use this class the
same way (``tests/conformance``, ``tests/mlflow``, ``tests/wandb``).
"""
from __future__ import annotations

import math
import os
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import qexp
from qexp import (
    ArtifactPathError,
    ExpAlreadyExistError,
    ExpNotFoundError,
    FilterSyntaxError,
    LoadObjectError,
    NoActiveRecorderError,
    QexpError,
    R,
    RecorderNotFoundError,
)

from .session import reset_session


class Evil:
    """Unpickling this under the restricted unpickler must be refused."""

    def __reduce__(self):
        return (os.getcwd, ())


class BackendConformance:
    """Subclass as ``Test<Name>`` and provide the ``store_uri`` fixture; every ``test_*`` method then runs on
    that backend. Not collected itself (its name does not start with ``Test``)."""

    @pytest.fixture(autouse=True)
    def _qexp_session(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        # stores opened by a bare path (uri_context, set_uri) live in tmp_path; no run outlives its test
        monkeypatch.setenv("QEXP_URI", str(tmp_path / "default_store"))
        yield
        reset_session()

    @pytest.fixture
    def store(self, store_uri: str) -> Iterator[str]:
        """qexp initialised on the fresh store ``store_uri``; yields that URI."""
        qexp.init(uri=store_uri)
        yield store_uri

    # ---- experiments ----------------------------------------------------------------------------------
    def test_experiment_lifecycle(self, store):
        exp = R.get_exp(experiment_name="alpha")
        assert exp.name == "alpha"
        assert R.get_exp(experiment_name="alpha").id == exp.id
        assert R.get_exp(experiment_id=exp.id).name == "alpha"
        assert "alpha" in R.list_experiments()
        with pytest.raises(ExpAlreadyExistError):
            R.exp_manager.create_exp("alpha")
        R.delete_exp(experiment_name="alpha")
        assert "alpha" not in R.list_experiments()
        # a deleted experiment's name can be reused, and it starts empty
        again = R.get_exp(experiment_name="alpha")
        assert again.id != exp.id
        assert again.list_recorders() == {}


    def test_lookups_never_create(self, store):
        with pytest.raises(ExpNotFoundError):
            R.get_exp(experiment_name="nope", create=False)
        with pytest.raises(ExpNotFoundError):
            R.list_recorders(experiment_name="nope")
        assert "nope" not in R.list_experiments()
        with pytest.raises(ExpNotFoundError):
            R.get_exp(experiment_id="987654321", create=False)
        with pytest.raises((ExpNotFoundError, ValueError)):
            R.delete_exp(experiment_name="nope")


    def test_default_names(self, store):
        with R.start():
            rec = R.get_recorder()
            assert R.get_exp().name == "Experiment"
            assert rec.name == "mlflow_recorder"


    # ---- statuses -------------------------------------------------------------------------------------
    def test_status_finished_and_failed(self, store):
        with R.start(experiment_name="s", recorder_name="ok"):
            rec = R.get_recorder()
            assert rec.status == "RUNNING"
        assert rec.status == "FINISHED"
        with pytest.raises(ZeroDivisionError):
            with R.start(experiment_name="s", recorder_name="bad"):
                bad = R.get_recorder()
                R.log_metrics(x=1.0)
                raise ZeroDivisionError("a failing step")
        fresh = R.get_recorder(recorder_id=bad.id, experiment_name="s")
        assert fresh.status == "FAILED"
        assert fresh.list_metrics() == {"x": 1.0}  # what was logged before the failure is kept
        with pytest.raises(KeyboardInterrupt):
            with R.start(experiment_name="s", recorder_name="interrupted"):
                ki = R.get_recorder()
                raise KeyboardInterrupt
        assert R.get_recorder(recorder_id=ki.id, experiment_name="s").status == "FAILED"
        assert not R.has_active()


    def test_unstarted_recorder_is_scheduled(self, store):
        exp = R.get_exp(experiment_name="sched")
        rec = exp.create_recorder("later")
        assert rec.status == "SCHEDULED" and rec.id is None
        with pytest.raises(QexpError):
            rec.log_params(a=1)


    # ---- params, metrics, tags ------------------------------------------------------------------------
    def test_params_metrics_tags(self, store):
        with R.start(experiment_name="pmt"):
            R.log_params(lr=0.1, layers=2, name="x", flag=True)
            R.log_params(lr=0.1)  # same value again is fine
            with pytest.raises(QexpError, match="immutable"):
                R.log_params(lr=0.2)
            for step in range(100):
                R.log_metrics(step=step, loss=1.0 / (step + 1), acc=step / 100)
            R.log_metrics(ic=0.05)
            R.set_tags(stage="dev", owner="me")
            R.set_tags(stage="prod")
            rec = R.get_recorder()
            rec.delete_tags("owner")
        rec = R.get_recorder(recorder_id=rec.id, experiment_name="pmt")
        params = rec.list_params()
        assert params["lr"] == "0.1" and params["layers"] == "2" and params["name"] == "x" and params["flag"] == "True"
        metrics = rec.list_metrics()
        assert metrics["loss"] == pytest.approx(0.01) and metrics["acc"] == pytest.approx(0.99)
        assert metrics["ic"] == pytest.approx(0.05)
        tags = rec.list_tags()
        assert tags["stage"] == "prod" and "owner" not in tags
        hist = rec.get_metric_history("loss")
        assert list(hist.columns) == ["step", "value", "timestamp"]
        assert list(hist["step"]) == list(range(100))
        np.testing.assert_allclose(hist["value"], [1.0 / (s + 1) for s in range(100)])
        assert (hist["timestamp"] > 0).all()


    def test_large_metric_history(self, store):
        with R.start(experiment_name="hist"):
            rec = R.get_recorder()
            rec.log_metric_batch([("m", float(i), 1_700_000_000_000 + i, i) for i in range(3000)])
        hist = R.get_recorder(recorder_id=rec.id, experiment_name="hist").get_metric_history("m")
        assert len(hist) == 3000
        assert hist["value"].sum() == pytest.approx(sum(range(3000)))
        assert R.get_recorder(recorder_id=rec.id, experiment_name="hist").list_metrics()["m"] == 2999.0


    def test_metric_history_since(self, store):
        """Following a run: metric_history_since returns the whole history first (restart), then only what was
        logged after the cursor (or, where a backend cannot continue, the whole history again, marked restart);
        non-finite values round-trip; a reader in another session follows the same way."""
        def follow(rec, key, cursor, held):
            part, cursor = rec.metric_history_since(key, cursor)
            assert list(part.columns) == ["step", "value", "timestamp"]
            held = part if part.attrs.get("restart") else pd.concat([held, part], ignore_index=True)
            return held, cursor

        with R.start(experiment_name="since"):
            rec = R.get_recorder()
            for s in range(3):
                R.log_metrics(step=s, loss=1.0 / (s + 1), other=float(s))
            held, cur = rec.metric_history_since("loss")
            assert held.attrs["restart"] and list(held["step"]) == [0, 1, 2]
            same, cur = rec.metric_history_since("loss", cur)
            assert not same.attrs["restart"] and same.empty  # nothing new
            for s, v in ((3, 0.25), (4, math.nan), (5, math.inf), (6, -math.inf), (7, 0.125)):
                R.log_metrics(step=s, loss=v)
            rec.flush()
            reader = R.exp_manager.get_recorder_by_id(str(rec.id))
            seen, rcur = follow(reader, "loss", None, None)
            held, cur = follow(rec, "loss", cur, held)
            for frame in (held, seen):
                assert list(frame["step"]) == list(range(8))
                v = frame["value"].tolist()
                assert v[:4] == [1.0, 0.5, 1.0 / 3, 0.25] and math.isnan(v[4]) and v[5:] == [math.inf, -math.inf, 0.125]
            R.log_metrics(step=8, loss=0.0625)
            rec.flush()
            seen, rcur = follow(reader, "loss", rcur, seen)
            assert list(seen["step"]) == list(range(9)) and seen["value"].iloc[-1] == 0.0625
            fresh, _ = rec.metric_history_since("loss", "not a cursor of this backend")
            assert fresh.attrs["restart"] and len(fresh) == 9  # a cursor it cannot use: everything again
            none, _ = rec.metric_history_since("never-logged")
            assert none.empty
            heartbeat = rec.last_heartbeat_ms()
            if heartbeat is not None:  # a backend that records liveness: between the start and now
                start_ms = int(R.search_records([rec.experiment_id])["start_time"].iloc[0].value // 1_000_000)
                assert start_ms - 2000 <= heartbeat <= int(pd.Timestamp.now("UTC").value // 1_000_000) + 2000


    def test_bad_metric_values(self, store):
        with R.start(experiment_name="badm"):
            with pytest.raises(QexpError, match="number"):
                R.log_metrics(x="not a number")
            with pytest.raises(QexpError):
                R.log_params(**{"bad\nkey": 1})


    def test_non_finite_metrics_round_trip(self, store):
        inf = float("inf")
        with R.start(experiment_name="nonfinite", recorder_name="odd"):
            rec = R.get_recorder()
            R.log_metrics(up=inf, down=-inf, nan=float("nan"), ok=0.5)
            R.log_metrics(curve=1.0, step=0)
            R.log_metrics(curve=inf, step=1)
            R.log_metrics(curve=-inf, step=2)
        with R.start(experiment_name="nonfinite", recorder_name="plain"):
            R.log_metrics(ok=2.0)
        fresh = R.get_recorder(recorder_id=rec.id, experiment_name="nonfinite")
        m = fresh.list_metrics()
        assert m["up"] == inf and m["down"] == -inf and math.isnan(m["nan"]) and m["ok"] == 0.5
        assert m["curve"] == -inf
        assert list(fresh.get_metric_history("curve")["value"]) == [1.0, inf, -inf]
        assert list(fresh.get_metric_history("up")["value"]) == [inf]
        assert math.isnan(fresh.get_metric_history("nan")["value"].iloc[0])
        df = R.search_records(filter_string="metrics.up > 1")
        assert list(df["run_id"]) == [rec.id]
        assert df["metrics.up"].iloc[0] == inf and df["metrics.down"].iloc[0] == -inf
        assert math.isnan(df["metrics.nan"].iloc[0])
        assert list(R.search_records(filter_string="metrics.down < -1e300")["run_id"]) == [rec.id]
        rows = {r["run_name"]: r for r in R.exp_manager.search_rows(filter_string="")}
        assert rows["odd"]["metrics"]["up"] == inf and math.isnan(rows["odd"]["metrics"]["nan"])
        assert "nan" not in rows["plain"]["metrics"]            # never logged stays absent


    # ---- stores are created by writes only -------------------------------------------------------------
    @pytest.fixture
    def missing_store_uri(self, store_uri: str) -> str:
        """A URI of this backend whose store does not exist. The default is ``store_uri`` before the ``store``
        fixture opened it: right for backends whose fresh store appears at the first write (a folder, a
        database file). Override it where ``store_uri`` names a store that already exists (a new database
        name on the same server), or ``pytest.skip`` where a store always exists (a tracking server)."""
        return store_uri

    def test_reads_never_create_a_store(self, missing_store_uri):
        from qexp.ext import StoreNotFoundError, create_manager
        with pytest.raises(StoreNotFoundError):
            create_manager(missing_store_uri, create=False)
        with pytest.raises(StoreNotFoundError):          # the first read left nothing behind
            create_manager(missing_store_uri, create=False)

    def test_reads_open_an_existing_store(self, store):
        from qexp.ext import create_manager
        with R.start(experiment_name="there"):
            R.log_metrics(x=1.0)
        assert "there" in create_manager(store, create=False).list_experiments()


    # ---- artifacts and objects ------------------------------------------------------------------------
    def test_artifacts(self, store, tmp_path):
        f = tmp_path / "note.txt"
        f.write_text("hello")
        d = tmp_path / "plots"
        (d / "sub").mkdir(parents=True)
        (d / "a.csv").write_text("1,2")
        (d / "sub" / "b.csv").write_text("3,4")
        with R.start(experiment_name="art"):
            R.log_artifact(str(f))
            R.log_artifact(str(f), artifact_path="docs")
            R.log_artifact(str(d))
            rec = R.get_recorder()
            assert sorted(rec.list_artifacts()) == sorted(
                [a for a in rec.list_artifacts() if a in ("note.txt", "docs", "plots", "code_diff.txt", "code_status.txt",
                                                         "code_cached.txt")])
            assert {"note.txt", "docs", "plots"} <= set(rec.list_artifacts())
            assert rec.list_artifacts("plots") == ["plots/a.csv", "plots/sub"]
            assert {"plots/a.csv", "plots/sub/b.csv", "docs/note.txt", "note.txt"} <= set(rec.list_artifacts(recursive=True))
            assert rec.read_artifact("plots/sub/b.csv") == b"3,4"
            out = R.download_artifact("docs/note.txt", dst_path=str(tmp_path / "dl"))
            # every backend returns dst_path/<last part of the path>, as MLflow's download_artifacts does
            assert out == str(tmp_path / "dl" / "note.txt") and open(out).read() == "hello"
            whole = rec.download_artifact("plots", dst_path=str(tmp_path / "dl2"))
            assert whole == str(tmp_path / "dl2" / "plots")
            assert open(os.path.join(whole, "sub", "b.csv")).read() == "3,4"
            nested = rec.download_artifact("plots/sub", dst_path=str(tmp_path / "dl3"))
            assert nested == str(tmp_path / "dl3" / "sub") and sorted(os.listdir(nested)) == ["b.csv"]


    def test_bad_artifact_paths(self, store, tmp_path):
        f = tmp_path / "x.txt"
        f.write_text("x")
        with R.start(experiment_name="badart"):
            for bad in ("../escape", "a/../../b", "/abs/path", "nul\x00byte.txt", "line\nbreak", "tab\tin/it"):
                with pytest.raises(ArtifactPathError):
                    R.log_artifact(str(f), artifact_path=bad)
                with pytest.raises(ArtifactPathError):
                    R.get_recorder().read_artifact(bad)
                with pytest.raises(ArtifactPathError):
                    R.get_recorder().list_artifacts(bad)
            with pytest.raises(ArtifactPathError):
                bad_name: dict[str, Any] = {"../x.pkl": 1}
                R.save_objects(**bad_name)
            with pytest.raises(FileNotFoundError):
                R.log_artifact(str(tmp_path / "missing.txt"))


    def test_save_and_load_objects(self, store):
        df = pd.DataFrame({"score": np.arange(5.0)}, index=pd.Index(list("abcde"), name="instrument"))
        with R.start(experiment_name="obj"):
            R.save_objects(**{"pred.pkl": df, "meta": {"a": [1, 2]}})
            R.save_objects(artifact_path="sig_analysis", **{"ic.pkl": pd.Series([0.1, 0.2])})
            pd.testing.assert_frame_equal(R.load_object("pred.pkl"), df)
            rec = R.get_recorder()
        rec = R.get_recorder(recorder_id=rec.id, experiment_name="obj")
        assert rec.load_object("meta") == {"a": [1, 2]}
        pd.testing.assert_series_equal(rec.load_object("sig_analysis/ic.pkl"), pd.Series([0.1, 0.2]))
        pd.testing.assert_frame_equal(rec.load_object("pred.pkl", restricted=True), df)
        raw = rec.read_artifact("pred.pkl")
        pd.testing.assert_frame_equal(pickle.loads(raw), df)
        with pytest.raises(LoadObjectError, match="missing.pkl"):
            rec.load_object("missing.pkl")


    def test_restricted_load_refuses_code(self, store):
        with R.start(experiment_name="evil"):
            R.save_objects(evil=Evil())
            rec = R.get_recorder()
        with pytest.raises(LoadObjectError, match="refused"):
            rec.load_object("evil", restricted=True)
        assert rec.load_object("evil") == os.getcwd()  # trusted load runs it, as pickle does


    # ---- recorders: lookup, resume, finished writes ---------------------------------------------------
    def test_get_recorder_errors(self, store):
        with pytest.raises(NoActiveRecorderError):
            R.get_recorder()
        with pytest.raises(NoActiveRecorderError):
            R.load_object("pred.pkl")
        with pytest.raises(NoActiveRecorderError):
            R.download_artifact("x")
        R.get_exp(experiment_name="e")
        with pytest.raises(RecorderNotFoundError):
            R.get_recorder(recorder_id="0123456789abcdef0123456789abcdef", experiment_name="e")
        with pytest.raises(RecorderNotFoundError):
            R.get_recorder(recorder_id="0123456789abcdef0123456789abcdef")
        with pytest.raises(RecorderNotFoundError):
            R.get_recorder(recorder_name="ghost", experiment_name="e")


    def test_latest_by_name_and_resume(self, store):
        with R.start(experiment_name="res", recorder_name="train"):
            R.log_metrics(step=0, loss=3.0)
            first = R.get_recorder()
        with R.start(experiment_name="res", recorder_name="train"):
            second = R.get_recorder()
        assert first.id != second.id
        with pytest.warns(UserWarning, match="latest"):
            assert R.get_recorder(recorder_name="train", experiment_name="res").id == second.id
        # resume by id: the same run, RUNNING again, appending
        with R.start(experiment_name="res", recorder_id=first.id, resume=True):
            rec = R.get_recorder()
            assert rec.id == first.id and rec.status == "RUNNING"
            R.log_metrics(step=1, loss=2.0)
        rec = R.get_recorder(recorder_id=first.id, experiment_name="res")
        assert rec.status == "FINISHED"
        assert list(rec.get_metric_history("loss")["value"]) == [3.0, 2.0]
        # resume by name picks the latest with that name; a missing name creates it
        with pytest.warns(UserWarning):
            with R.start(experiment_name="res", recorder_name="train", resume=True):
                assert R.get_recorder().id == second.id
        with R.start(experiment_name="res", recorder_name="brand-new", resume=True):
            assert R.get_recorder().name == "brand-new"
        with pytest.raises(RecorderNotFoundError):
            with R.start(experiment_name="res", recorder_id="0" * 32, resume=True):
                pass


    def test_write_to_finished_recorder(self, store):
        with R.start(experiment_name="late"):
            rec = R.get_recorder()
        assert rec.status == "FINISHED"
        late = R.get_recorder(recorder_id=rec.id, experiment_name="late")
        late.log_metrics(step=5, extra=1.5)
        late.save_objects(config={"k": 1})
        late.set_tags(after="yes")
        late.flush()
        again = R.get_recorder(recorder_id=rec.id, experiment_name="late")
        assert again.list_metrics()["extra"] == 1.5
        assert again.load_object("config") == {"k": 1}
        assert again.list_tags()["after"] == "yes"
        assert again.status == "FINISHED"


    def test_list_and_delete_recorders(self, store):
        ids = []
        for i in range(3):
            with R.start(experiment_name="lst", recorder_name=f"r{i}"):
                ids.append(R.get_recorder().id)
        recs = R.list_recorders(experiment_name="lst")
        assert set(recs) == set(ids)
        exp = R.get_exp(experiment_name="lst")
        as_list = exp.list_recorders(rtype="list")
        assert [r.id for r in as_list] == ids[::-1]  # latest first
        assert exp.list_recorders(status="FINISHED").keys() == set(ids)
        assert exp.list_recorders(status="FAILED") == {}
        R.delete_recorder(recorder_id=ids[0])
        assert set(R.list_recorders(experiment_name="lst")) == set(ids[1:])
        exp.delete_recorder(recorder_name="r1")
        assert set(R.list_recorders(experiment_name="lst")) == {ids[2]}


    # ---- auto start, nesting, threads -----------------------------------------------------------------
    def test_autostart_outside_start(self, store):
        R.log_params(auto=1)
        rec = R.get_recorder()
        assert rec.status == "RUNNING" and R.get_exp().name == "Experiment"
        R.save_objects(thing=[1])
        R.end_exp()
        assert not R.has_active()
        got = R.get_recorder(recorder_id=rec.id, experiment_name="Experiment")
        assert got.status == "FINISHED" and got.list_params() == {"auto": "1"}
        assert got.load_object("thing") == [1]


    def test_nested_runs(self, store):
        with R.start(experiment_name="outer", recorder_name="parent"):
            parent = R.get_recorder()
            R.log_metrics(p=1.0)
            with R.start(experiment_name="outer", recorder_name="child"):
                child = R.get_recorder()
                assert child.id != parent.id
                R.log_metrics(c=2.0)
            assert R.get_recorder().id == parent.id
            R.log_metrics(p=3.0)
        c = R.get_recorder(recorder_id=child.id, experiment_name="outer")
        assert c.list_tags()["mlflow.parentRunId"] == parent.id
        assert c.list_metrics() == {"c": 2.0}
        p = R.get_recorder(recorder_id=parent.id, experiment_name="outer")
        assert p.list_metrics() == {"p": 3.0} and p.status == "FINISHED"
        df = R.search_records([R.get_exp(experiment_name="outer").id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent.id}'")
        assert list(df["run_id"]) == [child.id]
        # the parent link is on the recorder objects however they are obtained
        assert c.parent_id == parent.id and p.parent_id is None
        listed = R.list_recorders(experiment_name="outer")
        assert {rid: r.parent_id for rid, r in listed.items()} == {parent.id: None, child.id: parent.id}


    def test_nested_run_without_experiment_goes_beside_its_parent(self, store):
        with R.start(experiment_name="home", recorder_name="parent") as exp:
            parent = R.get_recorder()
            with R.start(recorder_name="child") as child_exp:
                child = R.get_recorder()
                assert child_exp.id == exp.id and child.experiment_id == exp.id
            with R.start(experiment_name="elsewhere", recorder_name="away"):
                away = R.get_recorder()
        assert away.experiment_id != exp.id and away.parent_id == parent.id
        assert set(R.list_recorders(experiment_name="home")) == {parent.id, child.id}


    def test_parent_is_the_active_run_again_after_a_child_ends(self, store):
        for outer in ("home2", None):
            with R.start(experiment_name=outer, recorder_name="parent") as exp:
                parent = R.get_recorder()
                with R.start(recorder_name="child"):
                    assert exp.active_recorder is not None and exp.active_recorder.id != parent.id
                assert exp.active_recorder is not None and exp.active_recorder.id == parent.id
                assert exp.info["active_recorder"] == parent.id
                assert R.get_exp().get_recorder().id == parent.id
            assert exp.active_recorder is None


    def test_threads_run_separate_experiments(self, store):
        errors, ids = [], {}

        def work(i: int) -> None:
            try:
                with R.start(experiment_name=f"thread-{i}", recorder_name=f"t{i}"):
                    for s in range(20):
                        R.log_metrics(step=s, v=float(i))
                    ids[i] = R.get_recorder().id
                    assert R.get_exp().name == f"thread-{i}"
            except Exception as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        for i, rid in ids.items():
            rec = R.get_recorder(recorder_id=rid, experiment_name=f"thread-{i}")
            assert rec.status == "FINISHED"
            assert len(rec.get_metric_history("v")) == 20 and rec.list_metrics() == {"v": float(i)}


    # ---- search -------------------------------------------------------------------------------------
    @pytest.fixture
    def searchable(self, store):
        ids = {}
        for i, (model, lr, ic, tag) in enumerate([("lgb", "0.1", 0.05, "Alpha158"), ("lgb", "0.05", 0.02, "Alpha360"),
                                                  ("alstm", "0.001", -0.01, "alpha360"), ("linear", "0", 0.03, "x")]):
            with R.start(experiment_name="search", recorder_name=f"run{i}"):
                R.log_params(model=model, lr=lr)
                R.log_metrics(IC=ic, rank=float(i))
                R.set_tags(handler=tag)
                ids[i] = R.get_recorder().id
        with pytest.raises(RuntimeError):
            with R.start(experiment_name="search", recorder_name="failed"):
                R.log_params(model="broken")
                raise RuntimeError("boom")
        return R.get_exp(experiment_name="search").id, ids


    @staticmethod
    def _ids(df):
        return set(df["run_id"])


    def test_search_frame_shape(self, searchable):
        exp_id, ids = searchable
        df = R.search_records([exp_id])
        assert isinstance(df, pd.DataFrame) and len(df) == 5
        for col in ("run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time",
                    "metrics.IC", "params.model", "tags.handler", "tags.mlflow.runName"):
            assert col in df.columns, col
        assert pd.api.types.is_datetime64_any_dtype(df["start_time"])
        assert df["metrics.IC"].dtype == np.float64
        assert list(df["start_time"]) == sorted(df["start_time"], reverse=True)  # newest first by default


    @pytest.mark.parametrize("flt,expect", [
        ("metrics.IC > 0.02", {0, 3}), ("metrics.IC >= 0.02", {0, 1, 3}), ("metrics.IC < 0", {2}),
        ("metrics.IC <= 0.02", {1, 2}), ("metrics.IC = 0.05", {0}), ("metrics.IC != 0.05", {1, 2, 3}),
        ("params.model = 'lgb'", {0, 1}), ("params.model != 'lgb'", {2, 3, "failed"}),
        ("tags.handler LIKE 'Alpha%'", {0, 1}), ("tags.handler ILIKE 'alpha%'", {0, 1, 2}),
        ("tags.handler LIKE '%360'", {1, 2}), ("params.lr LIKE '0._'", {0}),
        ("params.model = 'lgb' AND metrics.IC > 0.03", {0}),
        ("attributes.status = 'FAILED'", {"failed"}), ("attributes.status != 'FAILED'", {0, 1, 2, 3}),
        ("attributes.run_name = 'run2'", {2}), ("run_name LIKE 'run%' AND metrics.rank >= 2", {2, 3}),
    ])
    def test_search_operators(self, searchable, flt, expect):
        exp_id, ids = searchable
        df = R.search_records([exp_id], filter_string=flt)
        want = {ids[k] for k in expect if k != "failed"}
        got = self._ids(df)
        if "failed" in expect:
            failed = set(R.search_records([exp_id], filter_string="attributes.status = 'FAILED'")["run_id"])
            assert len(failed) == 1
            want |= failed
        assert got == want, flt


    def test_search_in_and_order(self, searchable):
        exp_id, ids = searchable
        df = R.search_records([exp_id], filter_string=f"attributes.run_id IN ('{ids[0]}', '{ids[2]}')")
        assert self._ids(df) == {ids[0], ids[2]}
        df = R.search_records([exp_id], filter_string="metrics.IC > -1", order_by=["metrics.IC DESC"])
        assert list(df["run_id"]) == [ids[0], ids[3], ids[1], ids[2]]
        df = R.search_records([exp_id], filter_string="metrics.IC > -1", order_by="metrics.IC ASC", max_results=2)
        assert list(df["run_id"]) == [ids[2], ids[1]]
        df = R.search_records([exp_id], order_by=["params.model ASC", "metrics.IC DESC"], filter_string="metrics.IC > -1")
        assert list(df["run_id"]) == [ids[2], ids[0], ids[1], ids[3]]
        assert R.search_records([exp_id], filter_string="metrics.IC > 100").empty
        other = R.get_exp(experiment_name="other-empty")
        assert R.search_records([other.id]).empty


    def test_search_all_experiments(self, searchable):
        with R.start(experiment_name="elsewhere"):
            R.log_metrics(IC=0.5)
        df = R.search_records(filter_string="metrics.IC > 0.04")
        assert len(df) == 2 and df["metrics.IC"].max() == 0.5


    def test_search_malformed_filter(self, searchable):
        exp_id, _ = searchable
        with pytest.raises(FilterSyntaxError, match="position"):
            R.search_records([exp_id], filter_string="metrics.IC >> 1")
        with pytest.raises(FilterSyntaxError):
            R.search_records([exp_id], filter_string="params.model = lgb")
        with pytest.raises(FilterSyntaxError, match="OR"):
            R.search_records([exp_id], filter_string="metrics.a > 1 OR metrics.b > 1")


    # ---- uri handling ---------------------------------------------------------------------------------
    def test_uri_get_set_context(self, store, tmp_path):
        first = R.get_uri()
        other = str(tmp_path / "other_store")
        with R.uri_context(other):
            assert R.get_uri() == os.path.abspath(other)
            with R.start(experiment_name="ctx"):
                rid = R.get_recorder().id
        assert R.get_uri() == first
        assert "ctx" not in R.list_experiments()
        with R.uri_context(other):
            assert R.get_recorder(recorder_id=rid, experiment_name="ctx").status == "FINISHED"
        with R.start(experiment_name="tmp-uri", uri=other):
            assert R.get_uri() == os.path.abspath(other)
        R.set_uri(other)
        assert R.get_uri() == os.path.abspath(other) and "ctx" in R.list_experiments()
        R.set_uri(first)
        assert R.get_uri() == first


    def test_nested_run_inside_a_uri_context_goes_to_that_store(self, store, tmp_path):
        other = str(tmp_path / "nested_store")
        with R.start(experiment_name="outer-uri", recorder_name="parent"):
            with R.uri_context(other):
                with R.start(recorder_name="child"):
                    child = R.get_recorder()
        assert child.id not in R.list_recorders(experiment_name="outer-uri")
        with R.uri_context(other):
            found = R.get_recorder(recorder_id=child.id, experiment_name="Experiment")
            assert found.status == "FINISHED"


    def test_many_params_in_one_call(self, store):
        params = {f"group.sub.key_{i}": i for i in range(250)}
        with R.start(experiment_name="many"):
            R.log_params(**params)
            R.set_tags(**{f"t{i}": i for i in range(150)})
            rec = R.get_recorder()
        got = R.get_recorder(recorder_id=rec.id, experiment_name="many")
        assert got.list_params() == {k: str(v) for k, v in params.items()}
        df = R.search_records([rec.experiment_id], filter_string="params.`group.sub.key_249` = '249'")
        assert list(df["run_id"]) == [rec.id]


    # ---- paging: search_records(max_results=..., page_token=...) ------------------------------------------
    @pytest.mark.parametrize("order,flt", [
        (None, ""), (["metrics.IC DESC"], ""), (["params.model ASC", "metrics.IC DESC"], "metrics.IC > -1"),
        (["metrics.rank ASC"], "params.model != 'linear'"), (["attributes.run_name DESC"], "attributes.status = 'FINISHED'"),
    ])
    def test_search_pages(self, searchable, order, flt):
        exp_id, _ = searchable
        whole = list(R.search_records([exp_id], filter_string=flt, order_by=order)["run_id"])
        got, sizes, token = [], [], None
        while True:
            df = R.search_records([exp_id], filter_string=flt, order_by=order, max_results=2, page_token=token)
            got += list(df["run_id"])
            sizes.append(len(df))
            token = df.attrs["next_page_token"]
            if token is None:
                break
            assert isinstance(token, str) and len(sizes) < 10
        assert got == whole  # the same rows in the same order, none twice
        assert all(s == 2 for s in sizes[:-1]) and len(sizes) <= len(whole) // 2 + 1  # the last may be empty


    def test_search_page_token_of_another_search(self, searchable):
        exp_id, _ = searchable
        token = R.search_records([exp_id], order_by=["metrics.IC DESC"], max_results=2).attrs["next_page_token"]
        assert token
        with pytest.raises(FilterSyntaxError, match="page_token"):
            R.search_records([exp_id], order_by=["metrics.IC ASC"], max_results=2, page_token=token)
        with pytest.raises(FilterSyntaxError, match="page_token"):
            R.search_records([exp_id], max_results=2, page_token="not-a-token")
        assert R.search_records([exp_id], max_results=10).attrs["next_page_token"] is None


    def test_search_corrupt_page_token(self, searchable):
        """A token damaged or forged behind its prefix (an offset past 2**63, a negative one, garbage) is a
        FilterSyntaxError naming page_token, never a backend's internal error; a good one reports its offset."""
        import base64
        import json
        exp_id, _ = searchable
        token = R.search_records([exp_id], max_results=2).attrs["next_page_token"]
        assert token
        forged = []
        try:  # qexp's own offset tokens
            inner = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        except ValueError:
            inner = None
        if isinstance(inner, dict) and "o" in inner:
            for o in (10 ** 23, 2 ** 63, -1, "x"):
                forged.append(base64.urlsafe_b64encode(json.dumps({**inner, "o": o}).encode()).decode().rstrip("="))
        prefix = token.rpartition(":")[0] + ":" if ":" in token else ""
        for o in (10 ** 23, -1):  # a backend's native token: the same prefix, another offset inside
            forged.append(prefix + base64.b64encode(json.dumps({"offset": o}).encode()).decode())
        forged += [prefix + "%%not-base64%%", token[:-2] + "!!"]
        for bad in forged:
            with pytest.raises(FilterSyntaxError, match="page_token"):
                R.search_records([exp_id], max_results=2, page_token=bad)
        second = R.search_records([exp_id], max_results=2, page_token=token)
        assert len(second) == 2 and second.attrs["page_offset"] in (2, None)
        rows = R.exp_manager.search_rows([exp_id], max_results=2, page_token=token)
        assert [r["run_id"] for r in rows] == list(second["run_id"])
        assert rows.next_page_token == second.attrs["next_page_token"] and rows.page_offset in (2, None)


    def test_run_stats(self, searchable):
        exp_id, _ = searchable
        df = R.search_records([exp_id])
        stats = R.exp_manager.run_stats([exp_id])
        assert set(stats) == {exp_id}
        assert stats[exp_id]["counts"] == {"FINISHED": 4, "FAILED": 1} and stats[exp_id]["total"] == 5
        latest = max(int(t.value // 1_000_000) for t in list(df["start_time"]) + list(df["end_time"]))
        assert stats[exp_id]["last_activity"] == latest
        assert R.exp_manager.run_stats([R.get_exp(experiment_name="no-runs").id]) == {}
