"""The manual pages and the bash completion say what the code does.

vigild(8) and the completion must name every command and option that
``vigild --help`` has; vigild.toml(5) every key that the config parser
knows. The pages must render without groff warnings, and the completion
must be valid bash. No root needed.
"""

from __future__ import annotations

import argparse
import re
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


@pytest.mark.parametrize("command", sorted(COMMANDS), ids=" ".join)
def test_man_page_documents_every_command_and_option(command: tuple[str, ...]) -> None:
    page = _roff_text(MAN8)
    assert f'.SS "vigild {" ".join(command)}' in page, f"no section for vigild {command}"
    for option in COMMANDS[command]:
        if option in ("-h", "--help"):
            continue  # described once, under Global options
        assert option in page, f"vigild {' '.join(command)} {option} is not in vigild(8)"


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
