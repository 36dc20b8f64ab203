"""The shape of the C part: no call cycle between files, every function commented and short.

The on-access files were split so that calls go one way (fan.h draws the
direction); these checks fail if a cycle or an uncommented function comes back.
"""

from __future__ import annotations

import re

from support import REPO

NATIVE = REPO / "native"
MAX_LINES = 60


def _strip(text: str) -> str:
    """``text`` without comments and string literals (line numbers kept)."""
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def _functions(text: str) -> list[tuple[str, int, int, bool]]:
    """(name, first line, body length, static) of each function defined in ``text``:
    a type at column 0, the name and ``(``, then ``{`` alone on a later line."""
    lines = text.split("\n")
    found = []
    for i, line in enumerate(lines):
        m = re.match(r"^(static )?(?:inline )?[a-z_][\w \t*]*?[\s*](\w+)\(", line)
        if not m or line.rstrip().endswith(";"):
            continue
        j = i
        while j < len(lines) and lines[j] != "{":
            if lines[j].rstrip().endswith(";") or (j > i and lines[j] == ""):
                break
            j += 1
        if j >= len(lines) or lines[j] != "{":
            continue
        end = lines.index("}", j)
        found.append((m.group(2), i, end - j - 1, m.group(1) is not None))
    return found


def _graph() -> dict[str, set[str]]:
    """file -> the other files whose non-static functions it names."""
    sources = {p.name: _strip(p.read_text()) for p in sorted(NATIVE.glob("*.c"))}
    owner = {
        name: f
        for f, text in sources.items()
        for name, _, _, static in _functions(text)
        if not static
    }
    graph: dict[str, set[str]] = {f: set() for f in sources}
    for f, text in sources.items():
        for word in set(re.findall(r"\b\w+\b", text)):
            if word in owner and owner[word] != f:
                graph[f].add(owner[word])
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One call cycle between files, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(f: str) -> list[str] | None:
        state[f] = 1
        stack.append(f)
        for g in sorted(graph[f]):
            if state.get(g) == 1:
                return [*stack[stack.index(g) :], g]
            if g not in state and (found := visit(g)):
                return found
        stack.pop()
        state[f] = 2
        return None

    for f in sorted(graph):
        if f not in state and (found := visit(f)):
            return found
    return None


def test_the_parser_sees_the_on_access_calls() -> None:
    graph = _graph()
    assert {"jobs.c", "remember.c", "respond.c", "settings.c"} <= graph["fan.c"]
    assert {"remember.c", "respond.c"} <= graph["jobs.c"]
    assert graph["respond.c"] <= {"lru.c"}  # the innermost: calls no on-access file


def test_no_two_c_files_call_each_other_in_a_cycle() -> None:
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])


def test_a_cycle_would_be_found() -> None:
    assert _cycle({"a.c": {"b.c"}, "b.c": {"c.c"}, "c.c": {"a.c"}}) == ["a.c", "b.c", "c.c", "a.c"]
    assert _cycle({"a.c": {"b.c"}, "b.c": set()}) is None


ON_ACCESS = ("fan.c", "reader.c", "jobs.c", "remember.c", "respond.c", "settings.c", "filters.c")


def test_every_on_access_file_says_what_it_owns() -> None:
    for name in ON_ACCESS:
        head = (NATIVE / name).read_text().split("*/", 1)[0]
        assert head.startswith(f"/*\n * {name} - "), name
        assert "Owns" in head and ("Must not" in head or "must not" in head), name


def test_every_on_access_function_is_commented_and_short() -> None:
    for name in ON_ACCESS:
        raw = (NATIVE / name).read_text().split("\n")
        for fn, line, length, _ in _functions(_strip((NATIVE / name).read_text())):
            above = raw[line - 1].rstrip()
            assert above.endswith("*/"), f"{name}:{line + 1} {fn} has no comment above it"
            assert length <= MAX_LINES, f"{name}:{line + 1} {fn} is {length} lines long"
