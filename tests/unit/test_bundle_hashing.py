"""HashingWriter: MD5 and size computed while writing equal hashlib over the finished file."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path

import pytest

from aiofolio.bundle.hashing import HashingWriter, md5_file, write_hashed


def test_digest_and_size_match_the_file(tmp_path: Path) -> None:
    dest = tmp_path / "out.bin"
    chunks = [b"", b"abc", bytes(range(256)) * 1000, memoryview(b"tail"), bytearray(b"x")]
    with HashingWriter(dest) as writer:
        for chunk in chunks:
            writer.write(chunk)
        assert writer.tell() == writer.size
    data = dest.read_bytes()
    assert writer.md5_hex == hashlib.md5(data).hexdigest()
    assert writer.size == len(data) == os.path.getsize(dest)
    assert md5_file(dest) == (writer.md5_hex, writer.size)
    assert writer.closed


def test_multibyte_memoryview_is_counted_in_bytes(tmp_path: Path) -> None:
    import array

    values = array.array("d", [1.0, 2.0, 3.0])
    md5, size = write_hashed(tmp_path / "a", lambda w: w.write(memoryview(values)))
    assert size == 24
    assert md5 == hashlib.md5(values.tobytes()).hexdigest()


def test_file_mode_is_0644_despite_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        write_hashed(tmp_path / "f", lambda w: w.write(b"x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o644


def test_existing_file_is_truncated(tmp_path: Path) -> None:
    dest = tmp_path / "f"
    dest.write_bytes(b"old content that is longer")
    md5, size = write_hashed(dest, lambda w: w.write(b"new"))
    assert dest.read_bytes() == b"new"
    assert (md5, size) == (hashlib.md5(b"new").hexdigest(), 3)


def test_seeking_is_refused(tmp_path: Path) -> None:
    with HashingWriter(tmp_path / "f") as writer:
        assert not writer.seekable()
        assert writer.writable()
        assert not writer.readable()
        with pytest.raises(io.UnsupportedOperation):
            writer.seek(0)


def test_error_deletes_the_partial_file(tmp_path: Path) -> None:
    dest = tmp_path / "partial"

    def boom(writer: HashingWriter) -> None:
        writer.write(b"some bytes")
        raise RuntimeError("serializer failed")

    with pytest.raises(RuntimeError, match="serializer failed"):
        write_hashed(dest, boom)
    assert not dest.exists()


def test_write_after_close_fails(tmp_path: Path) -> None:
    writer = HashingWriter(tmp_path / "f")
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"x")
    assert writer.path == str(tmp_path / "f")


def test_md5_file_reads_in_chunks(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)
    (tmp_path / "big").write_bytes(data)
    assert md5_file(tmp_path / "big") == (hashlib.md5(data).hexdigest(), len(data))
