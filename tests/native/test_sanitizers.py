"""The C part under AddressSanitizer and UBSan: forged databases, threaded cache."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from support import REPO

HERE = Path(__file__).resolve().parent


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_native_code_is_clean_under_asan_and_ubsan(tmp_path: Path) -> None:
    exe = tmp_path / "harness"
    sources = sorted(str(p) for p in (REPO / "native").glob("*.c"))
    build = subprocess.run(
        ["gcc", "-std=gnu11", "-D_GNU_SOURCE", "-g", "-O1", "-Wall", "-Wextra", "-Werror",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
         f"-I{REPO / 'native'}", str(HERE / "harness.c"), *sources,
         "-lcrypto", "-lpthread", "-o", str(exe)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    run = subprocess.run(
        [str(exe), str(tmp_path)], capture_output=True, text=True, timeout=300,
        env={"ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "print_stacktrace=1"},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stdout.startswith("ok:"), run.stdout
