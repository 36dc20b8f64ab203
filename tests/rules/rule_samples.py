"""The shipped rules and their test samples, as data the tests iterate over.

Layout (see samples/README.md for how to add one):

    rules/NN-topic.yar                       the rules; names parsed from the source
    tests/rules/samples/<Rule>/positive-*    must match <Rule>
    tests/rules/samples/<Rule>/negative-*    must not match <Rule>, nor any other
                                             rule unless its name says
                                             ".matches-<OtherRule>"

Samples are stored in a form that other scanners on a developer's machine
will not flag, and turned into the real bytes here, in memory, at test
time. The suffixes after the sample's own name say how, applied from the
right:

    .rot13        ROT13 of the text (every positive web shell, reverse shell,
                  dropper, miner config and ransom note)
    .utf16        the text encoded as UTF-16LE with a BOM
    .elfstrings   a synthetic ELF: a valid ELF header and the listed strings,
                  no code (see build_elf)
    .eicar        a template around the EICAR string (see render_eicar)

The materialised name is the stored name without those suffixes.
"""

from __future__ import annotations

import codecs
import random
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vigild import ruleset, scanner
from vigild.config import Engine

HERE = Path(__file__).resolve().parent
SAMPLES_DIR = HERE / "samples"
RULES_DIR = HERE.parents[1] / "rules"

KINDS = ("positive", "negative")

# The EICAR test string, hex-encoded so that this checkout never holds it.
EICAR = bytes.fromhex(
    "58354f2150254041505b345c505a58353428505e2937434329377d2445494341522d5354"
    "414e444152442d414e544956495255532d544553542d46494c452124482b482a"
)
EICAR_SHA256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"


# ------------------------------------------------------------------ the rules


_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_STRING = re.compile(r'"(?:\\.|[^"\\\n])*"')
_RULE = re.compile(r"^[ \t]*(?:(?:private|global)[ \t]+)*rule[ \t]+([A-Za-z_]\w*)", re.M)


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yar"))


def rule_names(path: Path) -> list[str]:
    """Rule identifiers declared in one file (comments and strings ignored)."""
    text = path.read_text(encoding="utf-8")
    # Strings first: a "//" inside a string literal is not a comment.
    text = _STRING.sub('""', text)
    return _RULE.findall(_COMMENT.sub(" ", text))


def all_rule_names() -> dict[str, Path]:
    """Every rule name in rules/*.yar and the file that declares it."""
    names: dict[str, Path] = {}
    for f in rule_files():
        for name in rule_names(f):
            if name in names:
                raise ValueError(f"rule {name} declared in both {names[name]} and {f}")
            names[name] = f
    return names


# ---------------------------------------------------------------- the samples


@dataclass(frozen=True)
class Sample:
    rule: str
    kind: str  # "positive" or "negative"
    source: Path  # the stored file
    name: str  # the file name it is materialised under
    also_matches: frozenset[str]  # other rules a negative is expected to match

    @property
    def id(self) -> str:
        return f"{self.rule}/{self.source.name}"

    def data(self) -> bytes:
        return materialise(self.source)


_TRANSFORMS = (".rot13", ".utf16", ".elfstrings", ".eicar")
_ALSO = re.compile(r"\.matches-([A-Za-z_]\w*)")


def materialised_name(stored: str) -> str:
    name = stored
    while any(name.endswith(t) for t in _TRANSFORMS):
        name = name[: name.rindex(".")]
    return name


def discover() -> list[Sample]:
    """Every sample under samples/<Rule>/, in a stable order."""
    found: list[Sample] = []
    if not SAMPLES_DIR.is_dir():
        return found
    for rule_dir in sorted(p for p in SAMPLES_DIR.iterdir() if p.is_dir()):
        for f in sorted(p for p in rule_dir.iterdir() if p.is_file()):
            kind = f.name.split("-", 1)[0]
            if kind not in KINDS:
                continue
            found.append(
                Sample(
                    rule=rule_dir.name,
                    kind=kind,
                    source=f,
                    name=materialised_name(f.name),
                    also_matches=frozenset(_ALSO.findall(f.name)),
                )
            )
    return found


def stray_files() -> list[Path]:
    """Files in a sample directory that are neither positive-* nor negative-*."""
    if not SAMPLES_DIR.is_dir():
        return []
    return sorted(
        f
        for d in SAMPLES_DIR.iterdir()
        if d.is_dir()
        for f in d.iterdir()
        if f.name.split("-", 1)[0] not in KINDS
    )


def materialise(path: Path) -> bytes:
    """The real bytes of a stored sample, suffix transforms applied right to left."""
    data = path.read_bytes()
    name = path.name
    while True:
        suffix = next((t for t in _TRANSFORMS if name.endswith(t)), None)
        if suffix is None:
            return data
        name = name[: -len(suffix)]
        if suffix == ".rot13":
            data = codecs.encode(data.decode("utf-8"), "rot13").encode("utf-8")
        elif suffix == ".utf16":
            data = data.decode("utf-8").encode("utf-16")  # BOM + native (LE on x86)
        elif suffix == ".elfstrings":
            data = build_elf(data.decode("utf-8"))
        else:
            data = render_eicar(data, seed=path.name)


# ------------------------------------------------------------- synthetic ELF

# e_machine values for the CPUs these bots are built for.
_MACHINES = {
    "sparc": 2,
    "x86": 3,
    "m68k": 4,
    "mips": 8,
    "ppc": 20,
    "arm": 40,
    "sh": 42,
    "x86_64": 62,
    "aarch64": 183,
}
_XOR_LINE = re.compile(r"^xor\((0x[0-9a-fA-F]{2})\) (.*)$")


def build_elf(spec: str) -> bytes:
    """A synthetic ELF file from an .elfstrings spec.

    The first non-comment line is ``elf CLASS ENDIAN MACHINE`` (e.g.
    ``elf 32 big mips``); every further line is one string, stored
    NUL-terminated after the header. ``xor(0x22) text`` stores ``text``
    XOR-encoded with that byte, the way Mirai hides its string table.
    Lines starting with ``#`` are comments. The result has a valid ELF
    header and no program headers or code: it cannot run.
    """
    lines = [ln for ln in spec.splitlines() if ln.strip() and not ln.startswith("#")]
    header = lines[0].split()
    if len(header) != 4 or header[0] != "elf":
        raise ValueError(f"first line must be 'elf CLASS ENDIAN MACHINE', got {lines[0]!r}")
    bits, endian, machine = int(header[1]), header[2], _MACHINES[header[3]]
    order = {"little": "<", "big": ">"}[endian]
    ident = b"\x7fELF" + bytes([1 if bits == 32 else 2, 1 if endian == "little" else 2, 1])
    ident = ident.ljust(16, b"\0")
    addr = "I" if bits == 32 else "Q"
    ehsize = 52 if bits == 32 else 64
    # e_type=EXEC, e_machine, e_version=1, entry/phoff/shoff=0, flags=0,
    # e_ehsize, no program or section headers.
    fields = struct.pack(
        f"{order}HHI{addr}{addr}{addr}IHHHHHH", 2, machine, 1, 0, 0, 0, 0, ehsize, 0, 0, 0, 0, 0
    )
    body = bytearray(ident + fields)
    body.extend(b"\0" * (0x100 - len(body)))
    for line in lines[1:]:
        m = _XOR_LINE.match(line)
        if m:
            key = int(m.group(1), 16)
            body.extend(b ^ key for b in m.group(2).encode("utf-8"))
        else:
            body.extend(line.encode("utf-8"))
        body.append(0)
    return bytes(body)


# -------------------------------------------------------------- EICAR samples

_EICAR_TOKEN = re.compile(rb"\{(EICAR(?::(\d+))?|RANDOM:(\d+)|FILL:(\d+):([0-9A-Fa-f]{2}))\}")


def render_eicar(template: bytes, seed: str) -> bytes:
    """Render an .eicar template.

    The template is text with Python-style escapes (``\\r``, ``\\t``,
    ``\\x1a``), so whitespace is visible in review; the newline that ends
    the file is not part of the sample. Tokens:

        {EICAR}        the 68-byte test string
        {EICAR:N}      its first N bytes (a near miss)
        {RANDOM:N}     N pseudo-random bytes, the same on every run
        {FILL:N:HH}    N bytes of value 0xHH
    """
    text = codecs.escape_decode(template.rstrip(b"\n"))[0]
    rng = random.Random(seed)

    def token(m: re.Match[bytes]) -> bytes:
        if m.group(1).startswith(b"EICAR"):
            return EICAR[: int(m.group(2))] if m.group(2) else EICAR
        if m.group(3):
            return rng.randbytes(int(m.group(3)))
        return bytes([int(m.group(5), 16)]) * int(m.group(4))

    return _EICAR_TOKEN.sub(token, text)


# -------------------------------------------------------------- rule sources


def regex_strings(path: Path) -> Iterable[tuple[int, str, str]]:
    """(line, identifier, regex body) for every /regex/ string in a rule file."""
    in_block = False
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if in_block or stripped.startswith("/*"):
            in_block = "*/" not in stripped
            continue
        m = re.match(r"\s*(\$\w*)\s*=\s*/", line)
        if m:
            yield lineno, m.group(1), _regex_body(line[m.end() :])


def _regex_body(rest: str) -> str:
    """The text of a YARA regex up to its closing slash (escapes and classes skipped)."""
    i, in_class = 0, False
    while i < len(rest):
        c = rest[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            # A "]" right after "[" or "[^" is a literal member.
            if rest[i + 1 : i + 2] == "]" or rest[i + 1 : i + 3] == "^]":
                i += 2 if rest[i + 1] == "]" else 3
                continue
        elif c == "/":
            return rest[:i]
        i += 1
    raise ValueError(f"unterminated regex: /{rest}")


def unbounded_repeats(regex: str) -> list[str]:
    """The unbounded quantifiers (*, +, {n,}) in a regex, outside classes and escapes."""
    found: list[str] = []
    i, in_class = 0, False
    while i < len(regex):
        c = regex[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if regex[i + 1 : i + 2] == "]" or regex[i + 1 : i + 3] == "^]":
                i += 2 if regex[i + 1] == "]" else 3
                continue
        elif c in "*+":
            found.append(f"{c!r} at {i}")
        elif c == "{":
            m = re.match(r"\{\d*,\}", regex[i:])
            if m:
                found.append(f"{m.group(0)!r} at {i}")
        i += 1
    return found


# ------------------------------------------------------------------- engines

EXTERNALS = {"filename": "x", "filepath": "/x", "extension": "", "filetype": ""}

# What the load_rules fixture hands out: the default rules compiled by an engine.
RuleLoader = Callable[[Engine], ruleset.RuleSet]


def engine_params() -> list[Any]:
    """One pytest param per YARA engine, skipped with a reason where not installed."""
    params = []
    for engine in (Engine.YARA, Engine.YARA_X, Engine.BOREAL):
        skip = () if scanner.available(engine) else (pytest.mark.skip(reason=f"{engine} missing"),)
        params.append(pytest.param(engine, id=engine.value, marks=skip))
    return params
