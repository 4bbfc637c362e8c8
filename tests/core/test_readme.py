"""The README's examples run as written (issue 14: "README examples still run as written"): the quick start
in a new process, the conformance-kit snippet collected and run by pytest on the file store, the model plugin
snippet importing only the public surface, and every command and flag the command-line reference names
existing in the CLI."""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
TEXT = README.read_text()


def _blocks(lang: str) -> list[str]:
    """The fenced blocks whose fence names ``lang`` ("" for a bare fence), read fence by fence."""
    found, current, fence = [], [], None
    for line in TEXT.splitlines():
        if line.startswith("```"):
            if fence is None:
                fence, current = line[3:].strip(), []
            else:
                if fence == lang:
                    found.append("\n".join(current) + "\n")
                fence = None
        elif fence is not None:
            current.append(line)
    return found


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "QEXP_CACHE_DIR": str(tmp_path / "cache"), "QEXP_URI": ""}


def test_the_quick_start_runs_as_written(tmp_path: Path) -> None:
    quick = _blocks("python")[0]
    assert "R.start" in quick and "search_records" in quick
    done = subprocess.run([sys.executable, "-c", quick], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "qexp_runs").is_dir()
    assert "[1 rows x" in done.stdout, done.stdout  # the filter selects the one run


def test_the_conformance_kit_snippet_runs_on_the_file_store(tmp_path: Path) -> None:
    kit = next(b for b in _blocks("python") if "BackendConformance" in b)
    # the snippet's third-party scheme becomes the file store's plain path, as qexp's own file tests do
    body = kit.replace('f"mystore://{tmp_path}/store"', 'str(tmp_path / "store")')
    assert body != kit
    (tmp_path / "test_kit.py").write_text(body)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "page or finite",
                           str(tmp_path / "test_kit.py")], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed and int(passed.group(1)) >= 3, done.stdout[-2000:]


def test_the_model_plugin_snippet_imports_only_the_public_surface() -> None:
    snippet = next(b for b in _blocks("python") if "register_models" in b)
    imported = {n.module for n in ast.walk(ast.parse(snippet)) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(ast.parse(snippet)) if isinstance(n, ast.Import) for a in n.names}
    assert imported and {m for m in imported if m.startswith("qexp")} <= {"qexp", "qexp.ext"}, imported


def _reference_commands() -> list[str]:
    """The command-line reference block: one or more ``qexp ...`` commands per line."""
    block = next(b for b in _blocks("") if "qexp plugins" in b and "qexp ui" in b)
    found = []
    for line in block.splitlines():
        parts = re.split(r"(?:^|\s{2,})qexp ", line)
        if parts[0].strip():  # an indented line goes on with the command above it
            found[-1] += " " + parts[0].strip()
        found += ["qexp " + part.strip() for part in parts[1:] if part.strip()]
    return found


_CLI_TREE = """
import json, click
from qexp.cli.main import get_cli
def walk(cmd, path, out):
    out[" ".join(path)] = sorted(o for p in cmd.params for o in (*p.opts, *p.secondary_opts))
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):
            walk(cmd.get_command(ctx, name), [*path, name], out)
out = {}
walk(get_cli(), ["qexp"], out)
print(json.dumps(out))
"""


def test_every_command_and_flag_in_the_reference_exists(tmp_path: Path) -> None:
    # every installed plugin's commands, as a user's `qexp` has them (the suite loads only some plugins)
    env = {k: v for k, v in _env(tmp_path).items() if k != "QEXP_LOAD_PLUGINS"}
    done = subprocess.run([sys.executable, "-c", _CLI_TREE], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    tree: dict[str, list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    commands = _reference_commands()
    assert len(commands) >= 25, commands
    for text in commands:
        words = text.split()
        path = "qexp"
        for w in words[1:]:  # the longest command path the words name
            if f"{path} {w}" in tree:
                path = f"{path} {w}"
            else:
                break
        assert path != "qexp", f"README names a command qexp does not have: {text!r}"
        flags = set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", text))
        assert flags <= set(tree[path]), f"{text!r}: {sorted(flags - set(tree[path]))} not among {tree[path]}"
