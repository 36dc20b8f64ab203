"""Download one feed file: conditional, bounded in size and time, complete or refused.

Owns nothing on disk: the bytes come back in memory (bounded by
``update.max_download``) and the caller verifies them before anything is
written. HTTPS checks the server against the system's CA store or the
feed's ``ca_file``; ``file://`` serves air-gapped mirrors. Every error is a
``FetchError`` whose message names the URL and the reason.
"""

from __future__ import annotations

import hashlib
import http.client
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

_CHUNK = 1 << 16


class FetchError(Exception):
    """The file could not be fetched whole; the message says which and why."""


@dataclass(frozen=True)
class Fetched:
    data: bytes | None  # None: not modified since the validators given
    etag: str = ""
    last_modified: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data or b"").hexdigest()


@dataclass(frozen=True)
class Limits:
    timeout: float  # seconds: each connect or read, and the whole download
    max_bytes: int
    ca_file: str = ""


def fetch(url: str, limits: Limits, etag: str = "", last_modified: str = "") -> Fetched:
    """``url``'s bytes, or ``Fetched(None)`` when the server says they did not change."""
    if url.startswith("file://"):
        return _file(url, limits)
    request = urllib.request.Request(url, headers={"User-Agent": "vigild-update"})
    if etag:
        request.add_header("If-None-Match", etag)
    if last_modified:
        request.add_header("If-Modified-Since", last_modified)
    context = ssl.create_default_context(cafile=limits.ca_file or None)
    deadline = time.monotonic() + limits.timeout
    try:
        with urllib.request.urlopen(request, timeout=limits.timeout, context=context) as resp:
            data = _read(resp, url, limits, deadline)
            return Fetched(
                data, resp.headers.get("ETag", ""), resp.headers.get("Last-Modified", "")
            )
    except urllib.error.HTTPError as e:
        if e.code == 304:
            return Fetched(None, etag, last_modified)
        raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise FetchError(f"{url}: {_why(e.reason)}") from None
    except TimeoutError:
        raise FetchError(f"{url}: timed out after {limits.timeout:g}s") from None
    except (OSError, http.client.HTTPException) as e:
        raise FetchError(f"{url}: {_why(e)}") from None


def _why(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {reason.verify_message}"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def _read(resp: http.client.HTTPResponse, url: str, limits: Limits, deadline: float) -> bytes:
    """The whole body: refused when larger than allowed, shorter than announced, or late."""
    declared = resp.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
        raise FetchError(f"{url}: {declared} bytes, more than update.max_download allows")
    out = bytearray()
    while True:
        if time.monotonic() > deadline:
            raise FetchError(f"{url}: timed out after {limits.timeout:g}s (download too slow)")
        chunk = resp.read(_CHUNK)
        if not chunk:
            break
        out += chunk
        if len(out) > limits.max_bytes:
            raise FetchError(f"{url}: more than update.max_download ({limits.max_bytes} bytes)")
    if declared is not None and declared.isdigit() and len(out) != int(declared):
        raise FetchError(f"{url}: truncated download ({len(out)} of {declared} bytes)")
    return bytes(out)


def _file(url: str, limits: Limits) -> Fetched:
    """A ``file://`` URL: read whole (an unchanged file is found by its hash later)."""
    path = urllib.parse.unquote(urllib.parse.urlparse(url).path)
    try:
        with open(path, "rb") as f:
            data = f.read(limits.max_bytes + 1)
    except OSError as e:
        raise FetchError(f"{url}: {e.strerror}") from None
    if len(data) > limits.max_bytes:
        raise FetchError(f"{url}: more than update.max_download ({limits.max_bytes} bytes)")
    return Fetched(data)
