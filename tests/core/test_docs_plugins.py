"""docs/plugins.md: its hook reference is what tests/core/hook_reference.py generates from the hookspecs, and
names every hook with its docstring's first line."""
from __future__ import annotations

from qexp import hookspecs

from .hook_reference import DOC, current_reference, doc_markdown, hookspec_names, reference


def test_hook_reference_is_up_to_date():
    block = current_reference(DOC.read_text(encoding="utf-8"))
    assert block is not None, f"{DOC} lost the hook reference markers"
    assert block == reference(), "the hook reference is out of date: run `python -m tests.core.hook_reference --write`"


def test_every_hookspec_is_documented_with_its_first_line():
    block = current_reference(DOC.read_text(encoding="utf-8")) or ""
    names = hookspec_names()
    assert len(names) >= 17 and "recorder_ended" in names and "register_artifact_stores" in names
    for name in names:
        lines = doc_markdown(getattr(hookspecs, name)).splitlines()
        assert lines, f"hookspec {name} has no docstring"
        assert f"#### `{name}(" in block, f"{name} is missing from the hook reference"
        assert lines[0] in block, f"{name}: its docstring's first line is not in the reference"


def test_every_hookspec_registered_with_pluggy_is_listed():
    from qexp.plugins import pm
    assert set(hookspec_names()) == {h for h in vars(pm.hook) if not h.startswith("_")}


def test_names_the_guide_lists_are_in_qexp_ext():
    import re

    import qexp.ext
    text = DOC.read_text(encoding="utf-8")
    table = text[text.index("| section | names |"):text.index("`python -c")]
    names = set(re.findall(r"`(\w+)`", table))
    assert len(names) > 60
    assert sorted(n for n in names if n not in qexp.ext.__all__) == []
