"""Examine one open file: prefilter, then YARA when needed, then the verdict.

The caller owns the fd (from the directory walk, or from fanotify) and
closes it; nothing here opens a path. The file is read once, by the C
prefilter, into this thread's scan buffer, and YARA scans that buffer: the
bytes scanned are the bytes hashed, so a file rewritten mid-scan cannot
get its new content remembered as clean.

A scan buffer is an anonymous mapping of max_file_size (+ oversize_tail)
bytes per thread: address space only, until a file of that size is read
into it. A file over max_file_size costs no more than the limit: it is not
hashed, nothing past the limit is read (holes are not read at all), and
with oversize = "truncate" its head and its last oversize_tail bytes are
scanned, each on its own (a match never spans the gap).

Two rule sets may run (vigild.ruleset): the content rules, skipped when
the clean-content cache already knows these bytes, and the rules that
read the file's name, path or owner, run on every scan. The LOKI/THOR
external variables are computed here, the same for on-access and
on-demand scans, and only those some compiled rule reads.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import pwd
import threading
from dataclasses import dataclass

from vigild import filetype, native, unpack
from vigild.config import ArchiveConfig, Oversize, ScanConfig
from vigild.ruleset import RuleSet
from vigild.scanner import (
    CONTENT_EXTERNALS,
    CompiledRules,
    ExternalValue,
    RuleMatch,
    ScanFailed,
    ScanTimeout,
)
from vigild.verdict import Action, Policy, Reason, ScanResult, ScanStatus, Verdict, decide

# Pages above this are handed back to the kernel after a scan.
_KEEP_RESIDENT = 8 << 20


@dataclass(frozen=True)
class Finding:
    """What vigild concluded about one file."""

    path: str
    size: int
    sha256: str
    verdict: Verdict
    matches: tuple[RuleMatch, ...] = ()
    scanned: bool = False  # YARA ran (not answered by a hash)
    failed_rules: tuple[str, ...] = ()  # rule files whose engine error was isolated
    # the archive limit that stopped unpacking (unpack.LIMITS), unless a member's scan failed too
    unpack_limit: str = ""


def _owner(fd: int) -> str:
    """The file owner's user name, as LOKI sets ``owner`` (the uid when it has none)."""
    uid = os.fstat(fd).st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def externals(
    path: str, fd: int, data: memoryview, wanted: tuple[str, ...]
) -> dict[str, ExternalValue]:
    """The built-in externals in ``wanted`` for the file ``path`` open at ``fd``.

    ``filepath`` is absolute whatever the scan was given, ``extension`` is
    lower-case with its dot (LOKI's values); ``md5`` costs a digest of the
    bytes, so it is only computed when some rule reads it.
    """
    if not wanted:
        return {}  # the common case: no rule reads an external
    name = os.path.basename(path)
    compute = {
        "filename": lambda: name,
        "filepath": lambda: os.path.abspath(path),
        "extension": lambda: os.path.splitext(name)[1].lower(),
        "owner": lambda: _owner(fd),
        "filetype": lambda: filetype.of(data),
        "md5": lambda: hashlib.md5(data, usedforsecurity=False).hexdigest(),
    }
    return {k: compute[k]() for k in wanted}


class Detector:
    """Thread-safe; one per snapshot. Call ``examine`` from any thread."""

    def __init__(
        self,
        ruleset: RuleSet,
        scan: ScanConfig,
        clean: native.Cache | None,
        archive: ArchiveConfig | None = None,
    ) -> None:
        """``clean``: the clean-content cache, or None where a verdict may not be
        remembered by content (vigild.snapshot decides); ``archive``: how to look
        inside archives (None: not at all)."""
        self.ruleset = ruleset
        self.scan = scan
        self.clean = clean
        self.archive = archive if archive is not None and archive.scan else None
        self._local = threading.local()
        self._tail = min(scan.oversize_tail, scan.max_file_size)

    def _buffer(self) -> mmap.mmap:
        buf = getattr(self._local, "buf", None)
        if buf is None:
            size = self.scan.max_file_size + self._tail
            buf = self._local.buf = mmap.mmap(-1, size)
        return buf

    def _prefilter(
        self,
        fd: int,
        path: str,
        policy: Policy,
        size: int | None,
        db: native.HashDb | None,
        clean: native.Cache | None,
        generation: int,
    ) -> tuple[native.PrefilterResult, mmap.mmap | None] | Finding:
        """The file read (and hashed, and looked up in ``db`` and ``clean``) once
        through ``fd``: the result and the buffer holding its bytes (None for a
        file skipped as over-size), or the Finding of a read error.

        ``size`` saves an fstat when the caller has one; a size that would
        skip the file is looked at again (a skip is decided on the file as it
        is now, never on what it was when its event was read).
        """
        if size is None or size > self.scan.max_file_size:
            size = os.fstat(fd).st_size
        skip = size > self.scan.max_file_size and self.scan.oversize is Oversize.SKIP
        buf = None if skip else self._buffer()
        try:
            pre = native.prefilter_fd(
                db, clean, generation, fd, buf, limit=self.scan.max_file_size, tail=self._tail
            )
        except OSError as e:
            failed = ScanResult(ScanStatus.ERROR, error=f"read error: {e.strerror}")
            return Finding(path, size, "", decide(None, failed, policy))
        return pre, buf

    def examine(self, fd: int, path: str, policy: Policy, size: int | None = None) -> Finding:
        """The verdict for the regular file open at ``fd`` (shown as ``path``);
        ``size``: see ``_prefilter``."""
        rs = self.ruleset
        read = self._prefilter(fd, path, policy, size, rs.hashdb, self.clean, rs.generation)
        if isinstance(read, Finding):
            return read
        pre, buf = read
        if self._allowed(pre, buf):
            detail = "listed in an allow-list (.fp/.sfp)"
            return Finding(
                path, pre.size, pre.sha256.hex(), Verdict(Action.ALLOW, Reason.CLEAN, detail)
            )
        scan = None
        content_clean = False
        if pre.verdict is native.PreVerdict.UNKNOWN or (
            pre.verdict is native.PreVerdict.CLEAN_CACHED and self.ruleset.path_rules
        ):
            scan, content_clean = self._scan(pre, buf, path, fd)
        verdict = decide(pre, scan, policy)
        if content_clean and self.clean is not None:
            native.clean_put(self.clean, pre.sha256, self.ruleset.generation)
        if buf is not None and pre.head_len + pre.tail_len > _KEEP_RESIDENT:
            buf.madvise(mmap.MADV_DONTNEED, 0, len(buf))
        matches = scan.matches if scan else ()
        failures = scan.failed_rules if scan else ()
        digest = pre.sha256.hex() if pre.hashed else ""
        # how unpacking ended, when the same bytes end it the same way again
        limit = scan.unpack_limit if scan and not scan.member_failed else ""
        return Finding(path, pre.size, digest, verdict, matches, scan is not None, failures, limit)

    def examine_unlisted(self, fd: int, path: str, policy: Policy, feed_prefix: str) -> Finding:
        """The verdict without the SHA-256 look-up: the rules, and the MD5 and SHA-1
        entries whose names do not start with ``feed_prefix``. What the admin's
        own content says of a file that a feed's hash lists (vigild.protect)."""
        read = self._prefilter(fd, path, policy, None, None, None, 0)
        if isinstance(read, Finding):
            return read
        pre, buf = read
        listed = self._listed_beside(pre, buf, feed_prefix)
        if listed is not None:
            known = ScanResult(ScanStatus.MATCH, member_hash=listed)
            return Finding(path, pre.size, pre.sha256.hex(), decide(pre, known, policy))
        scan, _ = self._scan(pre, buf, path, fd)
        return Finding(path, pre.size, pre.sha256.hex(), decide(pre, scan, policy),
                       scan.matches, True, scan.failed_rules)  # fmt: skip

    def _listed_beside(
        self, pre: native.PrefilterResult, buf: mmap.mmap | None, feed_prefix: str
    ) -> str | None:
        """A name for the file's MD5 or SHA-1 that is not feed content, if listed."""
        db = self.ruleset.hashdb
        if db is None or buf is None or not pre.hashed or pre.oversize:
            return None
        with memoryview(buf)[: pre.size] as view:
            names = (
                db.find_md5(hashlib.md5(view, usedforsecurity=False).digest(), pre.size),
                db.find_sha1(hashlib.sha1(view, usedforsecurity=False).digest(), pre.size),
            )
        return next((n for n in names if n and not n.startswith(feed_prefix)), None)

    def empty_is_clean(self) -> bool:
        """Whether every empty file is clean under these rules, whatever its name:
        no rule reads the name, path or owner, the content rules match nothing
        in zero bytes, and no hash list names the empty content."""
        rs = self.ruleset
        if rs.path_rules is not None or rs.rules is None:
            return False
        empty = memoryview(b"")
        wanted = tuple(k for k in rs.externals if k in CONTENT_EXTERNALS)
        if len(wanted) != len(rs.externals):
            return False  # a content rule reads something the bytes do not give
        try:
            found = rs.rules.match(empty, {**rs.defaults, **externals("", -1, empty, wanted)})
        except (ScanTimeout, ScanFailed):
            return False
        return not found and self._listed(b"") is None

    def _allowed(self, pre: native.PrefilterResult, buf: mmap.mmap | None) -> bool:
        """Whether the file is on a ClamAV allow-list: then nothing reports it."""
        allow = self.ruleset.allow
        if not len(allow) or not pre.hashed:
            return False
        md5, sha1 = pre.md5, pre.sha1
        if buf is not None and md5 is None and allow.needs_md5(pre.size):
            with memoryview(buf)[: min(pre.size, len(buf))] as view:
                md5 = hashlib.md5(view, usedforsecurity=False).digest()
        if buf is not None and sha1 is None and allow.needs_sha1(pre.size):
            with memoryview(buf)[: min(pre.size, len(buf))] as view:
                sha1 = hashlib.sha1(view, usedforsecurity=False).digest()
        return allow.listed(pre.sha256, md5, pre.size, sha1)

    def _scan(
        self, pre: native.PrefilterResult, buf: mmap.mmap | None, path: str, fd: int
    ) -> tuple[ScanResult, bool]:
        """Run the rules over the bytes the prefilter left in ``buf``: the whole
        file, or an over-size file's head and tail, each scanned on its own.

        Also says whether the content rules found these bytes clean, whole
        (they may then be remembered by content whatever the path rules say).
        """
        limit = self.scan.max_file_size
        if buf is None or (pre.oversize and self.scan.oversize is Oversize.SKIP):
            skipped = ScanResult(
                ScanStatus.SKIPPED, error=f"{pre.size} bytes > max_file_size {limit}"
            )
            return skipped, False
        rs = self.ruleset
        sets: list[tuple[CompiledRules, bool]] = []
        if rs.rules is not None and pre.verdict is native.PreVerdict.UNKNOWN:
            sets.append((rs.rules, False))
        if rs.path_rules is not None:
            sets.append((rs.path_rules, True))
        spans = [(0, pre.head_len)] + ([(limit, pre.tail_len)] if pre.tail_len else [])
        matches: list[RuleMatch] = []
        by_content = False
        # the file's externals, once (its type and md5 from the bytes read first)
        with memoryview(buf)[: pre.head_len] as head:
            values = {**rs.defaults, **externals(path, fd, head, rs.externals)}
        for start, length in spans:
            view = memoryview(buf)[start : start + length]
            try:
                for rules, by_path in sets:
                    found = rules.match(view, values)
                    matches += found
                    by_content = by_content or (bool(found) and not by_path)
                if not matches and self._unpacks(pre, view):
                    if pre.oversize:  # an archive past the limit: its members unseen
                        why = f"an archive over max_file_size ({limit} bytes): members not scanned"
                        return ScanResult(
                            ScanStatus.CLEAN, error=why, unpack_limit="oversize"
                        ), False
                    inner = self._members(view, path, fd)
                    if inner is not None:
                        return inner, False
            except ScanTimeout:
                return ScanResult(
                    ScanStatus.TIMEOUT, error=f"scan timed out after {self.scan.timeout} s"
                ), False
            except ScanFailed as e:
                return self._isolated(buf, start, length, values, e), False
            finally:
                view.release()
        unique = tuple({(m.namespace, m.rule): m for m in matches}.values())
        status = ScanStatus.MATCH if unique else ScanStatus.CLEAN
        result = ScanResult(status, unique, pre.oversize, path_dependent=not by_content)
        content_clean = (
            not pre.oversize and not by_content and rs.rules is not None
            and pre.verdict is native.PreVerdict.UNKNOWN
        )  # fmt: skip
        return result, content_clean

    def _isolated(
        self,
        buf: mmap.mmap,
        start: int,
        length: int,
        values: dict[str, ExternalValue],
        e: ScanFailed,
    ) -> ScanResult:
        """A whole-set scan failed: scan again file by file, so that every rule
        that can still match does; the failing files are named in the result."""
        rs = self.ruleset
        if rs.per_file is None:
            return ScanResult(ScanStatus.ERROR, error=f"scan failed: {e}")
        with memoryview(buf)[start : start + length] as view:
            matches, failures = rs.per_file.match(view, values)
        failed = tuple(f.describe() for f in failures)
        if matches:
            by_path = set(rs.path_files)
            only_path = all(m.namespace in by_path for m in matches)
            return ScanResult(
                ScanStatus.MATCH, tuple(matches), path_dependent=only_path, failed_rules=failed
            )
        why = "; ".join(failed) or str(e)
        return ScanResult(ScanStatus.ERROR, error=f"scan failed: {why}", failed_rules=failed)

    def _limits(self) -> unpack.Limits:
        a = self.archive
        assert a is not None
        return unpack.Limits(
            depth=a.max_depth,
            members=a.max_members,
            unpacked=a.max_unpacked,
            ratio=a.max_ratio,
            seconds=a.timeout_ms / 1000,
            member_size=self.scan.max_file_size,
            held=a.max_held,
        )

    def _unpacks(self, pre: native.PrefilterResult, view: memoryview) -> bool:
        """Whether to look inside: archives on, the content not known clean, an archive."""
        return (
            self.archive is not None
            and pre.verdict is native.PreVerdict.UNKNOWN
            and unpack.kind(view) is not None
        )

    def _members(self, data: memoryview, path: str, fd: int) -> ScanResult | None:
        """The first detection inside the archive ``data``, or a clean result that
        says which limit stopped the walk; None when it was not one after all."""
        walk, stops = unpack.members(data, self._limits(), os.path.basename(path))
        failed = ""
        for m in walk:
            listed = self._listed(m.data)
            if listed:
                return ScanResult(ScanStatus.MATCH, member=m.path, member_hash=listed)
            try:
                matches = self._match_member(f"{path}!{m.path}", fd, m.data)
            except (ScanTimeout, ScanFailed) as e:
                failed = failed or f"{m.path}: {e}"
                continue
            if matches:
                return ScanResult(ScanStatus.MATCH, tuple(matches), member=m.path)
        if stops:  # not unpacked whole: no clean verdict, whatever the rules said
            stop = stops[0]
            return ScanResult(
                ScanStatus.CLEAN,
                error=stop.detail,
                unpack_limit=stop.limit,
                member_failed=bool(failed),
            )
        if failed:
            return ScanResult(ScanStatus.ERROR, error=f"scan failed inside the archive: {failed}")
        return None

    def _listed(self, data: unpack.Buffer) -> str | None:
        """The hash list's name for a member's bytes, if listed."""
        db = self.ruleset.hashdb
        if db is None:
            return None
        size = len(data)
        name = db.find_sha256(hashlib.sha256(data).digest())
        if name is None and db.needs_md5(size):
            name = db.find_md5(hashlib.md5(data, usedforsecurity=False).digest(), size)
        if name is None and db.needs_sha1(size):
            name = db.find_sha1(hashlib.sha1(data, usedforsecurity=False).digest(), size)
        return name

    def _match_member(self, path: str, fd: int, data: unpack.Buffer) -> list[RuleMatch]:
        """Both rule sets over one member (its name is ``container!member``)."""
        rs = self.ruleset
        view = memoryview(data)
        values = {**rs.defaults, **externals(path, fd, view, rs.externals)}
        found: list[RuleMatch] = []
        for rules in (rs.rules, rs.path_rules):
            if rules is not None:
                found += rules.match(view, values)
        return found
