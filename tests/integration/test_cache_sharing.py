"""Sharing a warm cache (issue 15): export, import, a hostile archive corpus, file handles.

A bundle is served by the loopback HTTP file server; requests are counted at the server.
Every hostile archive is refused with its named error and leaves the target cache exactly as
it was (paths, sizes, mtimes and SHA-256 of every file). The CLI runs through CliRunner.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import aiofolio
from aiofolio import (
    ArchiveChecksumError,
    ArchiveFormatError,
    ArchiveMemberTypeError,
    ArchivePathError,
    ArchiveSizeError,
    ArchiveUnexpectedMemberError,
    CacheFullError,
    DataFolio,
)
from aiofolio.bundle import payload_path
from aiofolio.cli import main
from aiofolio.testing import FaultServer

NAMES = ["a", "b", "c"]


class Remote:
    """A bundle written locally, served by the HTTP file server."""

    def __init__(self, server: FaultServer, root: Path) -> None:
        self.server, self.root = server, root
        self.writer = DataFolio(root, cache_enabled=False)

    def add(self, name: str, value: np.ndarray) -> None:
        self.writer.add(name, value, overwrite=True)
        for p in self.root.rglob("*"):
            if p.is_file():
                self.server.put(f"/share/{p.relative_to(self.root).as_posix()}", p.read_bytes())

    @property
    def url(self) -> str:
        return f"{self.server.url}/share"

    def payload(self, name: str) -> bytes:
        return (self.root / payload_path(self.writer.get_item(name))).read_bytes()

    def payload_gets(self) -> int:
        return sum(
            self.server.stats.requests(
                path=f"/share/{payload_path(self.writer.get_item(n))}", method="GET"
            )
            for n in NAMES
        )


@pytest.fixture
def remote(http_server: FaultServer, tmp_path: Path) -> Remote:
    r = Remote(http_server, tmp_path / "bundle")
    for i, name in enumerate(NAMES):
        r.add(name, np.arange(2000 + i, dtype=np.int32))
    return r


def listing(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file's size, mtime and SHA-256 (not ``v1/stats``: the counters an earlier read
    flushes in the background, which an import never writes)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and "stats" not in p.relative_to(root).parts:
            st = p.stat()
            out[str(p.relative_to(root))] = (
                st.st_size,
                st.st_mtime_ns,
                hashlib.sha256(p.read_bytes()).hexdigest(),
            )
    return out


@pytest.fixture
def exported(remote: Remote, tmp_path: Path) -> Path:
    folio = DataFolio(remote.url, cache_dir=str(tmp_path / "warm"))
    folio.warm_cache()
    dest = tmp_path / "export.tar.gz"
    done = folio.export_cache(dest)
    assert done["items"] == 3
    assert done["blobs"] == 3
    assert dest.is_file()
    return dest


def test_round_trip_serves_every_item_with_no_payload_request(
    remote: Remote, exported: Path, tmp_path: Path
) -> None:
    before = remote.payload_gets()
    fresh = tmp_path / "fresh"
    done = DataFolio.import_cache(exported, cache_dir=str(fresh))
    assert done["blobs_imported"] == 3
    assert done["blobs_skipped"] == 0
    assert done["items"] == 3
    reader = DataFolio(remote.url, cache_dir=str(fresh))
    for i, name in enumerate(NAMES):
        np.testing.assert_array_equal(reader.get(name), np.arange(2000 + i, dtype=np.int32))
        with reader.open_item(name) as fh:
            assert fh.read() == remote.payload(name)
    assert remote.payload_gets() == before
    assert reader.cache_status("a")["cached"] is True
    again = DataFolio.import_cache(exported, cache_dir=str(fresh))
    assert again["blobs_imported"] == 0
    assert again["blobs_skipped"] == 3


def test_async_import_and_export(remote: Remote, exported: Path, tmp_path: Path) -> None:
    async def run() -> dict[str, object]:
        done = await DataFolio.aimport_cache(exported, cache_dir=str(tmp_path / "c2"))
        reader = DataFolio(remote.url, cache_dir=str(tmp_path / "c2"))
        await reader.aexport_cache(tmp_path / "again.tar.gz")
        return done

    assert asyncio.run(run())["bytes_imported"] == sum(len(remote.payload(n)) for n in NAMES)
    assert (tmp_path / "again.tar.gz").is_file()


def test_hard_limit_too_small_refuses_and_leaves_nothing(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = tmp_path / "small"
    aiofolio.DataFolio.configure_cache(max_cache_size=1000, hard_limit=True)
    with pytest.raises(CacheFullError):
        DataFolio.import_cache(exported, cache_dir=str(fresh))
    assert [p for p in listing(fresh) if "/blobs/" in p or "/bundles/" in p] == []


# -- the hostile corpus ------------------------------------------------------------------------
def _members(src: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(src, "r:gz") as tf:
        out = []
        for m in tf.getmembers():
            fh = tf.extractfile(m)
            assert fh is not None
            out.append((m, fh.read()))
        return out


def _write(dest: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(dest, "w:gz") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return dest


def _extra(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"x", link: str = ""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, (data if kind == tarfile.REGTYPE else None)


def _blob_index(members: list[tuple[tarfile.TarInfo, bytes]]) -> int:
    return next(i for i, (m, _) in enumerate(members) if m.name.startswith("v1/blobs/"))


def _oversized(members):
    i = _blob_index(members)
    info, data = members[i]
    info.size = len(data) + 10
    members[i] = (info, data + b"0" * 10)
    return members


def _wrong_digest(members):
    # every blob (same size, one byte flipped): also those the target does not have yet
    return [
        (m, bytes([d[0] ^ 0xFF]) + d[1:]) if m.name.startswith("v1/blobs/") else (m, d)
        for m, d in members
    ]


def _bad_index_size(members):
    idx = json.loads(members[0][1])
    idx["items"][0]["size"] += 5  # the member is then larger... no: smaller than stated
    data = json.dumps(idx).encode()
    info = members[0][0]
    info.size = len(data)
    members[0] = (info, data)
    return members


HOSTILE = {
    "traversal": (lambda m: [*m, _extra("../x")], ArchivePathError),
    "inner-traversal": (lambda m: [*m, _extra("v1/blobs/../../x")], ArchivePathError),
    "absolute": (lambda m: [*m, _extra("/etc/x")], ArchivePathError),
    "symlink": (
        lambda m: [*m, _extra("v1/blobs/ab/l", tarfile.SYMTYPE, link="/etc/passwd")],
        ArchiveMemberTypeError,
    ),
    "hardlink": (
        lambda m: [*m, _extra("v1/blobs/ab/h", tarfile.LNKTYPE, link="/etc/passwd")],
        ArchiveMemberTypeError,
    ),
    "device": (lambda m: [*m, _extra("v1/blobs/ab/d", tarfile.CHRTYPE)], ArchiveMemberTypeError),
    "fifo": (lambda m: [*m, _extra("v1/blobs/ab/f", tarfile.FIFOTYPE)], ArchiveMemberTypeError),
    "folder": (lambda m: [*m, _extra("v1/blobs/ab", tarfile.DIRTYPE)], ArchiveMemberTypeError),
    "unexpected": (lambda m: [*m, _extra("v1/blobs/zz/extra")], ArchiveUnexpectedMemberError),
    "oversized": (_oversized, ArchiveSizeError),
    "index-size-mismatch": (_bad_index_size, ArchiveSizeError),
    "wrong-digest": (_wrong_digest, ArchiveChecksumError),
    "no-index": (lambda m: m[1:], ArchiveFormatError),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_and_the_cache_is_unchanged(
    case: str, remote: Remote, exported: Path, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    # A cache with something in it: one item read normally.
    DataFolio(remote.url, cache_dir=str(target)).get("a")
    before = listing(target)
    build, error = HOSTILE[case]
    bad = _write(tmp_path / f"{case}.tar.gz", build(_members(exported)))
    with pytest.raises(error):
        DataFolio.import_cache(bad, cache_dir=str(target))
    assert listing(target) == before
    assert not (tmp_path / "x").exists()


def test_wrong_digest_is_refused_without_verify_checksums_too(
    remote: Remote, exported: Path, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    DataFolio(remote.url, cache_dir=str(target)).get("a")
    before = listing(target)
    bad = _write(tmp_path / "bad.tar.gz", _wrong_digest(_members(exported)))
    with pytest.raises(ArchiveChecksumError):
        DataFolio.import_cache(bad, verify_checksums=False, cache_dir=str(target))
    listed = listing(target)
    assert {k: v for k, v in listed.items() if "/tmp/" not in k} == before


def test_not_a_tar_is_a_format_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball at all")
    with pytest.raises(ArchiveFormatError):
        DataFolio.import_cache(junk, cache_dir=str(tmp_path / "c"))


# -- file handles ----------------------------------------------------------------------------
def test_open_item_fetches_and_holds_the_blob_against_eviction(
    remote: Remote, tmp_path: Path
) -> None:
    folio = DataFolio(remote.url, cache_dir=str(tmp_path / "h"), max_cache_size=10)
    with folio.open_item("b") as fh:
        blob = Path(fh.name)
        result = folio.enforce_cache_limit()
        assert blob.is_file()
        assert fh.read() == remote.payload("b")
    assert result["total_after"] >= len(remote.payload("b"))
    after = folio.enforce_cache_limit()
    assert not blob.exists()
    assert after["bytes_freed"] >= len(remote.payload("b"))


def test_aopen_item_reads_the_bytes_and_holds_the_blob(remote: Remote, tmp_path: Path) -> None:
    folio = DataFolio(remote.url, cache_dir=str(tmp_path / "h"), max_cache_size=10)

    async def run() -> tuple[bytes, bool]:
        async with folio.aopen_item("c") as fh:
            await folio.aenforce_cache_limit()
            data = await fh.read()
            kept = os.path.isfile(str(fh.name))  # noqa: ASYNC240 - one stat in a test
            return data, kept

    data, kept = asyncio.run(run())
    assert data == remote.payload("c")
    assert kept


# -- the CLI ---------------------------------------------------------------------------------
def test_cli_export_and_import(remote: Remote, tmp_path: Path) -> None:
    warm = tmp_path / "cw"
    DataFolio(remote.url, cache_dir=str(warm)).warm_cache()
    runner = CliRunner()
    out = tmp_path / "cli.tar.gz"
    res = runner.invoke(
        main, ["--cache-dir", str(warm), "--json", "cache", "export", remote.url, str(out)]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["items"] == 3
    res = runner.invoke(
        main, ["--cache-dir", str(tmp_path / "ci"), "--json", "cache", "import", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["blobs_imported"] == 3
    bad = _write(tmp_path / "evil.tar.gz", [*_members(out), _extra("../evil")])
    res = runner.invoke(main, ["--cache-dir", str(tmp_path / "ci"), "cache", "import", str(bad)])
    assert res.exit_code != 0
    assert "ArchivePathError" in res.output


def test_export_of_an_uncached_bundle_is_a_cache_error(remote: Remote, tmp_path: Path) -> None:
    folio = DataFolio(remote.url, cache_dir=str(tmp_path / "empty"))
    folio.clear_cache()
    with pytest.raises(aiofolio.CacheError, match="nothing"):
        folio.export_cache(tmp_path / "none.tar.gz")
    assert not (tmp_path / "none.tar.gz").exists()
    assert list(tmp_path.glob(".none.tar.gz.*")) == []
