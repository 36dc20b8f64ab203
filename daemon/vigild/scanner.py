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

Rules may use the external variables ``filename``, ``filepath``,
``extension`` and ``filetype`` (signature-base and LOKI rules do); they are
defined as empty strings at compile time and set for each scan.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vigild.config import Engine

log = logging.getLogger(__name__)

EXTERNALS = ("filename", "filepath", "extension", "filetype")
MetaValue = str | int | bool | float


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


class RuleError(Exception):
    """A rule file does not compile: names the file and, when known, the line."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path, self.line, self.message = path, line, message
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


class ScanTimeout(Exception):
    """The per-file time limit passed before the rules finished."""


class ScanFailed(Exception):
    """The engine could not scan the buffer."""


class CompiledRules(Protocol):
    engine: str
    warnings: list[RuleError]  # from the compiler (empty for a loaded compile)

    def match(self, data: Any, externals: Mapping[str, str]) -> list[RuleMatch]: ...

    def save(self, path: str) -> None: ...


class EngineBackend(Protocol):
    name: str
    version: str

    def compile(self, files: Sequence[Path]) -> CompiledRules: ...

    def load(self, path: str) -> CompiledRules: ...


# ---------------------------------------------------------------- yara-python

_YARA_ERROR = re.compile(r"^(?P<path>.*)\((?P<line>\d+)\): (?P<msg>.*)$", re.S)


def _yara_rule_error(err: Exception, fallback: str) -> RuleError:
    """Split yara-python's "path(line): message" into a RuleError."""
    text = str(err)
    m = _YARA_ERROR.match(text)
    if m:
        return RuleError(m.group("path"), int(m.group("line")), m.group("msg"))
    return RuleError(fallback, None, text)


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

    def match(self, data: Any, externals: Mapping[str, str]) -> list[RuleMatch]:
        import yara

        kwargs = {"externals": dict(externals)} if externals else {}
        try:
            found = self._rules.match(data=data, timeout=self._timeout, **kwargs)
        except yara.TimeoutError as e:
            raise ScanTimeout(str(e)) from e
        except yara.Error as e:
            raise ScanFailed(str(e)) from e
        return [
            RuleMatch(
                rule=m.rule,
                namespace=m.namespace,
                tags=tuple(m.tags),
                meta=tuple(m.meta.items()),
                strings=_string_ids(m.strings),
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

    def compile(self, files: Sequence[Path]) -> YaraRules:
        paths = {str(f): str(f) for f in files}
        try:
            rules = self._yara.compile(filepaths=paths, externals=dict.fromkeys(EXTERNALS, ""))
        except self._yara.SyntaxError as e:
            raise _yara_rule_error(e, str(files[0]) if files else "?") from e
        except self._yara.Error as e:
            raise RuleError(str(files[0]) if files else "?", None, str(e)) from e
        return YaraRules(rules, self._timeout)

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

    def _scanner(self) -> Any:
        """One scanner per thread: a yara_x.Scanner is not thread-safe."""
        import yara_x

        scanner = getattr(self._local, "scanner", None)
        if scanner is None:
            scanner = yara_x.Scanner(self._rules)
            scanner.set_timeout(self._timeout)
            self._local.scanner = scanner
        return scanner

    def match(self, data: Any, externals: Mapping[str, str]) -> list[RuleMatch]:
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

    def compile(self, files: Sequence[Path]) -> YaraXRules:
        compiler = self._yx.Compiler()
        for name in EXTERNALS:
            compiler.define_global(name, "")
        for f in files:
            try:
                source = f.read_text(encoding="utf-8", errors="replace")
            except OSError as e:
                raise RuleError(str(f), None, e.strerror or str(e)) from e
            compiler.new_namespace(str(f))
            try:
                compiler.add_source(source, origin=str(f))
            except self._yx.CompileError as e:
                errors = compiler.errors()
                if errors:
                    raise _yara_x_diagnostic(errors[0]) from e
                raise RuleError(str(f), None, str(e).splitlines()[0]) from e
        warnings = [_yara_x_diagnostic(w) for w in compiler.warnings()]
        return YaraXRules(compiler.build(), self._timeout, warnings)

    def load(self, path: str) -> YaraXRules:
        try:
            with open(path, "rb") as f:
                data = f.read()
            return YaraXRules(self._yx.Rules.deserialize_from(io.BytesIO(data)), self._timeout)
        except (OSError, ValueError, self._yx.CompileError) as e:
            raise RuleError(path, None, f"cannot load compiled rules: {e}") from e


def available(engine: Engine) -> bool:
    module = {Engine.YARA: "yara", Engine.YARA_X: "yara_x"}.get(engine)
    return module is not None and importlib.util.find_spec(module) is not None


def backend(engine: Engine, timeout: int) -> EngineBackend:
    """The backend for ``engine``; ``auto`` takes yara-python, else YARA-X."""
    if engine is Engine.AUTO:
        engine = Engine.YARA if available(Engine.YARA) else Engine.YARA_X
        log.info("engine auto: using %s", engine.value)
    if not available(engine):
        raise RuleError("<engine>", None, f"engine {engine.value} is not installed")
    if engine is Engine.YARA_X:
        return YaraXBackend(timeout)
    return YaraBackend(timeout)
