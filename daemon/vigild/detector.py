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
"""

from __future__ import annotations

import mmap
import os
import threading
from dataclasses import dataclass

from vigild import native
from vigild.config import Oversize, ScanConfig
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

    def __init__(self, ruleset: RuleSet, scan: ScanConfig, clean: native.Cache | None) -> None:
        """``clean``: the clean-content cache, or None where a verdict may not be
        remembered by content (vigild.snapshot decides)."""
        self.ruleset = ruleset
        self.scan = scan
        self.clean = clean
        self._local = threading.local()
        self._tail = min(scan.oversize_tail, scan.max_file_size)

    def _buffer(self) -> mmap.mmap:
        buf = getattr(self._local, "buf", None)
        if buf is None:
            size = self.scan.max_file_size + self._tail
            buf = self._local.buf = mmap.mmap(-1, size)
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
                buf,
                limit=self.scan.max_file_size,
                tail=self._tail,
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
        if buf is not None and pre.head_len + pre.tail_len > _KEEP_RESIDENT:
            buf.madvise(mmap.MADV_DONTNEED, 0, len(buf))
        matches = scan.matches if scan else ()
        digest = pre.sha256.hex() if pre.hashed else ""
        return Finding(path, pre.size, digest, verdict, matches, scan is not None)

    def _scan(self, pre: native.PrefilterResult, buf: mmap.mmap | None, path: str) -> ScanResult:
        """Run the rules over the bytes the prefilter left in ``buf``: the whole
        file, or an over-size file's head and tail, each scanned on its own."""
        limit = self.scan.max_file_size
        if buf is None or (pre.oversize and self.scan.oversize is Oversize.SKIP):
            return ScanResult(ScanStatus.SKIPPED, error=f"{pre.size} bytes > max_file_size {limit}")
        externals = _externals(path, self.ruleset.externals) if self.ruleset.externals else {}
        spans = [(0, pre.head_len)] + ([(limit, pre.tail_len)] if pre.tail_len else [])
        matches: list[RuleMatch] = []
        for start, length in spans:
            view = memoryview(buf)[start : start + length]
            try:
                matches += self.ruleset.rules.match(view, externals)
            except ScanTimeout:
                return ScanResult(
                    ScanStatus.TIMEOUT, error=f"scan timed out after {self.scan.timeout} s"
                )
            except ScanFailed as e:
                return ScanResult(ScanStatus.ERROR, error=f"scan failed: {e}")
            finally:
                view.release()
        unique = tuple({m.rule: m for m in matches}.values())
        status = ScanStatus.MATCH if unique else ScanStatus.CLEAN
        return ScanResult(status, unique, truncated=pre.oversize)
