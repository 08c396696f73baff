"""The tenants the raw log holds a user's history for, as `sluice batch` checks them."""

from __future__ import annotations

import pytest

from sluice.intake import eventlog, log_tenants
from sluice.intake.eventlog import EventLog
from sluice.intake.log_tenants import asked_and_known, tenants_with_interactions


def _event(n: int, **extra) -> dict:
    return {"event": "interaction", "id": f"e{n}", "timestamp": 1_700_000_000_000 + n,
            "user": f"u{n % 7}", "item": f"i{n % 11}", "type": "click", **extra}


@pytest.mark.parametrize("root", ["path", "memory://tenants-log"])
def test_tenants_with_interactions_are_those_serving_holds_a_history_for(tmp_path, root):
    """An event without a tenant is the default tenant's; item events, answers logged back,
    a tenant named only inside fields and a torn line make no tenant known."""
    root = str(tmp_path / "raw") if root == "path" else root
    log = EventLog(root)
    log.append([_event(1), _event(2, tenant="shop"), _event(3, tenant="shop"),
                {"event": "item", "id": "c1", "timestamp": 1, "tenant": "catalog", "item": "i1",
                 "fields": {"tenant": "nested"}},
                {"event": "recommendation", "id": "r1", "timestamp": 1, "tenant": "answers",
                 "user": "u1", "items": []},
                _event(4, tenant="items", fields={"tenant": "nested"})])
    log.close()
    fs, inner = eventlog._url_to_fs(root) if root.startswith("memory:") else (None, root)
    with (fs.open if fs else open)(f"{inner}/segment-9-torn.jsonl", "wb") as torn:
        torn.write(b'{"event":"interaction","id":"t","tenant":"torn"\n')  # cut short
    assert tenants_with_interactions(root) == {"default", "shop", "items"}
    assert tenants_with_interactions(root, ["shop", "catalog", "nope"]) == {"shop"}
    assert tenants_with_interactions(str(tmp_path / "none")) == set()


def test_a_log_of_other_tenants_does_not_make_the_default_tenant_known(tmp_path):
    log = EventLog(tmp_path / "raw")
    log.append([_event(1, tenant="shop"), _event(2, tenant="shop")])
    log.close()
    assert tenants_with_interactions(tmp_path / "raw", ["default"]) == set()


def _segments(root, batches) -> None:
    log = EventLog(root, segment_bytes=1)  # every append starts a new segment
    for events in batches:
        log.append(events)
    log.close()


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The segments log_tenants reads, in order (each read as it would be)."""
    seen: list[str] = []
    real = log_tenants.read_complete

    def counted(path, *args, **kwargs):
        seen.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(log_tenants, "read_complete", counted)
    return seen


def test_a_refusal_reads_each_segment_once_and_names_every_known_tenant(tmp_path, reads):
    """A tenant asked for that has no interaction: the tenants to name come from the same
    reading (they used to take a second reading of every segment)."""
    _segments(tmp_path / "raw", [[_event(1, tenant="shop")], [_event(2)],
                                 [{"event": "item", "id": "c1", "timestamp": 1,
                                   "tenant": "catalog", "item": "i1"}],
                                 [_event(3, tenant="late")]])
    assert asked_and_known(tmp_path / "raw", ["shop", "catalog"]) == (
        {"shop"}, {"shop", "default", "late"})
    assert len(reads) == 4 and len(set(reads)) == 4, reads
    assert asked_and_known(tmp_path / "raw", ["nope"]) == (set(), {"shop", "default", "late"})
    assert len(reads) == 8 and len(set(reads)) == 4, reads


def test_asked_tenants_all_found_stop_the_reading_as_before(tmp_path, reads):
    _segments(tmp_path / "raw", [[_event(1, tenant="shop")], [_event(2)],
                                 [_event(3, tenant="late")]])
    assert asked_and_known(tmp_path / "raw", ["shop"]) == ({"shop"}, {"shop"})
    assert len(reads) == 1, reads  # found in the first segment: the others are not read
    assert asked_and_known(tmp_path / "raw", ["late", "shop"]) == (
        {"shop", "late"}, {"shop", "late"})
