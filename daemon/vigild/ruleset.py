"""The detection content in effect: compiled YARA rules plus the hash database.

Rules are compiled once and saved in the compiled directory under a name
that carries the fingerprint of their sources (engine, paths, bytes, the
files they include, the externals the config declares), so the next start
loads them in milliseconds and an edited rule is never served from a stale
file. Hash lists are compiled the same way. A saved file is only trusted
when this user owns it and nobody else can write it.

Each rule file is first compiled alone (``probe``): that is how one bad
file is found and skipped without taking the others down, and how the
engine says which of the LOKI/THOR external variables it reads (compiled
without them, it names the identifier it does not know). Files that read
where the file is or who owns it (scanner.PATH_EXTERNALS) are compiled into
a second rule set, ``path_rules``: only a match of theirs depends on the
path, so the clean-content cache stays on for the rest.

The *generation* names the rule set for the caches: it is derived from
the rules' fingerprint and the hash database's checksum, so it is stable
across restarts and changes whenever a rule or a listed hash changes.

Why one module of this size: compiling, caching and loading a rule set
share the fingerprint and the skipped-file bookkeeping; the engines are in
scanner.py, the hash lists in hashes.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vigild import hashes, native
from vigild.config import Engine, RulesConfig
from vigild.isolation import PerFile
from vigild.owned import cache_dir, trusted
from vigild.scanner import (
    EXTERNALS,
    PATH_EXTERNALS,
    CompiledRules,
    EngineBackend,
    Externals,
    ExternalValue,
    Recompile,
    RuleError,
    backend,
    explain_modules,
    included_files,
)

log = logging.getLogger(__name__)

RULE_SUFFIXES = (".yar", ".yara")
_MANIFEST_VERSION = 2  # 2: boreal sets over 1,024 rules saved in parts


@dataclass(frozen=True)
class RuleSet:
    engine: str
    rules: CompiledRules | None  # rules whose verdict depends on the bytes only
    files: tuple[str, ...]  # rule files compiled (both sets)
    count: int  # rules the engine compiled (both sets)
    fingerprint: str
    generation: int
    hashdb: native.HashDb | None
    hash_entries: int
    from_cache: bool
    externals: tuple[str, ...] = ()  # built-in externals some compiled rule reads
    path_rules: CompiledRules | None = None  # rules reading PATH_EXTERNALS
    path_files: tuple[str, ...] = ()  # the files compiled into path_rules
    skipped: tuple[RuleError, ...] = ()  # rule files that did not compile, one error each
    defaults: Externals = field(default_factory=dict)  # [rules.externals]
    allow: hashes.AllowList = field(default_factory=hashes.AllowList)  # .fp/.sfp
    per_file: PerFile | None = None  # the same files one by one, for a scan that fails
    sources: tuple[str, ...] = ()  # every rule file read, includes too (resolved)
    engine_why: str = ""  # engine = "auto": which engine it picked and why

    @property
    def summary(self) -> str:
        """'N rules from M files, K files skipped': the start-up and status wording."""
        text = f"{self.count} rules from {len(self.files)} files"
        return text + (f", {len(self.skipped)} files skipped" if self.skipped else "")


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


_COMMENTS = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_INCLUDE_LINE = re.compile(r'[ \t]*include[ \t]+"([^"\n]+)"[ \t]*;?[ \t]*')


@dataclass(frozen=True)
class Unit:
    """A rule file compiled alone, and the index line that named it, if any."""

    path: Path
    origin: str = ""  # "index.yar:12" for a file an index includes


def _index_entries(f: Path) -> list[tuple[Path, int]] | None:
    """The files an index includes, with their lines; None if ``f`` holds anything else.

    Yara-Rules ships index.yar files made of include lines only: loaded as
    one file, a single included file that this build cannot compile would
    take all of them down; loaded entry by entry, it is skipped alone.
    """
    try:
        text = f.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    text = _COMMENTS.sub(lambda m: "\n" * m.group().count("\n"), text)
    entries = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _INCLUDE_LINE.fullmatch(line)
        if m is None:
            return None
        entries.append((f.parent / m.group(1), lineno))
    return entries or None


def _reachable(f: Path, seen: set[Path]) -> set[Path]:
    """Every file ``f`` includes, directly or not (resolved)."""
    for inc in included_files(f):
        if inc not in seen:
            seen.add(inc)
            _reachable(inc, seen)
    return seen


def probe_all(engine: EngineBackend, files: Sequence[Path], defaults: Externals) -> list[Probe]:
    """Probe every rule file once; an index that fails is probed entry by entry.

    An index is first compiled whole (its entries may share private rules,
    and the namespace); only when that fails are its entries tried one by
    one, so that one entry this build cannot compile is skipped alone. The
    largest index goes first and a file is loaded once: a directory holding
    index.yar and the files it includes loads them once, through the index.
    """
    indexes = {f: _reachable(f, set()) for f in files if _index_entries(f) is not None}
    order = sorted(indexes, key=lambda f: -len(indexes[f])) + [f for f in files if f not in indexes]
    probes: list[Probe] = []
    seen: set[Path] = set()

    def visit(f: Path, origin: str) -> None:
        key = f.resolve()
        if key in seen:
            return
        seen.add(key)
        entries = _index_entries(f)
        if entries is not None:
            covered = indexes.get(f) or _reachable(f, set())
            if not covered & seen:
                whole = probe(engine, Unit(f, origin), defaults)
                if whole.error is None:
                    seen.update(covered)
                    probes.append(whole)
                    return
            for inc, line in entries:
                visit(inc, f"{f}:{line}")
            return
        probes.append(probe(engine, Unit(f, origin), defaults))

    for f in order:
        visit(f, "")
    return probes


def _hash_file(h: hashlib._Hash, f: Path, seen: set[Path], named: set[str]) -> None:
    """Feed ``f`` and, once each, every file it includes into ``h``; ``named``
    gets each path as written too (a symlink on the way may be swapped later)."""
    named.add(str(f))
    key = f.resolve()
    if key in seen:
        return
    seen.add(key)
    try:
        data = f.read_bytes()
    except OSError as e:
        if len(seen) == 1:
            raise RuleError(str(f), None, e.strerror or str(e)) from e
        return  # a missing include: the compile names it
    h.update(str(f).encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    for inc in included_files(f, data.decode("utf-8", "replace"), resolve=False):
        _hash_file(h, inc, seen, named)


@dataclass(frozen=True)
class Sources:
    """The rule files' bytes and names, hashed once: every engine's fingerprint
    derives from it, and ``read`` names every file it depended on (includes too)."""

    digest: str
    read: tuple[str, ...]  # resolved and as written; an include that was missing too


def sources_of(files: Sequence[Path], defaults: Externals) -> Sources:
    """Hash the rule ``files``, what they include and the declared externals, once."""
    h = hashlib.sha256(f"{_MANIFEST_VERSION}\0".encode())
    h.update(json.dumps(sorted(defaults.items())).encode())
    read: set[str] = set()
    for f in files:
        seen: set[Path] = set()
        _hash_file(h, f, seen, read)
        read.update(str(p) for p in seen)
    return Sources(h.hexdigest(), tuple(sorted(read)))


def fingerprint_of(
    engine: EngineBackend, files: Sequence[Path], defaults: Externals, src: Sources | None = None
) -> str:
    """What the compile depends on: engine, files, what they include, declared externals."""
    if src is None:
        src = sources_of(files, defaults)
    text = f"{engine.name}\0{engine.version}\0{src.digest}"
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Probe:
    """One rule file compiled alone: the built-in externals it reads, or its error."""

    path: Path
    uses: tuple[str, ...] = ()
    error: RuleError | None = None
    warnings: tuple[RuleError, ...] = ()

    @property
    def by_path(self) -> bool:
        return any(n in PATH_EXTERNALS for n in self.uses)


def probe(engine: EngineBackend, unit: Unit, defaults: Externals) -> Probe:
    """Compile a file alone, defining a built-in external only once the engine asks for it."""
    f = unit.path
    uses: list[str] = []
    while True:
        try:
            rules = engine.compile([f], {**defaults, **dict.fromkeys(uses, "")})
        except RuleError as e:
            name = e.undefined
            if name in EXTERNALS and name not in uses and name not in defaults:
                uses.append(name)
                continue
            err = explain_modules(e, [f], engine)
            if unit.origin:
                err = RuleError(err.path, err.line, f"{err.message} (included by {unit.origin})")
            return Probe(f, tuple(uses), err)
        return Probe(f, tuple(n for n in EXTERNALS if n in uses), None, tuple(rules.warnings))


def compile_values(defaults: Externals) -> dict[str, ExternalValue]:
    """Every external defined at compile time: the built-ins empty, then the config's."""
    return {**dict.fromkeys(EXTERNALS, ""), **defaults}


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
    """Remove the files named ``prefix*`` but not ``keep*``."""
    for old in directory.glob(f"{prefix}*"):
        if not old.name.startswith(keep):
            old.unlink(missing_ok=True)


@dataclass(frozen=True)
class Compiled:
    """The two rule sets compiled from one set of files, and what was left out."""

    rules: CompiledRules | None
    path_rules: CompiledRules | None
    files: tuple[str, ...]  # compiled into ``rules``
    path_files: tuple[str, ...]  # compiled into ``path_rules``
    uses: tuple[str, ...]  # built-in externals read by some compiled file
    skipped: tuple[RuleError, ...]
    from_cache: bool = False


def _error_fields(e: RuleError) -> list[object]:
    return [e.path, e.line, e.message]


def _save(directory: Path, base: str, c: Compiled, engine: EngineBackend) -> None:
    """The compiled sets, then the manifest that names them (it is read first)."""
    for suffix, rules in ((".compiled", c.rules), (".path.compiled", c.path_rules)):
        if rules is not None:
            _replace_atomically(directory, base + suffix, rules.save)
    manifest = {
        "version": _MANIFEST_VERSION,
        "files": c.files,
        "path_files": c.path_files,
        "uses": c.uses,
        "skipped": [_error_fields(e) for e in c.skipped],
    }
    data = json.dumps(manifest).encode()

    def write(tmp: str) -> None:
        Path(tmp).write_bytes(data)

    _replace_atomically(directory, base + ".json", write)
    _drop_stale(directory, f"rules-{engine.name}-", base)


def _load_part(
    engine: EngineBackend, path: Path, listed: list[str], defaults: Externals
) -> CompiledRules:
    """One saved set, or the files it lists compiled again when the engine saved a note to."""
    try:
        return engine.load(str(path))
    except Recompile:
        return engine.compile([Path(f) for f in listed], compile_values(defaults))


def _load_saved(
    engine: EngineBackend, directory: Path, base: str, defaults: Externals
) -> Compiled | None:
    """The saved compile named ``base``, or None when any part is missing or untrusted."""
    manifest = directory / (base + ".json")
    if not trusted(manifest):
        return None
    try:
        m = json.loads(manifest.read_bytes())
        parts: list[CompiledRules | None] = []
        for suffix, listed in ((".compiled", m["files"]), (".path.compiled", m["path_files"])):
            path = directory / (base + suffix)
            if listed and not trusted(path):
                return None
            parts.append(_load_part(engine, path, listed, defaults) if listed else None)
        skipped = tuple(RuleError(*e) for e in m["skipped"])
        return Compiled(
            parts[0], parts[1], tuple(m["files"]), tuple(m["path_files"]),
            tuple(m["uses"]), skipped, from_cache=True,
        )  # fmt: skip
    except (ValueError, KeyError, TypeError, RuleError) as e:
        log.warning("%s: %s; compiling again", manifest, e)
        return None


def compile_sets(engine: EngineBackend, files: Sequence[Path], defaults: Externals) -> Compiled:
    """Probe every file, then compile the good ones into the content and path sets."""
    probes = probe_all(engine, files, defaults)
    skipped = tuple(p.error for p in probes if p.error is not None)
    good = [p for p in probes if p.error is None]
    if not good:
        first = skipped[0]
        raise RuleError(
            first.path, first.line, f"{first.message} (none of {len(probes)} rule files compiled)"
        )
    values = compile_values(defaults)
    content = [p.path for p in good if not p.by_path]
    by_path = [p.path for p in good if p.by_path]
    return Compiled(
        rules=engine.compile(content, values) if content else None,
        path_rules=engine.compile(by_path, values) if by_path else None,
        files=tuple(str(f) for f in content),
        path_files=tuple(str(f) for f in by_path),
        uses=tuple(n for n in EXTERNALS if any(n in p.uses for p in good)),
        skipped=skipped,
    )


def compiled_rules(
    engine: EngineBackend,
    files: Sequence[Path],
    fingerprint: str,
    directory: Path | None,
    defaults: Externals,
) -> Compiled:
    """Load the saved compile of ``files`` or compile and save it."""
    base = f"rules-{engine.name}-{fingerprint[:24]}"
    if directory is not None:
        saved = _load_saved(engine, directory, base, defaults)
        if saved is not None:
            return saved
    compiled = compile_sets(engine, files, defaults)
    if directory is not None:
        _save(directory, base, compiled, engine)
    return compiled


def hash_database(
    sources: Sequence[str], directory: Path | None, pua: bool = False
) -> native.HashDb | None:
    """The known-bad database for ``sources``: compiled lists, or one given compiled file."""
    found = hashes.sources(sources, pua)
    for w in found.warnings:
        log.warning("%s", w)
    files = list(found.known_bad)
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


def allow_list(sources: Sequence[str]) -> hashes.AllowList:
    """The ClamAV .fp/.sfp files among ``sources``, read (they are small)."""
    allow = hashes.allow_list(hashes.sources(sources).allow)
    for w in allow.warnings:
        log.warning("%s", w)
    return allow


def load(cfg: RulesConfig, timeout: int, save: bool = True, salt: str = "") -> RuleSet:
    """Build the rule set ``cfg`` describes; raises RuleError / HashListError / NativeError.

    A rule file that does not compile is skipped with one warning naming
    file and line, unless ``cfg.strict``: then it is fatal. ``salt`` (the
    daemon passes its scan limits and policy) goes into the generation, so
    that a reload changing them retires cached answers too.
    """
    files = rule_files(cfg.rule_dirs())
    directory = cache_dir(cfg.compiled_dir) if save else None
    defaults = dict(cfg.externals)
    src = sources_of(files, defaults)
    engine, why = _engine(cfg, timeout, files, directory, src)
    fingerprint = fingerprint_of(engine, files, defaults, src)
    c = compiled_rules(engine, files, fingerprint, directory, defaults)
    if c.skipped and cfg.strict:
        first = c.skipped[0]
        more = f" (and {len(c.skipped) - 1} more rule files)" if len(c.skipped) > 1 else ""
        raise RuleError(first.path, first.line, f"{first.message}{more}; rules.strict is on")
    for e in c.skipped:
        log.warning("%s (rule file skipped)", e)
    db = hash_database(cfg.hashes, directory, cfg.pua)
    allow = allow_list(cfg.hashes)
    # the allow-list decides answers too: it belongs in the generation
    salt += f"|allow:{allow.fingerprint}|pua:{cfg.pua}"
    return RuleSet(
        engine=engine.name,
        engine_why=why,
        rules=c.rules,
        files=c.files + c.path_files,
        count=sum(r.count for r in (c.rules, c.path_rules) if r is not None),
        fingerprint=fingerprint,
        generation=generation_of(fingerprint + salt, db),
        hashdb=db,
        hash_entries=_entries(db),
        from_cache=c.from_cache,
        externals=c.uses,
        path_rules=c.path_rules,
        path_files=c.path_files,
        skipped=c.skipped,
        defaults=defaults,
        allow=allow,
        per_file=PerFile(engine, c.files + c.path_files, compile_values(defaults)),
        sources=src.read,
    )


def _engine(
    cfg: RulesConfig, timeout: int, files: Sequence[Path], directory: Path | None, src: Sources
) -> tuple[EngineBackend, str]:
    """The configured engine, or the one ``auto`` picks for these files, and why."""
    if cfg.engine is not Engine.AUTO:
        return backend(cfg.engine, timeout), ""
    # imported here: it needs the detector, which needs this module
    from vigild import enginepick

    pick = enginepick.pick(cfg, timeout, files, directory, src)
    why = f"engine auto: {pick.why}" + (" (decided before)" if pick.from_cache else "")
    log.info("%s", why)
    return backend(pick.engine, timeout), why


def _entries(db: native.HashDb | None) -> int:
    if db is None:
        return 0
    info = db.info()
    return info.sha256_entries + info.md5_entries


def check(
    dirs: Sequence[str], engine: Engine, timeout: int = 10, defaults: Externals | None = None
) -> tuple[list[RuleError], list[RuleError], int]:
    """Compile each rule file on its own, as loading does: every file's error, all
    warnings, and how many files (an index that fails counts its entries)."""
    be = backend(engine, timeout)
    probes = probe_all(be, rule_files(dirs), defaults or {})
    errors = [p.error for p in probes if p.error is not None]
    return errors, [w for p in probes for w in p.warnings], len(probes)
