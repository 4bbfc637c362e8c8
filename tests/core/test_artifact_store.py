"""The artifact-store extension point: a file-tracked run keeps its artifacts in a store a plugin registers
for the scheme of ``qexp.init(artifact_root=...)``, and reads find them there again without the setting."""
from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator

import pandas as pd
import pytest

import qexp
from qexp import R, UnknownSchemeError
from qexp.ext import ArtifactStore, SchemeRegister, hookimpl, register_plugin, unregister_plugin

BLOBS: dict[str, bytes] = {}   # full URI -> bytes: what the memtest:// "service" holds
CALLS: list[str] = []


class MemArtifactStore:
    """Only the four methods of the ArtifactStore contract, over a dict."""

    def __init__(self, root_uri: str):
        self.root_uri = root_uri.rstrip("/")

    def _key(self, path: str) -> str:
        return f"{self.root_uri}/{path}"

    def put(self, local_path: str, artifact_path: str | None) -> None:
        CALLS.append("put")
        base = posixpath.join(artifact_path or "", os.path.basename(os.path.normpath(local_path)))
        if os.path.isdir(local_path):
            for dirpath, _, names in os.walk(local_path):
                rel = os.path.relpath(dirpath, local_path).replace(os.sep, "/")
                for n in names:
                    with open(os.path.join(dirpath, n), "rb") as f:
                        BLOBS[self._key(posixpath.normpath(posixpath.join(base, rel, n)))] = f.read()
        else:
            with open(local_path, "rb") as f:
                BLOBS[self._key(base)] = f.read()

    def get_bytes(self, path: str) -> bytes:
        CALLS.append("get_bytes")
        try:
            return BLOBS[self._key(path)]
        except KeyError:
            raise FileNotFoundError(path) from None

    def _mine(self) -> list[str]:
        return sorted(k[len(self.root_uri) + 1:] for k in BLOBS if k.startswith(self.root_uri + "/"))

    def list(self, path: str | None, recursive: bool) -> list[str]:
        CALLS.append("list")
        files = self._mine()
        if path and path in files:
            return [path]
        prefix = f"{path}/" if path else ""
        inner = [p for p in files if p.startswith(prefix)]
        return inner if recursive else sorted({prefix + p[len(prefix):].split("/", 1)[0] for p in inner})

    def download(self, path: str, dst_dir: str) -> str:
        CALLS.append("download")
        target = os.path.join(dst_dir, posixpath.basename(path))
        with open(target, "wb") as f:
            f.write(self.get_bytes(path))
        return target


    def delete(self, path: str | None) -> None:
        CALLS.append("delete")
        prefix = self._key(path) if path else self.root_uri
        for key in [k for k in BLOBS if k == prefix or k.startswith(prefix + "/")]:
            del BLOBS[key]


class MemArtifactPlugin:
    @hookimpl
    def register_artifact_stores(self, register: SchemeRegister) -> None:
        register("memtest", MemArtifactStore, description="artifacts in a dict (test)")


@pytest.fixture
def memtest() -> Iterator[None]:
    BLOBS.clear()
    CALLS.clear()
    name = register_plugin(MemArtifactPlugin(), name="memtest-artifacts")
    try:
        yield
    finally:
        unregister_plugin(name)


def test_file_run_keeps_artifacts_in_a_registered_store(memtest, tmp_path):
    assert isinstance(MemArtifactStore("memtest://x"), ArtifactStore)
    store = tmp_path / "store"
    note = tmp_path / "note.txt"
    note.write_text("hello")
    df = pd.DataFrame({"score": [0.1, 0.2]})
    qexp.init(uri=str(store), artifact_root="memtest://bucket")
    assert qexp.get_settings()["artifact_root"] == "memtest://bucket"
    with R.start(experiment_name="remote", recorder_name="r"):
        rec = R.get_recorder()
        R.log_artifact(str(note), artifact_path="docs")
        R.save_objects(**{"pred.pkl": df})
        rec.log_text("x", "plain.txt")
    prefix = f"memtest://bucket/{rec.experiment_id}/{rec.id}/"
    assert rec.get_artifact_uri() == prefix.rstrip("/")
    assert {k[len(prefix):] for k in BLOBS if k.startswith(prefix)} >= {"docs/note.txt", "pred.pkl", "plain.txt"}
    assert not os.path.exists(os.path.join(rec.get_local_dir(), "artifacts"))  # nothing in the run folder

    # a later session without the setting reads the same artifacts: the run recorded where they are
    qexp.init(uri=str(store))
    again = R.get_recorder(recorder_id=rec.id, experiment_name="remote")
    CALLS.clear()
    pd.testing.assert_frame_equal(again.load_object("pred.pkl"), df)
    assert {"docs", "pred.pkl", "plain.txt"} <= set(again.list_artifacts())
    out = again.download_artifact("docs/note.txt", dst_path=str(tmp_path / "dl"))
    assert open(out).read() == "hello"
    assert {"get_bytes", "list", "download"} <= set(CALLS)
    listed = R.list_recorders(experiment_name="remote")[rec.id]  # built from the index, not the folder
    assert listed.read_artifact("plain.txt") == b"x"
    df_runs = R.search_records([rec.experiment_id])
    assert list(df_runs["artifact_uri"]) == [prefix.rstrip("/")]
    assert R.exp_manager.rebuild_index() == 1
    assert list(R.search_records([rec.experiment_id])["artifact_uri"]) == [prefix.rstrip("/")]

    # runs started without the setting keep their artifacts in their folder, as before
    with R.start(experiment_name="remote", recorder_name="local"):
        R.save_objects(x=1)
        local = R.get_recorder()
    assert os.path.isfile(os.path.join(local.get_local_dir(), "artifacts", "x"))
    assert not any(k.startswith(f"memtest://bucket/{local.experiment_id}/{local.id}") for k in BLOBS)


def test_local_artifact_root_and_unknown_scheme(tmp_path):
    qexp.init(uri=str(tmp_path / "store"), artifact_root=str(tmp_path / "big_disk"))
    with R.start(experiment_name="e"):
        R.save_objects(obj={"a": 1})
        rec = R.get_recorder()
    assert os.path.isfile(tmp_path / "big_disk" / rec.experiment_id / rec.id / "obj")
    assert rec.get_artifact_uri().startswith("file://")
    assert R.get_recorder(recorder_id=rec.id).load_object("obj") == {"a": 1}
    with pytest.raises(UnknownSchemeError, match="artifact store URI scheme 'nosuch'"):
        qexp.init(uri=str(tmp_path / "store"), artifact_root="nosuch://bucket")


def test_deleting_runs_deletes_their_artifacts_in_the_store(memtest, tmp_path):
    from click.testing import CliRunner

    from qexp.cli.main import get_cli
    store = str(tmp_path / "store")
    qexp.init(uri=store, artifact_root="memtest://bucket")
    runs = []
    for name in ("a", "b", "c"):
        with R.start(experiment_name="gone", recorder_name=name):
            R.save_objects(x=name)
            runs.append(R.get_recorder())
    with R.start(experiment_name="kept"):
        R.save_objects(x=1)
        kept = R.get_recorder()

    def blobs(rec):
        return [k for k in BLOBS if k.startswith(f"memtest://bucket/{rec.experiment_id}/{rec.id}/")]
    assert all(blobs(r) for r in runs)
    r = CliRunner().invoke(get_cli(), ["runs", "delete", runs[0].id[:8], "--uri", store, "--yes"])
    assert r.exit_code == 0, r.output
    assert not blobs(runs[0]) and blobs(runs[1])
    R.delete_exp(experiment_name="gone")                 # an experiment's runs take theirs along too
    assert not blobs(runs[1]) and not blobs(runs[2]) and blobs(kept)


def test_deleting_a_run_removes_its_artifacts_under_a_local_artifact_root(tmp_path):
    qexp.init(uri=str(tmp_path / "store"), artifact_root=str(tmp_path / "big_disk"))
    with R.start(experiment_name="e"):
        R.save_objects(obj={"a": 1})
        rec = R.get_recorder()
    folder = tmp_path / "big_disk" / rec.experiment_id / rec.id
    assert folder.is_dir()
    R.get_exp(experiment_name="e").delete_recorder(rec.id)
    assert not folder.exists()
