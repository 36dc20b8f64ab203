"""journald's native protocol and sd_notify, spoken directly, never blocking.

python-systemd's ``journal.sendv`` and ``daemon.notify`` hold the GIL
while they write to a blocking socket: a journald that stops reading
(restarting, disk full, flooded) would then freeze every Python thread,
workers answering opens included. Here the datagram is sent with
MSG_DONTWAIT from Python, which releases the GIL around the system call;
a full socket is reported at once (``Busy``) and the caller keeps the
entry for later (vigild.spool).

Protocol: one datagram of ``NAME=value\\n`` lines; a value holding a
newline is sent as ``NAME\\n``, its length as a little-endian u64, the
bytes, ``\\n``. Names are upper-case ASCII; values are bytes (file names
that are not UTF-8 travel as they are).
"""

from __future__ import annotations

import array
import errno
import fcntl
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


def _target(path: str) -> str:
    return "\0" + path[1:] if path.startswith("@") else path  # abstract socket


def _send(path: str, payload: bytes, wait: float = 0.0) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        if wait:
            sock.settimeout(wait)  # the GIL is released while it waits
            sock.sendto(payload, _target(path))
        else:
            sock.sendto(payload, socket.MSG_DONTWAIT, _target(path))


def _send_memfd(path: str, payload: bytes) -> None:
    """An entry too large for one datagram: a sealed memfd passed over the socket,
    as sd_journal_sendv does."""
    fd = os.memfd_create("vigild-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.write(fd, payload)
        seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]).tobytes())]
            sock.sendmsg([], rights, socket.MSG_DONTWAIT, _target(path))
    finally:
        os.close(fd)


def send_payload(payload: bytes, path: str = JOURNAL_SOCKET, wait: float = 0.0) -> None:
    """Send one encoded entry; raises Busy or Unavailable.

    Never blocks unless ``wait`` (seconds) is given: the alert thread waits a
    little for room when it delivers its spool to a journald that reads
    again at its own pace; no thread that answers opens ever calls this.
    """
    try:
        try:
            _send(path, payload, wait)
        except OSError as e:
            if e.errno != errno.EMSGSIZE:
                raise
            _send_memfd(path, payload)
    except (BlockingIOError, TimeoutError) as e:
        raise Busy(str(e)) from e
    except OSError as e:  # no socket, nobody listening, or refused
        raise Unavailable(str(e)) from e


def send(fields: Iterable[tuple[str, str | bytes]], path: str = JOURNAL_SOCKET) -> None:
    """Send one journal entry; raises Busy or Unavailable, never blocks."""
    send_payload(encode(fields), path)


def stderr_is_journal() -> bool:
    """Whether our stderr is a stream into journald (systemd sets $JOURNAL_STREAM).

    Then stderr is no fallback for the journal: it leads to the same journald.
    """
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in stream.split(":"))
        st = os.fstat(2)
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


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
