"""``engine = "auto"``: the fastest engine that does what yara-python does, per rule set.

yara-python is the reference. Each other engine installed (boreal, YARA-X)
is tried on the rule set in force: it must compile the same files (the
same ones skipped), read the same externals (so includes, modules and the
LOKI/THOR variables all work through it), then scan the evidence files
with the same rules and strings matching as yara-python, without an engine
error yara-python does not have. The fastest eligible engine, if faster
than yara-python on the evidence, is picked; otherwise yara-python. Per-rule
isolation and timeouts go through the same interface (vigild.isolation,
ScanTimeout), so every engine behind it has them.

The evidence is the rule files themselves (their text holds the rules'
literal strings) plus ``rules.engine_evidence`` (rule samples, a corpus).
The decision is computed once per rule-set generation and saved beside
the compiled rules with its evidence (``auto-*.json``): the key covers the
rule files' fingerprint, every engine's version and the evidence files'
identity, so a changed rule, engine or sample decides again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from vigild import owned, ruleset
from vigild.config import Engine, RulesConfig
from vigild.detector import externals as externals_of
from vigild.ruleset import Compiled
from vigild.scanner import (
    CompiledRules,
    ExternalValue,
    RuleMatch,
    ScanFailed,
    ScanTimeout,
    available,
    backend,
)

log = logging.getLogger(__name__)

CANDIDATES = (Engine.BOREAL, Engine.YARA_X)  # tried against yara-python, in this order
_VERSION = 1
_MAX_FILE = 64 << 20  # an evidence file past this is not read
_MAX_TOTAL = 512 << 20  # nor evidence past this much in all


@dataclass(frozen=True)
class Trial:
    """One engine tried on the rule set: eligible or not, and why."""

    engine: str
    version: str
    eligible: bool
    why: str
    seconds: float = 0.0  # scanning the evidence, in this process


@dataclass(frozen=True)
class Pick:
    engine: Engine
    why: str  # one line: the start-up log, `vigild status`, `rules check`
    trials: tuple[Trial, ...]
    files: int  # evidence files scanned
    from_cache: bool = False


Evidence = list[tuple[str, os.stat_result]]


def evidence_files(rule_files: Sequence[Path], extra: Sequence[str]) -> Evidence:
    """The rule files and every regular file under ``extra`` (symlinks neither
    followed nor listed), in name order, each with its stat: one per file."""
    found: Evidence = []
    for f in rule_files:
        with contextlib.suppress(OSError):
            found.append((str(f), f.stat()))
    for d in extra:
        try:
            st = os.stat(d)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            found.append((d, st))
        elif stat.S_ISDIR(st.st_mode):
            found.extend(sorted(_files_below(d)))
    return found


def _files_below(top: str) -> Iterator[tuple[str, os.stat_result]]:
    for e in owned.entries_below(top):
        try:
            if e.is_file(follow_symlinks=False):
                yield e.path, e.stat(follow_symlinks=False)
        except OSError:
            continue  # gone since it was listed


def _key(fingerprint: str, files: Evidence) -> str:
    """What the decision depends on: rules, engine versions, evidence files."""
    h = hashlib.sha256(f"{_VERSION}\0{fingerprint}\0".encode())
    for e in (Engine.YARA, *CANDIDATES):
        h.update(f"{e.value}={_version(e)}\0".encode())
    for f, st in files:
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0".encode())
    return h.hexdigest()


def _version(engine: Engine) -> str:
    if not available(engine):
        return "missing"
    try:
        return backend(engine, 1).version
    except Exception as e:  # an engine that will not import is missing too
        return f"broken: {e}"


def _matches(found: list[RuleMatch]) -> set[tuple[str, str, tuple[str, ...]]]:
    return {(m.namespace, m.rule, tuple(sorted(m.strings))) for m in found}


Sets = tuple[CompiledRules | None, CompiledRules | None]


def _scan(sets: Sets, path: Path, data: bytes, uses: tuple[str, ...]) -> set[object] | str:
    """The matches of both sets on ``data``, or the engine's error."""
    found: set[object] = set()
    with open(path, "rb") as f:
        values = externals_of(str(path), f.fileno(), memoryview(data), uses)
    for rules in sets:
        if rules is None:
            continue
        try:
            found |= _matches(rules.match(data, values))
        except (ScanFailed, ScanTimeout) as e:
            return f"{type(e).__name__}: {e}"
    return found


def _read(files: Sequence[Path]) -> Iterator[tuple[Path, bytes]]:
    total = 0
    for f in files:
        try:
            if f.stat().st_size > _MAX_FILE or total > _MAX_TOTAL:
                continue
            data = f.read_bytes()
        except OSError:
            continue
        total += len(data)
        yield f, data


def compare(
    ref: Sets, other: Sets, files: Sequence[Path], uses: tuple[str, ...]
) -> tuple[str | None, float, float, int]:
    """(first disagreement or None, yara-python's seconds, the other's seconds, files)."""
    t_ref = t_other = 0.0
    n = 0
    for path, data in _read(files):
        n += 1
        t0 = time.perf_counter()
        want = _scan(ref, path, data, uses)
        t1 = time.perf_counter()
        got = _scan(other, path, data, uses)
        t_ref += t1 - t0
        t_other += time.perf_counter() - t1
        if want != got:
            return f"{path}: yara-python {_show(want)}, this engine {_show(got)}", t_ref, t_other, n
    return None, t_ref, t_other, n


def _show(result: set[object] | str) -> str:
    if isinstance(result, str):
        return result
    return "matches " + (", ".join(sorted(str(m[1]) for m in result)) or "nothing")  # type: ignore[index]


def _missing(engine: Engine) -> Trial:
    extra = {Engine.BOREAL: "boreal", Engine.YARA_X: "yarax"}[engine]
    return Trial(engine.value, "missing", False, f"not installed (the [{extra}] extra)")


def _differs(ref: Compiled, got: Compiled) -> str | None:
    """Why ``got`` is not the same rule set as yara-python's ``ref``, if it is not."""
    theirs = {e.path: e for e in got.skipped}
    for f in (*ref.files, *ref.path_files):
        if f in theirs:
            return f"does not compile {theirs[f]}"
    if set(got.files) != set(ref.files) or set(got.path_files) != set(ref.path_files):
        extra = sorted({*got.files, *got.path_files} - {*ref.files, *ref.path_files})
        return f"compiles {extra[0] if extra else 'other files'}, which yara-python skips"
    if got.uses != ref.uses:
        return f"reads the externals {got.uses}, yara-python {ref.uses}"
    return None


def _try(
    engine: Engine, ctx: _Context, ref: Compiled
) -> tuple[Trial, float]:  # (trial, its time over yara-python's)
    """Compile the set with ``engine`` and scan the evidence beside yara-python."""
    if not available(engine):
        return _missing(engine), 0.0
    try:
        be = backend(engine, ctx.timeout)
        fp = ruleset.fingerprint_of(be, ctx.files, ctx.defaults, ctx.src)
        got = ruleset.compiled_rules(be, ctx.files, fp, ctx.directory, ctx.defaults)
    except Exception as e:  # RuleError, or an engine that fails to start
        return Trial(engine.value, _version(engine), False, f"cannot compile the set: {e}"), 0.0
    why = _differs(ref, got)
    if why is not None:
        return Trial(engine.value, be.version, False, why), 0.0
    bad, t_ref, t_got, n = compare(
        (ref.rules, ref.path_rules), (got.rules, got.path_rules), ctx.evidence, ref.uses
    )
    if bad is not None:
        return Trial(engine.value, be.version, False, f"disagrees on {bad}", t_got), 0.0
    ratio = t_got / t_ref if t_ref > 0 else 1.0
    why = f"same matches on {n} files, {ratio:.2f}x yara-python's time"
    return Trial(engine.value, be.version, True, why, round(t_got, 4)), ratio


@dataclass(frozen=True)
class _Context:
    timeout: int
    files: Sequence[Path]
    defaults: dict[str, ExternalValue]
    directory: Path | None
    evidence: Sequence[Path]
    src: ruleset.Sources


def pick(
    cfg: RulesConfig,
    timeout: int,
    files: Sequence[Path],
    directory: Path | None,
    src: ruleset.Sources | None = None,
) -> Pick:
    """The engine for the rule ``files``: the saved decision, or a new one (then saved).
    ``src``: the files already hashed (vigild.ruleset.sources_of), else hashed here."""
    if not available(Engine.YARA):
        return Pick(Engine.YARA_X, "yara-python is not installed: YARA-X, untested", (), 0)
    defaults = dict(cfg.externals)
    if src is None:
        src = ruleset.sources_of(files, defaults)
    ref_be = backend(Engine.YARA, timeout)
    fp = ruleset.fingerprint_of(ref_be, files, defaults, src)
    evidence = evidence_files(files, cfg.engine_evidence)
    key = _key(fp, evidence)
    saved = _load(directory, key)
    if saved is not None:
        return saved
    ctx = _Context(timeout, files, defaults, directory, [Path(f) for f, _ in evidence], src)
    ref = ruleset.compiled_rules(ref_be, files, fp, directory, ctx.defaults)
    trials = [Trial("yara", ref_be.version, True, "the reference")]
    best, best_ratio = Engine.YARA, 1.0
    for engine in CANDIDATES:
        trial, ratio = _try(engine, ctx, ref)
        trials.append(trial)
        if trial.eligible and ratio < best_ratio:
            best, best_ratio = engine, ratio
    n = sum(1 for _ in _read(ctx.evidence))
    others = "; ".join(f"{t.engine}: {t.why}" for t in trials[1:])
    head = f"{best.value}" if best is not Engine.YARA else "yara (the reference)"
    chosen = Pick(best, f"{head}; {others}", tuple(trials), n)
    _save(directory, key, chosen)
    return chosen


def _path(directory: Path, key: str) -> Path:
    return directory / f"auto-{key[:24]}.json"


def _save(directory: Path | None, key: str, p: Pick) -> None:
    if directory is None:
        return
    data = json.dumps({"key": key, **asdict(p), "engine": p.engine.value}, indent=1).encode()
    name = _path(directory, key).name

    def write(tmp: str) -> None:
        Path(tmp).write_bytes(data)

    ruleset._replace_atomically(directory, name, write)
    ruleset._drop_stale(directory, "auto-", name)


def _load(directory: Path | None, key: str) -> Pick | None:
    """The decision saved for ``key``; None when absent, untrusted, stale or damaged."""
    if directory is None or not owned.trusted(_path(directory, key)):
        return None
    path = _path(directory, key)
    try:
        d = json.loads(path.read_bytes())
        if d["key"] != key:
            return None
        trials = tuple(Trial(**t) for t in d["trials"])
        return Pick(Engine(d["engine"]), d["why"], trials, d["files"], from_cache=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("%s: %s; deciding again", path, e)
        return None
