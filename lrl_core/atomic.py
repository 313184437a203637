"""Atomic text-file writes: a reader sees the old file or the new one, never half of one.

One helper for everything that replaces a file in place (the artifact
store's ``CURRENT`` pointer, the HTML reports): write a unique temporary file
beside the target, fsync it, then ``os.replace`` it over the target.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

__all__ = ["write_text_atomically"]


def write_text_atomically(path, text: str, tmp_prefix: str | None = None) -> Path:
    """Write ``text`` to a unique temporary file beside ``path``, then rename it over ``path``.

    Parent directories are created. The temporary file is named
    ``<tmp_prefix><pid>.<random>.tmp`` (default prefix ``.<name>.``) and is
    removed again if anything fails. Returns ``path`` as a :class:`~pathlib.Path`.
    The directory itself is not fsynced: callers that need the rename to
    survive a power cut fsync it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}." if tmp_prefix is None else tmp_prefix
    # Not mkstemp: its 0600 mode would make the file unreadable to others; "x" honours the umask.
    tmp = path.with_name(f"{prefix}{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
