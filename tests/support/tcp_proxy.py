"""A loopback TCP proxy that a test can cut, to make a real SDK see its server go away."""

from __future__ import annotations

import socket
import threading
import time


class CuttableProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target``; :meth:`cut` closes every connection and the listener.

    After :meth:`cut`, new connections are refused (nothing listens), so clients fail fast with
    "connection refused" exactly as when the real server is down. ``port`` (default: any free one) lets a
    test start the proxy on an address a client was already given while nothing listened there (the server
    "comes up"). ``answer_delay`` holds each chunk the server sends for that many seconds, so requests sent at
    once are all in flight at once, however busy the machine.
    """

    def __init__(self, target_host: str, target_port: int, *, port: int = 0, answer_delay: float = 0.0) -> None:
        self._target = (target_host, target_port)
        self._answer_delay = answer_delay
        self._listener = socket.create_server(("127.0.0.1", port))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        self.connections = 0  # connections accepted and forwarded so far
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
                self.connections += 1
            for a, b, delay in ((client, upstream, 0.0), (upstream, client, self._answer_delay)):
                threading.Thread(target=self._pipe, args=(a, b, delay), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, delay: float) -> None:
        try:
            while data := src.recv(65536):
                if delay:
                    time.sleep(delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """Close the listener and every forwarded connection (the "server" is now down)."""
        with self._lock:
            self._closed = True
            self._listener.close()
            for s in self._sockets:
                try:
                    s.close()
                except OSError:
                    pass
            self._sockets.clear()
