"""YARA engines behind one small interface.

An ``EngineBackend`` compiles rule files into ``CompiledRules``, saves them
and loads them back; ``CompiledRules.match`` scans a buffer of bytes the
caller already read through its fd (never a path) and is safe to call from
several threads at once. yara-python releases the GIL while it scans;
YARA-X (yara_x 1.x) holds it, so its scans run one at a time in a process
(vigild scan uses worker processes for that reason).

yara-python is the default. Its ``match.strings`` changed shape in 4.3
(tuples in Debian's 4.2, ``StringMatch`` objects in PyPI's 4.5); both are
read here. YARA-X (``yara_x``) is used where installed and selected.

Rules may use the external variables LOKI and THOR define (signature-base
rules do): ``filename``, ``filepath``, ``extension`` and ``owner`` describe
where the file is and who owns it (``PATH_EXTERNALS``), ``filetype`` and
``md5`` describe its bytes (``CONTENT_EXTERNALS``); the admin may declare
more, with their values, in ``[rules.externals]``. Every one is defined at
compile time; which ones a rule file reads is asked of the engine (see
vigild.ruleset), never guessed from its text.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import re
import struct
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vigild.config import Engine

log = logging.getLogger(__name__)

# What a verdict may depend on besides the bytes: rules reading these go
# into a rule set of their own (vigild.ruleset) whose answers are never
# remembered by content.
PATH_EXTERNALS = ("filename", "filepath", "extension", "owner")
CONTENT_EXTERNALS = ("filetype", "md5")
EXTERNALS = PATH_EXTERNALS + CONTENT_EXTERNALS
MetaValue = str | int | bool | float
ExternalValue = str | int | bool | float
Externals = Mapping[str, ExternalValue]

# Modules some public rule sets import; probed in each engine to say which
# one a build lacks (PyPI's yara-python has no cuckoo, magic, macho, dex).
KNOWN_MODULES = (
    "pe", "elf", "math", "time", "hash", "dotnet", "console", "string",
    "cuckoo", "magic", "macho", "dex", "lnk", "vt",
)  # fmt: skip
_IMPORT = re.compile(r'^[ \t]*import[ \t]+"([A-Za-z0-9_]+)"', re.M)
_INCLUDE = re.compile(r'^[ \t]*include[ \t]+"([^"\n]+)"', re.M)


@dataclass(frozen=True)
class RuleMatch:
    """One rule that matched: who it is and what it says about itself."""

    rule: str
    namespace: str  # the rule file
    tags: tuple[str, ...]
    meta: tuple[tuple[str, MetaValue], ...]
    strings: tuple[str, ...]  # identifiers of the strings that matched

    def get(self, key: str, default: MetaValue | None = None) -> MetaValue | None:
        for k, v in self.meta:
            if k == key:
                return v
        return default


_UNDEFINED = re.compile(r'^(?:undefined identifier "|unknown identifier [`"])(\w+)["`]')


class RuleError(Exception):
    """A rule file does not compile: names the file and, when known, the line."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path, self.line, self.message = path, line, message
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")

    @property
    def undefined(self) -> str | None:
        """The identifier the engine did not know, when that is the error."""
        m = _UNDEFINED.match(self.message)
        return m.group(1) if m else None


def imports_of(path: Path, seen: set[Path] | None = None) -> dict[str, Path]:
    """Modules imported by ``path`` and the files it includes: module -> first importer.

    Only read to explain an engine's error (a module this build lacks
    shows up as an unrelated message such as 'invalid field name "sync"').
    """
    seen = set() if seen is None else seen
    found: dict[str, Path] = {}
    if path in seen:
        return found
    seen.add(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return found
    for module in _IMPORT.findall(text):
        found.setdefault(module, path)
    for inc in included_files(path, text):
        for module, where in imports_of(inc, seen).items():
            found.setdefault(module, where)
    return found


def included_files(path: Path, text: str | None = None, resolve: bool = True) -> list[Path]:
    """Files named by ``include`` in ``path``, relative to its directory: resolved,
    or as written (absolute; what a later swap of a symlink on the way changes)."""
    if text is None:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
    named = [Path(os.path.abspath(path.parent / name)) for name in _INCLUDE.findall(text)]
    return [p.resolve() for p in named] if resolve else named


def explain_modules(err: RuleError, files: Sequence[Path], engine: EngineBackend) -> RuleError:
    """``err`` reworded when the files import a module this build does not have."""
    have = engine.modules()
    for f in files:
        for module, where in imports_of(f).items():
            if module not in have:
                return RuleError(
                    err.path,
                    err.line,
                    f"module {module!r} is not available in this build ({engine.version}; "
                    f"it has {', '.join(have)}), imported by {where}",
                )
    return err


class Recompile(Exception):
    """A saved compile that is a note to compile the listed files again (boreal, see there)."""


class ScanTimeout(Exception):
    """The per-file time limit passed before the rules finished."""


class ScanFailed(Exception):
    """The engine could not scan the buffer."""


class CompiledRules(Protocol):
    engine: str
    warnings: list[RuleError]  # from the compiler (empty for a loaded compile)

    @property
    def count(self) -> int:
        """Rules the engine compiled (private and global ones included)."""
        ...

    def match(self, data: Any, externals: Externals) -> list[RuleMatch]: ...

    def names(self) -> tuple[str, ...]:
        """The identifiers of the rules compiled."""
        ...

    def save(self, path: str) -> None: ...


class EngineBackend(Protocol):
    name: str
    version: str

    def compile(self, files: Sequence[Path], externals: Externals) -> CompiledRules:
        """Each file in a namespace of its own, with ``externals`` defined."""
        ...

    def load(self, path: str) -> CompiledRules: ...

    def modules(self) -> tuple[str, ...]:
        """The KNOWN_MODULES this build can import."""
        ...


# ---------------------------------------------------------------- yara-python

_YARA_ERROR = re.compile(r"^(?P<path>.*)\((?P<line>\d+)\): (?P<msg>.*)$", re.S)


def _yara_rule_error(err: Exception, fallback: str) -> RuleError:
    """Split yara-python's "path(line): message" into a RuleError."""
    text = str(err)
    m = _YARA_ERROR.match(text)
    if m:
        return RuleError(m.group("path"), int(m.group("line")), m.group("msg"))
    return RuleError(fallback, None, text)


def _name_the_top(err: RuleError, files: Sequence[Path]) -> RuleError:
    """An error inside an included file, named from the file the admin listed.

    yara-python says "./malware/x.yar(23): ..." for an index that includes
    it; the admin knows the index, so that is named first.
    """
    if len(files) != 1 or err.path == str(files[0]):
        return err
    top = files[0]
    where = f"{err.path}:{err.line}" if err.line else err.path
    return RuleError(str(top), None, f"in included {where}: {err.message}")


def _compiles(compile_source: Any, module: str) -> bool:
    try:
        compile_source(source=f'import "{module}" rule vigild_probe {{ condition: true }}')
    except Exception:
        return False
    return True


def _string_ids(strings: Sequence[Any]) -> tuple[str, ...]:
    """Identifiers from yara-python 4.5 StringMatch objects or 4.2 tuples."""
    ids: dict[str, None] = {}
    for s in strings:
        ident = getattr(s, "identifier", None)
        ids[ident if ident is not None else s[1]] = None
    return tuple(ids)


class YaraRules:
    engine = "yara"

    def __init__(self, rules: Any, timeout: int) -> None:
        self._rules = rules
        self._timeout = timeout
        # yara-python >= 4.3 keeps them as "path(line): message"; 4.2 has none
        self.warnings = [
            _yara_rule_error(Exception(w), "?") for w in getattr(rules, "warnings", [])
        ]

    @property
    def count(self) -> int:
        return sum(1 for _ in self._rules)

    def names(self) -> tuple[str, ...]:
        return tuple(r.identifier for r in self._rules)

    @staticmethod
    def _engine() -> Any:
        """The engine's module (its TimeoutError and Error)."""
        import yara

        return yara

    def _find(self, data: Any, kwargs: dict[str, Any]) -> Any:
        return self._rules.match(data=data, timeout=self._timeout, **kwargs)

    @staticmethod
    def _strings(m: Any) -> tuple[str, ...]:
        return _string_ids(m.strings)

    def match(self, data: Any, externals: Externals) -> list[RuleMatch]:
        engine = self._engine()
        kwargs = {"externals": dict(externals)} if externals else {}
        try:
            found = self._find(data, kwargs)
        except engine.TimeoutError as e:
            raise ScanTimeout(str(e)) from e
        except engine.Error as e:
            raise ScanFailed(str(e)) from e
        return [
            RuleMatch(
                rule=m.rule,
                namespace=m.namespace,
                tags=tuple(m.tags),
                meta=tuple(m.meta.items()),
                strings=self._strings(m),
            )
            for m in found
        ]

    def save(self, path: str) -> None:
        self._rules.save(path)


class YaraBackend:
    name = "yara"

    def __init__(self, timeout: int) -> None:
        import yara

        self._yara = yara
        self.version = f"yara-python {yara.__version__}"
        self._timeout = timeout

    def compile(self, files: Sequence[Path], externals: Externals) -> YaraRules:
        paths = {str(f): str(f) for f in files}
        try:
            rules = self._yara.compile(filepaths=paths, externals=dict(externals))
        except self._yara.SyntaxError as e:
            err = _yara_rule_error(e, str(files[0]) if files else "?")
            raise _name_the_top(err, files) from e
        except self._yara.Error as e:
            raise RuleError(str(files[0]) if files else "?", None, str(e)) from e
        return YaraRules(rules, self._timeout)

    def modules(self) -> tuple[str, ...]:
        listed = getattr(self._yara, "modules", None)  # 4.3 and later
        if listed is not None:
            return tuple(m for m in listed if m != "tests")
        return tuple(m for m in KNOWN_MODULES if _compiles(self._yara.compile, m))

    def load(self, path: str) -> YaraRules:
        try:
            return YaraRules(self._yara.load(path), self._timeout)
        except self._yara.Error as e:
            raise RuleError(path, None, f"cannot load compiled rules: {e}") from e


# -------------------------------------------------------------------- YARA-X


class YaraXRules:
    engine = "yara-x"

    def __init__(self, rules: Any, timeout: int, warnings: list[RuleError] | None = None) -> None:
        self._rules = rules
        self._timeout = timeout
        self._local = threading.local()
        self.warnings = warnings or []

    @property
    def count(self) -> int:
        return sum(1 for _ in self._rules)

    def names(self) -> tuple[str, ...]:
        return tuple(r.identifier for r in self._rules)

    def _scanner(self) -> Any:
        """One scanner per thread: a yara_x.Scanner is not thread-safe."""
        import yara_x

        scanner = getattr(self._local, "scanner", None)
        if scanner is None:
            scanner = yara_x.Scanner(self._rules)
            scanner.set_timeout(self._timeout)
            self._local.scanner = scanner
        return scanner

    def match(self, data: Any, externals: Externals) -> list[RuleMatch]:
        import yara_x

        scanner = self._scanner()
        for key, value in externals.items():
            scanner.set_global(key, value)
        try:
            results = scanner.scan(bytes(data))
        except yara_x.TimeoutError as e:
            raise ScanTimeout(str(e)) from e
        except yara_x.ScanError as e:
            raise ScanFailed(str(e)) from e
        return [
            RuleMatch(
                rule=r.identifier,
                namespace=r.namespace,
                tags=tuple(r.tags),
                meta=tuple(r.metadata),
                strings=tuple(p.identifier for p in r.patterns if p.matches),
            )
            for r in results.matching_rules
        ]

    def save(self, path: str) -> None:
        with open(path, "wb") as f:
            self._rules.serialize_into(f)


def _yara_x_diagnostic(d: dict[str, Any]) -> RuleError:
    """A YARA-X error or warning dictionary as a RuleError (file, line, title)."""
    labels = d.get("labels") or [{}]
    origin = labels[0].get("code_origin") or "?"
    return RuleError(str(origin), d.get("line"), str(d.get("title", d.get("text", ""))))


class YaraXBackend:
    name = "yara-x"

    def __init__(self, timeout: int) -> None:
        import yara_x

        self._yx = yara_x
        self.version = f"yara-x {getattr(yara_x, '__version__', '?')}"
        self._timeout = timeout

    def compile(self, files: Sequence[Path], externals: Externals) -> YaraXRules:
        compiler = self._yx.Compiler()
        for name, value in externals.items():
            compiler.define_global(name, value)
        for f in files:
            try:
                source = f.read_text(encoding="utf-8", errors="replace")
            except OSError as e:
                raise RuleError(str(f), None, e.strerror or str(e)) from e
            # includes are found relative to the file, as yara does
            compiler.add_include_dir(str(f.parent))
            compiler.new_namespace(str(f))
            try:
                compiler.add_source(source, origin=str(f))
            except self._yx.CompileError as e:
                errors = compiler.errors()
                if errors:
                    raise _name_the_top(_yara_x_diagnostic(errors[0]), [f]) from e
                raise RuleError(str(f), None, str(e).splitlines()[0]) from e
        warnings = [_yara_x_diagnostic(w) for w in compiler.warnings()]
        return YaraXRules(compiler.build(), self._timeout, warnings)

    def modules(self) -> tuple[str, ...]:
        return tuple(m for m in KNOWN_MODULES if _compiles(self._compile_source, m))

    def _compile_source(self, source: str) -> None:
        self._yx.compile(source)

    def load(self, path: str) -> YaraXRules:
        try:
            with open(path, "rb") as f:
                data = f.read()
            return YaraXRules(self._yx.Rules.deserialize_from(io.BytesIO(data)), self._timeout)
        except (OSError, ValueError, self._yx.CompileError) as e:
            raise RuleError(path, None, f"cannot load compiled rules: {e}") from e


# ------------------------------------------------------------------- boreal

_BOREAL_ERROR = re.compile(r"^(?P<path>.*?):(?P<line>\d+):\d+: (?:error: )?(?P<msg>.*)$", re.S)


def _boreal_rule_error(err: Exception, fallback: str) -> RuleError:
    """Split boreal's "path:line:column: error: message" into a RuleError."""
    text = str(err).strip()
    m = _BOREAL_ERROR.match(text)
    if m:
        return RuleError(m.group("path"), int(m.group("line")), m.group("msg"))
    return RuleError(fallback, None, text)


RECOMPILE = b"vigild: compile the listed files again\n"
# a saved boreal set in parts: this line, then per part a u64 length and its bytes
PARTS = b"vigild: boreal scanners in parts\n"
# boreal 1.4 loads back a saved scanner of at most this many rules
_BOREAL_MAX_SAVED = 1024


class BorealRules(YaraRules):
    """boreal's Scanner: thread-safe, and it releases the GIL while it scans.
    Its Python API is yara-python's; the differences are the three hooks.

    A set too big for boreal to load back once saved is saved, and loaded,
    as several scanners of whole rule files (each file is its own namespace,
    so no rule refers across them); a file is then scanned by each in turn,
    each with the scan timeout."""

    engine = "boreal"

    def __init__(
        self,
        rules: Any,
        timeout: int,
        warnings: list[RuleError] | None = None,
        parts: Sequence[Any] = (),
        source: tuple[Sequence[Path], Externals] | None = None,
    ) -> None:
        self._rules = rules  # the whole set as one scanner, or None when loaded in parts
        self._parts = tuple(parts) or (rules,)
        self._timeout = timeout
        self.warnings = warnings or []
        self._source = source  # the files and externals compiled, to save in parts

    @property
    def count(self) -> int:
        return sum(1 for p in self._parts for _ in p)

    def names(self) -> tuple[str, ...]:
        return tuple(r.identifier for p in self._parts for r in p)

    @staticmethod
    def _engine() -> Any:
        import boreal

        return boreal

    def _find(self, data: Any, kwargs: dict[str, Any]) -> Any:
        # fast=False: every matching string is found, for the alert; boreal
        # takes bytes only (a copy of the buffer, as YARA-X needs too)
        data = bytes(data)
        found: list[Any] = []
        for part in self._parts:
            found += part.match(data=data, timeout=self._timeout, fast=False, **kwargs)
        return found

    @staticmethod
    def _strings(m: Any) -> tuple[str, ...]:
        # boreal names "$a" as "a"; yara-python and YARA-X keep the "$"
        return tuple(dict.fromkeys(f"${s.identifier}" for s in m.strings))

    def save(self, path: str) -> None:
        """The serialized scanner, once proven to load back; else in parts
        (boreal 1.4 writes a scanner of more than 1,024 rules that its own load
        refuses: "invalid value for CompilerProfile"); else RECOMPILE, and the
        saved file list is compiled again at each load."""
        import boreal

        data = self._rules.save(to_bytes=True)
        try:
            boreal.load(data=data)
        except boreal.Error:
            data = self._in_parts()
        with open(path, "wb") as f:
            f.write(data)

    def _in_parts(self) -> bytes:
        """PARTS and the scanners of consecutive files of at most 1,024 rules each."""
        import boreal

        if self._source is None:
            return RECOMPILE
        files, externals = self._source
        per_file = Counter(r.namespace for r in self._rules)
        groups: list[list[Path]] = [[]]
        n = 0
        for f in files:
            k = per_file.get(str(f), 0)
            if groups[-1] and n + k > _BOREAL_MAX_SAVED:
                groups.append([])
                n = 0
            groups[-1].append(f)
            n += k
        out = [PARTS]
        for group in groups:
            blob = boreal.compile(
                filepaths={str(f): str(f) for f in group}, externals=dict(externals)
            ).save(to_bytes=True)
            assert blob is not None  # to_bytes: the bytes, not written to a file
            try:
                boreal.load(data=blob)
            except boreal.Error:
                return RECOMPILE  # one file of more than 1,024 rules
            out += [struct.pack("<Q", len(blob)), blob]
        return b"".join(out)


class BorealBackend:
    name = "boreal"

    def __init__(self, timeout: int) -> None:
        import boreal

        self._boreal = boreal
        self.version = f"boreal {getattr(boreal, '__version__', '?')}"
        self._timeout = timeout

    def compile(self, files: Sequence[Path], externals: Externals) -> BorealRules:
        paths = {str(f): str(f) for f in files}
        fallback = str(files[0]) if files else "?"
        try:
            rules = self._boreal.compile(filepaths=paths, externals=dict(externals))
        except self._boreal.AddRuleError as e:
            raise _name_the_top(_boreal_rule_error(e, fallback), files) from e
        except (self._boreal.Error, OSError) as e:
            raise RuleError(fallback, None, str(e)) from e
        warnings = [_boreal_rule_error(Exception(w), "?") for w in rules.warnings]
        return BorealRules(rules, self._timeout, warnings, source=(tuple(files), dict(externals)))

    def modules(self) -> tuple[str, ...]:
        return tuple(m for m in self._boreal.modules if m in KNOWN_MODULES)

    def load(self, path: str) -> BorealRules:
        try:
            with open(path, "rb") as f:
                data = f.read()
            if data == RECOMPILE:
                raise Recompile(path)
            if data.startswith(PARTS):
                return BorealRules(None, self._timeout, parts=self._parts(data, path))
            return BorealRules(self._boreal.load(data=data), self._timeout)
        except (OSError, self._boreal.Error) as e:
            raise RuleError(path, None, f"cannot load compiled rules: {e}") from e

    def _parts(self, data: bytes, path: str) -> list[Any]:
        parts, at = [], len(PARTS)
        while at < len(data):
            (n,) = struct.unpack_from("<Q", data, at) if at + 8 <= len(data) else (None,)
            if n is None or at + 8 + n > len(data):
                raise RuleError(path, None, "cannot load compiled rules: truncated")
            parts.append(self._boreal.load(data=data[at + 8 : at + 8 + n]))
            at += 8 + n
        if not parts:
            raise RuleError(path, None, "cannot load compiled rules: no parts")
        return parts


_MODULE_OF = {Engine.YARA: "yara", Engine.YARA_X: "yara_x", Engine.BOREAL: "boreal"}
# Engines whose scans run in parallel in threads: they release the GIL.
GIL_FREE = frozenset({"yara", "boreal"})


def available(engine: Engine) -> bool:
    module = _MODULE_OF.get(engine)
    return module is not None and importlib.util.find_spec(module) is not None


def backend(engine: Engine, timeout: int) -> EngineBackend:
    """The backend for ``engine``; ``auto`` is decided per rule set (vigild.enginepick)
    and, asked here, is yara-python, the reference."""
    if engine is Engine.AUTO:
        engine = Engine.YARA if available(Engine.YARA) else Engine.YARA_X
    if not available(engine):
        raise RuleError("<engine>", None, f"engine {engine.value} is not installed")
    if engine is Engine.YARA_X:
        return YaraXBackend(timeout)
    if engine is Engine.BOREAL:
        return BorealBackend(timeout)
    return YaraBackend(timeout)
