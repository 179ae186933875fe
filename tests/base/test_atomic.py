import os

import pytest

from srgan_noise.base.atomic import atomic_path, write_text_atomic


def test_failure_keeps_the_old_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "out" / "table.md"
    write_text_atomic(path, "old")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_path(path) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("crash")
    assert path.read_text() == "old"
    assert sorted(p.name for p in path.parent.iterdir()) == ["table.md"]


def test_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
