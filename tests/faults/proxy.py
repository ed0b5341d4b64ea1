"""A TCP proxy in front of the backup server: it can slow uploads down and cut the line.

Throttled, a backup lasts long enough to be interrupted in the middle of its upload.
Stalled, every connection stays open and no byte moves either way, as when a network
link dies: the kernel still takes what fits in its buffers, then the sender blocks and
nothing answers (new connections are accepted and then hang the same way).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from tests.net import HOST, free_port

CHUNK = 64 << 10


class Proxy:
    """Forwards ``address:port`` to ``target``; ``rate`` caps uploads (bytes per second)."""

    def __init__(self, target: tuple[str, int], rate: float | None = None) -> None:
        self.target, self.rate = target, rate
        self.address, self.port = HOST, free_port(HOST)
        self.listener = socket.create_server((self.address, self.port))
        self.flowing = threading.Event()
        self.flowing.set()
        self.uploaded = 0  # bytes forwarded towards the server
        self._lock = threading.Lock()
        self._next_send = time.monotonic()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str) -> str:
        return f"rest:http://{self.address}:{self.port}/{path}"

    def stall(self) -> None:
        """Cut the line: nothing moves any more, nothing is closed."""
        self.flowing.clear()

    def close(self) -> None:
        self.flowing.set()  # release the pumps so that their threads end
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(self.target, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()  # the server is down: the client sees its connection dropped
                continue
            with self._lock:
                self._sockets += [client, server]
            for source, sink, upload in ((client, server, True), (server, client, False)):
                threading.Thread(
                    target=self._pump, args=(source, sink, upload), daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upload: bool) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.flowing.wait()
                data = source.recv(CHUNK)
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    return
                self.flowing.wait()  # a cut line holds what it has
                if upload:
                    self._throttle(len(data))
                sink.sendall(data)

    def _throttle(self, size: int) -> None:
        """Count an upload of ``size`` bytes and wait its turn under ``rate``."""
        with self._lock:
            self.uploaded += size
            if not self.rate:
                return
            now = time.monotonic()
            self._next_send = max(self._next_send, now) + size / self.rate
            delay = self._next_send - size / self.rate - now
        if delay > 0:
            time.sleep(delay)
