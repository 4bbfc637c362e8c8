"""The check that workers reach the driver's store and data, run here in the roles of driver and worker."""
from __future__ import annotations

import os
import socket

from qexp.ext import probe_reach, reach_error, reach_spec

from .helpers import free_port


def test_a_worker_seeing_the_same_folders_finds_no_problem(tmp_path, tiny_market):
    settings = {"uri": str(tmp_path / "store"), "provider_uri": str(tiny_market)}
    with reach_spec(settings, paths=[tmp_path / "study"]) as spec:
        assert probe_reach(spec) == []
        tokens = [os.path.join(f["path"], f["token"]) for f in spec["folders"] if f.get("token")]
        assert len(tokens) == 2 and all(os.path.exists(t) for t in tokens)
    assert not any(os.path.exists(t) for t in tokens)  # the tokens are removed after the check


def test_another_folder_at_the_same_path_is_told_apart(tmp_path, tiny_market):
    settings = {"uri": str(tmp_path / "store"), "provider_uri": str(tiny_market)}
    with reach_spec(settings) as spec:
        store = next(f for f in spec["folders"] if f["what"] == "the tracking store")
        store["token"] = ".qexp/reach-from-another-machine"
        data = next(f for f in spec["folders"] if f["what"].startswith("the data"))
        data["listing"] = "0" * 40
        spec["folders"].append({"what": "the folder", "path": str(tmp_path / "nowhere")})
        problems = probe_reach(spec)
    host = socket.gethostname()
    assert problems == [
        f"the tracking store {tmp_path / 'store'} on {host} is another folder than the driver's (a local disk, not a "
        f"shared one)",
        f"the data (provider_uri) {tiny_market} on {host} holds other files than the driver's copy",
        f"the folder {tmp_path / 'nowhere'} does not exist on {host}"]
    err = reach_error({"tcp://10.0.0.7:4000": problems[:1]})
    assert err is not None and "tcp://10.0.0.7:4000: the tracking store" in str(err) and "shared disk" in str(err)
    assert reach_error({"w": []}) is None


def test_servers_loopback_elsewhere_and_closed_ports(tmp_path):
    port = free_port()
    with reach_spec({"uri": f"postgresql://me:pw@127.0.0.1:{port}/runs"}) as spec:
        (server,) = spec["servers"]
        assert server["uri"] == f"postgresql://me:***@127.0.0.1:{port}/runs"
        assert f"127.0.0.1:{port} does not answer" in probe_reach(spec)[0]
        spec["driver_host"] = "the-laptop"
        assert "names 127.0.0.1, which on" in probe_reach(spec)[0]


def test_a_qexp_folder_gets_its_token_inside_not_in_a_nested_qexp(tmp_path):
    """The sweep checks its study folder DIR/.qexp: the token goes there, never into DIR/.qexp/.qexp/."""
    study = tmp_path / "store" / ".qexp"
    with reach_spec({"uri": str(tmp_path / "store")}, paths=[study]) as spec:
        folder = next(f for f in spec["folders"] if f["what"] == "the folder")
        assert os.path.dirname(os.path.join(folder["path"], folder["token"])) == str(study)
        assert probe_reach(spec) == []
    assert not (study / ".qexp").exists()
