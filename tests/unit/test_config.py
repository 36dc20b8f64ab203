"""Config: complete defaults, drop-ins, and errors that name the file and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from support import REPO
from vigild import config
from vigild.config import Config, ConfigError, Engine, Fallback, Oversize, PerKind


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_no_file_at_all_means_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "DEFAULT_CONFIG", tmp_path / "absent" / "vigild.toml")
    cfg = config.load()
    assert cfg == Config()
    assert cfg.files == ()


def test_named_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path / "nope.toml"))):
        config.load(tmp_path / "nope.toml")


def test_every_key_parses(tmp_path: Path) -> None:
    main = _write(
        tmp_path / "vigild.toml",
        """
[rules]
dirs = ["/srv/rules", "/etc/vigild/rules.d/"]
hashes = ["/srv/bad.hsb"]
engine = "yara-x"
compiled_dir = "/var/lib/x"

[scan]
max_file_size = "10M"
oversize = "truncate"
timeout = 5
workers = 3
cache_entries = 4096

[policy]
on_error = "deny"
on_timeout = "deny"
on_oversize = "deny"
""",
    )
    cfg = config.load(main)
    assert cfg.rules.dirs == ("/srv/rules", "/etc/vigild/rules.d")
    assert cfg.rules.hashes == ("/srv/bad.hsb",)
    assert cfg.rules.engine is Engine.YARA_X
    assert cfg.scan.max_file_size == 10 << 20
    assert cfg.scan.oversize is Oversize.TRUNCATE
    assert (cfg.scan.timeout, cfg.scan.workers, cfg.scan.cache_entries) == (5, 3, 4096)
    assert cfg.policy.on_timeout is cfg.policy.on_oversize is Fallback.DENY
    assert cfg.policy.on_error == PerKind(Fallback.DENY, Fallback.DENY)  # one string: both kinds
    assert cfg.files == (str(main),)


def test_dropins_apply_in_name_order_and_replace_lists(tmp_path: Path) -> None:
    main = _write(tmp_path / "vigild.toml", '[rules]\ndirs = ["/a", "/b"]\n[scan]\ntimeout = 9\n')
    _write(tmp_path / "conf.d" / "20-late.toml", "[scan]\ntimeout = 20\n")
    _write(tmp_path / "conf.d" / "10-early.toml", '[scan]\ntimeout = 10\n[rules]\ndirs = ["/c"]\n')
    _write(tmp_path / "conf.d" / "ignored.conf", "this is not toml [")
    cfg = config.load(main)
    assert cfg.scan.timeout == 20
    assert cfg.rules.dirs == ("/c",)
    assert [Path(f).name for f in cfg.files] == ["vigild.toml", "10-early.toml", "20-late.toml"]


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("[scan]\ntimeot = 3\n", "scan.timeot", "unknown key"),
        ("[scna]\ntimeout = 3\n", "scna", "unknown section"),
        ('[scan]\ntimeout = "3"\n', "scan.timeout", "expected an integer"),
        ("[scan]\ntimeout = 0\n", "scan.timeout", "between 1 and 3600"),
        ("[scan]\ntimeout = true\n", "scan.timeout", "expected an integer"),
        ('[scan]\nmax_file_size = "lots"\n', "scan.max_file_size", "expected a size"),
        ("[scan]\nmax_file_size = 0\n", "scan.max_file_size", "at least 1 byte"),
        ('[scan]\noversize = "ignore"\n', "scan.oversize", "expected one of skip, truncate"),
        ('[rules]\ndirs = "/one"\n', "rules.dirs", "expected a list"),
        ('[rules]\ndirs = ["relative/path"]\n', "rules.dirs", "absolute path"),
        (
            '[rules]\nengine = "clamav"\n',
            "rules.engine",
            "expected one of auto, yara, yara-x, boreal",
        ),
        ('[policy]\non_error = "maybe"\n', "policy.on_error", "expected one of allow, deny"),
        ('[onaccess]\nfresh_window = "5ms"\n', "onaccess.fresh_window", "at least 10ms"),
        ("scan = 3\n", "scan", "expected a [section] table"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path: Path, text: str, key: str, message: str) -> None:
    main = _write(tmp_path / "vigild.toml", text)
    with pytest.raises(ConfigError) as e:
        config.load(main)
    assert e.value.path == str(main)
    assert e.value.key == key
    assert message in str(e.value)
    assert str(e.value).startswith(f"{main}: {key}: ")


def test_error_in_a_dropin_names_the_dropin(tmp_path: Path) -> None:
    main = _write(tmp_path / "vigild.toml", "[scan]\ntimeout = 9\n")
    bad = _write(tmp_path / "conf.d" / "50-bad.toml", "[scan]\nworkers = -1\n")
    with pytest.raises(ConfigError) as e:
        config.load(main)
    assert e.value.path == str(bad)
    assert e.value.key == "scan.workers"


def test_syntax_error_names_the_line(tmp_path: Path) -> None:
    main = _write(tmp_path / "vigild.toml", "[scan]\ntimeout = 3\nworkers 4\n")
    with pytest.raises(ConfigError) as e:
        config.load(main)
    assert e.value.key == "line 3"
    assert str(e.value).startswith(f"{main}: line 3: ")


def test_shipped_config_documents_every_key_with_its_default() -> None:
    """packaging/vigild.toml, uncommented, is exactly the defaults, key for key."""
    shipped = REPO / "packaging" / "vigild.toml"
    text = shipped.read_text()
    uncommented = re.sub(r"^#(\[|[a-z_]+ = )", r"\1", text, flags=re.M)
    import tomllib

    data = tomllib.loads(uncommented)
    assert {s: sorted(v) for s, v in data.items()} == {
        s: sorted(k) for s, k in config.keys().items()
    }
    defaults = config.defaults_as_dict()
    for section, values in data.items():
        for key, raw in values.items():
            _name, parse = config._TABLE[section][key]
            assert parse(raw) == defaults[section][key], f"{section}.{key}"


FEED_OK = """
[[update.feed]]
name = "a"
url = "https://rules.example.org/a.tar.gz"
kind = "yara"
keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG signer"]
"""


def test_feeds_are_an_array_of_tables(tmp_path: Path) -> None:
    f = tmp_path / "v.toml"
    second = '[[update.feed]]\nname = "b"\nurl = "file:///srv/b.txt"\nkind = "hashes"\n'
    f.write_text(FEED_OK + second + "insecure = true\n")
    a, b = config.load(f).update.feeds
    assert (
        a.name == "a"
        and a.kind is config.FeedKind.YARA
        and a.manifest_url.endswith(".tar.gz.manifest")
    )
    assert b.insecure and not b.keys


@pytest.mark.parametrize(
    ("extra", "key", "message"),
    [
        ('[[update.feed]]\nname = "b"\nurl = "ftp://x"\nkind = "yara"\n', "update.feed[2].url", "URL"),
        ('[[update.feed]]\nname = "b"\nurl = "https://x"\nkind = "yara"\n', "update.feed[2].keys", "insecure"),
        ('[[update.feed]]\nname = "a"\nurl = "https://x"\nkind = "yara"\ninsecure = true\n', "update.feed[2].name", "earlier"),
        ('[[update.feed]]\nname = "b"\nkind = "yara"\n', "update.feed[2].url", "required"),
        ('[[update.feed]]\nname = "b"\nurl = "https://x"\nkind = "yara"\nkeys = ["not a key"]\n', "update.feed[2].keys", "OpenSSH"),
        ('[[update.feed]]\nname = "b"\nurl = "http://x"\nkind = "yara"\nkeys = []\ncolour = 1\n', "update.feed[2].colour", "unknown key"),
        ('[[update.feed]]\nname = "b"\nurl = "http://x"\nkind = "yara"\nkeys = ["ssh-ed25519 AAAA"]\n', "update.feed[2].url", "insecure"),
    ],
)  # fmt: skip
def test_a_bad_feed_names_file_feed_and_key(
    tmp_path: Path, extra: str, key: str, message: str
) -> None:
    f = tmp_path / "v.toml"
    f.write_text(FEED_OK + extra)
    with pytest.raises(config.ConfigError) as e:
        config.load(f)
    assert e.value.key == key and message in e.value.message, str(e.value)
    assert str(e.value).startswith(f"{f}: {key}: ")
