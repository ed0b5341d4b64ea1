"""The network between the simulated machines of tests/e2e/test_hosts.py.

Each machine is a compose project on its own Docker network that publishes its ports
on its own loopback address (127.0.0.11, ...). A container cannot reach the host's
loopback, so the containers reach the other machines by name through the Docker
host's gateway address (``host-gateway``), where this relay listens on the same port
and forwards each connection to the published port on the destination machine's
address: what a router between real machines does. It only moves bytes (TLS stays end
to end) and remembers the first byte each client sent, which says whether the
connection started with a TLS handshake.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from collections import Counter

TLS_HANDSHAKE = 0x16  # the first byte of a TLS record carrying a ClientHello


def docker_gateway(image: str) -> str:
    """The address ``host-gateway`` stands for, as a container of ``image`` sees it."""
    argv = ["docker", "run", "--rm", "--network", "none", "--add-host", "gateway:host-gateway"]
    argv += ["--entrypoint", "getent", image, "hosts", "gateway"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    address = out.split()[0] if out.split() else ""
    if not address:
        raise RuntimeError(f"host-gateway resolves to nothing in {image}: {out!r}")
    return address


class Relay:
    """Forward ``listen:port`` to ``routes[port]:port`` for every route, in threads."""

    def __init__(self, listen: str, routes: dict[int, str]) -> None:
        self.listen = listen
        self.routes = routes
        self.first_bytes: dict[int, Counter[int]] = {port: Counter() for port in routes}
        self._listeners: list[socket.socket] = []
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        for port in self.routes:
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.listen, port))
            listener.listen(64)
            self._listeners.append(listener)
            threading.Thread(target=self._accept, args=(listener, port), daemon=True).start()

    def stop(self) -> None:
        for listener in self._listeners:
            listener.close()
        with self._lock:
            for connection in self._open:
                with contextlib.suppress(OSError):
                    connection.close()

    def _accept(self, listener: socket.socket, port: int) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client, port), daemon=True).start()

    def _serve(self, client: socket.socket, port: int) -> None:
        try:
            server = socket.create_connection((self.routes[port], port), timeout=10)
        except OSError:
            client.close()  # the machine is down: the connection is refused
            return
        server.settimeout(None)
        with self._lock:
            self._open |= {client, server}
        try:
            first = client.recv(65536)
            if first:
                self.first_bytes[port][first[0]] += 1
                server.sendall(first)
        except OSError:
            first = b""
        if not first:
            self._close(client, server)
            return
        threading.Thread(target=self._pump, args=(server, client), daemon=True).start()
        self._pump(client, server)

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            self._close(source, target)

    def _close(self, *ends: socket.socket) -> None:
        for end in ends:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                end.close()
        with self._lock:
            self._open -= set(ends)
