"""Handing freed memory back to the operating system between the large steps of a fit or a read."""
from __future__ import annotations

import ctypes
from functools import lru_cache

__all__ = ["trim_heap"]


@lru_cache(maxsize=1)
def _libc():
    """glibc's ``malloc_trim``, or ``None`` without glibc (macOS, musl)."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    return trim


def trim_heap() -> None:
    """Hand the C heap's free memory back to the OS (glibc's ``malloc_trim``; nothing elsewhere).

    glibc keeps freed heap memory for reuse, and once a large block has been
    freed it raises its threshold for serving blocks from the heap (up to
    32 MB): the pieces of a laid-out batch, a refit's rows, DuckDB's Arrow
    buffers then stay resident after they are dropped, and the next step's
    peak stacks on them (a dropped frame of 3 GB of features stays resident
    until trimmed).
    """
    trim = _libc()
    if trim is not None:
        trim(0)
