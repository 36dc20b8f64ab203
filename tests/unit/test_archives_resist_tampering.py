"""Archives shaped to hide their members: found anyway, or never called clean.

Review findings (issue 9 work): a stub in front of a zip, a damaged first
member, an encrypted flag on the first member only, or a huge size in its
header each stopped the unpacking before the member holding the payload,
and the file was then found clean (and remembered so). A member longer
than max_file_size was scanned by its head and still called clean.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from archives import compressed, zip_first_member_damaged, zip_of, zip_with_stub
from support import REPO, eicar, vigild

PAYLOAD = {
    "a.txt": b"harmless first member\n" * 20,
    "dir/shell.php": b"<?php\n" + b"A" * 300 + eicar(),
}


def _scan(tmp_path: Path, name: str, data: bytes, *conf: str) -> tuple[int, str]:
    cfg = tmp_path / "vigild.toml"
    cfg.write_text(
        f'[rules]\ncompiled_dir = "{tmp_path / "compiled"}"\nlocal_dirs = []\n' + "".join(conf)
    )
    f = tmp_path / "t" / name
    f.parent.mkdir(exist_ok=True)
    f.write_bytes(data)
    r = vigild(
        "scan",
        "--config",
        str(cfg),
        "--compiled-dir",
        str(tmp_path / "scan-compiled"),
        "--rules",
        str(REPO / "rules"),
        "--no-progress",
        str(f),
    )
    return r.returncode, r.stdout


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("stub.jar", zip_with_stub(PAYLOAD)),
        ("crc.zip", zip_first_member_damaged(PAYLOAD, "crc")),
        ("enc.zip", zip_first_member_damaged(PAYLOAD, "encrypted")),
        ("size.zip", zip_first_member_damaged(PAYLOAD, "size")),
    ],
    ids=["stub in front", "bad CRC first", "encrypted flag first", "huge size first"],
)
def test_the_payload_member_is_found_anyway(tmp_path: Path, name: str, data: bytes) -> None:
    code, out = _scan(tmp_path, name, data)
    assert "FOUND EICAR_Test_String_Embedded in dir/shell.php" in out, out
    assert code == 1


def test_a_member_longer_than_the_limit_is_a_limit_not_clean(tmp_path: Path) -> None:
    text = b"".join(b"line %d of a long and boring log file\n" % i for i in range(60_000))
    member = text + eicar()  # the payload past the member's first max_file_size bytes
    code, out = _scan(
        tmp_path, "big.log.gz", compressed(member, "gz"), '[scan]\nmax_file_size = "1M"\n'
    )
    assert "LIMIT big.log: only its first 1048576 bytes scanned" in out, out
    assert code == 0  # nothing found; but no clean verdict either


def test_an_archive_over_the_limit_is_a_limit_not_clean(tmp_path: Path) -> None:
    data = zip_of({f"m{i}": bytes(range(256)) * 1024 for i in range(8)}, deflate=False)
    _, out = _scan(tmp_path, "big.zip", data, '[scan]\nmax_file_size = "1M"\n')
    assert "LIMIT an archive over max_file_size (1048576 bytes): members not scanned" in out, out
