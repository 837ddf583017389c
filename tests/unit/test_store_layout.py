"""The cache layout: folders and modes, CACHEDIR.TAG, errors naming the path, bundle keys."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiofolio.errors import CacheError
from aiofolio.store import CACHEDIR_TAG_SIGNATURE, CacheLayout, bundle_key


@pytest.fixture
def umask_027() -> Iterator[None]:
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def test_paths_are_versioned_and_nothing_is_created(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path / "cache")
    assert layout.root == tmp_path / "cache"
    assert layout.blobs_dir == tmp_path / "cache" / "v1" / "blobs"
    assert layout.bundles_dir == tmp_path / "cache" / "v1" / "bundles"
    assert layout.tmp_dir == tmp_path / "cache" / "v1" / "tmp"
    assert layout.locks_dir == tmp_path / "cache" / "v1" / "locks"
    assert layout.stats_dir == tmp_path / "cache" / "v1" / "stats"
    assert not layout.root.exists()


def test_relative_and_user_paths_are_made_absolute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    assert CacheLayout("~/c").root == Path("/home/someone/c")
    assert CacheLayout("rel").root.is_absolute()


@pytest.mark.usefixtures("umask_027")
def test_ensure_creates_every_folder_root_mode_0700(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path / "a" / "cache")
    layout.ensure()
    assert stat.S_IMODE(layout.root.stat().st_mode) == 0o700
    for folder in (
        layout.blobs_dir,
        layout.bundles_dir,
        layout.tmp_dir,
        layout.locks_dir,
        layout.stats_dir,
    ):
        assert folder.is_dir(), folder
    layout.ensure()  # idempotent


def test_ensure_sets_0700_even_when_the_umask_would_narrow_it(tmp_path: Path) -> None:
    old = os.umask(0o277)  # mkdir(0o700) alone would give 0o500
    try:
        CacheLayout(tmp_path / "cache").ensure()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "cache").stat().st_mode) == 0o700


def test_an_existing_root_keeps_its_mode(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    root.mkdir()
    os.chmod(root, 0o2775)
    CacheLayout(root).ensure()
    assert stat.S_IMODE(root.stat().st_mode) == 0o2775


def test_cachedir_tag_is_written_once(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path / "cache")
    layout.ensure()
    tag = layout.root / "CACHEDIR.TAG"
    text = tag.read_text(encoding="ascii")
    assert text.startswith(CACHEDIR_TAG_SIGNATURE + "\n")
    assert CACHEDIR_TAG_SIGNATURE == "Signature: 8a477f597d28d172789f06886806bc55"
    assert "aiofolio" in text
    tag.write_text(CACHEDIR_TAG_SIGNATURE + "\n# edited by a person\n", encoding="ascii")
    layout.ensure()
    assert "edited by a person" in tag.read_text(encoding="ascii")
    assert not [p for p in layout.root.iterdir() if p.name.endswith(".part")]


def test_root_that_is_a_file_raises_cache_error_naming_it(tmp_path: Path) -> None:
    # We run as root here, so a chmod'ed parent would not stop us: a file in the way does.
    root = tmp_path / "cache"
    root.write_text("not a folder")
    with pytest.raises(CacheError) as info:
        CacheLayout(root).ensure()
    assert str(root) in str(info.value)
    assert "not a directory" in str(info.value).lower()


def test_parent_that_is_a_file_raises_cache_error_with_the_os_reason(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    root = tmp_path / "f" / "cache"
    with pytest.raises(CacheError) as info:
        CacheLayout(root).ensure()
    message = str(info.value)
    assert str(tmp_path / "f") in message
    assert os.strerror(20) in message  # ENOTDIR: "Not a directory"
    assert isinstance(info.value.__cause__, OSError)


def test_a_file_in_place_of_a_subfolder_raises_cache_error(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path / "cache")
    layout.ensure()
    os.rmdir(layout.locks_dir)
    layout.locks_dir.write_text("x")
    with pytest.raises(CacheError, match=re.escape(str(layout.locks_dir))):
        layout.ensure()


@pytest.mark.parametrize(
    ("url", "prefix"),
    [
        ("s3://lab/exp-001", "s3-lab-exp-001-"),
        ("gs://Bucket/Deep/Path/", "gs-bucket-deep-path-"),
        ("https://example.org:8443/a b/c?x=1#f", "https-example.org-8443-a-b-c-x-1-f-"),
        ("/home/me/bundles/exp", "home-me-bundles-exp-"),
    ],
)
def test_bundle_key_is_a_readable_slug_plus_hash(url: str, prefix: str) -> None:
    key = bundle_key(url)
    assert key.startswith(prefix), key
    assert re.fullmatch(r"[a-z0-9._-]+-[0-9a-f]{16}", key), key
    assert bundle_key(url) == key  # deterministic


def test_bundle_key_never_collides_when_slugs_do() -> None:
    urls = ["s3://a/b c", "s3://a/b-c", "s3://a/b_c", "S3://A/B-C", "s3://a/b%20c", "s3://a/b/c"]
    slugs = {bundle_key(u).rsplit("-", 1)[0] for u in urls[:2]}
    assert len(slugs) == 1  # same readable part ...
    assert len({bundle_key(u) for u in urls}) == len(urls)  # ... different keys


@pytest.mark.parametrize(
    "url", ["", "..", "../../etc/passwd", "/", "é/ü", "\x00", "s3://" + "x" * 500, "...---___"]
)
def test_bundle_key_is_always_a_safe_folder_name(url: str) -> None:
    key = bundle_key(url)
    assert key not in ("", ".", "..")
    assert "/" not in key
    assert "\\" not in key
    assert "\x00" not in key
    assert not key.startswith(".")
    assert len(key) <= 60 + 1 + 16
    assert re.fullmatch(r"[a-z0-9._-]+", key)


def test_bundle_dir_is_under_bundles(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path)
    assert layout.bundle_dir("s3://lab/x") == layout.bundles_dir / bundle_key("s3://lab/x")
    assert layout.bundle_key("s3://lab/x") == bundle_key("s3://lab/x")
