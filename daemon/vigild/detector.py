"""Examine one open file: prefilter, then YARA when needed, then the verdict.

The caller owns the fd (from the directory walk, or from fanotify) and
closes it; nothing here opens a path. The file is read once, by the C
prefilter, into this thread's scan buffer, and YARA scans that buffer: the
bytes scanned are the bytes hashed, so a file rewritten mid-scan cannot
get its new content remembered as clean.

A scan buffer is an anonymous mapping of max_file_size bytes per thread:
address space only, until a file of that size is read into it.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import threading
from dataclasses import dataclass

from vigild import native, unpack
from vigild.config import ArchiveConfig, Oversize, ScanConfig
from vigild.ruleset import RuleSet
from vigild.scanner import RuleMatch, ScanFailed, ScanTimeout
from vigild.verdict import Policy, ScanResult, ScanStatus, Verdict, decide

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


def _externals(path: str, wanted: tuple[str, ...]) -> dict[str, str]:
    """YARA's external variables for ``path`` (those some rule uses)."""
    name = os.path.basename(path)
    values = {
        "filename": name,
        "filepath": path,
        "extension": os.path.splitext(name)[1].lower(),
        "filetype": "",
    }
    return {k: values[k] for k in wanted}


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

    def _buffer(self) -> mmap.mmap:
        buf = getattr(self._local, "buf", None)
        if buf is None:
            buf = self._local.buf = mmap.mmap(-1, self.scan.max_file_size)
        return buf

    def examine(self, fd: int, path: str, policy: Policy, size: int | None = None) -> Finding:
        """The verdict for the regular file open at ``fd`` (shown as ``path``).

        ``size`` saves an fstat when the caller has one.
        """
        if size is None:
            size = os.fstat(fd).st_size
        skip = size > self.scan.max_file_size and self.scan.oversize is Oversize.SKIP
        buf = None if skip else self._buffer()
        try:
            pre = native.prefilter_fd(
                self.ruleset.hashdb,
                self.clean,
                self.ruleset.generation,
                fd,
                buf,  # type: ignore[arg-type]
            )
        except OSError as e:
            failed = ScanResult(ScanStatus.ERROR, error=f"read error: {e.strerror}")
            return Finding(path, size, "", decide(None, failed, policy))
        scan = None
        if pre.verdict is native.PreVerdict.UNKNOWN:
            scan = self._scan(pre, buf, path)
        verdict = decide(pre, scan, policy)
        if verdict.cacheable_clean and self.clean is not None:
            native.clean_put(self.clean, pre.sha256, self.ruleset.generation)
        if buf is not None and pre.size > _KEEP_RESIDENT:
            buf.madvise(mmap.MADV_DONTNEED, 0, min(pre.size, len(buf)))
        matches = scan.matches if scan else ()
        return Finding(path, pre.size, pre.sha256.hex(), verdict, matches, scan is not None)

    def _scan(self, pre: native.PrefilterResult, buf: mmap.mmap | None, path: str) -> ScanResult:
        """Run the rules over the bytes the prefilter left in ``buf``."""
        if buf is None:
            limit = self.scan.max_file_size
            return ScanResult(ScanStatus.SKIPPED, error=f"{pre.size} bytes > max_file_size {limit}")
        n = min(pre.size, len(buf))
        externals = _externals(path, self.ruleset.externals) if self.ruleset.externals else {}
        view = memoryview(buf)[:n]
        try:
            matches = self.ruleset.rules.match(view, externals)
            if not matches and self.archive is not None and unpack.kind(view) is not None:
                inner = self._members(view, path)
                if inner is not None:
                    return inner
        except ScanTimeout:
            return ScanResult(
                ScanStatus.TIMEOUT, error=f"scan timed out after {self.scan.timeout} s"
            )
        except ScanFailed as e:
            return ScanResult(ScanStatus.ERROR, error=f"scan failed: {e}")
        finally:
            view.release()
        status = ScanStatus.MATCH if matches else ScanStatus.CLEAN
        return ScanResult(status, tuple(matches), truncated=pre.size > n)

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
        )

    def _members(self, data: memoryview, path: str) -> ScanResult | None:
        """The first detection inside the archive ``data``, or a clean result that
        says which limit stopped the walk; None when it was not one after all."""
        walk, stops = unpack.members(data, self._limits(), os.path.basename(path))
        failed = ""
        for m in walk:
            listed = self._listed(m.data)
            if listed:
                return ScanResult(ScanStatus.MATCH, member=m.path, member_hash=listed)
            externals = (
                _externals(f"{path}!{m.path}", self.ruleset.externals)
                if self.ruleset.externals
                else {}
            )
            try:
                matches = self.ruleset.rules.match(memoryview(m.data), externals)
            except (ScanTimeout, ScanFailed) as e:
                failed = failed or f"{m.path}: {e}"
                continue
            if matches:
                return ScanResult(ScanStatus.MATCH, tuple(matches), member=m.path)
        if stops and stops[0].limit != unpack.MALFORMED:
            return ScanResult(ScanStatus.CLEAN, error=stops[0].detail, unpack_limit=stops[0].limit)
        if failed:
            return ScanResult(ScanStatus.ERROR, error=f"scan failed inside the archive: {failed}")
        return None

    def _listed(self, data: bytes) -> str | None:
        """The hash list's name for a member's bytes, if listed."""
        db = self.ruleset.hashdb
        if db is None:
            return None
        name = db.find_sha256(hashlib.sha256(data).digest())
        if name is None and db.info().md5_entries and db.size_listed(len(data)):
            name = db.find_md5(hashlib.md5(data).digest(), len(data))
        return name
