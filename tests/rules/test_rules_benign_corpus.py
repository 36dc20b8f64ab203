"""Zero hits on a benign corpus: this machine's own binaries, libraries, stdlib and docs.

A rule that fires on /usr/bin or /usr/share/doc would block a server's own
programs the moment vigild starts, so any hit here is a bug in the rule
(fix the rule; never exclude the file).

The corpus is capped so the test stays well under a minute on two cores:
each root gives at most PER_ROOT_FILES files and PER_ROOT_BYTES bytes,
picked in a fixed pseudo-random order (a hash of the path) so that the cap
samples the whole alphabet and every size rather than the first names;
hard links count once and files over MAX_FILE are left out. A canary (a
corpus file with the EICAR string spliced in) goes through the same scan
loop, so the loop is known to report hits.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sysconfig
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from rule_samples import EICAR, RuleLoader, engine_params

from vigild.config import Engine

PER_ROOT_FILES = 2000
PER_ROOT_BYTES = 100 * 1024 * 1024
MAX_FILE = 64 * 1024 * 1024
MIN_FILES = 200  # below this the machine has no corpus worth the name

CANARY = "<canary: corpus file with EICAR spliced in>"


def corpus_roots() -> list[Path]:
    multiarch = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"
    stdlib = sysconfig.get_paths(vars={"base": "/usr", "installed_base": "/usr"})["stdlib"]
    roots = ["/usr/bin", "/usr/sbin", f"/usr/lib/{multiarch}", stdlib, "/usr/share/doc"]
    return [Path(r) for r in roots if Path(r).is_dir()]


def _files(root: Path) -> list[tuple[Path, int, tuple[int, int]]]:
    """(path, size, inode key) of each regular file under ``root``."""
    found = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath, name)
            try:
                st = path.lstat()
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and 0 < st.st_size <= MAX_FILE:
                found.append((path, st.st_size, (st.st_dev, st.st_ino)))
    return found


def corpus() -> list[Path]:
    """The capped selection of benign files, the same on every run."""
    chosen: list[Path] = []
    seen: set[tuple[int, int]] = set()
    for root in corpus_roots():
        files = sorted(_files(root), key=lambda f: hashlib.sha1(bytes(f[0])).digest())
        count = total = 0
        for path, size, key in files:
            if key in seen or not os.access(path, os.R_OK) or total + size > PER_ROOT_BYTES:
                continue
            seen.add(key)
            chosen.append(path)
            count, total = count + 1, total + size
            if count == PER_ROOT_FILES:
                break
    return chosen


@pytest.mark.parametrize("engine", engine_params())
def test_no_rule_matches_the_benign_corpus(engine: Engine, load_rules: RuleLoader) -> None:
    files = corpus()
    if len(files) < MIN_FILES:
        pytest.skip(f"only {len(files)} system files found under {corpus_roots()}")
    rules = load_rules(engine).rules

    def scan(item: tuple[str, bytes]) -> tuple[str, list[str]]:
        label, data = item
        name = os.path.basename(label)
        externals = {
            "filename": name,
            "filepath": label,
            "extension": os.path.splitext(name)[1].lower(),
            "filetype": "",
        }
        return label, sorted(m.rule for m in rules.match(data, externals))

    def items() -> Iterator[tuple[str, bytes]]:
        for path in files:
            try:
                yield str(path), path.read_bytes()
            except FileNotFoundError:
                continue  # removed since it was listed (a package upgrade): not ours to judge
        head = files[0].read_bytes()
        yield CANARY, head[: len(head) // 2] + EICAR + head[len(head) // 2 :]

    with ThreadPoolExecutor(max_workers=2) as pool:
        hits = {label: rules for label, rules in pool.map(scan, items()) if rules}

    assert hits.pop(CANARY, None) == ["EICAR_Test_String_Embedded"], "the scan loop saw nothing"
    scanned = sum(p.stat().st_size for p in files)
    assert not hits, f"{len(hits)} of {len(files)} benign files ({scanned >> 20} MB) hit: {hits}"
