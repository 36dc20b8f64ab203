"""cffi build script for vigild._native (API mode).

The cdef is the CDEF-BEGIN..CDEF-END region of vigild.h, read here, so the
declarations Python sees are the ones the C files compile against.
Set VIGILD_WERROR=1 to build with -Werror (the tests do).
"""

import os
import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
HEADER = HERE / "vigild.h"
SOURCES = sorted(p.name for p in HERE.glob("*.c"))


def read_cdef(header: Path) -> str:
    """Return the declarations between the CDEF markers of @header."""
    text = header.read_text()
    match = re.search(r"/\* CDEF-BEGIN \*/(.*)/\* CDEF-END \*/", text, re.S)
    if not match:
        raise SystemExit(f"{header}: no CDEF-BEGIN/CDEF-END region")
    return match.group(1)


def compile_args() -> list[str]:
    args = ["-std=gnu11", "-D_GNU_SOURCE", "-O2", "-Wall", "-Wextra", "-fvisibility=hidden"]
    if os.environ.get("VIGILD_WERROR") == "1":
        args.append("-Werror")
    return args


ffibuilder = FFI()
ffibuilder.cdef(read_cdef(HEADER))
ffibuilder.set_source(
    "vigild._native",
    '#include "vigild.h"',
    sources=[str(Path("native") / name) for name in SOURCES],
    include_dirs=["native"],
    libraries=["crypto", "pthread"],
    extra_compile_args=compile_args(),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
