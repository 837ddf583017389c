"""The pure manifest operations behind snapshots and curation (no I/O).

Plans are checked on the manifests they return: revisions, which descriptors stay current,
copy-on-write of pinned versions, which payloads become obsolete (never one another
descriptor names), and the derived ``CONTENTS.md`` text.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from aiofolio.bundle import ItemFields, Manifest, plan_add, plan_create, plan_snapshot
from aiofolio.bundle import curation as cur
from aiofolio.bundle import snapshots as snaps
from aiofolio.bundle.docs import contents_text
from aiofolio.bundle.handlers.imports import import_format
from aiofolio.errors import InvalidArgumentError, ItemNotFoundError

NOW = datetime(2024, 1, 2, tzinfo=timezone.utc)


def _add(m: Manifest, name: str, inputs: list[str] | None = None) -> Manifest:
    fields = ItemFields("json_data", {"checksum": f"md5-{name}-{m.revision}"}, ".json")
    return plan_add(m, name, fields, overwrite=name in m, inputs=inputs, now=NOW).manifest


def _base() -> Manifest:
    m = plan_create({"k": 1}, now=NOW).manifest
    m = _add(m, "a")
    m = _add(m, "b", ["a"])
    return plan_snapshot(m, "s", now=NOW).manifest


def test_item_edits_are_copy_on_write_only_when_pinned() -> None:
    m = _base()
    plan = cur.plan_update_item(m, "a", description="new", now=NOW)
    new = plan.manifest
    assert new.revision == m.revision + 1
    current = new.current("a")
    assert current.description == "new"
    assert current.version_id == f"a--r{new.revision}"
    assert current.get("filename") == m.current("a").get("filename")  # same payload
    assert new.resolve_snapshot("s", "a").description is None
    assert plan.obsolete_payloads == ()
    again = cur.plan_update_item(new, "a", description="", now=NOW).manifest
    assert again.current("a").version_id == current.version_id  # unpinned: in place
    assert again.current("a").description is None
    with pytest.raises(ItemNotFoundError):
        cur.plan_update_item(m, "zz", description="x")


def test_archive_plans_and_name_selection() -> None:
    m = _add(_add(_base(), "tmp/x"), "tmp/y")
    assert cur.select_names(m, "tmp/*") == ["tmp/x", "tmp/y"]
    assert cur.select_names(m, ["a", "tmp/?", "a"]) == ["a", "tmp/x", "tmp/y"]
    assert cur.select_names(m, "none*") == []
    with pytest.raises(ItemNotFoundError):
        cur.select_names(m, ["a", "missing"])
    plan = cur.plan_archive(m, ["tmp/x", "a"], archived=True, now=NOW)
    assert plan is not None
    assert plan.manifest.names(include_archived=False) == ["b", "tmp/y"]
    assert cur.plan_archive(plan.manifest, ["a"], archived=True) is None
    back = cur.plan_archive(plan.manifest, ["a"], archived=False)
    assert back is not None
    assert "archived" not in back.manifest.current("a")


def test_lineage_helpers() -> None:
    m = _add(_base(), "c", ["b", "gone"])
    items = m.current_items()
    assert cur.inputs_of(items, "c") == ["b", "gone"]
    assert cur.dependents_of(items, "a") == ["b"]
    assert cur.lineage_graph(items) == {"a": [], "b": ["a"], "c": ["b", "gone"]}
    assert cur.follow_lineage(m, ["c"]) == ["c", "b", "a"]
    copied = cur.copy_manifest(m, ["c", "a"], metadata_updates={"n": 2}, now=NOW)
    assert copied.revision == 1
    assert list(copied.current_items()) == ["c", "a"]
    assert copied.snapshots == {}
    assert copied.metadata["k"] == 1
    assert copied.metadata["n"] == 2


def test_restore_delete_and_orphans() -> None:
    m = _base()
    m = _add(m, "a")  # overwrite: the pinned a--r2 is kept non-current
    m = _add(m, "new")
    restored = snaps.plan_restore_snapshot(m, "s", now=NOW)
    r = restored.manifest
    assert sorted(r.names()) == ["a", "b"]
    assert r.current("a").version_id == "a--r2"
    assert all(i.is_current for i in r.items)
    assert set(restored.obsolete_payloads) == {
        f"artifacts/a--r{m.revision - 1}.json",
        f"artifacts/new--r{m.revision}.json",
    }
    assert r.metadata["k"] == 1
    dropped = snaps.plan_delete_snapshot(m, "s", cleanup_orphans=True, now=NOW)
    assert "artifacts/a--r2.json" in dropped.obsolete_payloads
    assert all(i.is_current for i in dropped.manifest.items)
    kept = snaps.plan_delete_snapshot(m, "s", now=NOW).manifest
    assert [i.version_id for i in snaps.orphaned_versions(kept)] == ["a--r2"]
    cleaned = snaps.plan_cleanup_orphans(kept, now=NOW)
    assert cleaned is not None
    assert cleaned.obsolete_payloads == ("artifacts/a--r2.json",)
    assert snaps.plan_cleanup_orphans(cleaned.manifest) is None
    with pytest.raises(ItemNotFoundError):
        snaps.plan_delete_snapshot(m, "nope")


def test_diffs_and_listings() -> None:
    m = _add(_base(), "a")
    assert snaps.latest_snapshot(m) == "s"
    diff = snaps.diff_from_snapshot(m)
    assert diff["modified_items"] == ["a"]
    assert diff["unchanged_items"] == ["b"]
    assert diff["metadata_changes"] == {}
    with pytest.raises(InvalidArgumentError):
        snaps.latest_snapshot(plan_create(now=NOW).manifest)
    m2 = plan_snapshot(m, "s2", now=NOW).manifest
    cmp = snaps.compare_snapshots(m2, "s", "s2")
    assert cmp["modified_items"] == ["a"]
    assert cmp["shared_items"] == ["b"]
    rows = snaps.list_snapshots(m2)
    assert [r["num_items"] for r in rows] == [2, 2]
    exported = snaps.export_manifest(m2, "s", source="/src", now=NOW)
    assert exported.current("a").version_id == "a--r2"
    assert exported.metadata["_source_snapshot"]["name"] == "s"


def test_contents_text_and_import_formats() -> None:
    m = _base()
    text = contents_text(m)
    assert text.splitlines()[0] == "# Contents"
    assert f"revision **{m.revision}**" in text
    assert "| a | json_data | artifacts/a--r2.json |  |" in text
    assert text.endswith("\n")
    assert import_format("x.PQ", None) == "parquet"
    assert import_format("x.ipc", None) == "arrow"
    assert import_format("x.bin", "csv") == "csv"
    with pytest.raises(InvalidArgumentError):
        import_format("x.bin", None)
