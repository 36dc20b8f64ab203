"""Real fanotify, on a tmpfs that only the test can see: the integration harness.

(A module of its own, not conftest.py: tests/system has a conftest too,
and ``from conftest import`` would get whichever pytest loaded last.)


Each test gets a private mount namespace (held open by a ``sleep``
started under ``unshare --mount --propagation private``) with a fresh
tmpfs in it. The daemon and every opener enter that namespace with
``nsenter``, so the host's filesystems are never marked. Teardown stops
the daemon by its pid (SIGTERM, then SIGKILL), unmounts the tmpfs and
kills the holder, also when the test failed. Every command has a timeout:
a hung opener fails the test, it never hangs CI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from support import DATA, REPO, VIGILD, PrivateMount, fanotify_unavailable
from vigild.config import load as load_config

PYTHON = sys.executable


SKIP_REASON = fanotify_unavailable()
needs_fanotify = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")


def _run(cmd: list[str], timeout: float = 20, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


class Namespace(PrivateMount):
    """The test's private mount namespace and tmpfs, with helpers to act inside it."""

    def sh(
        self, script: str, timeout: float = 20, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell script inside the namespace."""
        r = _run(self.cmd("bash", "-c", script), timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{script!r} failed ({r.returncode}): {r.stderr}")
        return r

    def py(self, code: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        """Run Python code inside the namespace (an opener other than the daemon)."""
        return _run(self.cmd(PYTHON, "-c", code, *args), timeout=timeout)

    def popen(self, *args: str, **kw: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(self.cmd(*args), text=True, **kw)

    def start_journald(self) -> int:
        """A real systemd-journald, private to this namespace; returns its pid.

        tmpfs over /run, /var/log/journal and the catalog database hide the
        host's; the namespace's own catalog directory gets vigild's catalog
        beside the system's (for ``journalctl --update-catalog``).
        """
        catalog = self.root / "catalog"
        catalog.mkdir()
        for f in Path("/usr/lib/systemd/catalog").glob("*.catalog"):
            (catalog / f.name).write_bytes(f.read_bytes())
        (catalog / "vigild.catalog").write_bytes(
            (REPO / "packaging" / "vigild.catalog").read_bytes()
        )
        self.sh(
            "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal /run/log/journal"
            " && mount -t tmpfs tmpfs /var/log/journal && mount -t tmpfs tmpfs /var/lib/systemd/catalog"
            f" && mount --bind {catalog} /usr/lib/systemd/catalog"
        )
        return self.run_journald()

    def run_journald(self) -> int:
        """Start journald (again) on the mounts start_journald made; returns its pid."""
        self.sh("rm -f /run/systemd/journal/socket")  # so that readiness below is the new one's
        self.journald = subprocess.Popen(
            self.cmd("/lib/systemd/systemd-journald"),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(200):
            if self.sh("test -S /run/systemd/journal/socket", check=False).returncode == 0:
                return self.journald.pid
            time.sleep(0.02)
        raise AssertionError("journald did not start")

    def stop_journald(self) -> None:
        j = getattr(self, "journald", None)
        if j is not None and j.poll() is None:
            j.terminate()
            try:
                j.wait(10)
            except subprocess.TimeoutExpired:
                j.kill()
                j.wait(10)

    def journal(self, *args: str) -> list[dict[str, Any]]:
        """Entries from the namespace's journal as JSON objects."""
        r = self.sh("journalctl --no-pager -o json " + " ".join(args), check=False)
        return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]

    def close(self) -> None:
        self.stop_journald()
        super().close()


# open, read a little, report: a huge file must not be read whole by the opener either
PEEK = """
import errno, sys
try:
    with open(sys.argv[1], "rb") as f:
        print("ok", len(f.read(16)))
except OSError as e:
    print(errno.errorcode[e.errno])
"""

READ = """
import errno, sys
try:
    with open(sys.argv[1], "rb") as f:
        data = f.read()
    print("ok", len(data))
except OSError as e:
    print(errno.errorcode[e.errno])
"""


class OnAccess:
    """A vigild daemon watching the namespace's tmpfs."""

    def __init__(self, ns: Namespace, tmp: Path) -> None:
        self.ns = ns
        self.tmp = tmp
        self.config = tmp / "vigild.toml"
        self.stderr_path = tmp / "daemon.err"
        self.proc: subprocess.Popen[str] | None = None
        self.state = tmp / "state"
        self.runtime = tmp / "run"

    def write_config(self, extra: str = "") -> None:
        """The test's paths in vigild.toml; ``extra`` as a conf.d drop-in (no table twice)."""
        dropin = self.tmp / "conf.d" / "50-test.toml"
        dropin.parent.mkdir(exist_ok=True)
        dropin.write_text(extra)
        self.config.write_text(
            f"""
[rules]
compiled_dir = "{self.state / "compiled"}"
local_dirs = []
[daemon]
state_dir = "{self.state}"
runtime_dir = "{self.runtime}"
quarantine_dir = "{self.state / "quarantine"}"
"""
        )

    def start(
        self,
        rules: list[Path],
        extra: str = "",
        watch: list[Path] | None = None,
        prefix: list[str] | None = None,
        wait: bool = True,
        env: dict[str, str] | None = None,
    ) -> None:
        """Start ``vigild run`` in the namespace; returns once its control socket answers."""
        self.write_config(extra)
        self.err = self.stderr_path.open("w")
        self.proc = self.ns.popen(
            *(prefix or []),
            *self.command(rules, watch),
            stdout=self.err,
            stderr=self.err,
            env={**os.environ, **(env or {})},
        )
        if wait:
            self.wait_ready()

    def command(self, rules: list[Path], watch: list[Path] | None = None) -> list[str]:
        """``vigild run`` on this test's config, watching ``watch`` (the tmpfs)."""
        args = [VIGILD, "run", "--config", str(self.config)]
        for w in watch or [self.ns.mnt]:
            args += ["--watch", str(w)]
        for r in rules:
            args += ["--rules", str(r)]
        return args

    def wait_ready(self, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"vigild exited {self.proc.returncode}: {self.log()}")
            if (Path(load_config(self.config).daemon.runtime_dir) / "control.sock").exists():
                try:
                    self.status()
                    return
                except AssertionError:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"vigild did not become ready: {self.log()}")

    def status(self) -> dict[str, Any]:
        r = _run([VIGILD, "status", "--json", "--config", str(self.config)])
        if r.returncode != 0:
            raise AssertionError(f"vigild status: {r.stderr}")
        result: dict[str, Any] = json.loads(r.stdout)
        return result

    def events(self) -> dict[str, int]:
        ev: dict[str, int] = self.status()["events"]
        return ev

    def read(self, path: Path, timeout: float = 20) -> str:
        """Open and read ``path`` from another process: "ok N" or an errno name."""
        r = self.ns.py(READ, str(path), timeout=timeout)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def log(self) -> str:
        self.err.flush() if hasattr(self, "err") else None
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""

    def stop(self, timeout: float = 20) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        code = self.proc.returncode
        self.proc = None
        if hasattr(self, "err"):
            self.err.close()
        return code

    def quarantine(self) -> list[dict[str, Any]]:
        r = _run([VIGILD, "quarantine", "list", "--json", "--config", str(self.config)])
        assert r.returncode == 0, r.stderr
        return [json.loads(line) for line in r.stdout.splitlines()]

    def wait_for(self, predicate: Any, timeout: float = 15, what: str = "condition") -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; daemon log:\n{self.log()}")


class NotifySocket:
    """A real sd_notify socket: records every datagram with its arrival time."""

    def __init__(self, path: Path) -> None:
        import socket
        import threading

        self.path = path
        self.messages: list[tuple[float, str]] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            for line in data.decode(errors="replace").splitlines():
                self.messages.append((time.monotonic(), line))

    def times(self, prefix: str) -> list[float]:
        return [t for t, m in self.messages if m.startswith(prefix)]

    def values(self, key: str) -> list[str]:
        return [m[len(key) + 1 :] for _, m in self.messages if m.startswith(key + "=")]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


TEST_RULES = DATA / "onaccess"
SLOW_RULES = DATA / "slow"
DEFAULT_RULES = REPO / "rules"
