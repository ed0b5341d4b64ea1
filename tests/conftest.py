"""Shared fixtures. Integration tests need real tools; in CI a missing one is a failure.

With ``BACKUP_AGENT_REQUIRE_INTEGRATION=1`` (``.ci/run`` and ``make test`` set it) a
missing tool fails its test instead of skipping it, and the hooks below turn ANY skip
or xfail into a failure, whatever caused it (a future ``@skipif``, an ``importorskip``,
an ``xfail`` marker): in CI, nothing may pass by not running.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from backup_agent import manifest, restic
from tests.mariadb_server import MariaDB

REQUIRED = os.environ.get("BACKUP_AGENT_REQUIRE_INTEGRATION") == "1"


def _refuse_skips(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Turn a skipped or xfailed (or xpassed) report into a failure when REQUIRED."""
    if not REQUIRED:
        return
    if report.skipped or hasattr(report, "wasxfail"):
        what = "an xfail" if hasattr(report, "wasxfail") else "a skip"
        reason = getattr(report, "wasxfail", "") or str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"{what} is a failure with BACKUP_AGENT_REQUIRE_INTEGRATION=1: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    _refuse_skips(outcome.get_result())  # type: ignore[attr-defined]


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    _refuse_skips(outcome.get_result())  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """``cli.main`` points the root logger at the stderr of its test; put it back after,
    so that later tests do not log into a closed capture."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def need(tool: str) -> str:
    """Path of ``tool``; skip when absent, or fail when integration tests are required."""
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if path is None:
        message = f"{tool} is not installed (run: make deps)"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    return path


def docker_with(*images: str) -> Any:
    """A docker SDK client of an engine holding ``images``; skip, or fail in CI, if not."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
        for image in images:
            client.images.get(image)
    except Exception as exc:  # no engine, no socket, or no image
        message = f"needs a Docker engine and {', '.join(images)} (make base-images): {exc}"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    return client


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def service_spec(
    type_: str,
    options: dict[str, Any],
    schedule: str | dict[str, str] = "0 22 * * *",
    rpo: str = "1d",
    rto: tuple[str, str] = ("30m", "2h"),
) -> dict[str, Any]:
    """A service block of a manifest, as the tests write them."""
    return {
        "type": type_,
        "schedule": schedule,
        "rpo": rpo,
        "rto": {"target": rto[0], "limit": rto[1]},
        type_: options,
    }


def files_spec(
    paths: list[str],
    schedule: dict[str, str] | None = None,
    rpo: str = "1d",
    rto: tuple[str, str] = ("30m", "2h"),
) -> dict[str, Any]:
    """A files service block (incremental Mon-Sat, full Sunday unless told otherwise)."""
    weekly = {"incremental": "0 0 * * 1-6", "full": "0 0 * * 0"}
    return service_spec("files", {"paths": paths}, schedule or weekly, rpo, rto)


@pytest.fixture
def repository(tmp_path: Path) -> restic.Repository:
    """A fresh, initialised restic repository in a temporary directory."""
    need("restic")
    password = tmp_path / "restic-password"
    password.write_text("correct horse battery staple\n")
    repo = restic.Repository(
        url=str(tmp_path / "repo"),
        password_file=str(password),
        host="testhost",
        cache_dir=str(tmp_path / "cache"),
    )
    restic.init(repo)
    return repo


ManifestFactory = Callable[..., manifest.Manifest]


@pytest.fixture
def make_manifest(tmp_path: Path, repository: restic.Repository) -> ManifestFactory:
    """Write a manifest for ``repository`` with the given services and load it."""

    def make(services: dict[str, Any], **top: Any) -> manifest.Manifest:
        data = {
            "version": 1,
            "work_dir": str(tmp_path / "work"),
            "agent": {"state_dir": str(tmp_path / "state"), "metrics_port": 0},
            "repository": {
                "url": repository.url,
                "password_file": repository.password_file,
                "host": repository.host,
                "cache_dir": repository.cache_dir,
            },
            "services": services,
            "retention": {"keep_within": "3w", "max_age": "31d"},
        }
        data.update(top)
        path = tmp_path / "manifest.yaml"
        path.write_text(yaml.safe_dump(data))
        return manifest.load(path)

    return make


def _server() -> Iterator[MariaDB]:
    need("mariadbd")
    need("mariadb-install-db")
    server = MariaDB()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    """A throwaway MariaDB server (own data dir, socket and port) for the whole session."""
    yield from _server()


@pytest.fixture(scope="session")
def scratch_mariadb() -> Iterator[MariaDB]:
    """A second throwaway server: the disposable restore target of drills."""
    yield from _server()
