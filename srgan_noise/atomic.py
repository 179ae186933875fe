"""Writing files so that a failure never leaves half of one behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[str]:
    """A temporary file beside `path`, renamed onto it once the body succeeds and
    removed if it fails: readers see the old file or the whole new one. The
    suffix lets writers that choose a format by extension see the right one.
    Permissions follow the umask (mkstemp's own are 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """`text` (UTF-8) to `path` through atomic_path."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
