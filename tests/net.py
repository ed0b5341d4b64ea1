"""Where test servers listen: a loopback address and free TCP ports.

``BACKUP_AGENT_TEST_HOST`` (default 127.0.0.1) picks the loopback address and
``BACKUP_AGENT_TEST_PORTS`` (``LOW-HIGH``) a port range, so that several test runs on
one machine stay out of each other's way; without a range the kernel picks a port.
"""

from __future__ import annotations

import os
import random
import socket

HOST = os.environ.get("BACKUP_AGENT_TEST_HOST", "127.0.0.1")
PORTS = os.environ.get("BACKUP_AGENT_TEST_PORTS", "")


def free_port(address: str = HOST) -> int:
    """A TCP port nothing is bound to on ``address`` (in the configured range, if any)."""
    if not PORTS:
        return _bind(address, 0)
    low, _, high = PORTS.partition("-")
    candidates = list(range(int(low), int(high or low) + 1))
    random.shuffle(candidates)  # servers just stopped may still hold their port a moment
    for port in candidates:
        try:
            return _bind(address, port)
        except OSError:
            continue
    raise RuntimeError(f"no free port in {PORTS} on {address}")


def free_port_on(addresses: list[str], taken: set[int]) -> int:
    """A TCP port, not in ``taken``, that nothing is bound to on any of ``addresses``
    (servers of one test listening on several machines' addresses)."""
    for _ in range(200):
        port = free_port(addresses[0])
        if port not in taken and all(_bindable(other, port) for other in addresses[1:]):
            return port
    raise RuntimeError(f"no port free on all of {', '.join(addresses)}")


def _bindable(address: str, port: int) -> bool:
    try:
        _bind(address, port)
    except OSError:
        return False
    return True


def _bind(address: str, port: int) -> int:
    with socket.socket() as probe:
        probe.bind((address, port))
        found: int = probe.getsockname()[1]
        return found


def accepts(address: str, port: int) -> bool:
    """Whether something accepts TCP connections on ``address:port``."""
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False
