import os

import pytest

from attnyolo.utils import atomic_path, atomic_write


def test_atomic_write_replaces_whole_files_with_normal_permissions(tmp_path):
    target = atomic_write(tmp_path / "sub" / "a.txt", "new")
    assert target.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_a_failed_write_leaves_the_old_file(tmp_path):
    atomic_write(tmp_path / "a.json", "old")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a.json") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert (tmp_path / "a.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
