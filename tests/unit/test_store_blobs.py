"""The blob store: digest validation, atomic idempotent publish, lookup, touch, sweep, hashing."""

from __future__ import annotations

import array
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from aiofolio.errors import CacheError
from aiofolio.store import (
    FAST_ALGORITHM,
    BlobStore,
    CacheLayout,
    Hashers,
    available_algorithms,
    fast_hash_file,
    hash_file,
    is_available,
    new_hasher,
    validate_digest,
)

DATA = b"hello blob\n" * 1000
DIGEST = hashlib.md5(DATA).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    layout = CacheLayout(tmp_path / "cache")
    layout.ensure()
    return BlobStore(layout)


def _temp_with(store: BlobStore, data: bytes = DATA) -> Path:
    tmp = store.new_temp()
    tmp.write_bytes(data)
    return tmp


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(proc.stdout)


# ------------------------------------------------------------------------------------------
# paths and digests


def test_path_fans_out_by_first_two_hex_digits(store: BlobStore) -> None:
    assert store.path(DIGEST) == store.layout.blobs_dir / DIGEST[:2] / DIGEST


@pytest.mark.parametrize(
    "digest",
    [
        "../x",
        "../../../../etc/passwd",
        "ab/cd0123456789",
        DIGEST.upper(),
        "",
        "abc",
        "0123456789abcdeg",
        " " + DIGEST,
        DIGEST + "\n",
        "a" * 129,
        "..",
    ],
)
def test_bad_digests_are_rejected(store: BlobStore, digest: str) -> None:
    with pytest.raises(ValueError, match="digest"):
        store.path(digest)
    with pytest.raises(ValueError):
        store.lookup(digest)
    with pytest.raises(ValueError):
        store.remove(digest)
    with pytest.raises(ValueError):
        store.publish(store.new_temp(), digest)


def test_non_str_digest_is_rejected() -> None:
    with pytest.raises(ValueError):
        validate_digest(b"abcdef0123456789")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# temp files and publish


def test_new_temp_is_unique_in_tmp_named_by_pid_and_not_created(store: BlobStore) -> None:
    paths = {store.new_temp() for _ in range(100)}
    assert len(paths) == 100
    for path in paths:
        assert path.parent == store.layout.tmp_dir
        assert path.name.startswith(f"{os.getpid()}-")
        assert path.name.endswith(".part")
        assert not path.exists()
    assert store.new_temp(".tmp").name.endswith(".tmp")
    with pytest.raises(ValueError):
        store.new_temp("/../x")


def test_new_temp_recreates_a_missing_tmp_folder(store: BlobStore) -> None:
    os.rmdir(store.layout.tmp_dir)
    store.new_temp().write_bytes(b"x")


def test_publish_makes_the_blob_read_only_and_moves_the_temp(store: BlobStore) -> None:
    tmp = _temp_with(store)
    final = store.publish(tmp, DIGEST)
    assert final == store.path(DIGEST)
    assert final.read_bytes() == DATA
    assert stat.S_IMODE(final.stat().st_mode) == 0o444
    assert not tmp.exists()
    assert list(store.layout.tmp_dir.iterdir()) == []


def test_publish_is_idempotent(store: BlobStore) -> None:
    first = store.publish(_temp_with(store), DIGEST)
    second = store.publish(_temp_with(store), DIGEST, fsync=True)
    assert first == second
    assert second.read_bytes() == DATA
    assert list(store.layout.tmp_dir.iterdir()) == []


def test_publish_repairs_a_damaged_copy(store: BlobStore) -> None:
    final = store.publish(_temp_with(store), DIGEST)
    os.chmod(final, 0o644)
    final.write_bytes(b"bit rot")
    assert store.lookup(DIGEST, len(DATA)) is None  # size mismatch: a miss
    store.publish(_temp_with(store), DIGEST)
    assert final.read_bytes() == DATA


def test_eight_threads_publishing_one_digest(store: BlobStore) -> None:
    temps = [_temp_with(store) for _ in range(8)]
    barrier = threading.Barrier(len(temps))
    results: list[Path] = []
    errors: list[BaseException] = []

    def publish(tmp: Path) -> None:
        try:
            barrier.wait(timeout=5)
            for _ in range(20):  # re-publish a few times to widen the race window
                again = store.new_temp()
                again.write_bytes(DATA)
                store.publish(again, DIGEST)
            results.append(store.publish(tmp, DIGEST))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(t,)) for t in temps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert results == [store.path(DIGEST)] * 8
    assert store.path(DIGEST).read_bytes() == DATA
    assert list(store.layout.tmp_dir.iterdir()) == []
    assert [info.digest for info in store.iter_blobs()] == [DIGEST]


def test_publish_of_a_missing_temp_raises_cache_error(store: BlobStore) -> None:
    missing = store.new_temp()
    with pytest.raises(CacheError, match=missing.name):
        store.publish(missing, DIGEST)
    assert store.lookup(DIGEST) is None


def test_publish_recreates_a_missing_fanout_folder(store: BlobStore) -> None:
    os.rmdir(store.layout.blobs_dir)
    assert store.publish(_temp_with(store), DIGEST).read_bytes() == DATA


# ------------------------------------------------------------------------------------------
# lookup, remove, listing


def test_lookup(store: BlobStore) -> None:
    assert store.lookup(DIGEST) is None
    store.publish(_temp_with(store), DIGEST)
    assert store.lookup(DIGEST) == store.path(DIGEST)
    assert store.lookup(DIGEST, len(DATA)) == store.path(DIGEST)
    assert store.lookup(DIGEST, len(DATA) + 1) is None
    assert store.lookup(DIGEST, 0) is None


def test_lookup_of_a_folder_in_the_way_is_a_miss(store: BlobStore) -> None:
    store.path(DIGEST).mkdir(parents=True)
    assert store.lookup(DIGEST) is None


def test_remove_returns_bytes_freed(store: BlobStore) -> None:
    store.publish(_temp_with(store), DIGEST)
    assert store.remove(DIGEST) == len(DATA)
    assert store.lookup(DIGEST) is None
    assert store.remove(DIGEST) == 0


def test_iter_blobs_and_total_size(store: BlobStore) -> None:
    blobs = {}
    for i in range(5):
        data = bytes([i]) * (100 + i)
        digest = hashlib.md5(data).hexdigest()
        store.publish(_temp_with(store, data), digest)
        blobs[digest] = len(data)
    (store.layout.blobs_dir / "zz").mkdir()
    (store.layout.blobs_dir / "zz" / "notes.txt").write_text("stray")
    (store.layout.blobs_dir / "stray.txt").write_text("stray")
    infos = list(store.iter_blobs())
    assert {info.digest: info.size for info in infos} == blobs
    for info in infos:
        assert info.path == store.path(info.digest)
        assert info.atime > 0
        assert info.mtime > 0
    assert store.total_size() == sum(blobs.values())


def test_empty_or_missing_store_lists_nothing(tmp_path: Path) -> None:
    store = BlobStore(CacheLayout(tmp_path / "never-created"))
    assert list(store.iter_blobs()) == []
    assert store.total_size() == 0
    assert store.sweep_temps() == 0


# ------------------------------------------------------------------------------------------
# touch


def test_touch_sets_atime_and_keeps_mtime(store: BlobStore) -> None:
    final = store.publish(_temp_with(store), DIGEST)
    old = time.time_ns() - 10 * 86400 * 10**9
    os.utime(final, ns=(old, old))
    before = time.time_ns()
    assert store.touch(final)
    st = os.stat(final)
    assert st.st_mtime_ns == old
    assert st.st_atime_ns >= before - 10**9  # coarse filesystem clocks
    info = next(store.iter_blobs())
    assert info.atime > info.mtime


def test_touch_min_interval_skips_recent_accesses(store: BlobStore) -> None:
    final = store.publish(_temp_with(store), DIGEST)
    assert store.touch(final)
    assert not store.touch(final, min_interval_s=3600)
    old = time.time_ns() - 7200 * 10**9
    os.utime(final, ns=(old, old))
    assert store.touch(final, min_interval_s=3600)


def test_touch_of_a_missing_file_is_false(store: BlobStore) -> None:
    assert store.touch(store.path(DIGEST)) is False


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_touch_works_on_a_0444_blob_for_its_non_root_owner() -> None:
    """Only root can hand a file to another account: utime needs ownership, not 'w'."""
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    folder = Path(tempfile.mkdtemp(prefix="aiofolio-touch-"))  # pytest's tmp is root-only
    try:
        os.chmod(folder, 0o755)
        blob = folder / "blob"
        blob.write_bytes(b"x")
        os.chmod(blob, 0o444)
        os.chown(blob, 65534, 65534)
        old = 1_000_000_000 * 10**9
        os.utime(blob, ns=(old, old))
        code = (
            "import os, sys, time\n"
            "st = os.stat(sys.argv[1])\n"
            "os.utime(sys.argv[1], ns=(time.time_ns(), st.st_mtime_ns))\n"
        )
        try:
            subprocess.run([python, "-I", "-c", code, str(blob)], user=65534, group=65534,
                           check=True, capture_output=True, timeout=30)  # fmt: skip
        except (subprocess.CalledProcessError, OSError) as exc:
            pytest.skip(f"cannot run a process as uid 65534 here: {exc}")
        st = os.stat(blob)
        assert st.st_mtime_ns == old
        assert st.st_atime_ns > old
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------------------------
# sweeping temp files


def _aged(path: Path, seconds: float) -> Path:
    path.write_bytes(b"partial")
    t = time.time() - seconds
    os.utime(path, (t, t))
    return path


def test_sweep_temps_removes_stale_files_of_dead_processes_only(store: BlobStore) -> None:
    tmp = store.layout.tmp_dir
    dead = _dead_pid()
    mine = os.getpid()
    dead_old = _aged(tmp / f"{dead}-aaaa.part", 7200)
    dead_young = _aged(tmp / f"{dead}-bbbb.part", 60)
    live_old = _aged(tmp / f"{mine}-cccc.part", 7200)
    live_ancient = _aged(tmp / f"{mine}-dddd.part", 25 * 3600)
    nameless_old = _aged(tmp / "junk.part", 7200)
    assert store.sweep_temps() == 3
    assert not dead_old.exists()
    assert dead_young.exists()
    assert live_old.exists()  # its owner is alive: a slow download, maybe
    assert not live_ancient.exists()  # past 24 h, whatever the pid says
    assert not nameless_old.exists()
    assert store.sweep_temps(max_age_s=30) == 1
    assert not dead_young.exists()
    assert live_old.exists()


# ------------------------------------------------------------------------------------------
# hashing


def test_hashers_feed_every_algorithm_once() -> None:
    hashers = Hashers(["md5", "sha256", "blake2b_128", "md5"])
    assert hashers.algorithms == ("md5", "sha256", "blake2b_128")
    for i in range(0, len(DATA), 777):
        hashers.update(DATA[i : i + 777])
    assert hashers.size == len(DATA)
    assert hashers.hexdigest("md5") == hashlib.md5(DATA).hexdigest()
    assert hashers.hexdigests() == {
        "md5": hashlib.md5(DATA).hexdigest(),
        "sha256": hashlib.sha256(DATA).hexdigest(),
        "blake2b_128": hashlib.blake2b(DATA, digest_size=16).hexdigest(),
    }


def test_hashers_accept_any_buffer() -> None:
    values = array.array("I", range(1000))
    hashers = Hashers(["md5"])
    hashers.update(values)
    hashers.update(memoryview(bytearray(b"xyz")))
    assert hashers.size == values.itemsize * 1000 + 3
    assert hashers.hexdigest("md5") == hashlib.md5(values.tobytes() + b"xyz").hexdigest()


def test_unknown_algorithms_are_rejected() -> None:
    with pytest.raises(ValueError, match="available"):
        new_hasher("crc99")
    with pytest.raises(ValueError):
        Hashers([])
    if not is_available("xxh3_128"):
        with pytest.raises(ValueError, match="xxhash"):
            Hashers(["xxh3_128"])


def test_fast_algorithm_is_named_honestly() -> None:
    assert FAST_ALGORITHM in ("xxh3_128", "blake2b_128")
    assert FAST_ALGORITHM in available_algorithms()
    try:
        import xxhash  # noqa: F401
    except ImportError:
        assert FAST_ALGORITHM == "blake2b_128"
    else:
        assert FAST_ALGORITHM == "xxh3_128"


def test_fast_hash_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    data = os.urandom(5 << 20) + b"tail"  # more than one read chunk
    path.write_bytes(data)
    expected = Hashers([FAST_ALGORITHM])
    expected.update(data)
    assert fast_hash_file(path) == expected.hexdigest(FAST_ALGORITHM)
    assert fast_hash_file(path, "md5") == hashlib.md5(data).hexdigest()
    both = hash_file(path, ["md5", "blake2b_128"])
    assert both.size == len(data)
    assert both.hexdigest("blake2b_128") == hashlib.blake2b(data, digest_size=16).hexdigest()


def test_xxh3_128_when_xxhash_is_installed(tmp_path: Path) -> None:
    xxhash = pytest.importorskip("xxhash")
    path = tmp_path / "f"
    path.write_bytes(DATA)
    assert fast_hash_file(path, "xxh3_128") == xxhash.xxh3_128(DATA).hexdigest()
