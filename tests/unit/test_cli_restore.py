"""``backup-agent restore``'s point-in-time options: how a time is read, what goes together."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta, timezone

import pytest

from backup_agent import cli

NOON_UTC = datetime(2026, 12, 1, 12, 0, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01 12:00:05", NOON_UTC),  # no zone: UTC, as the help says
        ("2026-12-01T12:00:05Z", NOON_UTC),
        ("2026-12-01 13:00:05+01:00", NOON_UTC),
        ("2026-12-01 13:00:05 Europe/Berlin", NOON_UTC),  # CET in December
        ("2026-07-01 14:00:05 Europe/Berlin", NOON_UTC.replace(month=7)),  # CEST in July
        ("2026-12-01 12:00:05 UTC", NOON_UTC),
        ("2026-12-01 12:00:05.900", NOON_UTC + timedelta(microseconds=900_000)),
    ],
)
def test_a_restore_time_is_read_with_its_zone_or_as_utc(text: str, expected: datetime) -> None:
    moment = cli.point_in_time(text)
    assert moment == expected and moment.tzinfo is not None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("yesterday", "is not a time"),
        ("2026-12-01 12:00:05 Mars/Olympus", "unknown time zone"),
        ("2026-12-01 12:00:05+01:00 Europe/Berlin", "an offset and a zone"),
    ],
)
def test_a_bad_restore_time_is_refused_saying_why(text: str, why: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=why):
        cli.point_in_time(text)


def test_the_restore_points_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    args = cli.parser().parse_args(["restore", "mysql", "--to-time", "2026-12-01 12:00:05"])
    assert args.to_time == NOON_UTC and args.to_gtid is None and args.to_position is None
    for other in (["--to-gtid", "0-1-5"], ["--to-position", "mysql-bin.000003:4711"]):
        with pytest.raises(SystemExit) as caught:
            cli.parser().parse_args(["restore", "mysql", "--to-time", "2026-12-01", *other])
        assert caught.value.code == 2
        assert "not allowed with argument" in capsys.readouterr().err
    offset = timezone(timedelta(hours=5))
    args = cli.parser().parse_args(["restore", "mysql", "--to-time", "2026-12-01 17:00:05+05:00"])
    assert args.to_time == NOON_UTC.astimezone(offset)
