"""Data-source jobs: one module per kind, each with the same functions.

Modules are registered explicitly in ``JOBS`` and checked against the ``Job``
Protocol by the type checker; there is no import-time discovery.
"""

from __future__ import annotations

from backup_agent.jobs import files, grafana, mysql
from backup_agent.jobs.base import Job

JOBS: dict[str, Job] = {"mysql": mysql, "grafana": grafana, "files": files}
