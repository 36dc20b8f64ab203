"""``vigild update``: fetch each feed, verify, build a new generation, check it, swap, reload.

The stages, and who may change the live set: ``fetch`` and ``signature``
only read the network; ``feedcontent`` writes only into the generation
being built; the checks compile it with ruleset.load, the daemon's own
code; only ``generations.swap`` changes what is live, and only after every
check passed. A feed that fails at any stage keeps its previous content in
the new generation (or none, if it never had any), and its failure is
journaled with the feed and the reason. An update changes rule files and
hash lists: never the program, the config, the unit or the exclusions.

A run is one process (the timer's service, or an admin): it writes its
journal entries itself, one per feed that changed or failed, and keeps
per-feed state (ETag, last check, last error) in ``update/state.json``
for the daemon's ``vigild status``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from vigild import alert, control, feedcontent, feedmanifest, generations, hashes, journal, ruleset
from vigild.alert import Alert, Kind
from vigild.config import Config, FeedConfig, FeedKind, RulesConfig
from vigild.feedmanifest import Judgement, Manifest, ManifestError
from vigild.fetch import FetchError, Limits, fetch
from vigild.fields import Field
from vigild.generations import FeedState
from vigild.native import NativeError
from vigild.scanner import RuleError
from vigild.signature import SignatureError, verify

Emit = Callable[[Alert], None]
Say = Callable[[str], None]

_FAILURES = (
    FetchError,
    SignatureError,
    ManifestError,
    feedcontent.ContentError,
    RuleError,
    hashes.HashListError,
    NativeError,
    OSError,
)


class UpdateError(Exception):
    """The update as a whole could not go live; the message says why."""


def journal_sink(a: Alert) -> None:
    """Write ``a`` to the journal; on stderr when there is no journald."""
    try:
        journal.send(a.journal_fields())
    except (journal.Busy, journal.Unavailable):
        alert.stderr_sink()(a)


@dataclass
class FeedResult:
    """What became of one feed in this run."""

    feed: FeedConfig
    new: bool = False  # new content went into the generation
    error: str = ""
    sha256: str = ""
    key: str = ""
    rules: int = 0
    hashes: int = 0
    files: dict[str, str] = field(default_factory=dict)  # path in the feed dir -> sha256
    etag: str = ""
    last_modified: str = ""
    manifest: Manifest | None = None  # a newer signed manifest, accepted if all goes well
    manifest_etag: str = ""


class Updater:
    """One ``vigild update`` run over the configured feeds."""

    def __init__(
        self, cfg: Config, emit: Emit = journal_sink, say: Say = print,
        clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.cfg = cfg
        self.emit = emit
        self.say = say
        self.clock = clock  # wall time: manifests expire by it
        self.state = generations.read_state(cfg)
        self.before: dict[str, dict[str, object]] = {}  # the live manifest's feeds, at start

    # ------------------------------------------------------------- fetching

    def _limits(self, feed: FeedConfig) -> Limits:
        u = self.cfg.update
        return Limits(u.timeout_ms / 1000, u.max_download, feed.ca_file)

    def _download(self, feed: FeedConfig, r: FeedResult) -> bytes | None:
        """The verified new bytes of ``feed``, or None when they did not change."""
        s = self.state.get(feed.name, FeedState())
        if feed.insecure:
            got = fetch(feed.url, self._limits(feed), s.etag, s.last_modified)
            if got.data is None or got.sha256 == s.sha256:
                return None
            r.etag, r.last_modified, r.sha256, r.key = (
                got.etag, got.last_modified, got.sha256, "insecure"
            )  # fmt: skip
            return _not_empty(got.data)
        m = self._manifest(feed, s, r)
        if m is None or m.sha256 == s.sha256:
            return None  # the same manifest, or a newer one for the same content
        got = fetch(feed.url, self._limits(feed))
        if got.sha256 != m.sha256:
            raise ManifestError(
                f"{feed.url}: the download (sha256 {got.sha256}) is not the content the "
                f"signed manifest names (sha256 {m.sha256})"
            )
        r.etag, r.last_modified, r.sha256 = got.etag, got.last_modified, got.sha256
        return _not_empty(got.data or b"")

    def _manifest(self, feed: FeedConfig, s: FeedState, r: FeedResult) -> Manifest | None:
        """The feed's signed manifest when it is newer than the one accepted (also
        set as ``r.manifest``); None when it is that one. ManifestError when it
        is older, reuses a serial, has expired, or the content it vouches for
        has gone stale."""
        limits = replace(self._limits(feed), max_bytes=feedmanifest.MAX_BYTES)
        now = self.clock()
        got = fetch(feed.manifest_url, limits, s.manifest_etag)
        if got.data is None:  # not modified: the accepted manifest, which may have expired
            if now >= s.expires_at:
                raise ManifestError(feedmanifest.stale_reason(s.serial, s.signed_at, s.expires_at))
            return None
        sig = fetch(feed.manifest_url + ".sig", limits)
        r.key = verify(got.data, sig.data or b"", feed.keys)
        m = feedmanifest.parse(got.data)
        accepted = s.serial if s.manifest_sha256 else -1
        if feedmanifest.judge(m, accepted, s.manifest_sha256, now) is Judgement.SAME:
            return None
        r.manifest, r.manifest_etag = m, got.etag
        return m

    # ------------------------------------------------------------- building

    def _unpack(self, feed: FeedConfig, data: bytes, into: Path, r: FeedResult) -> None:
        """Write ``feed``'s content into ``into`` (its directory in the new generation)."""
        limit = self.cfg.update.max_unpacked
        if feed.kind is FeedKind.YARA:
            feedcontent.unpack(data, into / "rules", limit)
            r.rules = self._check_rules(into / "rules")
        else:
            raw = into / "raw"
            name = os.path.basename(urllib.parse.urlparse(feed.url).path) or "feed.txt"
            feedcontent.unpack(data, raw, limit, name)
            feedcontent.normalise_hashes(raw, into / "hashes" / "feed.hsb", feed.name)
            shutil.rmtree(raw)
            r.hashes = self._check_hashes(into / "hashes")
        r.files = _digests(into)

    def _check_rules(self, rules_dir: Path) -> int:
        """Compile a feed's rules alone, strictly, as the daemon would load them."""
        own = RulesConfig(
            dirs=(str(rules_dir.resolve()),), local_dirs=(), engine=self.cfg.rules.engine,
            strict=True, externals=self.cfg.rules.externals,
        )  # fmt: skip
        return ruleset.load(own, self.cfg.scan.timeout, save=False).count

    def _check_hashes(self, hash_dir: Path) -> int:
        db = ruleset.hash_database([str(hash_dir)], None)
        if db is None:
            raise feedcontent.ContentError("the hash lists hold no SHA-256 or MD5 entries")
        info = db.info()
        return int(info.sha256_entries + info.md5_entries)

    def _build(self, number: int, results: list[FeedResult], downloads: dict[str, bytes]) -> None:
        """Generation ``number``: new content for ``downloads``, the live content for the rest."""
        base = generations.path_of(self.cfg, number)
        base.mkdir(parents=True)
        live = generations.live(self.cfg)
        for r in results:
            into = base / r.feed.name
            data = downloads.get(r.feed.name)
            if data is not None:
                try:
                    self._unpack(r.feed, data, into, r)
                    r.new = True
                    continue
                except _FAILURES as e:
                    r.error = _one_line(e)
                    shutil.rmtree(into, ignore_errors=True)
            if live is not None and (generations.path_of(self.cfg, live) / r.feed.name).is_dir():
                shutil.copytree(
                    generations.path_of(self.cfg, live) / r.feed.name, into, copy_function=os.link
                )

    def _check_whole(self, number: int) -> ruleset.RuleSet:
        """Load the new generation beside the configured rules exactly as the daemon will."""
        rules = generations.with_feeds(self.cfg, number)
        return ruleset.load(rules, self.cfg.scan.timeout)

    # --------------------------------------------------------------- the run

    def run(self, check_only: bool = False) -> int:
        """Update every feed; 0 when all are current, 2 when any failed."""
        if not self.cfg.update.feeds:
            self.say("no [[update.feed]] configured: nothing to update")
            return 0
        with generations.locked(self.cfg):
            return self._run_locked(check_only)

    def _run_locked(self, check_only: bool) -> int:
        results = [FeedResult(f) for f in self.cfg.update.feeds]
        self.before = generations.manifest(self.cfg, generations.live(self.cfg))["feeds"]
        downloads: dict[str, bytes] = {}
        now = self.clock()
        for r in results:
            try:
                data = self._download(r.feed, r)
            except _FAILURES as e:
                r.error = _one_line(e)
                continue
            if data is None:
                self.say(f"{r.feed.name}: unchanged{_fresh(r.manifest)}")
                if not check_only:
                    self._remember(r.feed.name, checked_at=now, last_error="")
                    self._remember_manifest(r)
            else:
                downloads[r.feed.name] = data
        number = None
        if downloads:
            number = max(generations.numbers(self.cfg), default=0) + 1
            try:
                self._build(number, results, downloads)
                if any(r.new for r in results):
                    self._check_whole(number)
            except _FAILURES as e:
                shutil.rmtree(generations.path_of(self.cfg, number), ignore_errors=True)
                for r in results:
                    if r.new:
                        r.new, r.error = False, f"the new generation does not load: {_one_line(e)}"
                number = None
        changed = [r for r in results if r.new]
        if check_only:
            return self._report_check(results, number)
        if number is not None and changed:
            try:
                self._go_live(number, results)
            except UpdateError as e:
                shutil.rmtree(generations.path_of(self.cfg, number), ignore_errors=True)
                for r in changed:
                    r.new, r.error = False, str(e)
        elif number is not None:
            shutil.rmtree(generations.path_of(self.cfg, number), ignore_errors=True)
        return self._record(results, now)

    def _go_live(self, number: int, results: list[FeedResult]) -> None:
        """Write the manifest, swap ``current``, and have the daemon reload (or swap back)."""
        old = generations.live(self.cfg)
        before = self.before
        feeds = {}
        for r in results:
            if r.new:
                feeds[r.feed.name] = _manifest_entry(r)
            elif r.feed.name in before:
                feeds[r.feed.name] = before[r.feed.name]
        _write_json(generations.path_of(self.cfg, number) / "manifest.json", {"feeds": feeds})
        generations.swap(self.cfg, number)
        problem = self._reload()
        if problem:
            if old is not None:
                generations.swap(self.cfg, old)
            raise UpdateError(f"the daemon refused the new content, the old stays live: {problem}")

    def _reload(self) -> str:
        """Ask the daemon to reload; the reason it refused, "" when it took it or is not running."""
        try:
            reply = control.request(self.cfg.daemon.runtime_dir, "reload")
        except control.NotRunning:
            self.say("vigild is not running: the new content loads when it starts")
            return ""
        except control.ControlError as e:
            return str(e)
        return "" if reply.get("reloaded") else str(reply.get("reason") or "reload failed")

    # ------------------------------------------------------------ the record

    def _remember(self, name: str, **changes: object) -> None:
        self.state[name] = replace(self.state.get(name, FeedState()), **changes)  # type: ignore[arg-type]

    def _remember_manifest(self, r: FeedResult) -> None:
        """Raise the feed's accepted serial: only once its content is live or unchanged."""
        m = r.manifest
        if m is not None:
            self._remember(
                r.feed.name, serial=m.serial, signed_at=m.signed, expires_at=m.expires,
                manifest_sha256=m.digest, manifest_etag=r.manifest_etag,
            )  # fmt: skip

    def _record(self, results: list[FeedResult], now: float) -> int:
        """One journal entry per feed that changed or failed; the state file; pruning."""
        before = self.before
        live = generations.live(self.cfg)
        failed = 0
        for r in results:
            if r.new:
                old = before.get(r.feed.name, {})
                self.emit(updated_alert(r, old, live))
                self.say(f"{r.feed.name}: updated, generation {live}: {_changes(r, old)}")
                self._remember(
                    r.feed.name, etag=r.etag, last_modified=r.last_modified, checked_at=now,
                    changed_at=now, sha256=r.sha256, key=r.key, last_error="", error_at=0.0,
                )  # fmt: skip
                self._remember_manifest(r)
            elif r.error:
                failed += 1
                self.emit(failed_alert(r))
                self.say(f"{r.feed.name}: FAILED, live content untouched: {r.error}")
                self._remember(r.feed.name, last_error=r.error, error_at=now)
        generations.write_state(self.cfg, self.state)
        for n in generations.prune(self.cfg, self.cfg.update.keep):
            self.say(f"generation {n} removed (update.keep = {self.cfg.update.keep})")
        return 2 if failed else 0

    def _report_check(self, results: list[FeedResult], number: int | None) -> int:
        """--check: say what would change, then remove the generation built for it."""
        for r in results:
            if r.new:
                old = self.before.get(r.feed.name, {})
                self.say(f"{r.feed.name}: would update: {_changes(r, old)}")
            elif r.error:
                self.say(f"{r.feed.name}: would fail: {r.error}")
        if number is not None:
            shutil.rmtree(generations.path_of(self.cfg, number), ignore_errors=True)
        return 2 if any(r.error for r in results) else 0

    # -------------------------------------------------------------- rollback

    def rollback(self) -> int:
        """Make the generation before the live one live again, in one swap."""
        with generations.locked(self.cfg):
            live = generations.live(self.cfg)
            earlier = [n for n in generations.numbers(self.cfg) if live is None or n < live]
            if live is None or not earlier:
                raise UpdateError("no earlier feed generation to roll back to")
            to = earlier[-1]
            generations.swap(self.cfg, to)
            problem = self._reload()
            if problem:
                generations.swap(self.cfg, live)
                raise UpdateError(
                    f"the daemon refused generation {to}, {live} stays live: {problem}"
                )
        names = [f.name for f in self.cfg.update.feeds]
        msg = f"feed content rolled back: generation {live} -> {to}"
        fields: dict[str, str | tuple[str, ...]] = {
            Field.FEED: tuple(names), Field.FEED_GENERATION: str(to),
        }  # fmt: skip
        self.emit(Alert(Kind.FEED_ROLLED_BACK, msg, fields))
        self.say(msg)
        return 0


# ------------------------------------------------------------------ wording


def _not_empty(data: bytes) -> bytes:
    if not data:
        raise feedcontent.ContentError("the download is empty")
    return data


def _fresh(m: Manifest | None) -> str:
    """', manifest serial N good until T' for a newer manifest of the same content."""
    if m is None:
        return ""
    return f", manifest serial {m.serial} good until {feedmanifest.stamp(m.expires)}"


def _digests(d: Path) -> dict[str, str]:
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


def _manifest_entry(r: FeedResult) -> dict[str, object]:
    return {
        "url": r.feed.url, "sha256": r.sha256, "key": r.key, "rules": r.rules,
        "hashes": r.hashes, "files": r.files, "insecure": r.feed.insecure,
        "serial": r.manifest.serial if r.manifest else None,
    }  # fmt: skip


def _changes(r: FeedResult, old: dict[str, object]) -> str:
    """'rule files: 2 added, 1 changed, 0 removed; rules 3 -> 5; hashes 0 -> 0'."""
    was = old.get("files")
    before: dict[str, str] = was if isinstance(was, dict) else {}
    added = sum(1 for f in r.files if f not in before)
    changed = sum(1 for f, h in r.files.items() if f in before and before[f] != h)
    removed = sum(1 for f in before if f not in r.files)
    return (
        f"files: {added} added, {changed} changed, {removed} removed; "
        f"rules {old.get('rules', 0)} -> {r.rules}; hashes {old.get('hashes', 0)} -> {r.hashes}"
    )


def _common_fields(r: FeedResult) -> dict[str, str | tuple[str, ...]]:
    return {
        Field.FEED: r.feed.name,
        Field.FEED_URL: r.feed.url,
        Field.FEED_INSECURE: "yes" if r.feed.insecure else "no",
    }


def updated_alert(r: FeedResult, old: dict[str, object], number: int | None) -> Alert:
    """The journal entry for a feed whose new content went live."""
    changes = _changes(r, old)
    insecure = " INSECURE (unsigned, update.feed insecure = true)" if r.feed.insecure else ""
    msg = f"feed {r.feed.name} updated to generation {number}{insecure}: {changes}"
    fields = {
        **_common_fields(r),
        Field.FEED_KEY: r.key,
        Field.OLD_CONTENT: str(old.get("sha256", "")),
        Field.NEW_CONTENT: r.sha256,
        Field.RULES: str(r.rules),
        Field.HASH_ENTRIES: str(r.hashes),
        Field.CHANGES: changes,
        Field.FEED_GENERATION: str(number),
    }
    if r.manifest is not None:
        fields[Field.FEED_SERIAL] = str(r.manifest.serial)
        fields[Field.FEED_EXPIRES] = feedmanifest.stamp(r.manifest.expires)
    return Alert(Kind.FEED_UPDATED, msg, fields, 4 if r.feed.insecure else None)


def failed_alert(r: FeedResult) -> Alert:
    """The journal entry for a feed that could not be updated (nothing live changed)."""
    insecure = " (insecure feed)" if r.feed.insecure else ""
    msg = f"feed {r.feed.name}{insecure}: update refused, live content untouched: {r.error}"
    return Alert(Kind.FEED_UPDATE_FAILED, msg, {**_common_fields(r), Field.ERROR: r.error})


def _write_json(path: Path, data: object) -> None:
    import json

    path.write_text(json.dumps(data, indent=1))


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename:
        return f"{e.filename}: {e.strerror}"
    return str(e)
