"""Who opened the file: executable, command name, uid, unit or container.

Read from /proc while the opener is still blocked on our answer (so it is
certainly alive), and only for detections: alerts name the process, the
hot path never pays for it.
"""

from __future__ import annotations

import re

from vigild.fields import Field

_CONTAINER = [
    re.compile(r"docker-([0-9a-f]{12,64})\.scope"),
    re.compile(r"/docker/([0-9a-f]{12,64})"),
    re.compile(r"libpod-([0-9a-f]{12,64})\.scope"),
    re.compile(r"cri-containerd-([0-9a-f]{12,64})\.scope"),
    re.compile(r"crio-([0-9a-f]{12,64})\.scope"),
    re.compile(r"machine-([^/]+)\.scope"),
    re.compile(r"/lxc(?:\.payload)?[./]([^/]+)"),
]


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def unit_and_container(cgroup_text: str) -> tuple[str, str]:
    """The systemd unit and container id named by a /proc/PID/cgroup text."""
    path = ""
    for line in cgroup_text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and (parts[0] == "0" or "name=systemd" in parts[1]):
            path = parts[2]
            break
    container = ""
    for pattern in _CONTAINER:
        m = pattern.search(path)
        if m:
            container = m.group(1)
            break
    unit = ""
    for part in reversed(path.split("/")):
        if part.endswith((".service", ".scope")) and not container:
            unit = part
            break
    return unit, container


def process_fields(pid: int) -> dict[str, str]:
    """``VIGILD_*`` fields describing process ``pid`` (missing ones left out)."""
    out: dict[str, str] = {Field.PID: str(pid)}
    try:
        import os

        out[Field.EXE] = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        pass
    comm = _read(f"/proc/{pid}/comm").strip()
    if comm:
        out[Field.COMM] = comm
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith("Uid:"):
            out[Field.UID] = line.split()[1]
            break
    unit, container = unit_and_container(_read(f"/proc/{pid}/cgroup"))
    if unit:
        out[Field.UNIT] = unit
    if container:
        out[Field.CONTAINER] = container
    return out
