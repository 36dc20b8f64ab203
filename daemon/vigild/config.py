"""Configuration: ``/etc/vigild/vigild.toml`` plus ``conf.d/*.toml`` drop-ins.

One frozen dataclass per section, every field with a default, so vigild
runs with no file at all. Each key has one parser in a table; an unknown
key, a wrong type or a bad value raises ConfigError naming file and key.
Drop-ins are read in name order after the main file; a key set in a later
file replaces the earlier value (lists are replaced, not appended).

Why one module of this size: the dataclasses, their key table and the
parsers are read together (a key, its type, its parser, its default); the
split into types and parsers is noted for the next clean-up.
"""

from __future__ import annotations

import os
import pwd
import re
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = Path("/etc/vigild/vigild.toml")


class ConfigError(Exception):
    """A configuration file is unreadable or holds a bad key or value."""

    def __init__(self, path: str | os.PathLike[str], key: str | None, message: str) -> None:
        self.path = str(path)
        self.key = key
        self.message = message
        where = f"{self.path}: {key}" if key else self.path
        super().__init__(f"{where}: {message}")


class Engine(StrEnum):
    AUTO = "auto"
    YARA = "yara"
    YARA_X = "yara-x"
    BOREAL = "boreal"


class Oversize(StrEnum):
    SKIP = "skip"  # report the file as not scanned
    TRUNCATE = "truncate"  # scan its first max_file_size and last oversize_tail bytes


class Fallback(StrEnum):
    """What to answer when vigild could not reach a verdict."""

    ALLOW = "allow"
    DENY = "deny"


class EventKind(StrEnum):
    OPEN = "open"
    EXEC = "exec"
    CLOSE_WRITE = "close-write"


@dataclass(frozen=True)
class PerKind:
    """A fallback answer for opens and one for executions (and opens by an
    interpreter outside the watched paths). Written as one string for both, or
    ``{ open = ..., exec = ... }``."""

    open: Fallback
    exec: Fallback

    def of(self, kind: EventKind) -> Fallback:
        """The answer for ``kind``; a scan after a write follows ``open``."""
        return self.exec if kind is EventKind.EXEC else self.open


class MarkKind(StrEnum):
    FILESYSTEM = "filesystem"  # the whole filesystem, bind mounts and containers too
    MOUNT = "mount"  # only opens through this mount


class Mode(StrEnum):
    AUTO = "auto"  # block where fanotify permission events work, else detect
    BLOCK = "block"
    DETECT = "detect"


def data_dir() -> Path:
    """Where the shipped rules live: the install prefix, else the checkout."""
    installed = Path(sys.prefix) / "share" / "vigild"
    if (installed / "rules").is_dir():
        return installed
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "rules").is_dir() and (checkout / "pyproject.toml").is_file():
        return checkout
    return Path("/usr/share/vigild")


@dataclass(frozen=True)
class RulesConfig:
    dirs: tuple[str, ...] = ()  # empty: the rules shipped with vigild
    local_dirs: tuple[str, ...] = ("/etc/vigild/rules.d",)  # added; skipped if missing
    hashes: tuple[str, ...] = ()
    engine: Engine = Engine.YARA
    compiled_dir: str = "/var/lib/vigild/compiled"
    strict: bool = False  # a rule file that does not compile is fatal, not skipped
    pua: bool = False  # load ClamAV .hdu/.hsu lists (potentially unwanted applications)
    # external variables besides the built-in ones, with the value every scan sees
    externals: tuple[tuple[str, str | int | bool | float], ...] = ()
    # files engine = "auto" scans to prove an engine agrees with yara-python
    # (besides the rule files themselves): rule samples, a corpus
    engine_evidence: tuple[str, ...] = ()

    def rule_dirs(self) -> tuple[str, ...]:
        """The directories to load: ``dirs`` (or the shipped rules) plus existing local ones."""
        base = self.dirs or (str(data_dir() / "rules"),)
        return base + tuple(d for d in self.local_dirs if os.path.isdir(d))


@dataclass(frozen=True)
class ScanConfig:
    max_file_size: int = 64 * 1024 * 1024
    # over max_file_size: scan the head and the last oversize_tail bytes (the
    # head of a big file is where a dropper's payload usually is; an appended
    # payload is at the end); the tail is at most max_file_size
    oversize: Oversize = Oversize.TRUNCATE
    oversize_tail: int = 1024 * 1024
    timeout: int = 30
    workers: int = 0  # 0: one per CPU
    cache_entries: int = 262144


# An open may wait for a verdict, an execution must have one: executions are
# denied when none could be reached, opens are allowed (README, "When no
# verdict is reached"). A scan error can be caused by the file's content, so
# it denies both.
OPEN_ALLOW_EXEC_DENY = PerKind(Fallback.ALLOW, Fallback.DENY)


@dataclass(frozen=True)
class PolicyConfig:
    on_error: PerKind = PerKind(Fallback.DENY, Fallback.DENY)
    on_timeout: Fallback = Fallback.ALLOW
    on_oversize: Fallback = Fallback.ALLOW
    # an archive not fully unpacked (a limit, a damaged or encrypted member):
    # jars, zipapps and phars run straight from the archive, so not for execs
    on_unpack_limit: PerKind = OPEN_ALLOW_EXEC_DENY
    on_encrypted: PerKind = OPEN_ALLOW_EXEC_DENY


@dataclass(frozen=True)
class ArchiveConfig:
    scan: bool = True  # look inside archives and compressed files
    max_depth: int = 5
    max_members: int = 10000
    max_unpacked: int = 1 << 30
    max_ratio: int = 250
    timeout_ms: int = 10000
    max_held: int = 256 << 20  # bytes of members held at once across nesting levels


# What runs a file it opens: shells, script interpreters, the dynamic loader.
INTERPRETERS = (
    "sh", "bash", "dash", "python3*", "perl", "php*", "ruby", "node", "java", "ld-linux*",
)  # fmt: skip


@dataclass(frozen=True)
class OnAccessConfig:
    watch: tuple[str, ...] = ("/home", "/srv", "/var/www", "/tmp", "/var/tmp", "/dev/shm")
    events: tuple[EventKind, ...] = (EventKind.OPEN, EventKind.EXEC, EventKind.CLOSE_WRITE)
    mark: MarkKind = MarkKind.FILESYSTEM
    exclude_paths: tuple[str, ...] = ()
    exclude_executables: tuple[str, ...] = ()
    exclude_users: tuple[int, ...] = ()
    quarantine_on: tuple[EventKind, ...] = (EventKind.CLOSE_WRITE,)
    queue_size: int = 4096
    deadline_ms: int = 5000
    on_queue_full: PerKind = OPEN_ALLOW_EXEC_DENY
    on_deadline: PerKind = OPEN_ALLOW_EXEC_DENY
    # jobs for files over this may hold all workers but one: big files never
    # keep small ones from being scanned
    large_file_size: int = 16 * 1024 * 1024
    ignore_marks: bool = True
    # where ignore marks may be used: local filesystems whose writes clear them
    ignore_mark_filesystems: tuple[str, ...] = ("ext4", "xfs", "btrfs", "tmpfs", "f2fs")
    verdict_cache_entries: int = 65536
    # a file changed this recently is not remembered as clean: before kernel
    # 6.13 a rewrite within the same clock tick can keep its ctime
    fresh_window_ms: int = 20
    close_write_share: int = 50  # percent of queue_size that scans after writes may hold
    exec_anywhere: bool = True  # executions checked anywhere on a marked filesystem
    # programs whose opens are checked like executions (the file is code they
    # run): names or globs looked up in the usual directories, or absolute paths
    interpreters: tuple[str, ...] = INTERPRETERS


@dataclass(frozen=True)
class DaemonConfig:
    mode: Mode = Mode.AUTO
    state_dir: str = "/var/lib/vigild"
    runtime_dir: str = "/run/vigild"
    quarantine_dir: str = "/var/lib/vigild/quarantine"
    metrics_file: str = ""  # empty: no OpenMetrics file
    stall_timeout_ms: int = 60000
    alert_spool_size: int = 16 << 20  # alerts kept on disk while journald is away


class FeedKind(StrEnum):
    YARA = "yara"  # a .tar.gz or .zip of rule files
    HASHES = "hashes"  # a hash list (or an archive of them)


@dataclass(frozen=True)
class FeedConfig:
    """One ``[[update.feed]]``: where its content comes from and who must have signed it."""

    name: str
    url: str
    kind: FeedKind
    keys: tuple[str, ...] = ()  # OpenSSH public keys ("ssh-ed25519 AAAA... comment")
    manifest: str = (
        ""  # the signed manifest's URL (its signature: + ".sig"); empty: url + ".manifest"
    )
    insecure: bool = False  # no signature needed (shown in status and every journal entry)
    ca_file: str = ""  # empty: the system's CA store

    @property
    def manifest_url(self) -> str:
        return self.manifest or self.url + ".manifest"


# Files a feed's content cannot deny (vigild.protect): what the host needs
# to run and to be repaired. Globs, resolved when the rules are loaded.
PROTECTED = (
    "/usr/bin/vigild",
    "/lib*/ld-linux*.so*",
    "/usr/lib*/ld-linux*.so*",
    "/lib/*-linux-gnu/ld-linux*.so*",
    "/usr/lib/*-linux-gnu/ld-linux*.so*",
    "/lib/*-linux-gnu/libc.so*",
    "/usr/lib/*-linux-gnu/libc.so*",
    "/lib64/libc.so*",
    "/usr/lib64/libc.so*",
    "/usr/bin/python3*",
    "/usr/lib/systemd/systemd",
    "/lib/systemd/systemd",
    "/usr/bin/systemctl",
    "/usr/sbin/sshd",
    "/usr/bin/ssh-keygen",
    "/usr/bin/dpkg",
    "/usr/bin/apt",
    "/usr/bin/apt-get",
    "/usr/bin/rpm",
    "/usr/bin/dnf",
    "/usr/bin/yum",
)


@dataclass(frozen=True)
class UpdateConfig:
    feeds: tuple[FeedConfig, ...] = ()
    keep: int = 3  # generations kept, the live one included
    timeout_ms: int = 30000  # per feed: connecting, reading, the whole download
    max_download: int = 256 << 20
    max_unpacked: int = 1 << 30
    protected: tuple[str, ...] = PROTECTED
    block_protected: bool = False  # let feed content deny a protected file (not advised)


@dataclass(frozen=True)
class Config:
    rules: RulesConfig = field(default_factory=RulesConfig)
    scan: ScanConfig = field(default_factory=ScanConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    onaccess: OnAccessConfig = field(default_factory=OnAccessConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    files: tuple[str, ...] = ()  # the files this was read from, in order


# ---- value parsers: each takes the raw TOML value, returns the typed one ----

Parser = Callable[[Any], Any]

_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _size(value: Any) -> int:
    """Bytes: an integer, or a string such as "64M" (K, M, G, T; powers of 1024)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)i?b?\s*", value.lower())
        if m:
            return int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    raise ValueError(f'expected a size such as 1048576 or "64M", got {value!r}')


def _int_range(low: int, high: int) -> Parser:
    def parse(value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"expected an integer, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def _choice(enum: type[Enum]) -> Parser:
    def parse(value: Any) -> Enum:
        names = [str(e.value) for e in enum]
        if isinstance(value, str) and value in names:
            return enum(value)
        raise ValueError(f"expected one of {', '.join(names)}, got {value!r}")

    return parse


def _duration_ms(value: Any) -> int:
    """Milliseconds: seconds as a number, or a string such as "250ms", "5s", "2m"."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return max(1, round(value * 1000))
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*", value)
        if m and float(m.group(1)) > 0:
            scale = {"ms": 1, "s": 1000, "m": 60000, None: 1000}[m.group(2)]
            return max(1, round(float(m.group(1)) * scale))
    raise ValueError(f'expected a duration such as 5, "250ms" or "5s", got {value!r}')


def _window_ms(value: Any) -> int:
    """A duration from 10 ms up to one second; 0 turns the window off. Less than
    a kernel clock tick (10 ms at HZ=100) would let a rewrite within the tick
    keep the ctime of bytes already remembered."""
    ms = 0 if value == 0 else _duration_ms(value)
    if ms > 1000:
        raise ValueError(f"must be at most 1s, got {value!r}")
    if 0 < ms < 10:
        raise ValueError(
            f"must be 0 (off) or at least 10ms, a kernel clock tick at HZ=100, got {value!r}"
        )
    return ms


def _filesystems(value: Any) -> tuple[str, ...]:
    """Filesystem type names that vigild knows the magic number of."""
    from vigild.native import FS_MAGIC  # config stays importable without the C part

    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of filesystem type names, got {value!r}")
    unknown = [v for v in value if v not in FS_MAGIC]
    if unknown:
        raise ValueError(f"unknown filesystem type {unknown[0]!r} (known: {', '.join(FS_MAGIC)})")
    return tuple(value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"expected true or false, got {value!r}")


def _per_kind(value: Any) -> PerKind:
    """ "allow"/"deny" for both kinds, or a table ``{ open = ..., exec = ... }``."""
    one = _choice(Fallback)
    if isinstance(value, dict):
        unknown = set(value) - {"open", "exec"}
        if unknown or set(value) != {"open", "exec"}:
            raise ValueError(f"expected a table with keys open and exec, got {value!r}")
        return PerKind(one(value["open"]), one(value["exec"]))
    both = one(value)
    return PerKind(both, both)


def _choices(enum: type[Enum]) -> Parser:
    one = _choice(enum)

    def parse(value: Any) -> tuple[Enum, ...]:
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {value!r}")
        return tuple(dict.fromkeys(one(v) for v in value))

    return parse


def _users(value: Any) -> tuple[int, ...]:
    """User names or numeric uids, resolved to uids now."""
    if not isinstance(value, list):
        raise ValueError(f"expected a list of user names or uids, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            out.append(v)
        elif isinstance(v, str):
            try:
                out.append(pwd.getpwnam(v).pw_uid)
            except KeyError:
                raise ValueError(f"no such user: {v!r}") from None
        else:
            raise ValueError(f"expected a user name or uid, got {v!r}")
    return tuple(out)


def _path(value: Any) -> str:
    if isinstance(value, str) and value.startswith("/"):
        return os.path.normpath(value)
    raise ValueError(f"expected an absolute path, got {value!r}")


def _optional_path(value: Any) -> str:
    """An absolute path, or "" for none."""
    return "" if value == "" else _path(value)


# Set by vigild for every scan (vigild.scanner.EXTERNALS); not declarable.
_BUILTIN_EXTERNALS = ("filename", "filepath", "extension", "owner", "filetype", "md5")


def _externals(value: Any) -> tuple[tuple[str, str | int | bool | float], ...]:
    """A table of YARA external variables: name = default value (string, integer, boolean)."""
    if not isinstance(value, dict):
        raise ValueError(f'expected a table such as {{ env = "prod" }}, got {value!r}')
    out = []
    for name, v in value.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"{name!r} is not a YARA identifier")
        if name in _BUILTIN_EXTERNALS:
            raise ValueError(f"{name!r} is set by vigild for every scan; choose another name")
        if not isinstance(v, str | int | bool | float):
            raise ValueError(f"{name}: expected a string, number or boolean, got {v!r}")
        out.append((name, v))
    return tuple(out)


def _path_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of absolute paths, got {value!r}")
    return tuple(_path(v) for v in value)


def _glob_list(value: Any) -> tuple[str, ...]:
    """Absolute paths that may hold glob patterns (kept as written)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of absolute paths, got {value!r}")
    bad = [v for v in value if not v.startswith("/")]
    if bad:
        raise ValueError(f"expected an absolute path, got {bad[0]!r}")
    return tuple(value)


class _Nested(ValueError):
    """A bad value inside a table of an array: ``where`` goes after the key ("[2].url")."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        super().__init__(message)


def _feed_name(value: Any) -> str:
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", value):
        return value
    raise ValueError(f"expected a name of letters, digits, '.', '_' and '-', got {value!r}")


def _url(value: Any) -> str:
    if isinstance(value, str) and re.match(r"(https|http|file)://", value):
        return value
    raise ValueError(f"expected an https:// or file:// URL, got {value!r}")


def _optional_url(value: Any) -> str:
    return "" if value == "" else _url(value)


_KEY_LINE = re.compile(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+|sk-\S+)\s+[A-Za-z0-9+/=]+(\s.*)?")


def _public_keys(value: Any) -> tuple[str, ...]:
    """OpenSSH public key lines, as in an authorized_keys or .pub file."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(
            f'expected a list of public keys such as ["ssh-ed25519 AAAA..."], got {value!r}'
        )
    for v in value:
        if "\n" in v or not _KEY_LINE.fullmatch(v.strip()):
            raise ValueError(f"not an OpenSSH public key line: {v[:60]!r}")
    return tuple(v.strip() for v in value)


# [[update.feed]] key -> (dataclass field, parser); name, url and kind are required
_FEED_TABLE: dict[str, tuple[str, Parser]] = {
    "name": ("name", _feed_name),
    "url": ("url", _url),
    "kind": ("kind", _choice(FeedKind)),
    "keys": ("keys", _public_keys),
    "manifest": ("manifest", _optional_url),
    "insecure": ("insecure", _bool),
    "ca_file": ("ca_file", _optional_path),
}


def _feed(index: int, value: Any) -> FeedConfig:
    at = f"[{index}]"
    if not isinstance(value, dict):
        raise _Nested(at, "expected a [[update.feed]] table")
    values = {}
    for key, raw in value.items():
        if key not in _FEED_TABLE:
            raise _Nested(f"{at}.{key}", f"unknown key (known: {', '.join(_FEED_TABLE)})")
        name, parse = _FEED_TABLE[key]
        try:
            values[name] = parse(raw)
        except ValueError as e:
            raise _Nested(f"{at}.{key}", str(e)) from e
    for required in ("name", "url", "kind"):
        if required not in values:
            raise _Nested(f"{at}.{required}", "required")
    feed = FeedConfig(**values)
    if not feed.keys and not feed.insecure:
        raise _Nested(f"{at}.keys", "the public key(s) that sign this feed (or insecure = true)")
    if feed.url.startswith("http://") and not feed.insecure:
        raise _Nested(f"{at}.url", "plain http:// only with insecure = true; use https://")
    return feed


def _feeds(value: Any) -> tuple[FeedConfig, ...]:
    """The [[update.feed]] tables, numbered from 1 in errors (``update.feed[1].url``)."""
    if not isinstance(value, list):
        raise ValueError("expected [[update.feed]] tables")
    feeds = tuple(_feed(i, v) for i, v in enumerate(value, 1))
    names = [f.name for f in feeds]
    for i, name in enumerate(names, 1):
        if names.index(name) != i - 1:
            raise _Nested(f"[{i}].name", f"{name!r} names an earlier feed too")
    return feeds


def _program_list(value: Any) -> tuple[str, ...]:
    """Program names or globs (``python3*``), or absolute paths (globs too)."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(
            f"expected a list of program names, globs or absolute paths, got {value!r}"
        )
    bad = [v for v in value if "/" in v and not v.startswith("/")]
    if bad:
        raise ValueError(f"{bad[0]!r}: a program name has no '/'; a path must be absolute")
    return tuple(dict.fromkeys(value))


# section -> key -> (dataclass field, parser)
_TABLE: dict[str, dict[str, tuple[str, Parser]]] = {
    "rules": {
        "dirs": ("dirs", _path_list),
        "local_dirs": ("local_dirs", _path_list),
        "hashes": ("hashes", _path_list),
        "engine": ("engine", _choice(Engine)),
        "compiled_dir": ("compiled_dir", _path),
        "strict": ("strict", _bool),
        "pua": ("pua", _bool),
        "externals": ("externals", _externals),
        "engine_evidence": ("engine_evidence", _path_list),
    },
    "scan": {
        "max_file_size": ("max_file_size", _size),
        "oversize": ("oversize", _choice(Oversize)),
        "oversize_tail": ("oversize_tail", _size),
        "timeout": ("timeout", _int_range(1, 3600)),
        "workers": ("workers", _int_range(0, 256)),
        "cache_entries": ("cache_entries", _int_range(1024, 1 << 28)),
    },
    "policy": {
        "on_error": ("on_error", _per_kind),
        "on_timeout": ("on_timeout", _choice(Fallback)),
        "on_oversize": ("on_oversize", _choice(Fallback)),
        "on_unpack_limit": ("on_unpack_limit", _per_kind),
        "on_encrypted": ("on_encrypted", _per_kind),
    },
    "archive": {
        "scan": ("scan", _bool),
        "max_depth": ("max_depth", _int_range(1, 32)),
        "max_members": ("max_members", _int_range(1, 10_000_000)),
        "max_unpacked": ("max_unpacked", _size),
        "max_ratio": ("max_ratio", _int_range(2, 100_000)),
        "timeout": ("timeout_ms", _duration_ms),
        "max_held": ("max_held", _size),
    },
    "onaccess": {
        "watch": ("watch", _path_list),
        "events": ("events", _choices(EventKind)),
        "mark": ("mark", _choice(MarkKind)),
        "exclude_paths": ("exclude_paths", _path_list),
        "exclude_executables": ("exclude_executables", _path_list),
        "exclude_users": ("exclude_users", _users),
        "quarantine_on": ("quarantine_on", _choices(EventKind)),
        "queue_size": ("queue_size", _int_range(1, 1 << 20)),
        "deadline": ("deadline_ms", _duration_ms),
        "on_queue_full": ("on_queue_full", _per_kind),
        "on_deadline": ("on_deadline", _per_kind),
        "large_file_size": ("large_file_size", _size),
        "ignore_marks": ("ignore_marks", _bool),
        "ignore_mark_filesystems": ("ignore_mark_filesystems", _filesystems),
        "verdict_cache_entries": ("verdict_cache_entries", _int_range(1024, 1 << 28)),
        "fresh_window": ("fresh_window_ms", _window_ms),
        "close_write_share": ("close_write_share", _int_range(1, 100)),
        "exec_anywhere": ("exec_anywhere", _bool),
        "interpreters": ("interpreters", _program_list),
    },
    "daemon": {
        "mode": ("mode", _choice(Mode)),
        "state_dir": ("state_dir", _path),
        "runtime_dir": ("runtime_dir", _path),
        "quarantine_dir": ("quarantine_dir", _path),
        "metrics_file": ("metrics_file", _optional_path),
        "stall_timeout": ("stall_timeout_ms", _duration_ms),
        "alert_spool_size": ("alert_spool_size", _size),
    },
    "update": {
        "feed": ("feeds", _feeds),
        "keep": ("keep", _int_range(2, 100)),
        "timeout": ("timeout_ms", _duration_ms),
        "max_download": ("max_download", _size),
        "max_unpacked": ("max_unpacked", _size),
        "protected": ("protected", _glob_list),
        "block_protected": ("block_protected", _bool),
    },
}


def _read_toml(path: Path) -> dict[str, Any]:
    """Parse one file; syntax errors become ConfigError with the line."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(path, None, e.strerror or str(e)) from e
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column \d+\)", str(e))
        line = f"line {m.group(1)}" if m else None
        raise ConfigError(path, line, str(e)) from e


def _apply(config: Config, path: Path, data: Mapping[str, Any]) -> Config:
    """Return ``config`` with every key of one file's ``data`` applied."""
    sections: dict[str, Any] = {}
    for section, values in data.items():
        keys = _TABLE.get(section)
        if keys is None:
            raise ConfigError(path, section, f"unknown section (known: {', '.join(_TABLE)})")
        if not isinstance(values, dict):
            raise ConfigError(path, section, "expected a [section] table")
        changes = {}
        for key, raw in values.items():
            if key not in keys:
                raise ConfigError(path, f"{section}.{key}", "unknown key")
            name, parse = keys[key]
            try:
                changes[name] = parse(raw)
            except _Nested as e:
                raise ConfigError(path, f"{section}.{key}{e.where}", str(e)) from e
            except ValueError as e:
                raise ConfigError(path, f"{section}.{key}", str(e)) from e
        sections[section] = replace(getattr(config, section), **changes)
    return replace(config, **sections)


def _check(config: Config, last: str) -> None:
    """Cross-field checks, made once everything is merged."""
    if config.scan.max_file_size < 1:
        raise ConfigError(last, "scan.max_file_size", "must be at least 1 byte")
    if not config.onaccess.events:
        raise ConfigError(last, "onaccess.events", "needs at least one of open, exec, close-write")
    if config.onaccess.deadline_ms > 3_600_000:
        raise ConfigError(last, "onaccess.deadline", "must be at most one hour")
    if config.daemon.stall_timeout_ms < 1000:
        raise ConfigError(last, "daemon.stall_timeout", "must be at least one second")


def dropin_files(main: Path) -> list[Path]:
    """The ``conf.d/*.toml`` files beside ``main``, in name order."""
    conf_d = main.parent / "conf.d"
    if not conf_d.is_dir():
        return []
    return sorted(p for p in conf_d.glob("*.toml") if p.is_file())


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Load ``path`` (default /etc/vigild/vigild.toml) and its drop-ins.

    A missing default file means defaults; a missing file named explicitly
    is an error.
    """
    main = Path(path) if path is not None else DEFAULT_CONFIG
    files: list[Path] = []
    if main.exists() or path is not None:
        files.append(main)
    files.extend(dropin_files(main))
    config = Config()
    for f in files:
        config = _apply(config, f, _read_toml(f))
    config = replace(config, files=tuple(str(f) for f in files))
    _check(config, str(files[-1]) if files else str(main))
    return config


def load_tolerant(
    path: str | os.PathLike[str] | None = None,
) -> tuple[Config, list[ConfigError]]:
    """Like ``load``, but a file that does not load is skipped, not fatal.

    For the commands that only need to find the running daemon and its
    quarantine: an admin who broke the config must still reach them.
    """
    main = Path(path) if path is not None else DEFAULT_CONFIG
    files = ([main] if main.exists() or path is not None else []) + dropin_files(main)
    config, errors = Config(), []
    for f in files:
        try:
            config = _apply(config, f, _read_toml(f))
        except ConfigError as e:
            errors.append(e)
    return config, errors


def keys() -> dict[str, list[str]]:
    """Every section and its keys, for documentation and tests."""
    return {section: list(table) for section, table in _TABLE.items()}


def defaults_as_dict() -> dict[str, dict[str, Any]]:
    """The default value of every key, in the table's order."""
    config = Config()
    out: dict[str, dict[str, Any]] = {}
    for section, table in _TABLE.items():
        obj = getattr(config, section)
        values = {f.name: getattr(obj, f.name) for f in fields(obj)}
        out[section] = {key: values[name] for key, (name, _) in table.items()}
    return out


def own_dirs(cfg: Config) -> tuple[str, ...]:
    """vigild's own files: never scanned (invariant 2).

    Its state, runtime, quarantine and compiled directories, and its rules
    and hash lists: a rule file holds the very strings it detects, so an
    admin editing one on a watched filesystem would be denied.
    """
    dirs = [
        cfg.daemon.state_dir,
        cfg.daemon.runtime_dir,
        cfg.daemon.quarantine_dir,
        cfg.rules.compiled_dir,
        *cfg.rules.rule_dirs(),
        *cfg.rules.hashes,
    ]
    return tuple(os.path.realpath(d) for d in dirs)


def never_scanned(cfg: Config) -> tuple[str, ...]:
    """The resolved prefixes no scan enters: onaccess.exclude_paths and vigild's own."""
    return tuple(os.path.realpath(p) for p in cfg.onaccess.exclude_paths) + own_dirs(cfg)
