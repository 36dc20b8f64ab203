"""The signed manifest that says a feed's content is current: serial, times, content hash.

A signature alone proves who made the content, not that it is the newest:
a network attacker or a compromised mirror could serve an older signed
archive (a rollback to a set without the newest rules) or keep serving the
same one for ever (a freeze). So a signed feed publishes beside its content
a small text file, ``<content>.manifest``, signed with ``ssh-keygen -Y
sign`` like the content used to be (``<content>.manifest.sig``)::

    vigild-feed-manifest 1
    serial 1764518400
    signed 2026-11-30T16:00:00Z
    expires 2026-12-07T16:00:00Z
    sha256 <the 64 hex digits of sha256sum of the content file>

It plays TUF's timestamp and snapshot roles in one file an admin can write
with ``date`` and ``sha256sum``. ``judge`` holds the rules: a serial lower
than the highest one accepted is a replay and is refused (``vigild update
rollback`` by the admin is the only way back); the same serial with other
bytes is refused; a manifest past ``expires`` is refused, and content whose
newest manifest has expired is stale. The feed's age is measured from
``signed``, not from the download, so a mirror that answers "not modified"
for ever cannot keep it looking fresh.

Owns nothing on disk: parsing and judging only (vigild.update fetches,
verifies the signature and keeps the state).
"""

from __future__ import annotations

import calendar
import hashlib
import re
import time
from dataclasses import dataclass
from enum import Enum

HEADER = "vigild-feed-manifest 1"
MAX_BYTES = 4096
_TIME = "%Y-%m-%dT%H:%M:%SZ"
_KEYS = ("serial", "signed", "expires", "sha256")
_SERIAL = re.compile(r"[0-9]{1,18}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ManifestError(Exception):
    """The manifest is unreadable or not acceptable now; the message says why."""


@dataclass(frozen=True)
class Manifest:
    serial: int
    signed: float  # seconds since the epoch
    expires: float
    sha256: str  # of the feed's content file
    digest: str  # of the manifest's own bytes: one serial, one manifest


def _when(value: str, line: int) -> float:
    try:
        return float(calendar.timegm(time.strptime(value, _TIME)))
    except ValueError:
        raise ManifestError(
            f"manifest line {line}: expected a UTC time such as 2026-11-30T16:00:00Z "
            f"(date -u +%Y-%m-%dT%H:%M:%SZ), got {value!r}"
        ) from None


def _fields(text: str) -> dict[str, tuple[str, int]]:
    """Each key's value and line number; ManifestError on an unknown or repeated key."""
    found: dict[str, tuple[str, int]] = {}
    for n, line in enumerate(text.splitlines()[1:], 2):
        if not line.strip() or line.startswith("#"):
            continue
        key, _, value = line.strip().partition(" ")
        if key not in _KEYS:
            raise ManifestError(
                f"manifest line {n}: unknown key {key!r} (known: {', '.join(_KEYS)})"
            )
        if key in found:
            raise ManifestError(f"manifest line {n}: {key} given twice")
        found[key] = (value.strip(), n)
    for key in _KEYS:
        if key not in found:
            raise ManifestError(f"manifest: no {key} line")
    return found


def parse(data: bytes) -> Manifest:
    """The manifest in ``data``; ManifestError naming the line otherwise."""
    if len(data) > MAX_BYTES:
        raise ManifestError(f"manifest: more than {MAX_BYTES} bytes")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ManifestError("manifest: not ASCII text") from None
    if text.splitlines()[:1] != [HEADER]:
        raise ManifestError(f"manifest line 1: expected {HEADER!r}")
    f = _fields(text)
    serial, line = f["serial"]
    if not _SERIAL.fullmatch(serial):
        raise ManifestError(f"manifest line {line}: serial must be a whole number, got {serial!r}")
    sha, line = f["sha256"]
    if not _SHA256.fullmatch(sha):
        raise ManifestError(f"manifest line {line}: sha256 must be 64 lower-case hex digits")
    signed, expires = _when(*f["signed"]), _when(*f["expires"])
    if expires <= signed:
        raise ManifestError(f"manifest line {f['expires'][1]}: expires is not after signed")
    return Manifest(int(serial), signed, expires, sha, hashlib.sha256(data).hexdigest())


def stamp(t: float) -> str:
    return time.strftime(_TIME, time.gmtime(t))


class Judgement(Enum):
    NEW = "new"  # a higher serial: take it
    SAME = "same"  # the manifest already accepted: nothing to do


def judge(m: Manifest, serial: int, digest: str, now: float) -> Judgement:
    """Whether manifest ``m`` may follow the highest one accepted so far
    (``serial``, whose bytes hash to ``digest``); ManifestError when not."""
    if m.serial < serial:
        raise ManifestError(
            f"replay refused: manifest serial {m.serial} is older than serial {serial} already "
            "accepted (an old signed feed served again?); only `vigild update rollback` goes back"
        )
    if m.serial == serial and m.digest != digest:
        raise ManifestError(
            f"manifest serial {m.serial} was already accepted with other bytes: "
            "a publisher raises the serial for every new manifest"
        )
    if now >= m.expires:
        raise ManifestError(stale_reason(m.serial, m.signed, m.expires))
    return Judgement.SAME if m.serial == serial else Judgement.NEW


def stale_reason(serial: int, signed: float, expires: float) -> str:
    """Why a feed is stale, in words an admin can act on."""
    return (
        f"stale: the newest manifest (serial {serial}, signed {stamp(signed)}) expired "
        f"{stamp(expires)}; the feed is frozen or its publisher stopped signing"
    )
