"""physdiff.atomic: the one atomic writer of the library, validation and benchmarks."""

from __future__ import annotations

import os
import stat

import pytest

from physdiff import atomic
from physdiff.atomic import atomic_write, atomic_write_bytes, atomic_write_text


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_contents_of_each_form(tmp_path):
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01raw")
    atomic_write_text(tmp_path / "t.txt", "h\u00e9llo\nw\u00f6rld\r\n")
    out = atomic_write(tmp_path / "c.bin", lambda fh: (fh.write(b"one"), fh.write(b"two")))
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01raw"
    assert (tmp_path / "t.txt").read_bytes() == "h\u00e9llo\nw\u00f6rld\r\n".encode()
    assert out == tmp_path / "c.bin" and out.read_bytes() == b"onetwo"
    assert _names(tmp_path) == ["b.bin", "c.bin", "t.txt"]  # no temporary file left


def test_replaces_an_existing_file_and_creates_the_folder(tmp_path):
    target = tmp_path / "sub" / "deeper" / "f.txt"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second, longer than the first")
    assert target.read_text() == "second, longer than the first"
    assert _names(target.parent) == ["f.txt"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path, error):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def fails(fh):
        fh.write(b"partial")
        raise error

    with pytest.raises(type(error)):
        atomic_write(target, fails)
    assert target.read_bytes() == b"old"
    assert _names(tmp_path) == ["f.bin"]


def test_a_failing_rename_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def no_rename(src, dst):
        raise PermissionError("read-only")

    monkeypatch.setattr(atomic.os, "replace", no_rename)
    with pytest.raises(PermissionError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert _names(tmp_path) == ["f.txt"]


def test_the_temporary_sits_next_to_the_target_and_is_synced(tmp_path, monkeypatch):
    seen, synced = [], []
    real_fsync = os.fsync

    def record_fsync(fd):
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", record_fsync)

    def listing_writer(fh):  # the temporary file, seen from inside the writer
        seen.append(_names(tmp_path))
        fh.write(b"x")

    atomic_write(tmp_path / "f.bin", listing_writer)
    (tmp_name,) = seen[0]
    assert tmp_name.startswith(".f.bin.") and tmp_name.endswith(".tmp")
    assert len(synced) == (2 if os.name == "posix" else 1)  # the file, then its folder
    assert _names(tmp_path) == ["f.bin"]


def test_usual_permissions_not_mkstemp_private(tmp_path):
    mask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_bad_input_is_refused_without_touching_the_folder(tmp_path):
    with pytest.raises(TypeError, match="data must be bytes"):
        atomic_write_bytes(tmp_path / "f", "text")
    with pytest.raises(TypeError, match="text must be a str"):
        atomic_write_text(tmp_path / "f", b"bytes")
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError, match="path must name a file"):
        atomic_write_text(tmp_path / "d", "x")
    assert _names(tmp_path) == ["d"]


def test_one_helper_everywhere():
    from benchmarks import _common
    from physdiff import atlas
    from validation import result

    assert atlas.atomic_write is atomic_write
    assert result.atomic_write_text is atomic_write_text
    assert result.atomic_write_bytes is atomic_write_bytes
    assert _common.write_atomic is atomic_write_text
