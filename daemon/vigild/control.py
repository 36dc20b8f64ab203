"""The control socket: ``vigild status`` and ``vigild rules reload`` talk to the daemon here.

A Unix stream socket in the runtime directory, mode 0600, and on top of
that a check of the peer's credentials (SO_PEERCRED): anyone but root
(or the daemon's own user) gets a clear refusal, never data. One request
a connection: a command line in, one JSON object out.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
LOCK_NAME = "vigild.lock"
REFUSED = "permission denied: only root may talk to vigild"
_MAX_REQUEST = 256


class ControlError(Exception):
    """The daemon could not be asked (not running, refused, no answer)."""


class NotRunning(ControlError):
    """No daemon listens at the control socket."""


class AlreadyRunning(Exception):
    """Another daemon holds the runtime directory; the message names its pid."""


class RuntimeLock:
    """One daemon per runtime directory: an flock held for the daemon's life.

    The lock file holds the owner's pid, so a second daemon can say whose
    it is. The kernel drops the lock when the holder dies, however it dies:
    a stale file never blocks a start.
    """

    def __init__(self, runtime_dir: str) -> None:
        self.path = os.path.join(runtime_dir, LOCK_NAME)
        self.runtime_dir = runtime_dir
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise AlreadyRunning; OSError if the directory is unusable."""
        os.makedirs(self.runtime_dir, mode=0o755, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.path, flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AlreadyRunning(
                f"another vigild (pid {owner}) is running with runtime directory "
                f"{self.runtime_dir}; stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # the lock goes with the fd; the file may stay
            self._fd = None


class ControlServer:
    def __init__(self, runtime_dir: str, handler: Callable[[str], dict[str, Any]]) -> None:
        self.path = os.path.join(runtime_dir, SOCKET_NAME)
        self.runtime_dir = runtime_dir
        self.handler = handler
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._serve, name="vigild-control", daemon=True)

    def start(self) -> None:
        os.makedirs(self.runtime_dir, mode=0o755, exist_ok=True)
        if os.path.exists(self.path):
            os.unlink(self.path)  # left by a killed daemon (we hold the RuntimeLock)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            sock.bind(self.path)
        finally:
            os.umask(old)
        sock.listen(16)
        self._sock = sock
        self._thread.start()

    def stop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() in _serve
            sock.close()
            self._thread.join(5)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def _serve(self) -> None:
        while self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed by stop()
            with conn:
                try:
                    self._answer(conn)
                except Exception as e:  # a bad client must not end the thread
                    log.warning("control request failed: %r", e)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        # read the request either way: closing on an unread request makes
        # the client's send fail with EPIPE instead of reading our refusal
        command = conn.recv(_MAX_REQUEST).decode(errors="replace").strip()
        reply = {"error": REFUSED} if uid not in (0, os.geteuid()) else self.handler(command)
        conn.sendall(json.dumps(reply).encode() + b"\n")


def request(runtime_dir: str, command: str, timeout: float = 30.0) -> dict[str, Any]:
    """Send ``command`` to the daemon; raises ControlError with a clear message."""
    path = os.path.join(runtime_dir, SOCKET_NAME)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except FileNotFoundError:
        raise NotRunning(f"vigild is not running (no socket at {path})") from None
    except PermissionError:
        raise ControlError(f"{REFUSED} ({path})") from None
    except ConnectionRefusedError:
        raise NotRunning(f"vigild is not running (stale socket at {path})") from None
    try:
        sock.sendall(command.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as e:
        raise ControlError(f"{path}: {e.strerror or e}") from e
    finally:
        sock.close()
    try:
        reply: dict[str, Any] = json.loads(data)
    except ValueError:
        raise ControlError(f"{path}: no answer from vigild") from None
    if "error" in reply:
        raise ControlError(str(reply["error"]))
    return reply
