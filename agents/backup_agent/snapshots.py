"""Which snapshots belong to a service, which of them are trusted, and which one a
restore, a drill or an incremental backup uses.

Every snapshot is tagged ``service=NAME`` and ``kind=KIND``: ``full`` or
``incremental`` for data, ``meta`` for the record a MySQL dump gets beside it,
``drill`` for the signed record the verifier writes when a drill passed, and
``binlog`` for a shipment of a MySQL server's binary logs, which is never restored
on its own (it extends a dump: ``jobs/mysql/binlog``). A repository
is written by sidecars that may be compromised, so one rule, ``judge``, decides what
is trusted, and restore, drill, the files job's parent, retention and the metrics all
use it. A data snapshot is trusted when:

- its kind is one the service's schedules make;
- it was written under the manifest's host name (or one of ``repository.former_hosts``);
- it is not dated in the future by more than ``repository.clock_skew``;
- for MySQL, a record (``kind=meta``, ``of=NAME``) points back to it, trusted the same
  way; NAME is its id or, for records written while the dump was running, the random
  ``link=`` tag the dump carries (``names``).

A binlog shipment is trusted by the same host and date rules when the service ships
binlogs (``binlog:`` in the manifest), its tags are well formed and it claims no
binlog written after it was made; it is never "latest".

In a second copy (``restic copy``) every snapshot has a new id and names the one it
was copied from (``original``); records name the original, so ``of=`` matches either.
A snapshot that claims a name another snapshot also has (an ``original`` or a
``link`` that is another one's id, ``original`` or ``link``) is untrusted, so two that
claim the same are both: no sidecar can make its snapshot pass for a proven one by
claiming to be its copy or by copying its link.

Untrusted snapshots are reported (log, ``backup_untrusted_snapshots``), never used and
never removed by retention. Drill records carry an HMAC made with ``drill.key_file``,
which only the verifier and the maintenance role hold, so a sidecar cannot forge one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from backup_agent import restic
from backup_agent.errors import BackupError
from backup_agent.manifest import Manifest, Service

META_KIND = "meta"
DRILL_KIND = "drill"
BINLOG_KIND = "binlog"
RECORD_KINDS = frozenset({META_KIND, DRILL_KIND})
LINK_TAG = "link"  # a data snapshot's name for its record, chosen before either exists
# A binlog shipment's own tags, enough to plan restores and retention without reading
# it: ``binlog=FILE@CREATED:START-END[:closed];...`` (byte ranges of server files) and
# ``until=TIME`` (every transaction committed before TIME is shipped by then).
SEGMENT_TAG = re.compile(
    r"\A([A-Za-z0-9_][A-Za-z0-9_.-]{0,200}\.\d{6,10})@(\d{1,10}):(\d{1,15})-(\d{1,15})(:closed)?\Z"
)
TIME_TAG = "%Y%m%dT%H%M%SZ"
# Service types whose data snapshots need a meta record to be trusted (and to be proven).
TYPES_WITH_RECORD = frozenset({"mysql"})


def tags(service: Service, kind: str) -> dict[str, str]:
    """Tags every snapshot of ``service`` carries; selection and retention rely on them."""
    return {"service": service.name, "kind": kind}


@dataclass(frozen=True)
class Trust:
    """What a trusted snapshot must satisfy, from the manifest, at one moment."""

    hosts: frozenset[str]
    clock_skew: timedelta
    now: datetime
    drill_key: bytes | None = None

    @classmethod
    def of(cls, manifest: Manifest, now: datetime | None = None) -> Trust:
        key = read_drill_key(manifest.drill.key_file) if manifest.drill else None
        return cls(
            hosts=frozenset({manifest.repository.host, *manifest.former_hosts}),
            clock_skew=manifest.clock_skew,
            now=now or datetime.now(UTC),
            drill_key=key,
        )


@dataclass
class Judgement:
    """A service's snapshots sorted by ``judge``; lists are oldest first."""

    service: str
    trusted: list[restic.Snapshot] = field(default_factory=list)
    untrusted: list[tuple[restic.Snapshot, str]] = field(default_factory=list)  # with why
    records: dict[str, restic.Snapshot] = field(default_factory=dict)  # meta, by data id
    drilled: dict[str, restic.Snapshot] = field(default_factory=dict)  # drill, by data id
    binlogs: list[restic.Snapshot] = field(default_factory=list)  # binlog shipments

    @property
    def latest(self) -> restic.Snapshot | None:
        """The newest trusted data snapshot."""
        return self.trusted[-1] if self.trusted else None

    @property
    def latest_drilled(self) -> restic.Snapshot | None:
        """The newest trusted data snapshot that passed a drill (by a signed record)."""
        found = [s for s in self.trusted if s.id in self.drilled]
        return found[-1] if found else None

    def chain(self, snapshot: restic.Snapshot) -> list[restic.Snapshot]:
        """The snapshot and the records that belong with it."""
        own = [self.records.get(snapshot.id), self.drilled.get(snapshot.id)]
        return [snapshot, *(record for record in own if record is not None)]


def judge(listed: Iterable[restic.Snapshot], service: Service, trust: Trust) -> Judgement:
    """Sort the snapshots tagged ``service`` into trusted data, its records, and untrusted
    snapshots with the reason. Snapshots of other services are left out."""
    mine = sorted((s for s in listed if s.tag("service") == service.name), key=lambda s: s.time)
    result = Judgement(service.name)
    records: list[restic.Snapshot] = []
    candidates: list[restic.Snapshot] = []
    for snapshot in mine:
        why = _doubt(snapshot, trust)
        kind = snapshot.tag("kind") or ""
        if why is None and kind == BINLOG_KIND:
            why = _binlog_doubt(snapshot, service, trust)
        elif why is None and kind not in RECORD_KINDS and kind not in service.schedules:
            why = f"kind {kind or '(none)'} is not one {service.name} makes"
        if why is not None:
            result.untrusted.append((snapshot, why))
        elif kind == BINLOG_KIND:
            result.binlogs.append(snapshot)
        elif kind in RECORD_KINDS:
            records.append(snapshot)
        else:
            candidates.append(snapshot)
    claims = Counter(name for s in candidates for name in names(s))
    for snapshot in [s for s in candidates if any(claims[n] > 1 for n in names(s) - {s.id})]:
        why = "another snapshot claims the same name (as a copy, or as its record's link)"
        result.untrusted.append((snapshot, why))
        candidates.remove(snapshot)
    by_name = {name: s for s in candidates for name in names(s)}
    for record in records:
        target = by_name.get(record.tag("of") or "")
        if target is None:
            why = "a record of no trusted snapshot of this service"
            result.untrusted.append((record, why))
        elif record.tag("kind") == META_KIND:
            result.records[target.id] = record
        elif _signed(record, service, trust):
            result.drilled[target.id] = record
        elif trust.drill_key is None:  # a sidecar holds no key: it cannot tell
            result.untrusted.append((record, "a drill record, not checked: no drill key here"))
        else:
            result.untrusted.append((record, "a drill record without a valid signature"))
    for snapshot in candidates:
        if service.type in TYPES_WITH_RECORD and snapshot.id not in result.records:
            result.untrusted.append((snapshot, "no meta record points back to it"))
        else:
            result.trusted.append(snapshot)
    result.untrusted.sort(key=lambda item: item[0].time)
    return result


def new_link() -> str:
    """A fresh name for a data snapshot that its record can use before the snapshot
    exists (``link=``), so that both can be written at the same time."""
    return secrets.token_hex(16)


def names(snapshot: restic.Snapshot) -> set[str]:
    """The names a record may give ``snapshot`` in ``of=``: its id, the id it was copied
    from, and its link. Only the id is proven (a hash): a snapshot claiming another name
    that a second one also has is untrusted (``judge``)."""
    found = (snapshot.id, snapshot.original, snapshot.tag(LINK_TAG))
    return {name for name in found if name}


def _doubt(snapshot: restic.Snapshot, trust: Trust) -> str | None:
    """Why ``snapshot`` cannot be trusted whatever it holds, or None."""
    if snapshot.hostname not in trust.hosts:
        return f"written under host {snapshot.hostname!r}, not {', '.join(sorted(trust.hosts))}"
    if snapshot.time > trust.now + trust.clock_skew:
        return f"dated in the future ({snapshot.time.isoformat()})"
    return None


def _binlog_doubt(snapshot: restic.Snapshot, service: Service, trust: Trust) -> str | None:
    """Why a binlog shipment cannot be trusted, or None."""
    if service.binlog is None:
        return f"kind {BINLOG_KIND} is not one {service.name} makes"
    segments = (snapshot.tag("binlog") or "").split(";")
    try:
        until = datetime.strptime(snapshot.tag("until") or "", TIME_TAG).replace(tzinfo=UTC)
    except ValueError:
        return "a binlog shipment without a valid until tag"
    if not all(_sound(segment) for segment in segments) or len(snapshot.paths) != 1:
        return "a binlog shipment whose tags do not describe its segments"
    if until > snapshot.time + trust.clock_skew:
        return f"a binlog shipment claiming binlogs written after it was made ({until.isoformat()})"
    return None


def _sound(segment: str) -> bool:
    """A segment tag that names a binlog file and a range that is not reversed (an empty
    one only when it closes its file)."""
    match = SEGMENT_TAG.match(segment)
    if not match:
        return False
    start, end = int(match.group(3)), int(match.group(4))
    return end > start or (end == start and bool(match.group(5)))


def drill_signature(key: bytes, service: str, snapshot_id: str) -> str:
    """The HMAC a drill record carries: it says ``snapshot_id`` of ``service`` passed."""
    message = f"backup-agent drill record\n{service}\n{snapshot_id}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _signed(record: restic.Snapshot, service: Service, trust: Trust) -> bool:
    if trust.drill_key is None:
        return False
    expected = drill_signature(trust.drill_key, service.name, record.tag("of") or "")
    return hmac.compare_digest(expected, record.tag("mac") or "")


def read_drill_key(path: str | None) -> bytes | None:
    """The drill key from its file; None without one (drill records are then ignored)."""
    if path is None:
        return None
    try:
        key = Path(path).read_bytes().strip()
    except OSError:
        return None  # a role without the secret (a sidecar) cannot check drill records
    if len(key) < 16:
        raise BackupError(f"{path}: the drill key must be at least 16 bytes")
    return key


def of_service(manifest: Manifest, service: Service) -> list[restic.Snapshot]:
    """The service's snapshots on any host, data and records, oldest first."""
    return restic.snapshots(manifest.repository_for(service.name), {"service": service.name})


def select(
    manifest: Manifest,
    service: Service,
    wanted: str,
    listed: Sequence[restic.Snapshot] | None = None,
) -> restic.Snapshot:
    """``latest`` or an (abbreviated) id, among the service's trusted data snapshots.

    ``listed`` saves a repository round trip when the caller already listed them. An
    untrusted snapshot asked for by id is refused, saying why.
    """
    judged = judge(
        of_service(manifest, service) if listed is None else listed, service, Trust.of(manifest)
    )
    if wanted == "latest":
        if judged.latest is None:
            raise BackupError(f"no trusted snapshot of service {service.name}{_untrusted(judged)}")
        return judged.latest
    found = [snap for snap in judged.trusted if snap.id.startswith(wanted)]
    doubted = [(snap, why) for snap, why in judged.untrusted if snap.id.startswith(wanted)]
    if len(found) + len(doubted) > 1:
        raise BackupError(f"snapshot id {wanted!r} is ambiguous for service {service.name}")
    if doubted:
        snap, why = doubted[0]
        raise BackupError(f"snapshot {snap.short_id} of {service.name} is not trusted: {why}")
    if not found:
        raise BackupError(f"no snapshot {wanted!r} of service {service.name}")
    return found[0]


def _untrusted(judged: Judgement) -> str:
    if not judged.untrusted:
        return ""
    return f" ({len(judged.untrusted)} untrusted, e.g. {judged.untrusted[-1][1]})"
