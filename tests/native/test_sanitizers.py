"""The C part under sanitizers: forged databases, threaded cache, on-access races.

harness.c drives the code; built with ASan + UBSan it runs everything, built
with ThreadSanitizer it runs the threaded parts (the cache and the on-access
core through vg_fan_adopt on a socketpair).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from support import REPO

HERE = Path(__file__).resolve().parent
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


def _build(exe: Path, sanitize: list[str]) -> None:
    sources = sorted(str(p) for p in (REPO / "native").glob("*.c"))
    build = subprocess.run(
        ["gcc", "-std=gnu11", "-D_GNU_SOURCE", "-g", "-O1", "-Wall", "-Wextra", "-Werror",
         *sanitize, f"-I{REPO / 'native'}", str(HERE / "harness.c"), *sources,
         "-lcrypto", "-lpthread", "-o", str(exe)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr


def _tsan_missing(tmp: Path) -> str | None:
    """Why ThreadSanitizer cannot run here, or None."""
    src, exe = tmp / "probe.c", tmp / "probe"
    src.write_text("int main(void) { return 0; }\n")
    try:
        build = subprocess.run(
            ["gcc", "-fsanitize=thread", str(src), "-o", str(exe)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if build.returncode != 0:
            return (
                f"gcc -fsanitize=thread fails (install libtsan for this gcc): {build.stderr[-300:]}"
            )
        run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"ThreadSanitizer probe failed: {e}"
    if run.returncode != 0:
        return f"a ThreadSanitizer binary does not run here: {run.stderr[-300:]}"
    return None


@needs_gcc
def test_native_code_is_clean_under_asan_and_ubsan(tmp_path: Path) -> None:
    exe = tmp_path / "harness"
    _build(exe, ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"])
    run = subprocess.run(
        [str(exe), str(tmp_path)], capture_output=True, text=True, timeout=300,
        env={"ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "print_stacktrace=1"},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stdout.startswith("ok:"), run.stdout


@needs_gcc
def test_threaded_native_code_is_clean_under_tsan(tmp_path: Path) -> None:
    reason = _tsan_missing(tmp_path)
    if reason:
        pytest.skip(reason)
    exe = tmp_path / "harness-tsan"
    _build(exe, ["-fsanitize=thread"])
    run = subprocess.run(
        [str(exe), str(tmp_path), "threads"], capture_output=True, text=True, timeout=300,
        env={"TSAN_OPTIONS": "halt_on_error=1 second_deadlock_stack=1"},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-6000:]
    assert "WARNING: ThreadSanitizer" not in run.stderr, run.stderr[-6000:]
    assert run.stdout.startswith("ok:"), run.stdout
