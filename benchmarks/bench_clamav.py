"""ClamAV's on-access scanner (clamd + clamonacc), the peer run beside vigild.

Debian's ``clamav-daemon`` (``make bench-deps`` installs it with its
packaged services kept from starting and disabled, freshclam included: it
would download signatures). Nothing of ``/etc/clamav`` or
``/var/lib/clamav`` is used:

* the database is built here from the rules vigild runs: their ``.yar`` and
  ``.yara`` files, which clamd loads natively for the subset of YARA it
  parses; ``clamscan`` counts the signatures it took (``Database.loaded``);
* every run has its own ``clamd.conf``, socket, log and temporary
  directory in a scratch directory under ``/var/tmp`` (clamd drops to the
  ``clamav`` user, which cannot enter pytest's root-only temporary
  directory), removed at the end;
* clamd (``User clamav``) and clamonacc (root, ``--fdpass``: clamd reads
  the file through the event's descriptor and never opens it by path) both
  run inside the benchmark's private mount namespace, watching only its
  tmpfs (``OnAccessIncludePath``) with ``OnAccessPrevention yes`` (it
  blocks like vigild) and ``OnAccessExcludeUname clamav`` (clamonacc
  refuses to start without an exclusion for clamd's user). Every other
  setting is clamd's default, as its users get it: notably
  ``OnAccessMaxFileSize`` 5 MiB (``ONACCESS_MAX_FILE``: bigger files pass
  unscanned, where vigild scans up to 64 MiB) and no ``OnAccessExcludePath``.
  clamonacc marks ``FAN_ACCESS_PERM`` as well as ``FAN_OPEN_PERM``: every
  read of a watched file asks clamd again (a hit in clamd's cache still
  hashes the whole file).

clamonacc marks the watched tree itself, one fanotify inode mark per
directory (its inotify walker, "DDD", adds marks for new directories as
they appear). ``start`` waits until every directory of the tmpfs is marked
and checks, from ``/proc/PID/fdinfo``, that every mark lies on the tmpfs:
a mark anywhere else stops both processes and fails the benchmark (checked
again before stopping, for the marks added meanwhile). Both are stopped by pid (SIGTERM, SIGKILL after a timeout), also on failure.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from bench_namespace import PrivateTmpfs, stop

CLAMD_USER = "clamav"
ONACCESS_MAX_FILE = 5 << 20  # clamd's default OnAccessMaxFileSize
READY_TIMEOUT = 60.0
SCRATCH_ROOT = "/var/tmp"


def clamav_unavailable() -> str | None:
    """None when clamd, clamonacc and clamscan can run here, else why not (a skip reason)."""
    missing = [t for t in ("clamd", "clamonacc", "clamscan") if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not installed (make bench-deps: clamav, clamav-daemon)"
    try:
        pwd.getpwnam(CLAMD_USER)
    except KeyError:
        return f"no user {CLAMD_USER!r} for clamd (clamav-base creates it)"
    return None


@dataclass(frozen=True)
class Database:
    """A clamd database directory holding the YARA files of one rule set."""

    path: Path
    files: int  # rule files copied
    loaded: int  # signatures clamscan reports ("Known viruses")
    skipped: tuple[str, ...]  # clamscan's warnings about rules it could not take

    def describe(self, offered: int | None = None) -> str:
        of = f" of the {offered}" if offered is not None else ""
        return f"clamd loaded {self.loaded}{of} rules from {self.files} YARA files"


class Scratch:
    """A directory under /var/tmp the clamav user can enter; removed by ``close``."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="vigild-bench-clamav-", dir=SCRATCH_ROOT))
        self.path.chmod(0o755)
        self._runs = 0

    def run_dir(self) -> Path:
        """A fresh directory owned by the clamav user: socket, log, temporary files."""
        self._runs += 1
        d = self.path / f"run-{self._runs}"
        d.mkdir(mode=0o750)
        user = pwd.getpwnam(CLAMD_USER)
        os.chown(d, user.pw_uid, user.pw_gid)
        return d

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def build_database(rules: Path, scratch: Scratch) -> Database:
    """Copy the YARA files of ``rules`` into a database directory; count what clamd takes."""
    db = scratch.path / "db"
    db.mkdir(mode=0o755)
    files = sorted(p for p in rules.iterdir() if p.suffix in (".yar", ".yara") and p.is_file())
    for f in files:
        shutil.copyfile(f, db / f.name)
        (db / f.name).chmod(0o644)
    empty = scratch.path / "empty"
    empty.touch()
    r = subprocess.run(
        ["clamscan", "--database", str(db), str(empty)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    m = re.search(r"^Known viruses: (\d+)$", r.stdout, re.M)
    if r.returncode != 0 or m is None:
        raise RuntimeError(f"clamscan could not load {db}: {(r.stderr or r.stdout).strip()[-800:]}")
    skipped = tuple(
        line.strip()
        for line in r.stderr.splitlines()
        if "LibClamAV Warning" in line or "LibClamAV Error" in line
    )
    return Database(db, len(files), int(m.group(1)), skipped)


def _ping(sock: Path) -> bool:
    """clamd answers PING on its socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2.0)
            s.connect(str(sock))
            s.sendall(b"zPING\0")
            return s.recv(16).startswith(b"PONG")
    except OSError:
        return False


def _kernel_dev(st_dev: int) -> int:
    """A device number as the kernel prints it in fdinfo (MKDEV: major << 20 | minor)."""
    return (os.major(st_dev) << 20) | os.minor(st_dev)


def fanotify_marks(pid: int) -> list[str]:
    """The mark lines of every fanotify group ``pid`` holds (``/proc/PID/fdinfo``)."""
    marks: list[str] = []
    fds = Path(f"/proc/{pid}/fd")
    for fd in fds.iterdir():
        try:
            if os.readlink(fd) != "anon_inode:[fanotify]":
                continue
            info = Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text()
        except OSError:
            continue  # closed meanwhile
        lines = info.splitlines()
        marks += [m for m in lines if m.startswith("fanotify ") and "flags:" not in m.split()[1]]
    return marks


class Clamonacc:
    """clamd and clamonacc watching the namespace's tmpfs; a context manager."""

    def __init__(self, ns: PrivateTmpfs, db: Database, scratch: Scratch) -> None:
        self.ns = ns
        self.dir = scratch.run_dir()
        self.socket = self.dir / "clamd.sock"
        self.config = self.dir / "clamd.conf"
        self.config.write_text(
            f"LocalSocket {self.socket}\n"
            "FixStaleSocket yes\n"
            "Foreground yes\n"
            f"User {CLAMD_USER}\n"
            f"DatabaseDirectory {db.path}\n"
            f"TemporaryDirectory {self.dir}\n"
            f"LogFile {self.dir / 'clamd.log'}\n"
            f"OnAccessIncludePath {ns.mnt}\n"
            "OnAccessPrevention yes\n"
            f"OnAccessExcludeUname {CLAMD_USER}\n"
        )
        self.config.chmod(0o644)
        self.dev = -1  # the tmpfs's device number, as fdinfo prints it
        self.clamd: subprocess.Popen[str] | None = None
        self.onacc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Clamonacc:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if t is None and self.onacc is not None:
                self._marked(self.onacc.pid, self.dev)  # marks it added meanwhile: still ours
        finally:
            codes = self.stop()
        if t is None and any(c not in (0, None) for c in codes):
            raise RuntimeError(f"clamd/clamonacc exited {codes} when stopped: {self.log()}")

    # ------------------------------------------------------------ start/stop

    def start(self) -> None:
        """clamd until it answers PING, then clamonacc until every directory is marked."""
        with (self.dir / "clamd.out").open("w") as out:
            argv = ["clamd", f"--config-file={self.config}"]
            self.clamd = self.ns.popen(argv, stdout=out, stderr=subprocess.STDOUT)
        self._wait(lambda: _ping(self.socket), self.clamd, "clamd", "answer to PING")
        with (self.dir / "clamonacc.out").open("w") as out:
            argv = ["clamonacc", "--foreground", "--fdpass", f"--config-file={self.config}"]
            argv.append(f"--log={self.dir / 'clamonacc.log'}")
            self.onacc = self.ns.popen(argv, stdout=out, stderr=subprocess.STDOUT)
        mnt = str(self.ns.mnt)
        want = len(self.ns.run(["find", mnt, "-xdev", "-type", "d"]).stdout.splitlines())
        self.dev = dev = _kernel_dev(int(self.ns.run(["stat", "-c", "%d", mnt]).stdout))
        pid = self.onacc.pid

        def ready() -> bool:
            return self._marked(pid, dev) >= want

        self._wait(ready, self.onacc, "clamonacc", f"mark on each of {want} directories")

    @staticmethod
    def _marked(pid: int, dev: int) -> int:
        """How many marks clamonacc holds; raises if one is not on the tmpfs (``dev``)."""
        marks = fanotify_marks(pid)
        outside = [m for m in marks if not re.match(rf"fanotify ino:\w+ sdev:{dev:x} ", m)]
        if outside:
            raise RuntimeError(
                f"clamonacc marked outside the benchmark's tmpfs (sdev {dev:x}): {outside[:3]}"
            )
        return len(marks)

    def _wait(
        self, ready: Callable[[], bool], proc: subprocess.Popen[str], name: str, what: str
    ) -> None:
        """Poll ``ready`` until true; raise if ``proc`` exits or the timeout passes."""
        end = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited {proc.returncode}: {self.log()}")
            if ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{name}: no {what} after {READY_TIMEOUT:.0f} s: {self.log()}")

    def stop(self) -> tuple[int | None, int | None]:
        """Stop clamonacc, then clamd, each by pid; their exit statuses (None: not started)."""
        codes: list[int | None] = []
        for proc in (self.onacc, self.clamd):
            codes.append(None if proc is None else stop(proc))
        self.onacc = self.clamd = None
        return codes[0], codes[1]

    def log(self) -> str:
        """The tail of clamd's and clamonacc's logs and output."""
        parts = []
        for name in ("clamd.out", "clamd.log", "clamonacc.out", "clamonacc.log"):
            p = self.dir / name
            if p.exists():
                parts.append(f"[{name}] {p.read_text(errors='replace')[-800:]}")
        return " ".join(parts)


@dataclass(frozen=True)
class Peer:
    """The database built once for a session, and a scratch directory for each run."""

    scratch: Scratch
    db: Database

    def watching(self, ns: PrivateTmpfs) -> Clamonacc:
        """clamd and clamonacc for one run on ``ns``'s tmpfs: ``with peer.watching(ns):``."""
        return Clamonacc(ns, self.db, self.scratch)
