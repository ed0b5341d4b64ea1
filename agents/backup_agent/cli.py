"""Command line: ``backup-agent VERB``. The one place that maps errors to exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from prometheus_client import CollectorRegistry

from backup_agent import (
    __version__,
    agent,
    bundle,
    drill,
    execute,
    heap,
    inventory,
    kit,
    logs,
    maintenance,
    manifest,
    migrate,
    plan,
    readout,
    restic,
    runs,
    s3,
    s3policy,
    secret_store,
    views,
)
from backup_agent.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    BackupError,
    Interrupted,
    ManifestError,
    UsageError,
)
from backup_agent.jobs import JOBS
from backup_agent.jobs.base import RestoreRequest, require_drill
from backup_agent.manifest.model import SERVICE_FIELD
from backup_agent.metrics import Metrics
from backup_agent.snapshots import Trust, judge
from backup_agent.state import COPY, DRILL, SHIPPING, State

log = logging.getLogger("backup_agent")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; expected failures print one clear line and set the exit code."""
    args = parser().parse_args(argv)
    logs.setup(args.log_level, as_json=args.log_format == "json")
    heap.keep_flat()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except ManifestError as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    except BackupError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except OSError as exc:  # disk full, permissions: the operator's to fix, not a bug
        log.error("%s", exc)
        return EXIT_FAILED
    except KeyboardInterrupt:
        log.error("interrupted")
        return Interrupted.exit_code


def _deprecated(args: argparse.Namespace, old: str, new: str) -> None:
    if args.verb == old:
        log.warning("'backup-agent %s' is deprecated: use 'backup-agent %s'", old, new)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(f"stopped by {signal.Signals(signum).name}")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="backup-agent", description=__doc__)
    top.add_argument("--version", action="version", version=f"backup-agent {__version__}")
    top.add_argument(
        "-m",
        "--manifest",
        default=os.environ.get("BACKUP_AGENT_MANIFEST", manifest.DEFAULT_PATH),
        help="manifest file (default: $BACKUP_AGENT_MANIFEST or %(default)s)",
    )
    top.add_argument(
        "--role",
        choices=agent.ROLES,
        default=os.environ.get("BACKUP_AGENT_ROLE"),
        help="whose view of the repositories (default: $BACKUP_AGENT_ROLE, else the verb's: "
        "maintenance for retention, check, copy and init --copy, verifier for drill, backup "
        "for the rest)",
    )
    top.add_argument("--log-level", default=os.environ.get("BACKUP_AGENT_LOG_LEVEL", "info"))
    top.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=os.environ.get("BACKUP_AGENT_LOG_FORMAT", "text"),
    )
    verbs = top.add_subparsers(dest="verb", required=True)

    validate = verbs.add_parser("validate", help="check a manifest and report every problem")
    validate.add_argument("file", nargs="?", help="manifest to check (default: --manifest)")
    validate.set_defaults(handler=cmd_validate)

    init = verbs.add_parser("init", help="create the restic repository if it does not exist")
    init.add_argument(
        "--copy",
        action="store_true",
        help="create the second copies of maintenance.copy instead (as the maintenance role)",
    )
    init.set_defaults(handler=cmd_init)

    backup = verbs.add_parser("backup", help="back up one service now")
    backup.add_argument("service")
    backup.add_argument(
        "--kind",
        choices=(*manifest.BACKUP_KINDS, SHIPPING),
        help="snapshot kind (files: incremental or full; mysql: binlog ships the binary logs"
        " now); default: the kind scheduled today",
    )
    backup.set_defaults(handler=cmd_backup)

    run = verbs.add_parser(
        "run", help="run jobs on schedule until SIGTERM (the container's command)"
    )
    run.add_argument(
        "--role", dest="run_role", choices=agent.ROLES, help="the role to run (default: --role)"
    )
    run.add_argument(
        "--service", action="append", default=[], help="only this service (repeatable)"
    )
    run.set_defaults(handler=cmd_run)

    retention = verbs.add_parser(
        "retention",
        aliases=["forget"],
        help="apply retention on the repository, then prune ('forget' is its old name)",
    )
    retention.add_argument("--dry-run", action="store_true", help="show the plan, remove nothing")
    retention.set_defaults(handler=cmd_retention)

    check = verbs.add_parser("check", help="restic check, reading a rotating subset of the data")
    check.add_argument(
        "--run-number", type=int, default=0, help="which subset k/N to read (k = n mod N + 1)"
    )
    check.set_defaults(handler=cmd_check)

    copy = verbs.add_parser(
        "copy", help="copy new snapshots to the second copy now (maintenance.copy)"
    )
    copy.set_defaults(handler=cmd_copy)

    setup = verbs.add_parser(
        "s3-setup",
        help="create and configure each S3 bucket of the manifest as its owner (the "
        "maintenance role): versioning, public access block, lifecycle, append-only policy",
    )
    setup.add_argument(
        "--maintenance", required=True, help="ARN of the maintenance role's user (the owner)"
    )
    setup.add_argument(
        "--agent",
        action="append",
        required=True,
        help="ARN of a backup agent's user, may name {service} (repeatable)",
    )
    setup.add_argument(
        "--verifier",
        action="append",
        default=[],
        help="ARN of the verifier's user: reads, and adds its signed drill records (repeatable)",
    )
    setup.add_argument(
        "--reader", action="append", default=[], help="ARN of a user that only reads (repeatable)"
    )
    setup.add_argument(
        "--store",
        choices=("rgw", "aws"),
        default="rgw",
        help="Ceph RGW or AWS S3: which policy actions and public access flags (default rgw)",
    )
    setup.add_argument(
        "--keep-versions",
        type=int,
        default=30,
        metavar="DAYS",
        help="days an overwritten or deleted object stays restorable (default 30)",
    )
    setup.add_argument(
        "--copy",
        action="store_true",
        help="set up the buckets of maintenance.copy instead of the repositories'",
    )
    setup.add_argument(
        "--credentials",
        metavar="FILE",
        help="the owner's AWS credentials file (default: the role's own; with --copy the copy "
        "should be owned by someone the backup server's role is not)",
    )
    setup.add_argument(
        "--print", action="store_true", help="print each bucket's policy, change nothing"
    )
    setup.set_defaults(handler=cmd_s3_setup)

    drill_ = verbs.add_parser(
        "drill",
        aliases=["verify"],
        help="restore drills: restore the newest snapshots into disposable targets and prove "
        "them ('verify' is its old name)",
    )
    drill_.add_argument("services", nargs="*", help="services to drill (default: all)")
    drill_.add_argument("--report", help="JSON report file (default: drill.report_file)")
    drill_.set_defaults(handler=cmd_drill)

    plan_ = verbs.add_parser("plan", help="next runs, overlaps and simulated restore points")
    plan_.add_argument("file", nargs="?", help="manifest (default: --manifest)")
    plan_.set_defaults(handler=cmd_plan)

    snapshots = verbs.add_parser(
        "snapshots", help="list snapshots: time, id, service, kind, host, size, trusted or why not"
    )
    snapshots.add_argument("service", nargs="?")
    snapshots.add_argument("--json", action="store_true", help="restic's fields, as JSON")
    snapshots.set_defaults(handler=cmd_snapshots)

    status = verbs.add_parser(
        "status",
        help="one table of every service: last good backup against the RPO, last drill and "
        "restore time against the RTO, snapshots, firing alerts; and every component",
    )
    source = status.add_mutually_exclusive_group()
    source.add_argument(
        "--prometheus",
        metavar="URL",
        help="Prometheus to read (default: monitoring.prometheus_url)",
    )
    source.add_argument(
        "--metrics",
        metavar="URL",
        action="append",
        default=[],
        help="read this agent's /metrics instead of Prometheus (repeatable; no alert state)",
    )
    status.set_defaults(handler=cmd_status)

    restore = verbs.add_parser("restore", help="restore a service's snapshot")
    restore.add_argument("service")
    restore.add_argument("--snapshot", default="latest", help="snapshot id or 'latest'")
    restore.add_argument(
        "--to",
        "--target",
        dest="target",
        help="files, grafana: a directory; mysql: HOST[:PORT] or a socket path, or for a "
        "physical snapshot an empty directory (default: the configured server or data "
        "directory)",
    )
    restore.add_argument("--include", action="append", default=[], help="files: path to restore")
    point = restore.add_mutually_exclusive_group()
    point.add_argument(
        "--to-time",
        type=point_in_time,
        metavar="TIME",
        help="mysql with shipped binlogs: restore what was committed before this second"
        " ('2026-12-01 14:32:05' is UTC; or give a zone: '...+01:00', '... Europe/Berlin')",
    )
    point.add_argument(
        "--to-gtid", metavar="GTID", help="mysql: replay up to and including this transaction"
    )
    point.add_argument(
        "--to-position",
        metavar="FILE:OFFSET",
        help="mysql: replay the events that start before this binlog position",
    )
    restore.add_argument("--force", action="store_true", help="write into a non-empty target")
    restore.add_argument("--dry-run", action="store_true", help="say what would happen")
    restore.set_defaults(handler=cmd_restore)

    secrets = verbs.add_parser(
        "secrets",
        help="create the deployment's missing secrets, its CA and the backup server's "
        "TLS certificate (nothing is printed)",
    )
    secrets.add_argument("--dir", required=True, help="the secrets directory")
    secrets.add_argument(
        "--inventory", help="the machines (default: every role on one machine, --manifest)"
    )
    secrets.add_argument(
        "--s3",
        action="store_true",
        help="S3 key pairs too, for every S3 user of the compose stack's S3 modes",
    )
    secrets.set_defaults(handler=cmd_secrets)

    bundle_ = verbs.add_parser(
        "bundle", help="write one machine's directory: compose files, .env, its secrets"
    )
    bundle_.add_argument("machine", help="the machine, by its name in the inventory")
    bundle_.add_argument("--inventory", required=True, help="the inventory file")
    bundle_.add_argument("--secrets", required=True, help="the secrets directory")
    bundle_.add_argument("--output", required=True, help="the bundle directory to write")
    bundle_.add_argument(
        "--compose-dir", default="compose", help="the compose files (default: %(default)s)"
    )
    bundle_.add_argument(
        "--airgap", action="store_true", help="use the stand-in images (compose/airgap.yml)"
    )
    bundle_.set_defaults(handler=cmd_bundle)

    kit_ = verbs.add_parser(
        "recovery-kit", help="export everything needed when a machine is gone, or unpack it"
    )
    kit_verbs = kit_.add_subparsers(dest="kit_verb", required=True)
    export = kit_verbs.add_parser(
        "export", help="write the kit (keep it off every machine) and record the export"
    )
    export.add_argument("--secrets", required=True, help="the secrets directory")
    export.add_argument(
        "--inventory", help="the machines (default: every role on one machine, --manifest)"
    )
    export.add_argument("--output", required=True, help="the kit file; '-' prints it")
    export.add_argument("--force", action="store_true", help="replace an existing kit file")
    export.set_defaults(handler=cmd_kit_export)
    unpack = kit_verbs.add_parser(
        "unpack", help="secrets, inventory and manifest from a kit, into a new directory"
    )
    unpack.add_argument("kit", help="the kit file")
    unpack.add_argument("--to", required=True, help="a new or empty directory")
    unpack.set_defaults(handler=cmd_kit_unpack)

    migrate_ = verbs.add_parser(
        "migrate",
        help="copy a shared repository's snapshots into one repository per service "
        "(maintenance role)",
    )
    migrate_.add_argument("--from", dest="source", required=True, help="the shared repository")
    migrate_.add_argument("--from-password-file", required=True, help="its password file")
    migrate_.add_argument("--dry-run", action="store_true", help="say what would be copied")
    migrate_.set_defaults(handler=cmd_migrate)
    return top


def cmd_validate(args: argparse.Namespace) -> int:
    path = args.file or args.manifest
    if inventory.is_inventory(path):
        machines = inventory.load(path).machines.values()
        described = "; ".join(f"{m.name} ({', '.join(m.roles)})" for m in machines)
        print(f"{path}: ok: {described}")
        return EXIT_OK
    loaded = manifest.load(path)
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    services = ", ".join(f"{s.name} ({s.type})" for s in loaded.services.values())
    print(f"{loaded.source}: ok: {services}")
    return EXIT_OK


def _load(args: argparse.Namespace, role: str = "backup") -> manifest.Manifest:
    """The manifest as ``args.role`` (or the verb's own ``role``) sees the repositories."""
    loaded = manifest.load(args.manifest).for_role(args.role or role)
    restic.require_version()
    return loaded


def cmd_init(args: argparse.Namespace) -> int:
    """Create each repository of the manifest (or each copy) that does not exist yet."""
    if args.copy:
        for repo, names, created in maintenance.init_copies(_load(args, "maintenance")):
            where = f"{execute.mask(repo.url)} ({', '.join(names)})"
            if created:
                log.info("created copy repository %s: %s", where, created)
            else:
                log.info("copy repository %s already exists", where)
        return EXIT_OK
    for repo, names in _load(args).repositories().values():
        where = f"{execute.mask(repo.url)} ({', '.join(names)})"
        if restic.exists(repo):
            log.info("repository %s already exists", where)
        else:
            log.info("created repository %s: %s", where, restic.init(repo))
    return EXIT_OK


def cmd_backup(args: argparse.Namespace) -> int:
    loaded = _load(args)
    service = loaded.service(args.service)
    kind = args.kind or service.kind_for(datetime.now(UTC))
    state = State(loaded.agent.state_dir)
    metrics = Metrics(CollectorRegistry())
    if kind == SHIPPING:
        shipped = runs.run_binlog(loaded, service, state, metrics)
        print(json.dumps(asdict(shipped), default=str))
        return EXIT_OK
    result = runs.run_backup(loaded, service, kind, state, metrics)
    print(json.dumps(asdict(result), default=str))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM; being stopped is how the agent ends, so it exits 0."""
    try:
        role = args.run_role or args.role or "backup"
        agent.serve(_load(args, role), role, args.service)
    except Interrupted as stop:
        log.info("agent %s", stop)
    return EXIT_OK


def cmd_retention(args: argparse.Namespace) -> int:
    _deprecated(args, "forget", "retention")
    loaded = _load(args, "maintenance")
    plans = maintenance.apply_retention(loaded, datetime.now(UTC), dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for item in plans:
        gone = ", ".join(s.short_id for s in item.remove) or "nothing"
        print(f"{item.service}: keep {len(item.keep)}, {verb} {len(item.remove)}: {gone}")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    subset = maintenance.check_repositories(_load(args, "maintenance"), args.run_number)
    print(f"repository check passed (read data subset {subset})")
    return EXIT_OK


def cmd_copy(args: argparse.Namespace) -> int:
    """Copy new snapshots to every second copy now; recorded like the scheduled copy."""
    loaded = _load(args, "maintenance")
    if loaded.maintenance.copy is None:
        raise BackupError("the manifest has no maintenance.copy: nowhere to copy to")
    with runs.recorded(State(loaded.agent.state_dir), COPY):
        newest = maintenance.copy_repositories(loaded)
    for name, when in newest.items():
        stamp = datetime.fromtimestamp(when, UTC).isoformat() if when else "none"
        print(f"{name}: newest trusted snapshot in the copy: {stamp}")
    return EXIT_OK


def cmd_s3_setup(args: argparse.Namespace) -> int:
    """Set up every S3 bucket of the manifest (as the maintenance role reaches them);
    ``{service}`` in the principals becomes each service the bucket holds."""
    loaded = _load(args, "maintenance")
    if args.copy:
        pairs = [(target, names) for _, target, names in loaded.copies()]
    else:
        pairs = list(loaded.repositories().values())
    found = [(r, n) for r, n in pairs if r.is_s3]
    if not found:
        what = "maintenance.copy" if args.copy else "repository"
        raise BackupError(f"the manifest has no S3 {what} (s3: URL) to set up")
    for repo, names in found:
        where = s3.location(repo.url)

        def principals(values: Sequence[str], names: Sequence[str] = names) -> list[str]:
            return list(dict.fromkeys(v.replace(SERVICE_FIELD, n) for v in values for n in names))

        policy = s3policy.bucket_policy(
            where.bucket,
            maintenance=principals([args.maintenance])[0],
            agents=principals([*args.agent, *args.verifier]),
            readers=principals(args.reader),
            prefix=where.prefix,
            store=args.store,
        )
        if args.print:
            print(json.dumps(policy, indent=2))
            continue
        owner = replace(repo, credentials_file=args.credentials) if args.credentials else repo
        client = s3.Client.for_repository(owner)
        for step in s3policy.setup(
            client, where.bucket, policy, store=args.store, keep_versions_days=args.keep_versions
        ):
            log.info("bucket %s (%s): %s", where.bucket, ", ".join(names), step)
    return EXIT_OK


def cmd_drill(args: argparse.Namespace) -> int:
    """Run the drills now; exit 1 when any drill or the repository check failed."""
    _deprecated(args, "verify", "drill")
    loaded = _load(args, "verifier")
    settings = require_drill(loaded)
    names = [loaded.service(name).name for name in args.services] or list(loaded.services)
    report_file = args.report or settings.report_file
    state = State(loaded.agent.state_dir)
    with runs.recorded(state, DRILL) as outcome:
        report = drill.run_drills(loaded, names, report_file, outcome.before.successes)
    failed = 0
    for name in names:
        entry = report["services"][name]
        rto = manifest.format_duration(timedelta(seconds=entry["rto_target_seconds"]))
        verdict = "PASS" if entry["passed"] else "FAIL"
        failed += not entry["passed"]
        print(
            f"{verdict} {name}: restored and verified in {entry['seconds']:.1f}s (RTO target {rto})"
        )
        for line in entry["checks"]:
            print(f"     {line}")
        if entry["error"]:
            print(f"     error: {entry['error']}")
    check = report["repository_check"]
    failed += not check["passed"]
    detail = f"read data subset {check['subset']}" if check["passed"] else check["error"]
    print(f"{'PASS' if check['passed'] else 'FAIL'} repository check: {detail}")
    print(f"report: {report_file}")
    return EXIT_FAILED if failed else EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    loaded = manifest.load(args.file or args.manifest)
    state = State(loaded.agent.state_dir)
    measured: dict[str, timedelta] = {}
    for task, run in state.runs.items():
        if task.role == "backup":
            took = timedelta(seconds=run.last_duration)
            measured[task.name] = max(measured.get(task.name, took), took)
    report = drill.read_report(loaded.drill.report_file) if loaded.drill else {}
    rates = plan.restore_rates(report)
    sizes: dict[str, dict[str, int]] = {}
    for name in rates.keys() & loaded.services.keys():  # only what a drill measured
        try:
            sizes[name] = plan.newest_sizes(loaded, loaded.services[name])
        except BackupError as exc:
            log.warning("%s: no backup size for the expected restore time: %s", name, exc)
    print(plan.render(loaded, datetime.now(UTC), measured, rates, sizes))
    return EXIT_OK


def cmd_snapshots(args: argparse.Namespace) -> int:
    """Every snapshot of the named service (default: all), from its repository: a table
    with the trust rule's verdict, or restic's fields as JSON."""
    loaded = _load(args)
    names = [loaded.service(args.service).name] if args.service else list(loaded.services)
    listed: dict[str, list[restic.Snapshot]] = {}
    for repo, kept in loaded.repositories().values():
        for name in (n for n in kept if n in names):
            listed[name] = restic.snapshots(repo, {"service": name})
    if args.json:
        found = {snap.id: snap for snaps in listed.values() for snap in snaps}
        ordered = sorted(found.values(), key=lambda snap: snap.time)
        # As restic prints them: ``original`` only for a copied snapshot.
        fields = [{k: v for k, v in asdict(s).items() if k != "original" or v} for s in ordered]
        print(json.dumps(fields, default=str, indent=2))
        return EXIT_OK
    trust = Trust.of(loaded)
    print(views.snapshots(judge(listed[n], loaded.services[n], trust) for n in names))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """The status view, from Prometheus (or the agents' /metrics); exit 1 when it cannot
    be read, whatever the table would have said."""
    loaded = manifest.load(args.manifest)
    url = args.prometheus or loaded.monitoring.prometheus_url
    if args.metrics:
        found = readout.from_endpoints(args.metrics)
    elif url:
        found = readout.from_prometheus(url)
    else:
        print(
            "status: nothing to read: set monitoring.prometheus_url in the manifest, "
            "or pass --prometheus URL or --metrics URL",
            file=sys.stderr,
        )
        return EXIT_USAGE
    print(views.status(loaded, found, time.time()))
    return EXIT_OK


def point_in_time(text: str) -> datetime:
    """A restore target time: ISO 8601 with an offset or ``Z``, or a trailing zone name
    (``2026-12-01 14:32:05 Europe/Berlin``); without either it is UTC."""
    value, _, zone = text.strip().rpartition(" ")
    tz: ZoneInfo | None = None
    if value and ("/" in zone or zone in ("UTC", "GMT")):
        try:
            tz = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise argparse.ArgumentTypeError(f"unknown time zone {zone!r}") from None
    else:
        value = text.strip()
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time like '2026-12-01 14:32:05' (UTC) or '...+01:00'"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz or UTC)
    elif tz is not None:
        raise argparse.ArgumentTypeError(f"{text!r} names an offset and a zone: give one")
    return moment


def cmd_restore(args: argparse.Namespace) -> int:
    loaded = _load(args)
    service = loaded.service(args.service)
    request = RestoreRequest(
        snapshot=args.snapshot,
        target=args.target,
        include=tuple(args.include),
        force=args.force,
        dry_run=args.dry_run,
        to_time=args.to_time,
        to_gtid=args.to_gtid,
        to_position=args.to_position,
    )
    if request.to_point and (service.binlog is None or args.snapshot != "latest"):
        why = "ships no binlogs" if service.binlog is None else "takes no --snapshot with it"
        raise UsageError(f"restore to a point: {service.name} {why}")
    started = time.monotonic()
    result = JOBS[service.type].restore(loaded, service, request)
    log.info(
        "restore finished",
        extra={
            "service": service.name,
            "snapshot": result.snapshot_id[:8],
            "bytes": result.bytes,
            "duration_seconds": round(time.monotonic() - started, 3),
        },
    )
    for line in result.verified:
        print(f"{service.name}: {line}")
    return EXIT_OK


def _inventory(args: argparse.Namespace) -> inventory.Inventory:
    if args.inventory:
        return inventory.load(args.inventory)
    return inventory.Inventory.single(manifest.load(args.manifest))


def cmd_secrets(args: argparse.Namespace) -> int:
    created = secret_store.ensure(_inventory(args), Path(args.dir), s3=args.s3)
    what = f"created {' '.join(created)}" if created else "all present"
    print(f"secrets: {what} in {args.dir} (group {secret_store.GROUP}, mode 0640)")
    return EXIT_OK


def cmd_bundle(args: argparse.Namespace) -> int:
    loaded = inventory.load(args.inventory)
    written = bundle.write(
        loaded,
        args.machine,
        Path(args.secrets),
        Path(args.compose_dir),
        Path(args.output),
        airgap=args.airgap,
        environ=os.environ,
    )
    secrets = ", ".join(sorted(p.name for p in (written / "compose" / "secrets").iterdir()))
    print(f"{written}: bundle of {args.machine}: copy it there and run ./up.sh")
    print(f"  secrets: {secrets}")
    return EXIT_OK


def cmd_kit_export(args: argparse.Namespace) -> int:
    loaded = _inventory(args)
    output = None if args.output == "-" else Path(args.output)
    text = kit.export(
        loaded, Path(args.secrets), output, single=not args.inventory, force=args.force
    )
    if output is None:
        sys.stdout.write(text)
    else:
        print(f"recovery kit written to {output}: keep it off every machine")
    record = Path(args.secrets) / secret_store.RECORD
    print(f"export recorded in {record}; the backup server needs this file", file=sys.stderr)
    return EXIT_OK


def cmd_kit_unpack(args: argparse.Namespace) -> int:
    written = kit.unpack(Path(args.kit), Path(args.to))
    print(f"{args.to}: {', '.join(written)}")
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    loaded = _load(args, "maintenance")
    source = restic.Repository(
        url=args.source,
        password_file=args.from_password_file,
        host=loaded.repository.host,
        cacert=loaded.repository.cacert,
    )
    for moved in migrate.migrate(loaded, source, dry_run=args.dry_run):
        verb = "would copy" if args.dry_run else "copied"
        print(
            f"{moved.service}: {verb} {moved.copied}, already there {moved.present}, "
            f"records re-pointed {moved.repointed}"
        )
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
