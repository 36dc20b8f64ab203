"""Feed content on disk: numbered generations, the ``current`` pointer, per-feed state.

Owns ``<state_dir>/update``; nothing else writes there. ``vigild update``
builds a generation in full, checks it, then swaps ``current`` (a symlink
replaced by rename, so a reader sees the old generation or the new one,
never a mix); the daemon only reads. Layout::

    update/
      generations/7/<feed>/rules/...      a yara feed's rule files
      generations/7/<feed>/hashes/feed.hsb a hashes feed, entries named "feed/<feed>/..."
      generations/7/manifest.json          what each feed's content is (sha256, key, counts)
      current -> generations/7
      state.json                           per feed: ETag, last check, last error
      lock                                 one ``vigild update`` at a time

The daemon loads, beside the configured rules and hash lists, the live
generation's directories of the feeds the config still names: a feed
removed from the config stops counting at the next reload, and the config
file itself is never written.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vigild.config import Config, RulesConfig
from vigild.status import FeedStatus

# A hash entry whose name starts so came from a feed (vigild.protect reads it).
HASH_PREFIX = "feed/"


def update_dir(cfg: Config) -> Path:
    return Path(cfg.daemon.state_dir) / "update"


def generations_dir(cfg: Config) -> Path:
    return update_dir(cfg) / "generations"


def feed_root(cfg: Config) -> str:
    """The resolved directory every feed rule file lies under (rule namespaces start so)."""
    return os.path.realpath(generations_dir(cfg))


def numbers(cfg: Config) -> list[int]:
    """The generations on disk, oldest first."""
    try:
        names = os.listdir(generations_dir(cfg))
    except FileNotFoundError:
        return []
    return sorted(int(n) for n in names if n.isdigit())


def live(cfg: Config) -> int | None:
    """The generation ``current`` points at, or None."""
    try:
        target = os.readlink(update_dir(cfg) / "current")
    except OSError:
        return None
    name = os.path.basename(target)
    return int(name) if name.isdigit() else None


def path_of(cfg: Config, number: int) -> Path:
    return generations_dir(cfg) / str(number)


def content_dirs(cfg: Config, number: int | None = None) -> tuple[list[str], list[str]]:
    """The rule and hash directories of generation ``number`` (default: the live one),
    for the feeds the config names; resolved, so a swap mid-load changes nothing."""
    number = live(cfg) if number is None else number
    if number is None:
        return [], []
    base = path_of(cfg, number).resolve()
    rules, hashes = [], []
    for feed in cfg.update.feeds:
        if (base / feed.name / "rules").is_dir():
            rules.append(str(base / feed.name / "rules"))
        if (base / feed.name / "hashes").is_dir():
            hashes.append(str(base / feed.name / "hashes"))
    return rules, hashes


def with_feeds(cfg: Config, number: int | None = None) -> RulesConfig:
    """``cfg.rules`` with the feed content of generation ``number`` (default: live) added."""
    rules, hashes = content_dirs(cfg, number)
    r = cfg.rules
    return replace(r, local_dirs=r.local_dirs + tuple(rules), hashes=r.hashes + tuple(hashes))


def swap(cfg: Config, number: int) -> None:
    """Point ``current`` at generation ``number`` in one rename."""
    d = update_dir(cfg)
    tmp = d / f".current.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(f"generations/{number}", tmp)
    os.replace(tmp, d / "current")
    _sync_dir(d)


def _sync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prune(cfg: Config, keep: int) -> list[int]:
    """Remove all but the newest ``keep`` generations (never the live one); the removed."""
    current = live(cfg)
    old = [n for n in numbers(cfg) if n != current]
    drop = old[: max(0, len(old) - (keep - 1))]
    for n in drop:
        shutil.rmtree(path_of(cfg, n), ignore_errors=True)
    return drop


def manifest(cfg: Config, number: int | None) -> dict[str, Any]:
    """Generation ``number``'s manifest ({"feeds": {name: {...}}}); empty when there is none."""
    if number is None:
        return {"feeds": {}}
    try:
        data: dict[str, Any] = json.loads((path_of(cfg, number) / "manifest.json").read_bytes())
    except (OSError, ValueError):
        return {"feeds": {}}
    return data


@contextlib.contextmanager
def locked(cfg: Config) -> Iterator[None]:
    """Hold the update lock: two ``vigild update`` never build at once."""
    d = update_dir(cfg)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(d / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OSError(f"{d / 'lock'}: another vigild update is running") from None
        yield
    finally:
        os.close(fd)


# ------------------------------------------------------------ per-feed state


@dataclass(frozen=True)
class FeedState:
    """What ``vigild update`` last learnt of one feed; the daemon's status reads it."""

    etag: str = ""
    last_modified: str = ""
    checked_at: float = 0.0  # the last fetch that succeeded (new or unchanged content)
    changed_at: float = 0.0  # the last time its content changed
    sha256: str = ""  # of the download that is live
    key: str = ""  # fingerprint of the key that signed it
    last_error: str = ""
    error_at: float = 0.0
    # the highest signed manifest accepted (vigild.feedmanifest): never lowered,
    # not even by a rollback, so that an old manifest served again is refused
    serial: int = 0
    signed_at: float = 0.0
    expires_at: float = 0.0
    manifest_sha256: str = ""
    manifest_etag: str = ""


def read_state(cfg: Config) -> dict[str, FeedState]:
    try:
        raw = json.loads((update_dir(cfg) / "state.json").read_bytes())
    except (OSError, ValueError):
        return {}
    out = {}
    known = set(FeedState.__dataclass_fields__)
    for name, d in raw.items() if isinstance(raw, dict) else ():
        if isinstance(d, dict):
            out[name] = FeedState(**{k: v for k, v in d.items() if k in known})
    return out


def write_state(cfg: Config, state: dict[str, FeedState]) -> None:
    d = update_dir(cfg)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = d / f".state.json.{os.getpid()}"
    tmp.write_text(json.dumps({k: v.__dict__ for k, v in state.items()}, indent=1))
    os.replace(tmp, d / "state.json")


def status(cfg: Config, now: float | None = None) -> tuple[FeedStatus, ...]:
    """Each configured feed's generation, age and last error, read from disk now
    (nothing is read when no feed is configured: status asks once a second)."""
    if not cfg.update.feeds:
        return ()
    now = time.time() if now is None else now
    state = read_state(cfg)
    number = live(cfg)
    feeds = manifest(cfg, number)["feeds"]
    out = []
    for f in cfg.update.feeds:
        s = state.get(f.name, FeedState())
        gen = number if number is not None and f.name in feeds else -1
        out.append(FeedStatus(
            f.name, f.url, f.insecure, gen, _age(s, now), s.last_error,
            serial=s.serial, stale=bool(s.expires_at) and now >= s.expires_at,
        ))  # fmt: skip
    return tuple(out)


def _age(s: FeedState, now: float) -> float:
    """Seconds since the live content was signed (an insecure feed: since it was
    last fetched); -1 when never. A mirror answering "not modified" for ever
    does not make signed content any younger."""
    since = s.signed_at or s.checked_at
    return round(max(0.0, now - since), 1) if since else -1.0
