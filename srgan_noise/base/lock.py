"""One training process per run folder: an exclusive flock on <run>/.lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from srgan_noise.base.errors import UserError

LOCK_NAME = ".lock"


@contextlib.contextmanager
def locked_run(run: Path) -> Iterator[None]:
    """Hold <run>/.lock (non-blocking) for the body; a second process, or a second
    open of the file in this one, gets a one-line error. The kernel releases the
    lock when the file is closed or the process dies, so a kill leaves no stale lock."""
    path = run / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        raise UserError(f"{path}: cannot write ({error.strerror or error})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{run}: in use by another srgan train (lock {path} held)") from None
        yield
    finally:
        os.close(fd)
