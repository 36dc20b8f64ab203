"""`vigild scan` finds EICAR in all seven forms ClamAV does, and names the member."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from archives import compressed, tar_of, zip_of
from support import REPO, eicar, vigild


def _scan_args(tmp_path: Path) -> list[str]:
    """``scan`` with a compiled-rules directory of the test's own (root's default is shared)."""
    return ["scan", "--compiled-dir", str(tmp_path / "scan-compiled")]


DEFAULT_RULES = str(REPO / "rules")


def _scan(tmp_path: Path, cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``vigild scan`` of the shipped rules on the test's config, no progress line."""
    return vigild(
        *_scan_args(tmp_path), "--config", str(cfg), "--rules", DEFAULT_RULES, "--no-progress",
        *args,
    )  # fmt: skip


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    p = tmp_path / "vigild.toml"
    p.write_text(f'[rules]\ncompiled_dir = "{tmp_path / "compiled"}"\nlocal_dirs = []\n')
    return p


def _elf() -> bytes:
    true = Path(
        subprocess.run(
            ["sh", "-c", "command -v true"], capture_output=True, text=True
        ).stdout.strip()
    )
    return true.read_bytes() if true.is_file() else b"\x7fELF" + bytes(4000)


def _variants() -> dict[str, bytes]:
    e = eicar()
    return {
        "plain.com": e,
        "crlf.com": e + b"\r\n",
        "in-random.bin": os.urandom(512 << 10) + e + os.urandom(512 << 10),
        "appended.elf": _elf() + e,
        "stored.zip": zip_of({"x/eicar.com": e}, deflate=False),
        "deflated.zip": zip_of({"x/eicar.com": e}),
        "eicar.tar.gz": tar_of({"x/eicar.com": e}, "gz"),
    }


def test_all_seven_eicar_forms_are_found(tmp_path: Path, cfg: Path) -> None:
    root = tmp_path / "t"
    root.mkdir()
    for name, data in _variants().items():
        (root / name).write_bytes(data)
    r = _scan(tmp_path, cfg, str(root))
    assert r.returncode == 1, r.stderr
    found = {line.split(": FOUND")[0] for line in r.stdout.splitlines() if ": FOUND" in line}
    assert found == {str(root / n) for n in _variants()}
    assert f"{root / 'deflated.zip'}: FOUND EICAR_Test_File in x/eicar.com" in r.stdout
    # the tar inside the gzip holds the string as it is: found at that level
    assert f"{root / 'eicar.tar.gz'}: FOUND EICAR_Test_String_Embedded in eicar.tar" in r.stdout


@pytest.mark.parametrize("fmt", ["gz", "bz2", "xz"])
def test_a_compressed_file_is_scanned_inside(tmp_path: Path, cfg: Path, fmt: str) -> None:
    f = tmp_path / f"drop.sh.{fmt}"
    f.write_bytes(compressed(b"A" * 4096 + eicar(), fmt))  # compressible: no raw copy inside
    r = _scan(tmp_path, cfg, str(f))
    assert f"{f}: FOUND EICAR_Test_String_Embedded in drop.sh (rule-match)" in r.stdout, r.stdout
    assert r.returncode == 1


WIPER = b"#!/bin/sh\nrm -rf --no-preserve-root /\n"


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("bad.sha256", f"{hashlib.sha256(WIPER).hexdigest()} Test.Wiper"),
        ("hash-iocs.txt", f"{hashlib.sha1(WIPER).hexdigest()};Test.Wiper"),  # LOKI SHA-1
        ("old.hsb", f"{hashlib.sha1(WIPER).hexdigest()}:{len(WIPER)}:Test.Wiper"),
    ],
)
def test_a_known_bad_hash_of_a_member_is_found(
    tmp_path: Path, cfg: Path, name: str, line: str
) -> None:
    payload = WIPER
    hashes = tmp_path / name
    hashes.write_text(line + "\n")
    f = tmp_path / "upload.zip"
    f.write_bytes(zip_of({"bin/wipe.sh": payload}))
    r = _scan(tmp_path, cfg, "--hashes", str(hashes), str(f))
    assert r.returncode == 1, r.stderr
    assert f"{f}: FOUND Test.Wiper in bin/wipe.sh (known-bad-hash)" in r.stdout


def test_a_malformed_archive_is_scanned_as_bytes_and_a_bomb_is_policy(
    tmp_path: Path, cfg: Path
) -> None:
    root = tmp_path / "t"
    root.mkdir()
    bad = root / "broken.zip"
    bad.write_bytes(b"PK\x03\x04" + os.urandom(300))
    bomb = root / "bomb.zip"
    bomb.write_bytes(zip_of({"zeros": bytes(200 << 20)}))
    r = _scan(tmp_path, cfg, str(root))
    assert r.returncode == 0, r.stdout + r.stderr  # on_unpack_limit = allow by default
    cfg.write_text(cfg.read_text() + '[policy]\non_unpack_limit = "deny"\n')
    r = _scan(tmp_path, cfg, "--json", str(bomb))
    assert '"type": "limit"' in r.stdout and '"reason": "unpack-limit"' in r.stdout, r.stdout
    r = _scan(tmp_path, cfg, str(bomb))
    assert f"{bomb}: LIMIT zeros unpacks to over 250x its size" in r.stdout, r.stdout
