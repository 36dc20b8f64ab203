"""Files and directories vigild trusts because of who owns them.

A compiled rule set, a hash database or a cache of clean verdicts declares
what is safe: whoever can write one can hide anything. They are trusted
only when this user (or root) owns them and nobody else can write them.
Kept apart from ruleset.py so that ``vigild scan`` can read its clean
cache without importing the engines.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("vigild.ruleset")


def trusted(path: Path) -> bool:
    """True for a regular file owned by us (or root) that only its owner can write."""
    try:
        st = path.lstat()
    except OSError:
        return False
    return (
        stat.S_ISREG(st.st_mode)
        and st.st_uid in (os.geteuid(), 0)
        and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


def trusted_dir(path: Path) -> bool:
    st = path.stat()
    return st.st_uid in (os.geteuid(), 0) and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vigild"


def cache_dir(configured: str) -> Path | None:
    """The configured compiled directory, else a per-user one, else None (nothing saved)."""
    for candidate in (Path(configured), user_cache()):
        try:
            candidate.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(candidate, os.W_OK | os.X_OK) and trusted_dir(candidate):
            return candidate
    log.debug("no usable directory for compiled rules (%s): not saving them", configured)
    return None


def entries_below(top: str) -> Iterator[os.DirEntry[str]]:
    """Every entry below the directory ``top``, depth first, symlinks not
    followed; directories that cannot be listed are passed over."""
    stack = [top]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
            except OSError:
                continue  # gone since it was listed
            yield e
