"""Plugin loading: temporary plugins, real third-party entry points, broken plugins, the allow-list, schemes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import qexp
from qexp import R, hookimpl, plugins, registry
from qexp.exceptions import ConfigError, UnknownSchemeError


def make_dist(site, name: str, module_code: str, version: str = "1.2.3", ep_name: str | None = None) -> None:
    """A minimal installed distribution: a module plus a *.dist-info with entry_points.txt."""
    (site / f"{name}.py").write_text(textwrap.dedent(module_code))
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[qexp]\n{ep_name or name} = {name}\n")


THIRD_PARTY = """
    from qexp import hookimpl

    class Toy:
        pass

    @hookimpl
    def register_models(register):
        register(Toy, name="ToyModel", module_paths=["acme.models"])

    @hookimpl
    def register_backends(register):
        from qexp_file.manager import FileExpManager
        def factory(uri, **kw):
            return FileExpManager(uri.split("://", 1)[1], **kw)
        register("acme", factory)
"""


def run_listing(site, load: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("QEXP_LOAD_PLUGINS", None)
    if load is not None:
        env["QEXP_LOAD_PLUGINS"] = load
    return subprocess.run([sys.executable, "-m", "qexp", "plugins", "--all", "--json"], env=env,
                          capture_output=True, text=True, timeout=120)


def test_third_party_plugin_found_through_entry_point(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_dist(site, "qexp_acme", THIRD_PARTY)
    make_dist(site, "qexp_broken", "raise ImportError('missing dependency foo')\n", version="0.0.1")
    p = run_listing(site, None)
    assert p.returncode == 0, p.stderr
    listing = {x["name"]: x for x in json.loads(p.stdout)}
    acme = listing["qexp_acme"]
    assert acme["version"] == "1.2.3" and not acme["builtin"]
    assert acme["hooks"] == ["register_backends", "register_models"]
    assert acme["schemes"] == {"backend": ["acme"]} and acme["components"] == ["ToyModel"]
    assert "file" in listing and listing["file"]["builtin"]
    # the broken one warns, names itself, and the rest still load
    assert "qexp_broken" not in listing
    assert "qexp_broken" in p.stderr and "missing dependency foo" in p.stderr


def test_load_plugins_allow_list(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_dist(site, "qexp_acme", THIRD_PARTY)
    essential = set(plugins.ESSENTIAL_PLUGINS)  # registered by module path whatever the allow-list says
    assert {"file", "executors"} <= essential
    names = {x["name"] for x in json.loads(run_listing(site, "file").stdout)}
    assert names == essential
    listing = json.loads(run_listing(site, "").stdout)
    assert {x["name"] for x in listing} == essential
    assert {x["name"]: x["schemes"] for x in listing}["file"]["backend"] == ["<path>", "file"]
    names = {x["name"] for x in json.loads(run_listing(site, "qexp_acme").stdout)}
    assert names == {"qexp_acme"} | essential


def test_builtins_hidden_without_all(tmp_path):
    env = {**os.environ}
    p = subprocess.run([sys.executable, "-m", "qexp", "plugins", "--json"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0 and json.loads(p.stdout) == []


class TemporaryPlugin:
    """Registered and unregistered by a test, as in llm's and datasette's test suites."""

    __name__ = "temporary-plugin"

    def __init__(self):
        self.events = []

    @hookimpl
    def register_models(self, register):
        class Tiny:
            def __init__(self, a=1):
                self.a = a
        register(Tiny, name="TinyModel", module_paths=["some.qlib.path"])

    @hookimpl
    def qexp_init(self, settings):
        self.events.append(("init", dict(settings)))
        return ["my_setting"] if "my_setting" in settings else []

    @hookimpl
    def recorder_started(self, recorder):
        self.events.append(("started", recorder.id))

    @hookimpl
    def recorder_metrics_logged(self, recorder, metrics, step):
        self.events.append(("metrics", metrics, step))

    @hookimpl
    def recorder_params_logged(self, recorder, params):
        self.events.append(("params", params))

    @hookimpl
    def recorder_ended(self, recorder, status):
        self.events.append(("ended", recorder.id, status))


@pytest.fixture
def temp_plugin():
    plugin = TemporaryPlugin()
    name = plugins.register(plugin, name="temporary-plugin")
    try:
        yield plugin
    finally:
        plugins.unregister(name)


def test_temporary_plugin_components_and_events(temp_plugin, tmp_path):
    from qexp.config import init_instance_by_config
    obj = init_instance_by_config({"class": "TinyModel", "kwargs": {"a": 5}})
    assert obj.a == 5
    obj = init_instance_by_config({"class": "TinyModel", "module_path": "some.qlib.path"})
    assert obj.a == 1
    qexp.init(uri=str(tmp_path / "s"), my_setting=42)
    assert ("init", {"my_setting": 42}) in temp_plugin.events
    with R.start(experiment_name="ev"):
        rid = R.get_recorder().id
        R.log_params(x=1)
        R.log_metrics(step=2, m=0.5)
    ev = [e for e in temp_plugin.events if e[0] != "init"]
    assert ev == [("started", rid), ("params", {"x": "1"}), ("metrics", {"m": 0.5}, 2), ("ended", rid, "FINISHED")]


def test_unregister_removes_everything(tmp_path):
    plugin = TemporaryPlugin()
    name = plugins.register(plugin, name="temporary-plugin")
    plugins.unregister(name)
    assert registry.components.resolve("TinyModel") is None
    assert plugins.pm.get_plugin(name) is None


def test_unknown_setting_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no_such_setting"):
        qexp.init(uri=str(tmp_path / "s"), no_such_setting=1)


def test_failing_event_hook_does_not_fail_the_run(tmp_path):
    class Bad:
        @hookimpl
        def recorder_metrics_logged(self, recorder, metrics, step):
            raise RuntimeError("mirror down")

    name = plugins.register(Bad(), name="bad-mirror")
    try:
        qexp.init(uri=str(tmp_path / "s"))
        with pytest.warns(RuntimeWarning, match="mirror down"):
            with R.start(experiment_name="x"):
                R.log_metrics(a=1.0)
                rec = R.get_recorder()
        assert rec.status == "FINISHED" and rec.list_metrics() == {"a": 1.0}
    finally:
        plugins.unregister(name)


def test_mirrors_setting_uses_registered_mirror_factory(tmp_path):
    received = []

    class Mirror:
        def __init__(self, uri):
            self.uri = uri

        @hookimpl
        def recorder_ended(self, recorder, status):
            received.append((self.uri, status))

    class MirrorPlugin:
        @hookimpl
        def register_mirrors(self, register):
            register("echo", Mirror)

    name = plugins.register(MirrorPlugin(), name="echo-mirror")
    try:
        qexp.init(uri=str(tmp_path / "s"), mirrors=["echo://one"])
        with R.start(experiment_name="m"):
            pass
        assert received == [("echo://one", "FINISHED")]
        qexp.init(uri=str(tmp_path / "s"))  # re-init without mirrors removes them
        with R.start(experiment_name="m"):
            pass
        assert len(received) == 1
    finally:
        plugins.unregister(name)


def test_unknown_scheme_lists_known_and_extra(tmp_path):
    with pytest.raises(UnknownSchemeError) as err:
        qexp.init(uri="nosuch://x")
    msg = str(err.value)
    assert "'nosuch'" in msg and "'file:'" in msg and "bare paths" in msg
    plugins.unregister("mlflow")  # as if qexp[mlflow] were not installed
    try:
        with pytest.raises(UnknownSchemeError, match=r'pip install "qexp\[mlflow\]"'):
            qexp.init(uri="sqlite:///x.db")
        plugins.unregister("wandb")
        with pytest.raises(UnknownSchemeError, match=r'pip install "qexp\[wandb\]"'):
            qexp.init(uri="wandb://proj")
    finally:
        plugins.reload_plugins()


def test_exp_manager_dict_form(tmp_path):
    store = str(tmp_path / "qlib_style")
    qexp.init(exp_manager={"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                           "kwargs": {"uri": store, "default_exp_name": "QlibDefault"}})
    assert R.get_uri() == store
    with R.start():
        assert R.get_exp().name == "QlibDefault"


def test_init_while_active_is_refused(tmp_path):
    from qexp.exceptions import RecorderInitializationError
    qexp.init(uri=str(tmp_path / "s"))
    with R.start(experiment_name="a"):
        with pytest.raises(RecorderInitializationError):
            qexp.init(uri=str(tmp_path / "t"))
        qexp.init(uri=str(tmp_path / "t"), skip_if_reg=True)
        assert R.get_uri() == str(tmp_path / "s")


def test_failing_event_implementation_does_not_silence_the_others(tmp_path):
    """Each implementation runs in its own try: the one called first raises in recorder_ended, the next
    still receives the event, and the warning names the failing plugin. Both are registered after
    qexp.init(), so nothing about the implementations is cached at init."""
    calls = []

    class Good:
        @hookimpl
        def recorder_ended(self, recorder, status):
            calls.append(("good", recorder.id, status))

    class Bad:
        @hookimpl
        def recorder_ended(self, recorder, status):
            calls.append(("bad", recorder.id, status))
            raise ConnectionError("mirror lost its connection")

    qexp.init(uri=str(tmp_path / "s"))
    with R.start(experiment_name="before"):
        pass
    good = plugins.register(Good(), name="good-listener")
    bad = plugins.register(Bad(), name="bad-listener")  # registered last: pluggy's order calls it first
    try:
        with pytest.warns(RuntimeWarning, match="plugin 'bad-listener' failed in its recorder_ended hook: "
                                                "ConnectionError: mirror lost its connection"):
            with R.start(experiment_name="x"):
                rid = R.get_recorder().id
        assert calls == [("bad", rid, "FINISHED"), ("good", rid, "FINISHED")]
        assert R.get_recorder(recorder_id=rid).status == "FINISHED"
    finally:
        plugins.unregister(bad)
        plugins.unregister(good)
    with R.start(experiment_name="after"):  # unregistered: nothing is called any more
        pass
    assert len(calls) == 2


def test_wrapper_implementations_of_an_event_run_around_the_others(tmp_path):
    """fire() runs @hookimpl(wrapper=True) and old-style hookwrapper=True implementations as pluggy does (before
    and after every plain one), not as plain functions that would only make a generator and never run; a
    failing wrapper, or plain implementation, is warned about by name and the others still run."""
    calls = []

    class Plain:
        @hookimpl
        def recorder_ended(self, recorder, status):
            calls.append(("plain", status))
            return "plain-result"

    class NewStyle:
        @hookimpl(wrapper=True)
        def recorder_ended(self, recorder, status):
            calls.append(("new-before", status))
            result = yield
            calls.append(("new-after", result))
            return result

    class OldStyle:
        @hookimpl(hookwrapper=True)
        def recorder_ended(self, recorder, status):
            calls.append(("old-before", status))
            outcome = yield
            calls.append(("old-after", outcome.get_result()))

    class Broken:
        @hookimpl(wrapper=True)
        def recorder_ended(self, recorder, status):
            raise ValueError("no context today")
            yield  # pragma: no cover

    qexp.init(uri=str(tmp_path / "s"))
    names = [plugins.register(obj, name=n) for obj, n in
             ((Plain(), "plain"), (NewStyle(), "new-wrapper"), (OldStyle(), "old-wrapper"), (Broken(), "broken"))]
    try:
        with pytest.warns(RuntimeWarning, match="plugin 'broken' failed in its recorder_ended hook: "
                                                "ValueError: no context today"):
            with R.start(experiment_name="x"):
                pass
        # registered last = outermost: old-style wraps new-style, which wraps the plain implementation
        assert calls == [("old-before", "FINISHED"), ("new-before", "FINISHED"), ("plain", "FINISHED"),
                         ("new-after", ["plain-result"]), ("old-after", ["plain-result"])]
    finally:
        for n in names:
            plugins.unregister(n)


ESSENTIAL_INIT = """
import importlib.metadata as md, sys
if sys.argv[2] == "stale":  # the qexp distribution's entry points are gone (stale or missing metadata)
    real = md.entry_points
    md.entry_points = lambda **kw: [] if kw.get("group") == "qexp" else real(**kw)
import qexp
from qexp import R
qexp.init(uri=sys.argv[1])
with R.start(experiment_name="e"):
    R.log_metrics(x=1.0)
    rid = R.get_recorder().id
print(type(R.exp_manager).__name__, R.get_recorder(recorder_id=rid).list_metrics())
"""


@pytest.mark.parametrize("case, allow", [("stale", None), ("allow-list", "data"), ("allow-list", "")])
def test_file_backend_is_essential(tmp_path, case, allow):
    env = {**os.environ}
    env.pop("QEXP_LOAD_PLUGINS", None)
    if allow is not None:
        env["QEXP_LOAD_PLUGINS"] = allow
    p = subprocess.run([sys.executable, "-c", ESSENTIAL_INIT, str(tmp_path / "store"), case], env=env,
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.strip() == "FileExpManager {'x': 1.0}"
    assert "failed to load" not in p.stderr


def test_old_import_paths_keep_working():
    """Names users and older plugins import from before qexp.ext existed."""
    import qexp.ext
    from qexp.cli.main import get_cli
    from qexp.fileuri import file_uri_to_path, path_to_file_uri
    from qexp.hookspecs import hookimpl as spec_hookimpl
    from qexp.plugins import pm
    from qexp.settings import DEFAULT_URI, clear_mirrors, create_manager, default_uri, get_settings, init, resolve_uri
    assert spec_hookimpl is hookimpl is qexp.ext.hookimpl
    assert pm.project_name == "qexp" and "recorder_ended" in vars(pm.hook)
    assert init is qexp.init and get_settings is qexp.get_settings and create_manager is qexp.ext.create_manager
    assert resolve_uri is qexp.ext.resolve_uri and default_uri() and DEFAULT_URI == "./qexp_runs"
    assert callable(clear_mirrors) and "run" in get_cli().commands
    assert file_uri_to_path(path_to_file_uri("/a/b")) == "/a/b"


def test_ext_exports_exist():
    import qexp.ext
    missing = [n for n in qexp.ext.__all__ if not hasattr(qexp.ext, n)]
    assert not missing and len(set(qexp.ext.__all__)) == len(qexp.ext.__all__)


def test_the_model_plugin_guide_imports_only_the_public_surface():
    """qexp.model's docstring teaches plugin authors: its example imports only ``qexp`` and ``qexp.ext`` (what
    plugins may import), and the names it takes from qexp.ext are exported there."""
    import ast
    import re
    import textwrap

    import qexp.ext
    import qexp.model
    doc = qexp.model.__doc__ or ""
    code = doc[doc.rindex("\n", 0, doc.index("# my_models/plugin.py")) + 1:doc.index("# pyproject.toml")]
    tree = ast.parse(textwrap.dedent(code))
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names} | \
              {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {m for m in modules if m == "qexp" or m.startswith("qexp.")} <= {"qexp", "qexp.ext"}, modules
    from_ext = [a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "qexp.ext"
                for a in n.names]
    assert "Model" in from_ext and all(name in qexp.ext.__all__ for name in from_ext)
    assert not re.search(r"from qexp\.(?!ext\b)\w+ import", doc)
