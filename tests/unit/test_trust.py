"""One trust rule for snapshots (snapshots.judge) and the retention it steers."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backup_agent import manifest, restic, snapshots
from backup_agent.errors import BackupError
from backup_agent.jobs.mysql.binlog import chain as chains
from backup_agent.retention import ServicePlan, check_plan, plan_service
from backup_agent.snapshots import Trust, drill_signature, judge

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KEY = b"k" * 32
TRUST = Trust(frozenset({"agama", "agama-old"}), timedelta(minutes=5), NOW, KEY)
_ids = itertools.count(1)


def spec(type_: str, schedule: Any = "0 22 * * *") -> dict[str, Any]:
    options = {
        "mysql": {"defaults_file": "/run/secrets/backup.cnf"},
        "files": {"paths": ["/srv"]},
        "grafana": {},
    }[type_]
    return {
        "type": type_,
        "schedule": schedule,
        "rpo": "1d",
        "rto": {"target": "30m", "limit": "2h"},
        type_: options,
    }


LOADED = manifest.parse(
    {
        "version": 1,
        "repository": {"url": "/srv/repo", "password_file": "/pw", "host": "agama"},
        "services": {
            "db": spec("mysql"),
            "docs": spec("files", {"incremental": "0 0 * * 1-6", "full": "0 0 * * 0"}),
        },
        "retention": {"keep_within": "3w", "max_age": "31d"},
    }
)
DB, DOCS = LOADED.service("db"), LOADED.service("docs")


def snap(
    service: str, age: timedelta, kind: str = "full", host: str = "agama", **extra: str
) -> restic.Snapshot:
    ident = f"{next(_ids):08x}" * 8
    tags = (f"service={service}", f"kind={kind}", *(f"{k}={v}" for k, v in extra.items()))
    return restic.Snapshot(ident, ident[:8], NOW - age, host, (), tags)


def dump(age: timedelta, host: str = "agama") -> list[restic.Snapshot]:
    """A MySQL dump and its meta record."""
    data = snap("db", age, host=host)
    return [data, snap("db", age - timedelta(seconds=1), "meta", host=host, of=data.id)]


def drilled(target: restic.Snapshot, key: bytes = KEY) -> restic.Snapshot:
    mac = drill_signature(key, target.tag("service") or "", target.id)
    return snap(target.tag("service") or "", timedelta(0), "drill", of=target.id, mac=mac)


DAY = timedelta(days=1)


# --- judge ------------------------------------------------------------------------------


def test_a_future_dated_snapshot_is_never_the_latest() -> None:
    genuine = snap("docs", DAY)
    forged = snap("docs", -30 * DAY)  # dated next month
    judged = judge([genuine, forged], DOCS, TRUST)
    assert judged.latest == genuine
    assert [(s, why.split(" (")[0]) for s, why in judged.untrusted] == [
        (forged, "dated in the future")
    ]


def test_the_clock_skew_allowance_is_small_and_exact() -> None:
    within = snap("docs", -timedelta(minutes=4))
    beyond = snap("docs", -timedelta(minutes=6))
    judged = judge([within, beyond], DOCS, TRUST)
    assert judged.trusted == [within]
    assert [s for s, _ in judged.untrusted] == [beyond]


def test_other_host_names_are_untrusted_unless_listed_as_former() -> None:
    current, former, stranger = (
        snap("docs", DAY),
        snap("docs", 2 * DAY, host="agama-old"),
        snap("docs", 3 * DAY, host="mallory"),
    )
    judged = judge([current, former, stranger], DOCS, TRUST)
    assert set(judged.trusted) == {current, former}
    assert judged.untrusted[0][0] == stranger and "'mallory'" in judged.untrusted[0][1]


def test_a_mysql_dump_needs_its_record() -> None:
    with_record = dump(2 * DAY)
    bare = snap("db", DAY)  # newer, but nothing vouches for it
    judged = judge([*with_record, bare], DB, TRUST)
    assert judged.latest == with_record[0]
    assert judged.records == {with_record[0].id: with_record[1]}
    assert [(s, why) for s, why in judged.untrusted] == [(bare, "no meta record points back to it")]


def test_a_kind_the_service_does_not_make_is_untrusted() -> None:
    odd = snap("docs", DAY, kind="weekly")
    assert [s for s, _ in judge([odd], DOCS, TRUST).untrusted] == [odd]


def test_only_a_record_signed_with_the_drill_key_counts() -> None:
    old, new = snap("docs", 10 * DAY), snap("docs", DAY)
    forged = drilled(new, key=b"x" * 32)  # a sidecar guessing the key
    genuine = drilled(old)
    judged = judge([old, new, forged, genuine], DOCS, TRUST)
    assert judged.latest_drilled == old
    assert (forged, "a drill record without a valid signature") in judged.untrusted
    without_key = judge([old, new, genuine], DOCS, Trust(TRUST.hosts, TRUST.clock_skew, NOW))
    assert without_key.latest_drilled is None
    assert without_key.untrusted == [(genuine, "a drill record, not checked: no drill key here")]


def copied(original: restic.Snapshot) -> restic.Snapshot:
    """``original`` as restic copy stores it in another repository: a new id, same tags."""
    ident = f"{next(_ids):08x}" * 8
    return dataclasses.replace(original, id=ident, short_id=ident[:8], original=original.id)


def test_in_a_copy_records_and_drill_records_find_their_snapshot() -> None:
    """restic copy gives every snapshot a new id; the records name the original."""
    data, meta = dump(DAY)
    proof = drilled(data)
    copy = [copied(s) for s in (data, meta, proof)]
    judged = judge(copy, DB, TRUST)
    assert judged.trusted == [copy[0]] and judged.untrusted == []
    assert judged.latest_drilled == copy[0]
    assert judged.chain(copy[0]) == copy


def test_a_snapshot_claiming_to_be_a_copy_of_a_proven_one_is_untrusted() -> None:
    """A sidecar cannot make its own snapshot pass for the drilled one by naming it as
    its original: both would claim one identity, and the claimant is refused."""
    data, meta = dump(10 * DAY)
    proof = drilled(data)
    forged = dataclasses.replace(snap("db", DAY), original=data.id)
    judged = judge([data, meta, proof, forged], DB, TRUST)
    assert judged.latest_drilled == data
    assert (forged, CLAIMED) in judged.untrusted


CLAIMED = "another snapshot claims the same name (as a copy, or as its record's link)"


def linked_dump(age: timedelta, link: str = "5e" * 16) -> list[restic.Snapshot]:
    """A dump whose record was written beside it: the record names the dump's link."""
    data = snap("db", age, link=link)
    return [data, snap("db", age + timedelta(seconds=5), "meta", of=link)]


def test_a_record_naming_its_dump_by_link_makes_it_trusted_also_in_a_copy() -> None:
    data, meta = linked_dump(DAY)
    judged = judge([data, meta], DB, TRUST)
    assert judged.trusted == [data] and judged.records == {data.id: meta}
    copies = [copied(data), copied(meta)]
    assert judge(copies, DB, TRUST).trusted == [copies[0]]


def test_a_record_naming_a_link_no_dump_has_is_untrusted() -> None:
    data, _ = linked_dump(DAY)
    stray = snap("db", DAY, "meta", of="77" * 16)
    judged = judge([data, stray], DB, TRUST)
    assert judged.trusted == []
    assert (stray, "a record of no trusted snapshot of this service") in judged.untrusted
    assert (data, "no meta record points back to it") in judged.untrusted


def test_a_snapshot_copying_a_dumps_link_makes_both_untrusted() -> None:
    """A sidecar that copies a dump's link onto its own snapshot cannot tell which one
    the record describes, nor can the agent: neither is trusted (and it is reported)."""
    data, meta = linked_dump(2 * DAY)
    forged = snap("db", DAY, link=data.tag("link") or "")
    judged = judge([data, meta, forged], DB, TRUST)
    assert judged.trusted == []
    assert {(data, CLAIMED), (forged, CLAIMED)} <= set(judged.untrusted)


def test_a_link_naming_a_proven_id_is_refused_and_the_proven_one_kept() -> None:
    data, meta = dump(2 * DAY)
    forged = snap("db", DAY, link=data.id)
    judged = judge([data, meta, forged], DB, TRUST)
    assert judged.trusted == [data]
    assert (forged, CLAIMED) in judged.untrusted


def test_other_services_are_left_out() -> None:
    assert judge([snap("db", DAY)], DOCS, TRUST).trusted == []


# --- select -----------------------------------------------------------------------------


def test_select_latest_skips_untrusted_and_refuses_them_by_id() -> None:
    genuine, forged = snap("docs", DAY), snap("docs", -30 * DAY)
    assert snapshots.select(LOADED, DOCS, "latest", [genuine, forged]) == genuine
    with pytest.raises(BackupError, match=f"snapshot {forged.short_id} of docs is not trusted"):
        snapshots.select(LOADED, DOCS, forged.id[:12], [genuine, forged])


def test_select_with_nothing_trusted_says_so() -> None:
    with pytest.raises(BackupError, match=r"no trusted snapshot of service docs \(1 untrusted"):
        snapshots.select(LOADED, DOCS, "latest", [snap("docs", DAY, host="mallory")])


# --- retention --------------------------------------------------------------------------

KEEP_3W_MAX_31D = LOADED.retention


def plan(listed: list[restic.Snapshot], service: manifest.Service = DOCS) -> ServicePlan:
    return plan_service(judge(listed, service, TRUST), KEEP_3W_MAX_31D, NOW)


def test_retention_keeps_the_window_and_removes_the_rest() -> None:
    young, old = snap("docs", 2 * DAY), snap("docs", 40 * DAY)
    result = plan([young, old])
    assert result.keep == (young,) and result.remove == (old,)


def test_an_appending_attacker_cannot_push_out_the_newest_drilled_snapshot() -> None:
    """Daily plausible snapshots for two months: the genuine, drilled one stays."""
    genuine = snap("docs", 60 * DAY)
    flood = [snap("docs", days * DAY) for days in range(59, -1, -1)]
    result = plan([genuine, drilled(genuine), *flood])
    assert genuine in result.keep
    assert result.newest_drilled == genuine
    check_plan([result])  # the plan passes its own guards


def test_records_follow_their_snapshot() -> None:
    old, young = dump(40 * DAY), dump(DAY)
    result = plan([*old, *young], DB)
    assert set(result.remove) == set(old)
    assert set(result.keep) == set(young)


def test_untrusted_snapshots_are_kept_whatever_their_age() -> None:
    ancient_stranger = snap("docs", 400 * DAY, host="mallory")
    result = plan([snap("docs", DAY), ancient_stranger])
    assert ancient_stranger in result.keep and ancient_stranger not in result.remove


def test_a_forged_future_snapshot_does_not_move_the_window() -> None:
    """The window is measured from the newest trusted snapshot, not a forged one."""
    forged = snap("docs", -timedelta(minutes=50))  # within an hour, beyond the 5 min skew
    genuine = [snap("docs", 10 * DAY), snap("docs", 25 * DAY)]
    result = plan([*genuine, forged])
    assert result.newest == genuine[0]
    assert forged in result.keep


@pytest.mark.parametrize("which", ["newest", "newest drilled"])
def test_check_plan_refuses_removing_the_newest_or_the_drilled(which: str) -> None:
    old, new = snap("docs", 50 * DAY), snap("docs", DAY)
    good = plan([old, drilled(old), new])
    doomed = good.newest if which == "newest" else good.newest_drilled
    assert doomed is not None
    bad = ServicePlan(
        good.service,
        tuple(s for s in good.keep if s != doomed),
        (*good.remove, doomed),
        good.untrusted,
        good.newest,
        good.newest_drilled,
    )
    with pytest.raises(BackupError, match=f"remove the {which} snapshot of docs"):
        check_plan([bad])


# --- binlog shipments (MySQL point-in-time recovery) -------------------------------------

PITR = manifest.parse(
    {
        "version": 1,
        "repository": {"url": "/srv/repo", "password_file": "/pw", "host": "agama"},
        "services": {"db": {**spec("mysql"), "binlog": {"every": "5m"}}},
        "retention": {"keep_within": "3w", "max_age": "31d"},
    }
)
PDB = PITR.service("db")
BIN = "mysql-bin"


def shipment(age: timedelta, *segments: str, **extra: str) -> restic.Snapshot:
    """A binlog shipment of ``segments`` (FILE_NUMBER@CREATED:START-END[:closed])."""
    tags = {"binlog": ";".join(f"{BIN}.{s}" for s in segments)}
    tags["until"] = (NOW - age).strftime(snapshots.TIME_TAG)
    ident = f"{next(_ids):08x}" * 8
    labels = ("service=db", "kind=binlog", *(f"{k}={v}" for k, v in {**tags, **extra}.items()))
    return restic.Snapshot(ident, ident[:8], NOW - age, "agama", ("/spool/upload",), labels)


def pitr_dump(age: timedelta, file: int, position: int) -> list[restic.Snapshot]:
    """A dump with a record naming its binlog position (consistent at its time)."""
    data = snap("db", age)
    when = (NOW - age).strftime(snapshots.TIME_TAG)
    where = f"{BIN}.{file:06d}:{position}"
    meta = snap("db", age - timedelta(seconds=1), "meta", of=data.id, binlog=where, consistent=when)
    return [data, meta]


def test_binlog_shipments_are_trusted_but_never_the_latest() -> None:
    dump = pitr_dump(2 * DAY, 1, 100)
    newer = shipment(DAY, "000001@1000:0-900")  # select() judges at the real time
    judged = judge([*dump, newer], PDB, TRUST)
    assert judged.latest == dump[0] and judged.binlogs == [newer]
    assert snapshots.select(PITR, PDB, "latest", [*dump, newer]) == dump[0]
    with pytest.raises(BackupError, match="no snapshot"):
        snapshots.select(PITR, PDB, newer.id[:12], [*dump, newer])


@pytest.mark.parametrize(
    ("shipped", "why"),
    [
        (lambda: shipment(DAY, "000001@1000:900-10"), "do not describe its segments"),
        (lambda: shipment(DAY, "000001@1000:0-10;../../etc.000002@1:0-4"), "do not describe"),
        (lambda: shipment(DAY, "000001@1000:5-5"), "do not describe"),  # empty, not closed
        (lambda: shipment(DAY, "000001@1000:0-10", until="yesterday"), "until"),
        (lambda: shipment(DAY, "000001@1000:0-10", until="20991231T000000Z"), "after it was made"),
        (lambda: shipment(-DAY, "000001@1000:0-10"), "dated in the future"),
    ],
)
def test_malformed_or_boastful_shipments_are_untrusted(shipped: Any, why: str) -> None:
    forged = shipped()
    judged = judge([*pitr_dump(DAY, 1, 100), forged], PDB, TRUST)
    assert judged.binlogs == [] and why in judged.untrusted[0][1]


def test_binlogs_of_a_service_that_ships_none_are_untrusted() -> None:
    stray = shipment(DAY, "000001@1000:0-10")
    judged = judge([*dump(DAY), stray], DB, TRUST)
    assert judged.untrusted == [(stray, "kind binlog is not one db makes")]


def test_retention_keeps_the_binlogs_of_kept_dumps_and_drops_the_rest() -> None:
    """Dumps at days 40, 20 and 1; a binlog file a day, shipped every day. The dump of
    day 40 goes; its binlogs up to the file the day-20 dump starts in go with it."""
    listed = [*pitr_dump(40 * DAY, 1, 500), *pitr_dump(20 * DAY, 21, 500), *pitr_dump(DAY, 40, 500)]
    for day in range(1, 41):  # file N was opened at day 41-N and closed a day later
        closed = ":closed" if day < 40 else ""
        listed.append(
            shipment((41 - day) * DAY - timedelta(hours=1), f"{day:06d}@{day}:0-1000{closed}")
        )
    result = plan(listed, PDB)
    kept = {s.tag("binlog") for s in result.keep if s.tag("kind") == "binlog"}
    removed = {s.tag("binlog") for s in result.remove if s.tag("kind") == "binlog"}
    assert kept == {f"{BIN}.{d:06d}@{d}:0-1000{':closed' if d < 40 else ''}" for d in range(21, 41)}
    assert removed == {f"{BIN}.{d:06d}@{d}:0-1000:closed" for d in range(1, 21)}
    check_plan([result])


def test_retention_keeps_a_drilled_dump_with_its_whole_chain() -> None:
    """The newest drilled dump is 40 days old: all binlogs after it stay."""
    old = pitr_dump(40 * DAY, 1, 500)
    listed = [*old, drilled(old[0]), *pitr_dump(DAY, 40, 500)]
    for day in range(1, 41):
        closed = ":closed" if day < 40 else ""
        listed.append(
            shipment((41 - day) * DAY - timedelta(hours=1), f"{day:06d}@{day}:0-1000{closed}")
        )
    result = plan(listed, PDB)
    assert not [s for s in result.remove if s.tag("kind") == "binlog"]


def test_shipments_after_the_newest_dump_stay_even_when_no_chain_reads_them() -> None:
    """A gap after the newest dump: the shipments after it start the next dump's chain."""
    listed = [
        *pitr_dump(3 * DAY, 1, 500),
        shipment(2 * DAY, "000001@1:0-800:closed"),
        shipment(DAY, "000005@5:0-300", gap="1"),  # 2-4 purged before they were shipped
    ]
    result = plan(listed, PDB)
    assert {s.tag("binlog") for s in result.keep if s.tag("kind") == "binlog"} == {
        f"{BIN}.000001@1:0-800:closed",
        f"{BIN}.000005@5:0-300",
    }


def test_only_binlogs_left_is_refused_like_no_snapshot_at_all() -> None:
    dumped = pitr_dump(DAY, 1, 10)
    good = plan([*dumped, shipment(timedelta(hours=1), "000001@1:0-50")], PDB)
    bad = ServicePlan(
        good.service,
        tuple(s for s in good.keep if s.tag("kind") == "binlog"),
        (*good.remove, *dumped),
        good.untrusted,
        good.newest,
        good.newest_drilled,
    )
    with pytest.raises(BackupError, match=r"remove the newest snapshot|every snapshot"):
        check_plan([bad])


@settings(max_examples=150, deadline=None)
@given(
    days=st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans()), min_size=2, max_size=45),
    drilled_day=st.integers(min_value=0, max_value=44),
)
def test_retention_never_strands_a_chain(
    days: list[tuple[bool, bool, bool]], drilled_day: int
) -> None:
    """Any history of daily dumps (or none), daily binlog files shipped (or purged before
    shipping: a gap) and a drilled dump: after retention, every kept dump restores as far
    as it did before, and every kept shipment is read by a kept dump or is newer than
    the newest dump."""
    listed: list[restic.Snapshot] = []
    count = len(days)
    for day, (dumped, shipped, late) in enumerate(days):
        age = (count - day) * DAY
        if dumped:
            listed += pitr_dump(age - timedelta(hours=2 if late else 20), day + 1, 500)
            if day == drilled_day:
                listed.append(drilled(listed[-2]))
        if shipped:
            closed = ":closed" if day < count - 1 else ""
            gap = {"gap": "1"} if day and not days[day - 1][1] else {}
            segment = f"{day + 1:06d}@{day + 1}:0-1000{closed}"
            listed.append(shipment(age - timedelta(hours=1), segment, **gap))
    before = judge(listed, PDB, TRUST)
    result = plan(listed, PDB)
    kept_ids = {s.id for s in result.keep}
    after = judge([s for s in listed if s.id in kept_ids], PDB, TRUST)
    all_shipments = chains.shipments_of(before.binlogs)
    kept_shipments = chains.shipments_of(after.binlogs)
    points = chains.dump_points(after.trusted, after.records)
    for point in points:
        full = chains.build_chain(point.coordinates, all_shipments, point.consistent_by)
        trimmed = chains.build_chain(point.coordinates, kept_shipments, point.consistent_by)
        assert (trimmed.end, trimmed.covered_until) == (full.end, full.covered_until)
    needed = set().union(
        *(
            chains.needed_snapshots(
                chains.build_chain(p.coordinates, kept_shipments, p.consistent_by)
            )
            for p in points
        )
    )
    newest = after.latest
    for kept in after.binlogs:
        assert kept.id in needed or (newest is None or kept.time >= newest.time)
