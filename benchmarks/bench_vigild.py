"""``vigild run`` inside a benchmark's private namespace, watching only its tmpfs.

Shared by the on-access and workload benchmarks: a configuration of its
own (state, runtime and quarantine directories in the caller's scratch
directory, rules compiled beforehand with ``compile``), started with
``--watch <tmpfs>`` so it never marks anything else, asked for its
counters with ``vigild status --json``, stopped by pid (SIGTERM, then
SIGKILL).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from bench_namespace import PrivateTmpfs, stop
from support import VIGILD as VIGILD_BIN

READY_TIMEOUT = 30.0


class Daemon:
    """``vigild run`` inside the namespace, with its own state and runtime dirs."""

    def __init__(self, ns: PrivateTmpfs, compiled: Path, rules: Path, where: Path) -> None:
        self.vigild = VIGILD_BIN
        self.config = where / "vigild.toml"
        self.runtime = where / "run"
        self.log_path = where / "daemon.log"
        where.mkdir(parents=True, exist_ok=True)
        state = where / "state"
        self.config.write_text(
            f'[rules]\ncompiled_dir = "{compiled}"\nlocal_dirs = []\n'
            f'[daemon]\nstate_dir = "{state}"\nruntime_dir = "{self.runtime}"\n'
            f'quarantine_dir = "{state / "quarantine"}"\n'
        )
        self.argv = [self.vigild, "run", "--config", str(self.config)]
        self.argv += ["--watch", str(ns.mnt), "--rules", str(rules)]
        self.ns = ns
        self.proc: subprocess.Popen[str] | None = None

    def compile(self, rules: Path) -> str:
        argv = [
            self.vigild,
            "rules",
            "compile",
            "--config",
            str(self.config),
            "--rules",
            str(rules),
        ]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            pytest.fail(f"vigild rules compile: {r.stderr.strip()}", pytrace=False)
        return r.stdout.splitlines()[0]

    def start(self) -> None:
        with self.log_path.open("w") as log:
            self.proc = self.ns.popen(self.argv, stdout=log, stderr=log)
        end = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                pytest.fail(f"vigild exited {self.proc.returncode}: {self.log()}", pytrace=False)
            if (self.runtime / "control.sock").exists() and self._status(check=False):
                return
            time.sleep(0.05)
        pytest.fail(f"vigild not ready after {READY_TIMEOUT:.0f} s: {self.log()}", pytrace=False)

    def _status(self, check: bool = True) -> dict[str, Any] | None:
        argv = [self.vigild, "status", "--json", "--config", str(self.config)]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        if r.returncode != 0:
            if check:
                pytest.fail(f"vigild status: {r.stderr.strip()}", pytrace=False)
            return None
        result: dict[str, Any] = json.loads(r.stdout)
        return result

    def status(self) -> dict[str, Any]:
        s = self._status()
        assert s is not None
        return s

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 20 s; the exit status (None if never started)."""
        if self.proc is None:
            return None
        code = stop(self.proc)
        self.proc = None
        return code

    def cpu_seconds(self) -> float:
        """User + system CPU time the running daemon has used so far (every thread)."""
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log(self) -> str:
        return self.log_path.read_text()[-3000:] if self.log_path.exists() else ""
