"""The manual pages and the bash completion say what the code does.

vigild(8) and the completion must name every command and option that
``vigild --help`` has; vigild.toml(5) every key that the config parser
knows. The pages must render without groff warnings, and the completion
must be valid bash. No root needed.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from support import REPO
from vigild import cli, config

MAN8 = REPO / "packaging/man/vigild.8"
MAN5 = REPO / "packaging/man/vigild.toml.5"
COMPLETION = REPO / "packaging/completion/vigild"


def _commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> dict[tuple[str, ...], list[str]]:
    """Every (sub)command path and its option strings, e.g. ("rules", "check") -> [...]."""
    out: dict[tuple[str, ...], list[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.update(_commands(sub, (*prefix, name)))
    if prefix:
        out[prefix] = [o for a in parser._actions for o in a.option_strings]
    return out


def _roff_text(path: Path) -> str:
    """The page's words: roff escapes for '-' undone, fonts dropped."""
    text = path.read_text().replace("\\-", "-")
    return re.sub(r"\\f[BIRP]", "", text)


COMMANDS = _commands(cli.build_parser())


def _section(page: str, command: tuple[str, ...]) -> str:
    """The text of the .SS section for ``vigild COMMAND``, up to the next section."""
    head = f'.SS "vigild {" ".join(command)}'
    assert head in page, f"no section for vigild {' '.join(command)}"
    body = page.split(head, 1)[1]
    return re.split(r"^\.S[SH] ", body, maxsplit=1, flags=re.M)[0]


@pytest.mark.parametrize("command", sorted(COMMANDS), ids=" ".join)
def test_man_page_documents_every_command_and_option(command: tuple[str, ...]) -> None:
    """Each option in its own command's section, not merely somewhere in the page."""
    section = _section(_roff_text(MAN8), command)
    for option in COMMANDS[command]:
        if option in ("-h", "--help"):
            continue  # described once, under Global options
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", section), (
            f"vigild {' '.join(command)} {option} is not in its section of vigild(8)"
        )


@pytest.mark.parametrize("command", sorted(COMMANDS), ids=" ".join)
def test_completion_offers_every_command_and_option(command: tuple[str, ...]) -> None:
    text = COMPLETION.read_text()
    for word in command:
        assert re.search(rf"\b{re.escape(word)}\b", text), word
    for option in COMMANDS[command]:
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), (
            f"vigild {' '.join(command)} {option} is not completed"
        )


@pytest.mark.parametrize(
    ("section", "key"), [(s, k) for s, keys in config.keys().items() for k in keys]
)
def test_config_page_documents_every_key(section: str, key: str) -> None:
    page = _roff_text(MAN5)
    assert f'.SH "[{section}]"' in page, f"no [{section}] section in vigild.toml(5)"
    body = page.split(f'.SH "[{section}]"', 1)[1].split("\n.SH ", 1)[0]
    assert re.search(rf"^\.BR? {re.escape(key)}\b", body, re.M), (
        f"[{section}] {key} is not in vigild.toml(5)"
    )


@pytest.mark.parametrize("page", [MAN8, MAN5], ids=lambda p: p.name)
def test_man_pages_render_without_warnings(page: Path) -> None:
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed")
    r = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", str(page)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0 and not r.stderr, r.stderr


def test_completion_is_valid_bash() -> None:
    r = subprocess.run(["bash", "-n", str(COMPLETION)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def _complete(*words: str, cwd: Path | None = None) -> list[str]:
    """What the completion offers for ``words`` (the last one being typed), in a
    bash that has never seen the bash-completion package."""
    array = " ".join(shlex.quote(w) for w in words)
    script = (
        "declare -F _init_completion _filedir >/dev/null && exit 99\n"
        f"source {shlex.quote(str(COMPLETION))}\n"
        f"COMP_WORDS=({array}); COMP_CWORD={len(words) - 1}\n"
        '_vigild; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    r = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        capture_output=True, text=True, timeout=30, cwd=cwd,
    )  # fmt: skip
    assert r.returncode == 0 and not r.stderr, (r.returncode, r.stderr)
    return sorted(w for w in r.stdout.split("\n") if w)


@pytest.mark.parametrize("command", sorted(COMMANDS), ids=" ".join)
def test_completion_offers_each_commands_options_without_bash_completion(
    command: tuple[str, ...],
) -> None:
    actions = sorted(
        c[len(command)] for c in COMMANDS if len(c) > len(command) and c[: len(command)] == command
    )
    if actions:  # rules, quarantine: the action comes first
        assert _complete("vigild", *command, "") == actions
        return
    offered = set(_complete("vigild", *command, "-"))
    missing = [o for o in COMMANDS[command] if o not in offered and o != "-h"]
    assert not missing, f"vigild {' '.join(command)}: {missing} not offered"


def test_completion_of_commands_values_and_files(tmp_path: Path) -> None:
    assert _complete("vigild", "") == sorted({c[0] for c in COMMANDS})
    assert _complete("vigild", "quarantine", "") == ["delete", "list", "restore"]
    assert _complete("vigild", "scan", "--exc") == ["--exclude", "--exclude-dir"]
    assert _complete("vigild", "alerts", "--since", "-") == ["-1h", "-24h", "-7d"]
    (tmp_path / "dir one").mkdir()
    (tmp_path / "data file").write_text("")
    assert _complete("vigild", "scan", "--move", "", cwd=tmp_path) == ["dir one"]
    assert _complete("vigild", "scan", "d", cwd=tmp_path) == ["data file", "dir one"]
