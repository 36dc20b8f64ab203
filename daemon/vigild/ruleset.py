"""The detection content in effect: compiled YARA rules plus the hash database.

Rules are compiled once and saved in the compiled directory under a name
that carries the fingerprint of their sources (engine, paths, bytes), so
the next start loads them in milliseconds and an edited rule is never
served from a stale file. Hash lists are compiled the same way. A saved
file is only trusted when this user owns it and nobody else can write it.

The *generation* names the rule set for the caches: it is derived from
the rules' fingerprint and the hash database's checksum, so it is stable
across restarts and changes whenever a rule or a listed hash changes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vigild import hashes, native
from vigild.config import Engine, RulesConfig
from vigild.scanner import EXTERNALS, CompiledRules, EngineBackend, RuleError, backend

log = logging.getLogger(__name__)

RULE_SUFFIXES = (".yar", ".yara")
# Patterns led by a literal, so that re can skip through large hex-heavy
# rule files quickly (a line-anchored pattern took 40 ms on 274 files).
_RULE_WORD = re.compile(rb"rule[ \t]+[A-Za-z_]")
_DECL_HEAD = re.compile(rb"[ \t]*(?:(?:private|global)[ \t]+)*\Z")
# Externals are set for each scan only if some rule file names them (setting
# them costs every scan; a mention in a comment just keeps them set).
_EXTERNAL_WORDS = {name: re.compile(rb"\b" + name.encode() + rb"\b") for name in EXTERNALS}


def _count_rules(data: bytes) -> int:
    """Rule declarations: ``[private|global ]rule NAME`` at the start of a line."""
    n = 0
    for m in _RULE_WORD.finditer(data):
        line_start = data.rfind(b"\n", 0, m.start()) + 1
        if _DECL_HEAD.match(data, line_start, m.start()):
            n += 1
    return n


def _mentions(data: bytes, name: str) -> bool:
    """Whether ``name`` appears as a word (substring test first: it is fast)."""
    return name.encode() in data and _EXTERNAL_WORDS[name].search(data) is not None


@dataclass(frozen=True)
class RuleSet:
    engine: str
    rules: CompiledRules
    files: tuple[str, ...]
    count: int  # rule declarations in the sources
    fingerprint: str
    generation: int
    hashdb: native.HashDb | None
    hash_entries: int
    from_cache: bool
    externals: tuple[str, ...] = ()  # external variables some rule mentions


def rule_files(dirs: Sequence[str]) -> list[Path]:
    """Every *.yar / *.yara below each directory (a file may be named too)."""
    found: list[Path] = []
    for d in dirs:
        p = Path(d)
        if p.is_file():
            found.append(p)
        elif p.is_dir():
            found.extend(
                sorted(f for f in p.rglob("*") if f.suffix in RULE_SUFFIXES and f.is_file())
            )
        else:
            raise RuleError(d, None, "no such rules directory")
    if not found:
        raise RuleError(", ".join(dirs) or "(none)", None, "no rule files (*.yar, *.yara)")
    return found


@dataclass(frozen=True)
class _Sources:
    fingerprint: str
    count: int  # rule declarations
    externals: tuple[str, ...]  # external variables mentioned anywhere


def _read_sources(engine: EngineBackend, files: Sequence[Path]) -> _Sources:
    """Fingerprint of the sources for ``engine``, their rule count, the externals they use."""
    h = hashlib.sha256(f"{engine.name}\0{engine.version}\0".encode())
    count = 0
    used: set[str] = set()
    for f in files:
        try:
            data = f.read_bytes()
        except OSError as e:
            raise RuleError(str(f), None, e.strerror or str(e)) from e
        h.update(str(f).encode() + b"\0" + len(data).to_bytes(8, "little") + data)
        count += _count_rules(data)
        used.update(name for name in EXTERNALS if _mentions(data, name))
    return _Sources(h.hexdigest(), count, tuple(n for n in EXTERNALS if n in used))


def generation_of(fingerprint: str, db: native.HashDb | None = None) -> int:
    """A 63-bit generation (fits an int64) naming the rules and the hash database.

    The database belongs in it too: the verdict cache and kernel ignore
    marks answer before any hashing, so a hash added to the list must
    retire them (the clean-content cache alone would not need it).
    """
    ident = "no-hashes"
    if db is not None:
        i = db.info()
        ident = f"{i.crc:08x}-{i.file_bytes}-{i.sha256_entries}-{i.md5_entries}"
    # hashed whole: whatever is appended to the fingerprint (the daemon's
    # policy salt) must change the generation, not only the hex digits past 16
    digest = hashlib.sha256(f"{fingerprint}|{ident}".encode()).hexdigest()
    return int(digest[:16], 16) >> 1


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


def cache_dir(configured: str) -> Path | None:
    """The configured compiled directory, else a per-user one, else None (nothing saved)."""
    for candidate in (Path(configured), _user_cache()):
        try:
            candidate.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(candidate, os.W_OK | os.X_OK) and trusted_dir(candidate):
            return candidate
    log.debug("no usable directory for compiled rules (%s): not saving them", configured)
    return None


def trusted_dir(path: Path) -> bool:
    st = path.stat()
    return st.st_uid in (os.geteuid(), 0) and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vigild"


def _replace_atomically(directory: Path, name: str, write: Callable[[str], None]) -> Path:
    """Write via ``write(tmp_path)`` then rename to ``directory/name``."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o600)
        os.replace(tmp, directory / name)
    except BaseException:
        os.unlink(tmp)
        raise
    return directory / name


def _drop_stale(directory: Path, prefix: str, keep: str) -> None:
    for old in directory.glob(f"{prefix}*"):
        if old.name != keep:
            old.unlink(missing_ok=True)


def compiled_rules(
    engine: EngineBackend, files: Sequence[Path], fingerprint: str, directory: Path | None
) -> tuple[CompiledRules, bool]:
    """Load the saved compile of ``files`` or compile and save it."""
    name = f"rules-{engine.name}-{fingerprint[:24]}.compiled"
    if directory is not None and trusted(directory / name):
        try:
            return engine.load(str(directory / name)), True
        except RuleError as e:
            log.warning("%s; compiling again", e)
    rules = engine.compile(files)
    if directory is not None:
        _replace_atomically(directory, name, rules.save)
        _drop_stale(directory, f"rules-{engine.name}-", name)
    return rules, False


def hash_database(sources: Sequence[str], directory: Path | None) -> native.HashDb | None:
    """The known-bad database for ``sources``: compiled lists, or one given compiled file."""
    files = list(hashes.list_files(sources))
    if not files:
        return None
    compiled = [f for f in files if hashes.is_compiled(f)]
    if compiled:
        if len(files) > 1:
            raise hashes.HashListError(
                str(compiled[0]), 0, "a compiled hash database must be the only hash source"
            )
        return native.HashDb(str(compiled[0]))
    name = f"hashes-{hashes.fingerprint(files)[:24]}{hashes.DB_SUFFIX}"
    if directory is not None and trusted(directory / name):
        return native.HashDb(str(directory / name))
    target_dir = directory or Path(tempfile.mkdtemp(prefix="vigild-hashes-"))
    entries = hashes.compile_lists(files, str(target_dir / name))
    for w in entries.warnings:
        log.warning("%s", w)
    os.chmod(target_dir / name, 0o600)
    if directory is not None:
        _drop_stale(directory, "hashes-", name)
    db = native.HashDb(str(target_dir / name))
    if directory is None:
        os.unlink(target_dir / name)  # the mapping stays valid
        os.rmdir(target_dir)
    return db


def load(cfg: RulesConfig, timeout: int, save: bool = True, salt: str = "") -> RuleSet:
    """Build the rule set ``cfg`` describes; raises RuleError / HashListError / NativeError.

    ``salt`` (the daemon passes its scan limits and policy) goes into the
    generation, so that a reload changing them retires cached answers too.
    """
    engine = backend(cfg.engine, timeout)
    files = rule_files(cfg.rule_dirs())
    src = _read_sources(engine, files)
    directory = cache_dir(cfg.compiled_dir) if save else None
    rules, from_cache = compiled_rules(engine, files, src.fingerprint, directory)
    db = hash_database(cfg.hashes, directory)
    return RuleSet(
        engine=engine.name,
        rules=rules,
        files=tuple(str(f) for f in files),
        count=src.count,
        fingerprint=src.fingerprint,
        generation=generation_of(src.fingerprint + salt, db),
        hashdb=db,
        hash_entries=_entries(db),
        from_cache=from_cache,
        externals=src.externals,
    )


def _entries(db: native.HashDb | None) -> int:
    if db is None:
        return 0
    info = db.info()
    return info.sha256_entries + info.md5_entries


def check(
    dirs: Sequence[str], engine: Engine, timeout: int = 10
) -> tuple[list[RuleError], list[RuleError]]:
    """Compile each rule file on its own; every file's error, and all warnings."""
    be = backend(engine, timeout)
    errors: list[RuleError] = []
    warnings: list[RuleError] = []
    for f in rule_files(dirs):
        try:
            warnings.extend(be.compile([f]).warnings)
        except RuleError as e:
            errors.append(e)
    return errors, warnings
