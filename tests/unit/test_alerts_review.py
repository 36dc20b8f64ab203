"""``vigild alerts`` as an admin coming from journalctl uses it (issue 14, item 3)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import vigild
from vigild import cli, review
from vigild.review import AlertEntry


def _alert(path: str, rules: list[str], unit: str = "", container: str = "") -> AlertEntry:
    return AlertEntry(
        time="2026-11-23T09:00:00+00:00", kind="detected_denied", message="", path=path,
        rules=rules, hash_name="", action="deny", event="open", sha256="", pid=None, exe="",
        comm="", uid=None, unit=unit, container=container, quarantine_id="", generation="",
        priority=None,
    )  # fmt: skip


@pytest.fixture
def journal(monkeypatch: pytest.MonkeyPatch) -> list[review.Query]:
    """A readable journal holding a weekend's alerts; records each query."""
    queries: list[review.Query] = []
    weekend = [
        _alert("/home/alice/www/shell.php", ["PHP_Webshell"], unit="php-fpm.service"),
        _alert(
            "/home/alice/tmp/x.php", ["PHP_Webshell", "Obfuscated_Eval"], unit="php-fpm.service"
        ),
        _alert("/home/bob/a.sh", ["Reverse_Shell"], container="ab" * 32),
        _alert("/srv/app/upload/\x1b[31mred.php", ["PHP_Webshell"], unit="nginx.service"),
        _alert("/tmp/drop", ["Miner"]),
        _alert("/usr/local/bin/xmr", ["Miner"], unit="cron.service"),
    ]

    def entries(q: review.Query, follow: bool = False) -> Iterator[AlertEntry]:
        queries.append(q)
        yield from weekend

    monkeypatch.setattr(review, "entries", entries)
    monkeypatch.setattr(review, "journal_problem", lambda: None)
    return queries


def test_since_minus_1h_works_as_the_readme_writes_it(
    journal: list[review.Query], capsys: pytest.CaptureFixture[str]
) -> None:
    before = dt.datetime.now().astimezone()
    assert cli.main(["alerts", "--since", "-1h", "--until", "+1h", "--json"]) == 0
    q = journal[0]
    assert q.since is not None and q.until is not None
    assert abs((before - q.since) - dt.timedelta(hours=1)) < dt.timedelta(seconds=5)
    assert abs((q.until - before) - dt.timedelta(hours=1)) < dt.timedelta(seconds=5)
    assert cli.main(["alerts", "--since", "10 min ago", "-v"]) == 0


def test_since_minus_1h_from_the_shell_is_not_a_usage_error() -> None:
    r = vigild("alerts", "--since", "-1h")
    assert "expected one argument" not in r.stderr
    assert r.returncode in (0, 2)  # 2 only for a journal this user cannot read (below)
    r = vigild("alerts", "--since", "last tuesday-ish")
    assert r.returncode == 2
    assert r.stderr.startswith("vigild: 'last tuesday-ish': expected e.g. 2026-11-22, ")


def test_no_journal_access_is_an_error_that_names_the_group() -> None:
    problem = review.journal_problem()
    if problem is None:
        pytest.skip("this system's journal is readable here")
    r = vigild("alerts")
    assert (r.returncode, r.stdout, r.stderr) == (2, "", f"vigild: {problem}\n")


def test_journal_problem_says_what_is_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    var, run = tmp_path / "var", tmp_path / "run"
    var.mkdir()
    assert review.journal_problem((str(var), str(run))) == (
        f"no system journal in {var} or {run} (is systemd-journald running?)"
    )
    machine = var / "0123456789abcdef0123456789abcdef"
    machine.mkdir()
    (machine / "system.journal").write_bytes(b"LPKSHHRH")
    assert review.journal_problem((str(var),)) is None
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert review.journal_problem((str(var),)) == (
        f"cannot read the system journal ({machine / 'system.journal'}): permission denied; "
        "join the systemd-journal group (adm on Debian and Ubuntu), or run as root"
    )


def test_summary_counts_per_rule_directory_and_unit(
    journal: list[review.Query], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "vigild.toml"
    cfg.write_text('[onaccess]\nwatch = ["/home", "/srv/app", "/tmp"]\n')
    assert cli.main(["alerts", "--summary", "--since", "-3d", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "6 alerts from 2026-11-23T09:00:00+00:00 to 2026-11-23T09:00:00+00:00",
        "",
        "By rule:",
        "       3  PHP_Webshell",
        "       2  Miner",
        "       1  Obfuscated_Eval",
        "       1  Reverse_Shell",
        "",
        "By directory:",
        "       2  /home/alice",
        "       1  (outside the watched paths)",
        "       1  /home/bob",
        "       1  /srv/app/upload",
        "       1  /tmp",
        "",
        "By unit or container:",
        "       2  php-fpm.service",
        "       1  (unknown)",
        "       1  container abababababab",
        "       1  cron.service",
        "       1  nginx.service",
    ]
    assert not journal[0].all_kinds


def test_summary_json(journal: list[review.Query], capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert cli.main(["alerts", "--summary", "--json"]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert data["alerts"] == 6
    assert data["rules"][0] == {"name": "PHP_Webshell", "count": 3}


def test_a_name_with_terminal_sequences_is_escaped_in_the_summary(
    journal: list[review.Query], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["alerts", "--summary"]) == 0
    assert "\x1b" not in capsys.readouterr().out


def test_no_alerts(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(review, "entries", lambda q, follow=False: iter(()))
    monkeypatch.setattr(review, "journal_problem", lambda: None)
    assert cli.main(["alerts", "--summary"]) == 0
    assert capsys.readouterr().out == "no alerts\n"


@pytest.mark.parametrize(
    ("path", "top"),
    [
        ("/home/alice/www/x.php", "/home/alice"),
        ("/home/x.php", "/home"),
        ("/srv/app/upload/y", "/srv/app/upload"),
        ("/srvother/z", review.OUTSIDE),
        ("/x/y", "/x"),
    ],
)
def test_top_directory(path: str, top: str) -> None:
    watch = ("/home", "/srv", "/srv/app") if not path.startswith("/x") else ("/",)
    assert review.top_directory(path, watch) == top
