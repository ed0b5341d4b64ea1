"""What the agents report, read back for people (``backup-agent status``).

Two sources. **Prometheus** (``monitoring.prometheus_url`` or ``--prometheus``) is the
normal one: it scrapes every agent, the maintenance role, the verifier and the backup
server on all hosts, keeps their series when one of them restarts, and alone knows
which alerts fire; one query and one call of its alerts API give everything.
**The agents' /metrics endpoints** (``--metrics URL``, repeatable) serve a deployment
without Prometheus, or an operator checking agents while Prometheus itself is down:
the same numbers, but no alert state.

Both answers are read as untrusted input: a value that is not a number, or labels that
are not strings, are skipped; responses are read up to ``MAX_BYTES``.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from prometheus_client.parser import text_string_to_metric_families

from backup_agent.errors import BackupError
from backup_agent.execute import mask

# Every series of the agents, and the scrape status of every target: ``or`` would drop
# an ``up`` whose labels equal a backup series' (``or`` ignores names), so one selector.
QUERY = '{__name__=~"backup_.+|up"}'
# The backup jobs' names start with it: backup-agent, backup-maintenance,
# backup-verifier, backup-server (compose/prometheus/prometheus.yml).
JOB_PREFIX = "backup"
TIMEOUT = 10.0
MAX_BYTES = 16 << 20
# The scrape job each agent role runs under in compose/prometheus/prometheus.yml.
ROLE_JOBS = {
    "backup": "backup-agent",
    "maintenance": "backup-maintenance",
    "verifier": "backup-verifier",
}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Alert:
    """A firing alert, with its labels (``alertname``, ``service``, ``instance``...)."""

    labels: Mapping[str, str]

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "?")


@dataclass(frozen=True)
class Readout:
    """Samples from one source; ``alerts`` is None when the source cannot know them;
    ``errors`` says why a target could not be scraped, by instance."""

    source: str
    samples: Sequence[Sample]
    alerts: Sequence[Alert] | None = None
    errors: Mapping[str, str] = field(default_factory=dict)

    def find(self, name: str, **labels: str) -> list[Sample]:
        """The samples of ``name`` whose labels include ``labels``."""
        return [
            s
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]


def from_prometheus(url: str, timeout: float = TIMEOUT) -> Readout:
    """Every backup series and the firing alerts, from Prometheus's HTTP API."""
    base = url.rstrip("/")
    where = f"Prometheus at {mask(base)}"
    vector = _api(f"{base}/api/v1/query?{urlencode({'query': QUERY})}", where, timeout)
    listed = _api(f"{base}/api/v1/alerts", where, timeout)
    targets = _api(f"{base}/api/v1/targets?state=active", where, timeout)
    if not isinstance(vector, dict) or vector.get("resultType") != "vector":
        raise BackupError(f"{where} answered the query with no vector: not a Prometheus?")
    samples = [
        s
        for s in map(_vector_sample, _list(vector.get("result")))
        if s is not None and (s.name != "up" or s.labels.get("job", "").startswith(JOB_PREFIX))
    ]
    alerts = [
        Alert(labels)
        for entry in _list(listed.get("alerts") if isinstance(listed, dict) else None)
        if isinstance(entry, dict) and entry.get("state") == "firing"
        for labels in [_labels(entry.get("labels"))]
        if labels is not None
    ]
    errors = {
        labels.get("instance", ""): _scrape_error(target["lastError"])
        for target in _list(targets.get("activeTargets") if isinstance(targets, dict) else None)
        if isinstance(target, dict) and target.get("lastError")
        for labels in [_labels(target.get("labels")) or {}]
    }
    return Readout(f"Prometheus {mask(base)}", samples, alerts, errors)


def from_endpoints(urls: Iterable[str], timeout: float = TIMEOUT) -> Readout:
    """The samples of each agent's /metrics, labelled with its ``instance`` and, from the
    role it reports, the ``job`` Prometheus would give it; ``up`` says which answered."""
    urls = list(urls)
    samples: list[Sample] = []
    errors: dict[str, str] = {}
    for url in urls:
        instance = urlsplit(url).netloc.rpartition("@")[2] or url
        try:
            found = _exposition(_fetch(url, timeout).decode("utf-8", errors="replace"))
        except urllib.error.URLError as exc:
            errors[instance] = _reason(exc.reason)
            found = None
        except (OSError, ValueError) as exc:
            errors[instance] = _reason(exc)
            found = None
        if found is None:
            samples.append(Sample("up", {"job": "", "instance": instance}, 0.0))
            continue
        roles = {s.labels.get("role", "") for s in found if s.name == "backup_agent_build_info"}
        job = ROLE_JOBS.get(roles.pop(), "") if len(roles) == 1 else ""
        extra = {"job": job, "instance": instance}
        samples += [Sample(s.name, {**s.labels, **extra}, s.value) for s in found]
        samples.append(Sample("up", extra, 1.0))
    return Readout(f"/metrics of {len(urls)} endpoint(s)", samples, None, errors)


def _api(url: str, where: str, timeout: float) -> Any:
    """The ``data`` of a Prometheus API answer; one clear line when there is none."""
    try:
        body = _fetch(url, timeout)
    except urllib.error.HTTPError as exc:
        raise BackupError(f"{where} answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise BackupError(f"{where} is unreachable: {_reason(exc.reason)}") from None
    except OSError as exc:  # a timeout or a reset while reading
        raise BackupError(f"{where} is unreachable: {_reason(exc)}") from None
    try:
        answer = json.loads(body)
    except ValueError:
        raise BackupError(f"{where} answered something that is not JSON") from None
    if not isinstance(answer, dict) or answer.get("status") != "success":
        error = answer.get("error") if isinstance(answer, dict) else None
        raise BackupError(f"{where} refused the request: {str(error)[:200]}")
    return answer.get("data")


def _fetch(url: str, timeout: float) -> bytes:
    if urlsplit(url).scheme not in ("http", "https"):
        raise urllib.error.URLError(f"not an http(s) URL: {mask(url)}")
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - scheme checked
        body: bytes = response.read(MAX_BYTES + 1)
    if len(body) > MAX_BYTES:
        raise ValueError(f"answer larger than {MAX_BYTES} bytes")
    return body


def _reason(reason: object) -> str:
    """An OS error's message without its errno prefix, on one line."""
    text = reason.strerror if isinstance(reason, OSError) and reason.strerror else str(reason)
    return " ".join(text.split()) or type(reason).__name__


def _scrape_error(error: object) -> str:
    """The last link of a Go error chain, which says what happened: 'Get "http://...":
    dial tcp ...: connect: connection refused' -> 'connection refused'."""
    return " ".join(str(error).split()).rsplit(": ", 1)[-1][:200]


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _labels(value: object) -> dict[str, str] | None:
    if not isinstance(value, dict):
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return None
    return dict(value)


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _vector_sample(entry: object) -> Sample | None:
    """One element of an instant vector: ``{"metric": {...}, "value": [time, "1"]}``."""
    if not isinstance(entry, dict):
        return None
    labels = _labels(entry.get("metric"))
    pair = entry.get("value")
    if labels is None or not isinstance(pair, list) or len(pair) != 2:
        return None
    value = _number(pair[1])
    name = labels.pop("__name__", "")
    return Sample(name, labels, value) if name and value is not None else None


def _exposition(text: str) -> list[Sample]:
    """Samples of the text exposition format (prometheus_client's parser)."""
    return [
        Sample(sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not math.isnan(sample.value)
    ]
