"""journald's native protocol and sd_notify, spoken directly, never blocking.

python-systemd's ``journal.sendv`` and ``daemon.notify`` hold the GIL
while they write to a blocking socket: a journald that stops reading
(restarting, disk full, flooded) would then freeze every Python thread,
workers answering opens included. Here the datagram is sent with
MSG_DONTWAIT from Python, which releases the GIL around the system call;
a full socket is reported at once (``Busy``) and the caller drops the
entry and counts it.

Protocol: one datagram of ``NAME=value\\n`` lines; a value holding a
newline is sent as ``NAME\\n``, its length as a little-endian u64, the
bytes, ``\\n``. Names are upper-case ASCII; values are bytes (file names
that are not UTF-8 travel as they are).
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterable

JOURNAL_SOCKET = "/run/systemd/journal/socket"


class Busy(Exception):
    """journald is not reading: its socket buffer is full."""


class Unavailable(Exception):
    """No journald listening at the socket (not running, or stopped)."""


def encode(fields: Iterable[tuple[str, str | bytes]]) -> bytes:
    """One native-protocol datagram for ``fields`` (names may repeat)."""
    out = bytearray()
    for name, value in fields:
        data = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
        key = name.encode("ascii")
        if b"\n" in data:
            out += key + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key + b"=" + data + b"\n"
    return bytes(out)


def _send(path: str, payload: bytes) -> None:
    target = "\0" + path[1:] if path.startswith("@") else path  # abstract socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto(payload, socket.MSG_DONTWAIT, target)


def send(fields: Iterable[tuple[str, str | bytes]], path: str = JOURNAL_SOCKET) -> None:
    """Send one journal entry; raises Busy or Unavailable, never blocks."""
    try:
        _send(path, encode(fields))
    except BlockingIOError as e:
        raise Busy(str(e)) from e
    except (FileNotFoundError, ConnectionRefusedError) as e:
        raise Unavailable(str(e)) from e
    except OSError as e:  # EMSGSIZE and the like: not for this entry
        raise Unavailable(str(e)) from e


def notify(state: str) -> bool:
    """sd_notify ``state`` to $NOTIFY_SOCKET; False outside systemd or when not taken."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    try:
        _send(path, state.encode())
    except OSError:
        return False
    return True
