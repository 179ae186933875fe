"""Writing files so that a failure never leaves half of one behind."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

from srgan_noise.base.errors import UserError

# atomic_path's temporary names: "." + the target's name + "." + mkstemp's 8 random characters + the suffix.
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}(?P<suffix>\.[^.]+)")


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = ".tmp", exclusive: bool = False) -> Iterator[str]:
    """A temporary file beside `path`, renamed onto it once the body succeeds and
    removed if it fails: readers see the old file or the whole new one. The
    suffix lets writers that choose a format by extension see the right one.
    Permissions follow the umask (mkstemp's own are 0600). The data reach the
    disk (fsync) before the rename, so a full disk fails here, not later.

    With `exclusive`, the file is created only if none is at `path` by then:
    the temporary file is hard-linked there, which fails if one is (so two
    writers never replace each other's file) with FileExistsError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if exclusive:
            _link_exclusively(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)  # gone already after a rename; the link's other name after a link


def _link_exclusively(tmp: str, path: Path) -> None:
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # no hard links here (FAT, some network shares): a check, then a rename
        if path.exists():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        os.replace(tmp, path)


def existing_ancestor(path: Path) -> Path:
    """`path` if it exists, else its nearest existing parent folder: where writing
    there (creating the folders on the way) would succeed or fail."""
    return next(folder for folder in (path, *path.parents) if folder.exists())


def write_text_atomic(path: Path, text: str) -> None:
    """`text` (UTF-8) to `path` through atomic_path."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


@contextlib.contextmanager
def reporting_write_errors(path: Path, kept: str = "the previous file is kept") -> Iterator[None]:
    """Turn an OSError while writing `path` (a full disk, a read-only folder) into
    one line naming the file, the reason and, if it existed, what survived."""
    existed = path.is_file()
    try:
        yield
    except OSError as error:
        raise UserError(f"{path}: cannot write ({error.strerror or error}){'; ' + kept if existed else ''}") from None


def write_failure(error: Exception, folder: Path) -> OSError:
    """An OSError for a writer library's own failure (torch.save's "unexpected
    pos", safetensors' "Error while serializing"): ENOSPC when the disk is full,
    the error's first line otherwise."""
    text = str(error).strip()
    if "No space left on device" in text or _disk_full(folder):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return OSError(errno.EIO, text.splitlines()[0] if text else type(error).__name__)


def _disk_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def remove_leftovers(folder: Path, name: str | None = None, older_than: float | None = None) -> list[Path]:
    """Delete the temporary files that atomic_path left in `folder` when its
    process was killed mid-write (only names of its pattern; with `name`, only
    those of that target; with `older_than`, only those untouched for more than
    that many seconds, as a younger one may be another process's write in
    progress); returns them."""
    try:
        paths = list(folder.iterdir()) if folder.is_dir() else []
    except OSError:
        return []
    removed = []
    for path in paths:
        match = _TEMPORARY.fullmatch(path.name)
        if (not match or match["suffix"] not in (".tmp", Path(match["name"]).suffix)
                or name not in (None, match["name"])):
            continue
        try:
            if path.is_file() and (older_than is None or time.time() - path.stat().st_mtime > older_than):
                path.unlink()
                removed.append(path)
        except OSError:
            pass  # gone meanwhile, or not ours to delete
    return removed
