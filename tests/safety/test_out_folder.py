"""Issue 13 item 1: `--out` never deletes what qexp did not write (probe 45: a thesis and a project were
deleted, and `--out .` emptied the current folder)."""
from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import cli

SYNTH = ["--instruments", "3", "--start", "2020-01-01", "--end", "2020-02-28"]


@pytest.fixture
def csv_src(tmp_path) -> Path:
    src = tmp_path / "csv"
    src.mkdir()
    for sym in ("AAA", "BBB"):
        (src / f"{sym}.csv").write_text("date,open,high,low,close,volume\n2020-01-02,1,2,1,1.5,100\n"
                                        "2020-01-03,1.5,2,1,1.8,120\n")
    return src


@pytest.fixture
def victim(tmp_path) -> Path:
    d = tmp_path / "victim"
    (d / "project").mkdir(parents=True)
    (d / "thesis.tex").write_text("\\section{Results}")
    (d / "project" / "code.py").write_text("print(1)")
    return d


def _intact(d: Path) -> bool:
    return (d / "thesis.tex").read_text() == "\\section{Results}" and (d / "project" / "code.py").is_file()


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_unrelated_folder_survives_import_and_synth(csv_src, victim, force):
    for args in (["data", "import-csv", str(csv_src), "--out", str(victim), *force],
                 ["data", "synth", "--out", str(victim), *SYNTH, *force]):
        r = cli(*args)
        assert r.exit_code == 1, r.output
        assert "not a data folder" in r.output and "thesis.tex" in r.output and "even with --force" in r.output
        assert _intact(victim)
        assert sorted(p.name for p in victim.iterdir()) == ["project", "thesis.tex"]
    assert not [p for p in victim.parent.iterdir() if p.name.startswith(".victim")]  # no temp folder left


def test_out_dot_in_a_non_empty_folder_is_refused(csv_src, victim, monkeypatch):
    monkeypatch.chdir(victim)
    for args in (["data", "import-csv", str(csv_src), "--out", "."], ["data", "synth", "--out", ".", *SYNTH],
                 ["data", "synth", "--out", ".", "--force", *SYNTH]):
        r = cli(*args)
        assert r.exit_code == 1 and "current folder" in r.output, r.output
        assert _intact(victim)


def test_new_and_empty_folders_are_written_and_a_data_folder_needs_force(csv_src, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("data", "import-csv", str(csv_src), "--out", str(empty)).exit_code == 0
    assert (empty / "calendars" / "day.txt").is_file()
    new = tmp_path / "new" / "deeper"
    assert cli("data", "synth", "--out", str(new), *SYNTH).exit_code == 0
    before = (new / "calendars" / "day.txt").read_text()
    # a data folder (ours) is replaced only when asked: no terminal here, so --force
    r = cli("data", "synth", "--out", str(new), "--instruments", "4", "--start", "2020-01-01", "--end", "2020-03-31")
    assert r.exit_code == 1 and "--force" in r.output and "data folder" in r.output
    assert (new / "calendars" / "day.txt").read_text() == before
    r = cli("data", "synth", "--out", str(new), "--force", "--instruments", "4", "--start", "2020-01-01",
            "--end", "2020-03-31")
    assert r.exit_code == 0, r.output
    assert (new / "calendars" / "day.txt").read_text() != before
    r = cli("data", "import-csv", str(csv_src), "--out", str(new), "--force")
    assert r.exit_code == 0 and sorted(p.name for p in (new / "features").iterdir()) == ["aaa", "bbb"]


def test_a_data_folder_with_a_stray_file_is_not_ours(tmp_path):
    d = tmp_path / "data"
    assert cli("data", "synth", "--out", str(d), *SYNTH).exit_code == 0
    (d / "notes.md").write_text("mine")
    r = cli("data", "synth", "--out", str(d), "--force", *SYNTH)
    assert r.exit_code == 1 and "notes.md" in r.output
    assert (d / "notes.md").read_text() == "mine"


def test_the_library_refuses_too(victim):
    from qexp_data.atomic import OutputFolderError
    from qexp_data.synth import SynthParams, write_synth
    with pytest.raises(OutputFolderError, match="thesis.tex"):
        write_synth(victim, SynthParams(instruments=3, start="2020-01-01", end="2020-02-28"))
    assert _intact(victim)


def test_out_symlink_force_writes_into_the_linked_folder(tmp_path):
    real = tmp_path / "real"
    assert cli("data", "synth", "--out", str(real), *SYNTH).exit_code == 0
    before = (real / "calendars" / "day.txt").read_text()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    r = cli("data", "synth", "--out", str(link), "--force", "--instruments", "4", "--start", "2020-01-01",
            "--end", "2020-03-31")
    assert r.exit_code == 0, r.output
    assert link.is_symlink() and link.resolve() == real.resolve()          # the link is kept
    after = (real / "calendars" / "day.txt").read_text()
    assert after != before and after.split()[-1] == "2020-03-31"        # the new data went into real/
    assert not [p.name for p in tmp_path.iterdir() if ".old-" in p.name or ".tmp-" in p.name]


def test_out_dot_in_an_empty_current_folder_is_written(csv_src, tmp_path, monkeypatch):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    r = cli("data", "import-csv", str(csv_src), "--out", ".")
    assert r.exit_code == 0, r.output
    assert (here / "calendars" / "day.txt").is_file() and Path.cwd().resolve() == here.resolve()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".here")]   # no temp folder left
    r = cli("data", "synth", "--out", ".", "--force", *SYNTH)          # now not empty: refused
    assert r.exit_code == 1 and "current folder" in r.output


def _on_a_terminal(args: list[str], answer: str, timeout: float = 120.0) -> tuple[int, str]:
    """``qexp ARGS`` in a child process whose stdin and stdout are a real pseudo-terminal (so isatty() is
    True, as for a user at a shell); ``answer`` is typed at the prompt. Returns (exit status, output)."""
    import os
    import pty
    import select
    import subprocess
    import sys
    import time
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "qexp", *args], stdin=slave, stdout=slave, stderr=slave,
                            close_fds=True)
    os.close(slave)
    out, typed, deadline = b"", False, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:          # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            if not typed and b"replace it?" in out:
                os.write(master, answer.encode())
                typed = True
            if proc.poll() is not None and not ready:
                break
        return proc.wait(timeout=max(1.0, deadline - time.monotonic())), out.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def test_replacing_a_data_folder_on_a_terminal_asks_first(tmp_path):
    d = tmp_path / "data"
    assert cli("data", "synth", "--out", str(d), *SYNTH).exit_code == 0
    before = (d / "calendars" / "day.txt").read_text()
    other = ["--instruments", "4", "--start", "2020-01-01", "--end", "2020-03-31"]
    code, out = _on_a_terminal(["data", "synth", "--out", str(d), *other], "n\n")
    assert "already holds a data folder" in out and "replace it? [y/N]" in out, out
    assert code == 1 and "Aborted" in out, out
    assert (d / "calendars" / "day.txt").read_text() == before          # "n": the folder is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]       # and no temporary folder is left
    code, out = _on_a_terminal(["data", "synth", "--out", str(d), *other], "y\n")
    assert code == 0 and "Wrote a synthetic market of 4 instruments" in out, out
    assert (d / "calendars" / "day.txt").read_text().split()[-1] == "2020-03-31"   # "y": replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
