"""Name rules (datafolio's grammar on write) and the hostile-path guard (on read)."""

from __future__ import annotations

import pytest

from aiofolio.bundle.names import (
    check_manifest_name,
    safe_relative_path,
    validate_item_name,
    validate_snapshot_name,
)
from aiofolio.errors import ManifestError


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "results",
        "model-v1.2",
        "my_model",
        "0day",
        "examples/run1",
        "a/b/c",
        "A.b-c_d",
        "x" * 200,
        "/".join(["abc"] * 63),  # 251 characters
    ],
)
def test_valid_item_names(name: str) -> None:
    validate_item_name(name)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "empty"),
        ("_private", "must start with a letter or digit"),
        (".hidden", "must start with a letter or digit"),
        ("-dash", "must start with a letter or digit"),
        ("a b", "must start with a letter or digit"),
        ("a@b", "'@'"),
        ("../escape", "'..'"),
        ("a/../b", "'..'"),
        ("a/./b", "'.'"),
        ("/abs", "empty"),
        ("a//b", "empty"),
        ("a/", "empty"),
        ("a\\b", "must start with a letter or digit"),
        ("C:x", "must start with a letter or digit"),
        ("a\n", "must start with a letter or digit"),
        ("ü", "must start with a letter or digit"),
        ("x" * 201, "longer than 200"),
        ("/".join(["abcd"] * 52), "too long"),  # 259 characters
    ],
)
def test_invalid_item_names(name: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="name") as info:
        validate_item_name(name)
    assert fragment in str(info.value)


def test_non_string_name_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        validate_item_name(3)


@pytest.mark.parametrize("name", ["v1", "v1.0-baseline", "2024_01", "a" * 100])
def test_valid_snapshot_names(name: str) -> None:
    validate_snapshot_name(name)


@pytest.mark.parametrize("name", ["", "v1@x", "with space", "a/b", "a" * 101, " v1", "v1\n"])
def test_invalid_snapshot_names(name: str) -> None:
    with pytest.raises(ValueError, match="Snapshot name"):
        validate_snapshot_name(name)


@pytest.mark.parametrize(
    "path", ["x.parquet", "ns/arr--r3.npy", "a.b/c", "weird name.txt", "ü.json"]
)
def test_safe_relative_paths(path: str) -> None:
    assert safe_relative_path(path, what="filename", source="src") == path


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("../x", "'..'"),
        ("a/../../x", "'..'"),
        ("./x", "'.'"),
        ("a//b", "empty path segment"),
        ("a/", "empty path segment"),
        ("..\\x", "backslash"),
        ("a\\b", "backslash"),
        ("C:/x", "':'"),
        ("c:x", "':'"),
        ("file://x", "':'"),
        ("a\x00b", "control character"),
    ],
)
def test_hostile_paths_raise_manifest_error(path: str, reason: str) -> None:
    with pytest.raises(ManifestError, match="source-uri") as info:
        safe_relative_path(path, what="filename of item 'x'", source="source-uri")
    assert reason in str(info.value)


def test_non_string_path_is_a_manifest_error() -> None:
    with pytest.raises(ManifestError, match="must be a string"):
        safe_relative_path(5, what="filename", source="s")


def test_manifest_names_are_lenient_but_safe() -> None:
    assert check_manifest_name("legacy name with spaces", source="s") == "legacy name with spaces"
    assert check_manifest_name("_old", source="s") == "_old"
    with pytest.raises(ManifestError):
        check_manifest_name("../../etc", source="s")
    with pytest.raises(ManifestError):
        check_manifest_name(None, source="s")
