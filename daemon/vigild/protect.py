"""Feed content cannot deny the files a host needs to run and to be repaired.

The one place that decides it: ``guard`` runs after the verdict, before the
answer. A detection whose every match is feed content (a rule file under
the generations directory, or a hash entry named ``feed/...``) on a
protected file is turned into an allow with reason ``protected``; the
reporter then raises a critical alert (Kind.PROTECTED_ALLOWED). A match by
the admin's own rules or lists is never overridden, and with
``update.block_protected = true`` nothing is.

The protected set is ``update.protected`` (globs) plus vigild itself and
the interpreter that runs it, resolved when the snapshot is built: to
(device, inode) for files, so a hard link or another name of a protected
file is protected too, and to the real path for directories.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace

from vigild.detector import Finding
from vigild.generations import HASH_PREFIX
from vigild.verdict import Action, Reason

# (fd, path, feed hash prefix) -> the verdict of the admin's own content
Rescan = Callable[[int, str, str], Finding]

_VIGILD_PACKAGE = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class Protected:
    inodes: frozenset[tuple[int, int]] = frozenset()
    dirs: tuple[str, ...] = ()
    feed_root: str = ""  # rule files below this are feed content
    enabled: bool = False  # False: feed content may deny anything (or no feed)

    def covers(self, fd: int, path: str) -> bool:
        """Whether the file open at ``fd`` is protected: by its inode, or by its
        directory when ``path`` names that very file in our mount namespace with
        no link on the way. The path text alone decides nothing: an open made in
        another mount namespace (a user's bind mount over a protected
        directory) reads as a protected path, and a directory swapped for a
        link between the event and this check would too."""
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) in self.inodes:
            return True
        try:
            here = os.stat(path, follow_symlinks=False)
        except OSError:
            return False
        if (here.st_dev, here.st_ino) != (st.st_dev, st.st_ino):
            return False
        if os.path.realpath(path) != os.path.normpath(path):
            return False
        return any(path.startswith(d + "/") for d in self.dirs)


def resolve(patterns: tuple[str, ...], feed_root: str, enabled: bool) -> Protected:
    """The protected set for ``patterns`` as the filesystem is now."""
    inodes: set[tuple[int, int]] = set()
    dirs: list[str] = [_VIGILD_PACKAGE]
    paths = [sys.executable, os.path.realpath(sys.executable)]
    for pattern in patterns:
        paths.extend(glob.glob(pattern))
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            continue
        if os.path.isdir(p):
            dirs.append(os.path.realpath(p))
        else:
            inodes.add((st.st_dev, st.st_ino))
    return Protected(frozenset(inodes), tuple(dirs), feed_root, enabled)


def from_feeds(finding: Finding, feed_root: str) -> bool:
    """Whether every match behind a detection is feed content."""
    v = finding.verdict
    if v.reason is Reason.KNOWN_BAD_HASH:
        return v.detail.startswith(HASH_PREFIX)
    if v.reason is not Reason.RULE_MATCH or not finding.matches or not feed_root:
        return False
    return all(m.namespace.startswith(feed_root + "/") for m in finding.matches)


def guard(p: Protected, fd: int, finding: Finding, unlisted: Rescan | None = None) -> Finding:
    """``finding`` as answered: feed content on a protected file is allowed (see above).

    A feed's hash entry answers before any rule runs; so that it cannot
    hide what the admin's own rules and MD5/SHA-1 lists say of a protected
    file, ``unlisted`` (the detector's ``examine_unlisted``) asks them first,
    and their detection is answered as it is.
    """
    if not p.enabled or not finding.verdict.malicious or not from_feeds(finding, p.feed_root):
        return finding
    if not p.covers(fd, finding.path):
        return finding
    if finding.verdict.reason is Reason.KNOWN_BAD_HASH and unlisted is not None:
        own = unlisted(fd, finding.path, HASH_PREFIX)
        detected = own.verdict.reason in (Reason.RULE_MATCH, Reason.KNOWN_BAD_HASH)
        if own.verdict.malicious and detected and not from_feeds(own, p.feed_root):
            return own
    allowed = replace(finding.verdict, action=Action.ALLOW, reason=Reason.PROTECTED)
    return replace(finding, verdict=allowed)
