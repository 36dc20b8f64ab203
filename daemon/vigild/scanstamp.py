"""The stamp that lets ``vigild scan`` answer from its clean cache without loading rules.

Loading the rules costs more than a second scan of an unchanged tree
(hashing every rule file, the engine pick, the compiled set). Yet the clean
cache only needs the *setting digest* those rules give. So the cache file
also keeps a stamp: a digest of the config and of the stat (device, inode,
mode, size, mtime, ctime) of every file and directory the rules were derived
from: the rule files and what they include, the rule and hash directories
(an added file changes its directory), the hash lists, the compiled files
and the engine decision, the evidence directories, the feed ``current`` link,
the installed packages' directories (an engine upgraded) and vigild's own.

At the next scan, the stamp is computed from stat alone. When it matches,
the setting digest saved beside it is used and the rules are loaded only
at the first file the cache does not answer. It is trusted under the
daemon's rule for ctimes (vigild.scancache): before kernel 6.13 a rewrite
within the same clock tick can keep its ctime, so a stamp is neither saved
nor used while any file in it changed within ``fresh_window_ms`` — of the
rules' load, or of now.

The ``engine = "auto"`` evidence is stamped file by file, as the daemon's
auto key is: a sample edited in place may change which engine agrees with
yara-python, and with it every verdict.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import sys
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from vigild import __version__, owned

if TYPE_CHECKING:
    from vigild.config import Config
    from vigild.ruleset import RuleSet

# what the compiled directory holds that rules are loaded from (not the scan cache)
_COMPILED = ("rules-", "hashes-", "auto-")
_STAT = struct.Struct("<QQIqqq")


def config_text(cfg: Config) -> str:
    """What of the config and process a verdict may depend on, as text (the
    packages the engines come from are stamped by their directories' stat)."""
    cfg = replace(cfg, scan=replace(cfg.scan, workers=0))  # the worker count does not
    where = f"{sys.version}|{sys.prefix}|{os.environ.get('PYTHONPATH', '')}"
    return f"{__version__}|{where}|{cfg!r}"


def ctime_end_ns(ctime_ns: int) -> int:
    """When a ctime stops being reusable by a rewrite, freshness window aside: the
    ctime itself, or for a filesystem that keeps whole seconds only (ext2/3, ext4
    with 128-byte inodes: the ctime ends in .000000000) the end of that second,
    which a rewrite keeps on every kernel (native/fan.h fan_ctime_end_ns)."""
    return ctime_ns if ctime_ns % 1_000_000_000 else ctime_ns + 1_000_000_000


def digest(text: str, paths: list[str]) -> tuple[bytes, int]:
    """(16-byte digest of ``text`` and the stat of ``paths``, the newest ctime among
    them, as ctime_end_ns gives it)."""
    h = hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=16)
    h.update("\0".join(paths).encode("utf-8", "surrogateescape"))
    fields: list[bytes] = []
    newest = 0
    pack, lstat = _STAT.pack, os.lstat
    for p in paths:
        try:
            st = lstat(p)
            if stat.S_ISLNK(st.st_mode):
                fields.append(os.readlink(p).encode("utf-8", "surrogateescape"))
                newest = max(newest, ctime_end_ns(st.st_ctime_ns))
                st = os.stat(p)
        except OSError as e:
            fields.append(b"missing %d" % (e.errno or 0))
            continue
        fields.append(
            pack(st.st_dev, st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        )
        newest = max(newest, ctime_end_ns(st.st_ctime_ns))
    h.update(b"\0".join(fields))
    return h.digest(), newest


@dataclass(frozen=True)
class Stamp:
    """What the cache file keeps beside the setting digest."""

    digest: bytes
    paths: tuple[str, ...]
    by_path: bool  # some rule reads the path: it is part of each key
    summary: dict[str, Any]  # engine, rules, hash_entries: the scan summary's line
    logs: tuple[tuple[str, int, str], ...]  # (logger, level, message) the load logged

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest.hex(),
            "paths": list(self.paths),
            "by_path": self.by_path,
            "summary": self.summary,
            "logs": [list(x) for x in self.logs],
        }

    @staticmethod
    def from_json(d: dict[str, Any]) -> Stamp:
        """Raises KeyError / TypeError / ValueError on a malformed stamp."""
        return Stamp(
            bytes.fromhex(d["digest"]),
            tuple(str(p) for p in d["paths"]),
            bool(d["by_path"]),
            {k: d["summary"][k] for k in ("engine", "rules", "hash_entries")},
            tuple((str(n), int(lv), str(m)) for n, lv, m in d["logs"]),
        )


def holds(s: Stamp, cfg: Config, fresh_ms: int) -> bool:
    """Whether the rules ``s`` was made from are unchanged, by stat alone."""
    got, newest = digest(config_text(cfg), list(s.paths))
    return got == s.digest and newest < time.time_ns() - fresh_ms * 1_000_000


def make(
    cfg: Config, rs: RuleSet, loaded_at_ns: int, logs: list[tuple[str, int, str]]
) -> Stamp | None:
    """The stamp of the rules ``rs`` loaded for ``cfg`` (started at ``loaded_at_ns``);
    None when a file it depends on changed too shortly before that to be told apart."""
    paths = sources(cfg, rs)
    got, newest = digest(config_text(cfg), paths)
    if newest >= loaded_at_ns - cfg.onaccess.fresh_window_ms * 1_000_000:
        return None
    summary = {"engine": rs.engine, "rules": rs.count, "hash_entries": rs.hash_entries}
    return Stamp(got, tuple(paths), rs.path_rules is not None, summary, tuple(logs))


def sources(cfg: Config, rs: RuleSet) -> list[str]:
    """Every file and directory the rules of ``cfg`` were derived from."""
    from vigild import generations
    from vigild.config import Engine

    rules = generations.with_feeds(cfg)
    found: dict[str, None] = dict.fromkeys(rs.sources)
    for top in (*rules.rule_dirs(), *rules.local_dirs, *rules.hashes):
        _below(top, found)
    if rules.engine is Engine.AUTO:  # the samples its decision rests on, each
        for top in rules.engine_evidence:
            _below(top, found)
    found[str(generations.update_dir(cfg) / "current")] = None
    compiled = owned.cache_dir(rules.compiled_dir)
    try:
        names = sorted(os.listdir(compiled)) if compiled is not None else []
    except OSError:
        names = []
    found.update((os.path.join(str(compiled), n), None) for n in names if n.startswith(_COMPILED))
    found.update((p, None) for p in sys.path if p and os.path.isdir(p))
    found[os.path.dirname(os.path.abspath(__file__))] = None  # vigild itself
    return list(found)


def _below(top: str, found: dict[str, None]) -> None:
    """``top`` and, for a directory, every directory and file below it."""
    found[top] = None
    found.update((e.path, None) for e in owned.entries_below(top))
