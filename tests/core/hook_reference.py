"""The hook reference of docs/plugins.md, generated from core/qexp/hookspecs.py (signatures, docstrings and the
section banners), so the docs cannot drift from the hooks: tests/core/test_docs_plugins.py fails when the
file differs from what this prints.

    python -m tests.core.hook_reference          # print the reference
    python -m tests.core.hook_reference --write  # rewrite it in docs/plugins.md
"""
from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "plugins.md"
BEGIN = "<!-- hook reference: generated from core/qexp/hookspecs.py by `python -m tests.core.hook_reference " \
        "--write`; do not edit by hand -->"
END = "<!-- end of hook reference -->"
_BANNER = re.compile(r"^# ---- (.+?) -+$")


def hookspec_names() -> list[str]:
    """Every hook specification, in source order."""
    from qexp import hookspecs
    names = [n for n, f in vars(hookspecs).items() if inspect.isfunction(f) and hasattr(f, "qexp_spec")]
    return sorted(names, key=lambda n: inspect.getsourcelines(getattr(hookspecs, n))[1])


def _sections() -> tuple[dict[str, str], dict[str, str]]:
    """``({hook name: title of the banner comment above it}, {title: the comment lines under the banner})``."""
    from qexp import hookspecs
    titles: dict[str, str] = {}
    intros: dict[str, str] = {}
    title, in_intro = "", False
    for line in inspect.getsource(hookspecs).splitlines():
        m = _BANNER.match(line)
        if m:
            title, in_intro = m.group(1), True
            continue
        if in_intro and line.startswith("# "):
            intros[title] = (intros.get(title, "") + " " + line[2:].strip()).strip()
            continue
        in_intro = False
        d = re.match(r"^def (\w+)\(", line)
        if d:
            titles[d.group(1)] = title
    return titles, intros


def doc_markdown(obj: object) -> str:
    """A docstring as markdown."""
    # reST roles (:class:`X`) become plain code spans; ``x`` is already a markdown code span
    return re.sub(r":\w+:`~?([^`]+)`", r"`\1`", inspect.cleandoc(obj.__doc__ or ""))


def _signature(func: object, drop_self: bool = False) -> str:
    """``(name: type = default, ...) -> type`` with the annotations as written (hookspecs.py postpones them)."""
    sig = inspect.signature(func)  # type: ignore[arg-type]
    params, star = [], False
    for p in sig.parameters.values():
        if drop_self and p.name == "self":
            continue
        if p.kind is p.KEYWORD_ONLY and not star:
            params.append("*")
            star = True
        text = p.name if p.annotation is p.empty else f"{p.name}: {p.annotation}"
        if p.default is not p.empty:
            text += f" = {p.default!r}"
        params.append(text)
    ret = "" if sig.return_annotation is sig.empty else f" -> {sig.return_annotation}"
    return f"({', '.join(params)}){ret}"


def reference() -> str:
    """The generated markdown, markers included."""
    from qexp import hookspecs
    parts = [BEGIN, ""]
    for proto in (hookspecs.SchemeRegister, hookspecs.ComponentRegister):
        sig = _signature(proto.__call__, drop_self=True)
        parts += [f"**`{proto.__name__}`**: `register{sig}`", "", doc_markdown(proto), ""]
    sections, intros = _sections()
    current = None
    for name in hookspec_names():
        if sections.get(name) != current:
            current = sections.get(name) or ""
            parts += [f"### {current[:1].upper() + current[1:]}", ""]
            if current in intros:
                parts += [intros[current], ""]
        func = getattr(hookspecs, name)
        opts = {k: v for k, v in func.qexp_spec.items() if v}
        flags = f" ({', '.join(sorted(opts))})" if opts else ""
        parts += [f"#### `{name}{_signature(func)}`{flags}", "", doc_markdown(func), ""]
    parts.append(END)
    return "\n".join(parts)


def current_reference(text: str) -> str | None:
    """The reference block as it stands in ``text`` (None when the markers are missing)."""
    if BEGIN not in text or END not in text:
        return None
    return text[text.index(BEGIN):text.index(END) + len(END)]


def main(argv: list[str]) -> int:
    ref = reference()
    if "--write" not in argv:
        print(ref)
        return 0
    text = DOC.read_text(encoding="utf-8")
    old = current_reference(text)
    if old is None:
        print(f"{DOC}: the markers are missing; add {BEGIN!r} and {END!r} where the reference goes")
        return 1
    DOC.write_text(text.replace(old, ref), encoding="utf-8")
    print(f"{DOC}: hook reference {'unchanged' if old == ref else 'updated'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
