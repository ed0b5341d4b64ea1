"""The manifest: one YAML file describing the whole backup plan.

``model`` holds the frozen dataclasses (and every default), ``loading`` reads and
validates a file (YAML, deprecated keys, environment references, JSON Schema), and
``checks`` adds the cross-field checks and builds the dataclasses.
"""

from backup_agent.manifest.checks import longest_gap
from backup_agent.manifest.loading import expand_env, load, parse, schema, schema_problems
from backup_agent.manifest.model import (
    BACKUP_KINDS,
    DEFAULT_PATH,
    DEFAULT_WORK_DIR,
    SYSTEM_DATABASES,
    TYPES,
    Agent,
    Drill,
    DrillServer,
    FilesOptions,
    GrafanaOptions,
    Maintenance,
    Manifest,
    Monitoring,
    MysqlOptions,
    Options,
    Retention,
    Schedule,
    Service,
    format_duration,
    parse_duration,
    parse_size,
)

__all__ = [
    "BACKUP_KINDS",
    "DEFAULT_PATH",
    "DEFAULT_WORK_DIR",
    "SYSTEM_DATABASES",
    "TYPES",
    "Agent",
    "Drill",
    "DrillServer",
    "FilesOptions",
    "GrafanaOptions",
    "Maintenance",
    "Manifest",
    "Monitoring",
    "MysqlOptions",
    "Options",
    "Retention",
    "Schedule",
    "Service",
    "expand_env",
    "format_duration",
    "load",
    "longest_gap",
    "parse",
    "parse_duration",
    "parse_size",
    "schema",
    "schema_problems",
]
