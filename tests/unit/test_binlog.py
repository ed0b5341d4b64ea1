"""Binlog parsing, dump coordinates, chains, restore planning and the replay check:
pure functions, on binlog files built byte by byte (tests/binlog_files.py)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backup_agent import restic
from backup_agent.jobs.mysql.binlog import chain as chains
from backup_agent.jobs.mysql.binlog import events, replay, ship
from backup_agent.jobs.mysql.binlog.chain import (
    Coordinates,
    DumpPoint,
    Shipment,
    Target,
    build_chain,
    plan_restore,
)
from backup_agent.jobs.mysql.binlog.coordinates import CoordinateScanner
from backup_agent.jobs.mysql.binlog.events import BinlogError, Segment
from backup_agent.jobs.mysql.binlog.ship import Resume, ServerLogs
from backup_agent.manifest import MysqlOptions
from tests.binlog_files import BinlogWriter

T0 = 1_796_000_000
NAME = "mysql-bin.000001"


def sample(rotate_to: str | None = "mysql-bin.000002") -> BinlogWriter:
    writer = BinlogWriter(created=T0)
    writer.gtid_list(T0, (0, 14, 5))
    writer.transaction(T0 + 1, 6)
    writer.transaction(T0 + 2, 7)
    if rotate_to:
        writer.rotate(T0 + 3, rotate_to)
    return writer


# --- events ------------------------------------------------------------------------------


def test_format_description_is_read_and_checked() -> None:
    fmt = events.read_format(sample().bytes())
    assert (fmt.created, fmt.checksum, fmt.in_use, fmt.table_id_size) == (T0, True, False, 6)
    assert fmt.server_version == "10.11.19-MariaDB-test"


def test_an_open_file_says_so_and_its_checksum_ignores_the_flag() -> None:
    assert events.read_format(BinlogWriter(in_use=True).bytes()).in_use


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: b"\xfebim" + d[4:], "bad magic"),
        (lambda d: d[:30], "format description"),
        (lambda d: d[:60] + bytes([d[60] ^ 1]) + d[61:], "checksum"),
    ],
)
def test_a_damaged_start_is_refused(damage: Callable[[bytes], bytes], message: str) -> None:
    with pytest.raises(BinlogError, match=message):
        events.read_format(damage(sample().bytes()))


def test_events_are_walked_with_their_offsets() -> None:
    data = sample().bytes()
    fmt = events.read_format(data)
    found = list(events.iter_events(data, fmt.first_event, True, fmt.first_event))
    assert [e.type_code for e in found] == [163, 162, 2, 16, 162, 2, 16, 4]
    assert found[0].offset == fmt.first_event
    assert all(a.end == b.offset for a, b in itertools.pairwise(found))
    assert found[-1].end == len(data)


@pytest.mark.parametrize("cut", [-3, -30])
def test_a_truncated_file_is_refused(cut: int) -> None:
    with pytest.raises(BinlogError, match=r"truncated header|does not fit"):
        events.describe(NAME, T0, sample().bytes()[:cut], 0, True)


def test_a_flipped_byte_inside_an_event_fails_its_checksum() -> None:
    data = bytearray(sample().bytes())
    data[-10] ^= 0x40
    with pytest.raises(BinlogError, match="checksum mismatch"):
        events.describe(NAME, T0, bytes(data), 0, True)


def test_an_event_claiming_another_end_position_is_refused() -> None:
    data = bytearray(sample(rotate_to=None).bytes())
    start = len(BinlogWriter(created=T0).bytes())  # the Gtid_list event
    data[start + 13 : start + 17] = (999).to_bytes(4, "little")
    with pytest.raises(BinlogError, match="claims to end at 999"):
        events.describe(NAME, T0, bytes(data), 0, False)


def test_describe_summarises_a_closed_file() -> None:
    segment = events.describe(NAME, T0, sample().bytes(), 0, True)
    assert segment.closed and segment.start == 0 and segment.end == len(sample().bytes())
    assert (segment.first_gtid, segment.last_gtid, segment.gtid_state) == (
        "0-14-6",
        "0-14-7",
        "0-14-5",
    )
    assert (segment.first_time, segment.last_time, segment.server_id) == (T0, T0 + 3, 14)
    assert segment.events == 8


def test_describe_a_segment_fetched_from_inside_a_file() -> None:
    full = sample(rotate_to=None).bytes()
    fmt = events.read_format(full)
    middle = next(
        e.offset
        for e in events.iter_events(full, fmt.first_event, True, fmt.first_event)
        if e.type_code == events.MARIADB_GTID and e.timestamp == T0 + 2
    )
    # A fetch from ``middle`` is a stand-in header followed by the server's bytes.
    stand_in = BinlogWriter(created=T0).bytes()
    segment = events.describe(NAME, T0, stand_in + full[middle:], middle, True, len(stand_in))
    assert (segment.start, segment.end) == (middle, len(full))
    assert segment.first_gtid == "0-14-7" and not segment.closed


def test_a_stop_event_closes_a_file_and_nothing_may_follow_it() -> None:
    writer = sample(rotate_to=None)
    writer.stop(T0 + 4)
    assert events.describe(NAME, T0, writer.bytes(), 0, True).closed
    writer.transaction(T0 + 5, 8)
    with pytest.raises(BinlogError, match="follows the end"):
        events.describe(NAME, T0, writer.bytes(), 0, True)


def test_a_rotate_to_a_file_that_is_not_the_next_is_refused() -> None:
    with pytest.raises(BinlogError, match="not to the next file"):
        events.describe(NAME, T0, sample(rotate_to="mysql-bin.000009").bytes(), 0, True)


def test_files_without_checksums_parse() -> None:
    writer = BinlogWriter(created=T0, checksum=False)
    writer.transaction(T0 + 1, 1)
    fmt = events.read_format(writer.bytes())
    assert not fmt.checksum
    assert events.describe(NAME, T0, writer.bytes(), 0, fmt.checksum).last_gtid == "0-14-1"


def test_mysql_gtid_events_are_read() -> None:
    body = b"\x01" + bytes.fromhex("3e11fa4771ca11e19e33c80aa9429562") + (5).to_bytes(8, "little")
    event = events.Event(0, T0, events.MYSQL_GTID, 1, 0, 0, body)
    assert events.gtid_of(event) == "3e11fa47-71ca-11e1-9e33-c80aa9429562:5"


def test_table_maps_name_their_database_and_table() -> None:
    writer = BinlogWriter(created=T0)
    at = writer.table_map(T0, b"shop", b"orders")
    event = next(events.iter_events(writer.bytes(), at, True, at))
    assert events.table_of(event, 6) == ("shop", "orders")


def test_names_and_their_successors() -> None:
    assert events.next_name("mysql-bin.000009") == "mysql-bin.000010"
    assert events.next_name("log.bin.999999") == "log.bin.1000000"
    for bad in ("mysql-bin", "../x.000001", "mysql-bin.00001", "a b.000001", ""):
        with pytest.raises(BinlogError):
            events.split_name(bad)


def test_segment_tags_round_trip_and_refuse_nonsense() -> None:
    segment = Segment(NAME, T0, 0, 518, closed=True)
    assert segment.tag() == f"{NAME}@{T0}:0-518:closed"
    assert Segment.from_tag(segment.tag()) == segment
    assert Segment.from_tag(f"{NAME}@{T0}:518-518:closed").closed  # a crash-ended file
    for bad in (f"{NAME}@{T0}:9-3", f"{NAME}@{T0}:5-5", f"../x.000001@{T0}:0-1", f"{NAME}:0-1"):
        with pytest.raises(BinlogError):
            Segment.from_tag(bad)


# --- shipments and dump positions, from tags --------------------------------------------


def snapshot(tags: dict[str, str], minute: int = 0) -> restic.Snapshot:
    return restic.Snapshot(
        id=f"{minute:04d}" + "a" * 60,
        short_id=f"{minute:04d}aaaa",
        time=datetime.fromtimestamp(T0, UTC) + timedelta(minutes=minute),
        hostname="h",
        paths=("/spool/upload",),
        tags=tuple(f"{k}={v}" for k, v in tags.items()),
    )


def test_shipments_round_trip_through_snapshot_tags() -> None:
    until = datetime.fromtimestamp(T0 + 60, UTC)
    segments = (Segment(NAME, T0, 400, 518, True), Segment("mysql-bin.000002", T0 + 3, 0, 900))
    shipment = Shipment("", "/spool/upload", until, until, segments, gap=True)
    (found,) = chains.shipments_of([snapshot(shipment.tags("mysql"))])
    assert found.segments == segments and found.until == until and found.gap
    assert found.root == "/spool/upload"


def test_dump_points_come_from_the_records_of_trusted_dumps() -> None:
    when = datetime.fromtimestamp(T0 + 100, UTC)
    dump, other, plain = (
        snapshot({"kind": "full"}, 1),
        snapshot({"kind": "full"}, 2),
        snapshot({"kind": "full"}, 3),
    )
    tags = chains.dump_tags(Coordinates(NAME, 1040, "0-14-27"), when)
    assert tags["gtid"] == "0-14-27"
    records = {
        dump.id: snapshot({"kind": "meta", "of": dump.id, **tags}, 1),
        other.id: snapshot({"kind": "meta", "binlog": "../../x:5", "consistent": "x"}, 2),
        plain.id: snapshot({"kind": "meta", "of": plain.id}, 3),  # binary logging was off
    }
    points = chains.dump_points([dump, other, plain], records)
    assert points == [DumpPoint(dump.id, Coordinates(NAME, 1040, "0-14-27"), when)]
    # A physical copy is no base for a replay, even with a record claiming coordinates.
    copy = snapshot({"kind": "full", "method": "physical"}, 4)
    records[copy.id] = snapshot({"kind": "meta", "of": copy.id, **tags}, 4)
    assert chains.dump_points([dump, copy], records) == points


# --- dump coordinates ----------------------------------------------------------------------

MARIADB_DUMP = (
    b"/*M!999999\\- enable the sandbox mode */ \n"
    b"-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB\n"
    b"-- CHANGE MASTER TO MASTER_LOG_FILE='mysql-bin.000006', MASTER_LOG_POS=1040;\n"
    b"INSERT INTO `t` VALUES\n(1,'\\n-- CHANGE MASTER TO MASTER_LOG_FILE=\\'x.000001\\''),\n"
    + b"(2,'"
    + b"z" * 50_000
    + b"');\n"
    b"CREATE PROCEDURE p() BEGIN\n"
    b"-- CHANGE MASTER TO MASTER_LOG_FILE='evil.000001', MASTER_LOG_POS=4;\n"
    b"-- SET GLOBAL gtid_slave_pos='9-9-9';\n"
    b"SELECT 1; END\n"
    b"-- SET GLOBAL gtid_slave_pos='0-14-27';\n"
    b"-- Dump completed on 2026-12-01  2:44:15\n"
)


@pytest.mark.parametrize("size", [1, 5, 77, 4096, len(MARIADB_DUMP)])
def test_dump_coordinates_are_found_whatever_the_chunks(size: int) -> None:
    scanner = CoordinateScanner()
    for start in range(0, len(MARIADB_DUMP), size):
        scanner.feed(MARIADB_DUMP[start : start + size])
    assert scanner.result() == Coordinates("mysql-bin.000006", 1040, "0-14-27")
    assert scanner.seen_at is not None


def test_mysql_8_coordinates_and_a_dump_without_any() -> None:
    scanner = CoordinateScanner()
    scanner.feed(
        b"-- CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE='binlog.000002', SOURCE_LOG_POS=157;\n"
    )
    assert scanner.result() == Coordinates("binlog.000002", 157, None)
    empty = CoordinateScanner()
    empty.feed(b"-- MySQL dump\nINSERT INTO `t` VALUES (1);\n")
    assert empty.result() is None


# --- chains -----------------------------------------------------------------------------


def shipped(minute: int, *segments: Segment, gap: bool = False) -> Shipment:
    when = datetime.fromtimestamp(T0, UTC) + timedelta(minutes=minute)
    return Shipment(f"s{minute:03d}", "/spool/upload", when, when, segments, gap)


def seg(
    number: int, start: int, end: int, closed: bool = False, created: int | None = None
) -> Segment:
    return Segment(f"mysql-bin.{number:06d}", created or T0 + number, start, end, closed)


def test_a_chain_follows_segments_across_files() -> None:
    shipments = [
        shipped(0, seg(1, 0, 500)),
        shipped(5, seg(1, 500, 800, closed=True), seg(2, 0, 300)),
        shipped(10, seg(2, 300, 700)),
    ]
    chain = build_chain(Coordinates("mysql-bin.000001", 620), shipments)
    assert [name for (name, _), _ in chain.files] == ["mysql-bin.000001", "mysql-bin.000002"]
    assert chain.end == Coordinates("mysql-bin.000002", 700)
    assert chain.covered_until == shipments[-1].until
    assert chain.broken is None and chain.reaches_start
    assert chains.needed_snapshots(chain) == {"s000", "s005", "s010"}


def test_a_dump_after_a_rotation_is_covered_by_the_shipment_spanning_it() -> None:
    """The newest shipment holds the end of the previous file too: the chain of a dump
    in the new file is still covered up to that shipment."""
    shipments = [shipped(0, seg(1, 0, 500)), shipped(5, seg(1, 500, 800, True), seg(2, 0, 90))]
    chain = build_chain(Coordinates("mysql-bin.000002", 40), shipments)
    assert chain.covered_until == shipments[-1].until and chain.broken is None


def test_overlapping_reshipments_use_the_furthest_segment() -> None:
    shipments = [
        shipped(0, seg(1, 0, 500)),
        shipped(1, seg(1, 0, 900)),
        shipped(2, seg(1, 900, 950)),
    ]
    chain = build_chain(Coordinates("mysql-bin.000001", 4), shipments)
    assert [(p.shipment.snapshot_id, p.start, p.end) for p in chain.files[0][1]] == [
        ("s001", 0, 900),
        ("s002", 900, 950),
    ]


def test_a_purged_file_breaks_the_chain_and_says_where() -> None:
    shipments = [
        shipped(0, seg(1, 0, 800, closed=True)),
        shipped(5, seg(3, 0, 400), gap=True),  # mysql-bin.000002 was never shipped
    ]
    chain = build_chain(Coordinates("mysql-bin.000001", 100), shipments)
    assert chain.end == Coordinates("mysql-bin.000001", 800)
    assert chain.covered_until == shipments[0].until
    assert chain.broken is not None and "mysql-bin.000003:0" in chain.broken
    later = build_chain(Coordinates("mysql-bin.000003", 200), shipments)
    assert later.broken is None and later.covered_until == shipments[1].until


def test_a_file_ended_by_a_crash_is_closed_by_an_empty_segment() -> None:
    shipments = [shipped(0, seg(1, 0, 800)), shipped(5, seg(1, 800, 800, True), seg(2, 0, 90))]
    chain = build_chain(Coordinates("mysql-bin.000001", 100), shipments)
    assert chain.end == Coordinates("mysql-bin.000002", 90) and chain.broken is None


def test_reused_names_after_reset_master_never_mix() -> None:
    old = [
        shipped(0, seg(1, 0, 800, closed=True, created=T0)),
        shipped(1, seg(2, 0, 500, created=T0 + 10)),
    ]
    reset = T0 + 7200
    new = [
        shipped(130, seg(1, 0, 300, closed=True, created=reset), gap=True),
        shipped(135, seg(2, 0, 100, created=reset + 60)),
    ]
    after = datetime.fromtimestamp(reset + 30, UTC)
    chain = build_chain(Coordinates("mysql-bin.000001", 200), old + new, after)
    assert [key for key, _ in chain.files] == [
        ("mysql-bin.000001", reset),
        ("mysql-bin.000002", reset + 60),
    ]
    before = datetime.fromtimestamp(T0 + 5, UTC)
    chain = build_chain(Coordinates("mysql-bin.000001", 200), old + new, before)
    assert chain.end == Coordinates("mysql-bin.000002", 500)


def test_a_chain_that_does_not_reach_the_dump_position() -> None:
    chain = build_chain(Coordinates("mysql-bin.000001", 700), [shipped(0, seg(1, 0, 500))])
    assert not chain.reaches_start and "only up to 500" in (chain.broken or "")


# --- planning, windows --------------------------------------------------------------------


def moment(minutes: float) -> datetime:
    return datetime.fromtimestamp(T0, UTC) + timedelta(minutes=minutes)


def at(minutes: float) -> Target:
    return Target(time=moment(minutes))


STEADY = [shipped(0, seg(1, 0, 100))] + [
    shipped(m, seg(1, m * 20, m * 20 + 100)) for m in range(5, 30, 5)
]
TWO_DUMPS = [
    DumpPoint("old", Coordinates("mysql-bin.000001", 50, "0-14-10"), moment(1)),
    DumpPoint("new", Coordinates("mysql-bin.000001", 150, "0-14-20"), moment(12)),
]


def test_plan_takes_the_newest_dump_before_the_target_and_rounds_down() -> None:
    plan = plan_restore(TWO_DUMPS, STEADY, Target(time=moment(11) + timedelta(seconds=7.9)))
    assert plan.dump.snapshot_id == "old"
    assert plan.target.time == (moment(11) + timedelta(seconds=7)).replace(microsecond=0)
    assert plan_restore(TWO_DUMPS, STEADY, at(20)).dump.snapshot_id == "new"


def test_positions_and_gtids_choose_the_dump_before_them() -> None:
    by_position = Target(position=Coordinates("mysql-bin.000001", 120))
    assert plan_restore(TWO_DUMPS, STEADY, by_position).dump.snapshot_id == "old"
    assert plan_restore(TWO_DUMPS, STEADY, Target(gtid="0-14-15")).dump.snapshot_id == "old"
    assert plan_restore(TWO_DUMPS, STEADY, Target(gtid="0-14-21")).dump.snapshot_id == "new"
    beyond = Target(position=Coordinates("mysql-bin.000001", 900))
    with pytest.raises(BinlogError, match="window is"):
        plan_restore(TWO_DUMPS, STEADY, beyond)


def test_outside_the_window_the_error_says_what_the_window_is() -> None:
    with pytest.raises(BinlogError) as caught:
        plan_restore(TWO_DUMPS, STEADY, at(40))
    assert "point-in-time window is 2026-" in str(caught.value)
    (window,) = chains.windows(TWO_DUMPS, STEADY)
    assert (window.start, window.end) == (moment(1), moment(25))
    assert str(window) in str(caught.value)
    with pytest.raises(BinlogError, match="window is"):
        plan_restore(TWO_DUMPS, STEADY, at(0.5))
    with pytest.raises(BinlogError, match="time zone"):
        plan_restore(TWO_DUMPS, STEADY, Target(time=datetime(2026, 12, 1, 12, 0)))


def test_plan_after_a_gap_needs_a_dump_taken_after_it() -> None:
    shipments = [
        shipped(0, seg(1, 0, 800, closed=True)),
        shipped(5, seg(3, 0, 400), gap=True),
        shipped(9, seg(3, 400, 500)),
    ]
    dumps = [DumpPoint("before", Coordinates("mysql-bin.000001", 10), moment(1))]
    with pytest.raises(BinlogError, match=r"stops at mysql-bin\.000001:800"):
        plan_restore(dumps, shipments, at(8))
    dumps.append(DumpPoint("after", Coordinates("mysql-bin.000003", 100), moment(6)))
    assert plan_restore(dumps, shipments, at(8)).dump.snapshot_id == "after"
    status = chains.chain_status(dumps, shipments)
    assert status.broken is None and status.window == moment(9) - moment(6)
    # The first dump's chain stops before its own time: only the second makes a window.
    assert [str(w) for w in chains.windows(dumps, shipments)] == [
        f"{chains.iso(moment(6))} .. {chains.iso(moment(9))}"
    ]


def test_chain_status_of_a_broken_newest_chain() -> None:
    shipments = [shipped(0, seg(1, 0, 800, closed=True)), shipped(5, seg(3, 0, 400), gap=True)]
    dumps = [DumpPoint("d", Coordinates("mysql-bin.000001", 10), moment(-1))]
    status = chains.chain_status(dumps, shipments)
    assert status.dump_id == "d" and status.broken and status.covered_until == moment(0)
    assert chains.chain_status([], shipments).broken == "no dump with binlog coordinates"


# --- where shipping resumes ---------------------------------------------------------------


def logs(*files: tuple[str, int]) -> ServerLogs:
    return ServerLogs(files, 14, "0-14-9", "ROW", "mariadb", moment(0))


def test_resume_after_the_furthest_byte_shipped() -> None:
    assert ship.resume_point([]) is None
    assert ship.resume_point([shipped(0, seg(1, 0, 500))]) == Resume(NAME, T0 + 1, 500)
    closed = [shipped(0, seg(1, 0, 500, closed=True))]
    assert ship.resume_point(closed) == Resume("mysql-bin.000002", None, 0)


def test_start_of_shipping_and_gaps() -> None:
    server = logs(("mysql-bin.000003", 900), ("mysql-bin.000004", 300))
    assert ship.choose_start(server, None, None) == (Resume("mysql-bin.000004", None, 0), None)
    assert ship.choose_start(server, None, "mysql-bin.000003")[0].file == "mysql-bin.000003"
    ok = Resume("mysql-bin.000003", T0, 600)
    assert ship.choose_start(server, ok, None) == (ok, None)
    start, gap = ship.choose_start(server, Resume("mysql-bin.000002", T0, 10), None)
    assert start == Resume("mysql-bin.000003", None, 0)
    assert gap is not None and "mysql-bin.000002 was purged" in gap
    start, gap = ship.choose_start(server, Resume("mysql-bin.000003", T0, 1000), None)
    assert gap is not None and "shorter" in gap


def test_a_backlog_is_shipped_in_whole_files_within_the_budget() -> None:
    server = logs(*((f"mysql-bin.{n:06d}", 400) for n in range(1, 6)))
    start = Resume("mysql-bin.000002", T0, 100)
    assert ship.files_to_fetch(server, start, budget=1000) == [
        "mysql-bin.000002",
        "mysql-bin.000003",
    ]
    assert ship.files_to_fetch(server, start, budget=1) == ["mysql-bin.000002"]
    argv = ship.fetch_command("mariadb-binlog", OPTIONS, start, ["mysql-bin.000002"], Path("/s"))
    assert argv[1] == "--defaults-file=/run/secrets/backup.cnf"
    assert {"--read-from-remote-server", "--raw", "--start-position=100"} <= set(argv)
    assert "--to-last-log" not in argv and "--stop-never" not in argv
    assert argv[-1] == "mysql-bin.000002" and "--result-file=/s/" in argv


OPTIONS = MysqlOptions(defaults_file="/run/secrets/backup.cnf", host="db", port=3306)


# --- the replay check -------------------------------------------------------------------


def written(tmp_path: Path, writer: BinlogWriter, name: str = NAME) -> Path:
    path = tmp_path / name
    path.write_bytes(writer.bytes())
    return path


def test_the_cut_by_time_is_the_first_event_stamped_at_or_after_it(tmp_path: Path) -> None:
    writer = BinlogWriter(created=T0)
    first = writer.transaction(T0 + 1, 1)
    second = writer.transaction(T0 + 5, 2)
    writer.transaction(T0 + 9, 3)
    path = written(tmp_path, writer)
    start = Coordinates(NAME, first)
    target = Target(time=datetime.fromtimestamp(T0 + 5, UTC))
    span = replay.inspect([path], start, target, ["app"])
    assert span.stop == second and span.last == replay.Position(NAME, second, "0-14-1")
    everything = replay.inspect([path], start, Target(position=Coordinates(NAME, 10**6)), ["app"])
    assert everything.stop is None and everything.last.gtid == "0-14-3"
    assert everything.last.end == len(writer.bytes())


def test_a_gtid_target_replays_its_transaction_and_stops_at_the_next(tmp_path: Path) -> None:
    writer = BinlogWriter(created=T0)
    first = writer.transaction(T0 + 1, 1)
    writer.transaction(T0 + 2, 2)
    third = writer.transaction(T0 + 3, 3)
    path = written(tmp_path, writer)
    span = replay.inspect([path], Coordinates(NAME, first), Target(gtid="0-14-2"), ["app"])
    assert span.stop == third and span.last.gtid == "0-14-2"
    with pytest.raises(BinlogError, match="not in the shipped binlogs"):
        replay.inspect([path], Coordinates(NAME, first), Target(gtid="0-14-9"), ["app"])


def test_replay_check_refuses_tables_outside_the_dump(tmp_path: Path) -> None:
    writer = BinlogWriter(created=T0)
    first = writer.transaction(T0 + 1, 1)
    writer.table_map(T0 + 2, b"app", b"t")
    writer.table_map(T0 + 10, b"mysql", b"global_priv")
    path = written(tmp_path, writer)
    before = Target(time=datetime.fromtimestamp(T0 + 5, UTC))
    assert replay.inspect([path], Coordinates(NAME, first), before, ["app"]).events == 4
    with pytest.raises(BinlogError, match=r"mysql\.global_priv"):
        replay.inspect([path], Coordinates(NAME, first), Target(gtid="0-14-1"), ["app"])


def test_replay_check_refuses_load_data_events(tmp_path: Path) -> None:
    writer = BinlogWriter(created=T0)
    at_load = writer.event(T0 + 1, 18, bytes(30))
    path = written(tmp_path, writer)
    with pytest.raises(BinlogError, match="LOAD DATA"):
        replay.inspect([path], Coordinates(NAME, at_load), Target(gtid="0-14-1"), ["app"])


def test_statements_other_than_transaction_control_are_kept_for_the_row_proof(
    tmp_path: Path,
) -> None:
    writer = BinlogWriter(created=T0)
    first = writer.gtid(T0 + 1, 1)
    writer.query(T0 + 1, b"BEGIN")
    writer.query(T0 + 1, b"TRUNCATE TABLE orders")
    writer.query(T0 + 1, b"COMMIT")
    path = written(tmp_path, writer)
    span = replay.inspect([path], Coordinates(NAME, first), Target(gtid="0-14-1"), ["app"])
    assert span.statements == (b"TRUNCATE TABLE orders",)


def test_the_replay_command_cuts_by_position_in_no_time_zone() -> None:
    span = replay.Span(
        (Path("/w/a.000006"),),
        Coordinates("a.000006", 1040),
        5000,
        replay.Position("a.000006", 4000),
        3,
    )
    argv = replay.replay_command(
        "mariadb-binlog", ("--skip-gtid-strict-mode",), span.files, span, "shop"
    )
    assert argv == [
        "mariadb-binlog",
        "--no-defaults",
        "--skip-gtid-strict-mode",
        "--start-position=1040",
        "--stop-position=5000",
        "--database=shop",
        "/w/a.000006",
    ]
    assert not any(a.startswith("--stop-datetime") for a in argv)


MARIADB_HELP = """  -j, --start-position=name
  --gtid-strict-mode  Process binlog according to gtid-strict-mode
  --stop-position=name
"""
# Oracle's mysqlbinlog 8.0/8.4 --help, as documented: --skip-gtids exists, no strict mode.
MYSQL_HELP = """  --skip-gtids         Do not preserve Global Transaction Identifiers; instead
  --start-position=#  Start reading the binlog at position N. Applies to the
  --stop-position=#   Stop reading the binlog at position N. Applies to the
"""


def test_replay_flags_follow_each_tool() -> None:
    assert replay.replay_flags(MARIADB_HELP) == ("--skip-gtid-strict-mode",)
    assert replay.replay_flags(MYSQL_HELP) == ("--skip-gtids",)


def header(end: int, what: str) -> bytes:
    """The comment mariadb-binlog 10.11 writes before each event (replay reads them)."""
    return f"#261201  4:32:04 server id 1  end_log_pos {end} CRC32 0x7be90a2e \t{what}\n".encode()


TOOL_OUTPUT = b"".join(
    [
        b"DELIMITER /*!*/;\n# at 4\n",
        header(256, "Start: binlog v 4, server v 10.11.19-MariaDB-0+deb12u1-log created 26"),
        b"# at 836\n",
        header(878, "GTID 0-1-4 trans"),
        b"START TRANSACTION\n#Q> insert into app.t values (2,'b')\n",
        header(979, "Table_map: `app`.`t` mapped to number 18"),
        header(1019, "Write_rows: table id 18 flags: STMT_END_F"),
        b"BINLOG '\nxE0OaxcBAAAAKAAAAPsDAAAAABIAAAAAAAEAAgP8AgAAAAFibpckpA==\n'/*!*/;\n",
        b"# Number of rows: 3\n",
        header(1050, "Xid = 39"),
        b"COMMIT/*!*/;\n",
        header(1455, "GTID 0-1-7 trans"),
        header(1552, "Table_map: `app`.`t` mapped to number 18"),
        header(1592, "Delete_rows: table id 18 flags: STMT_END_F"),
        b"# Number of rows: 1\n",
        header(1623, "Xid = 43"),
        header(1700, "Rotate to mysql-bin.000002  pos: 4"),
        b"# at 4\n",
        header(256, "Start: binlog v 4, server v 10.11.19"),
        header(300, "Gtid list [0-1-7]"),
        b"DELIMITER ;\nROLLBACK /* added by mysqlbinlog */;\n",
    ]
)


@pytest.mark.parametrize("size", [1, 7, 100, len(TOOL_OUTPUT)])
def test_what_the_tool_handed_the_client_is_read_back(size: int) -> None:
    seen = replay.Replayed()
    for start in range(0, len(TOOL_OUTPUT), size):
        seen.feed(TOOL_OUTPUT[start : start + size])
    files = [Path("mysql-bin.000001"), Path("mysql-bin.000002")]
    # The last change ended at 1623 in the first file; the second file only began.
    assert seen.file_index == 1 and seen.end == 1623 and seen.gtid == "0-1-7"
    assert seen.rows == {("app", "t"): 2} and seen.counted
    assert seen.position(files) == replay.Position("mysql-bin.000001", 1623, "0-1-7")


def test_the_position_proof() -> None:
    span = replay.Span(
        (Path("a.000001"),),
        Coordinates("a.000001", 4),
        None,
        replay.Position("a.000001", 900, "0-1-5"),
        3,
    )

    def result(
        got: replay.Position | None, last: replay.Position = span.last
    ) -> replay.ReplayResult:
        return replay.ReplayResult(("a.000001",), 1000, replace(span, last=last), got, {}, True)

    assert "as planned" in result(replay.Position("a.000001", 900, "0-1-5")).proven_position()
    for short in (
        replay.Position("a.000001", 800, "0-1-4"),
        replay.Position("a.000001", 900, "0-1-6"),
        None,
    ):
        with pytest.raises(BinlogError, match=r"expected a\.000001:900"):
            result(short).proven_position()
    nothing = replay.Position("a.000001", None)
    assert "nothing to replay" in result(None, nothing).proven_position()
    with pytest.raises(BinlogError):
        result(replay.Position("a.000001", 900), nothing).proven_position()
