"""A scripted HTTP server on 127.0.0.1 for what a before-send stub cannot do: slow or broken
streams (read timeouts, connections dropped mid-stream)."""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import attrs


@attrs.frozen
class Script:
    """One response: status line and headers, then body pieces with pauses before each."""

    pieces: Sequence[tuple[float, bytes]]
    status: int = 200
    headers: dict[str, str] = attrs.field(factory=dict)
    content_length: int | None = None  # announced length; None: close-delimited body


class LoopbackServer:
    """Serves queued :class:`Script` responses, one per request, in order."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._scripts: deque[Script] = deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def add(self, script: Script) -> None:
        self._scripts.append(script)

    def _serve(self) -> None:
        self._socket.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._socket.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            while len(rest) < length:
                rest += conn.recv(65536)
            script = self._scripts.popleft() if self._scripts else Script([], status=500)
            lines = [
                f"HTTP/1.1 {script.status} X",
                "connection: close",
                "x-amzn-requestid: loopback-request",
            ]
            lines += [f"{k}: {v}" for k, v in script.headers.items()]
            if script.content_length is not None:
                lines.append(f"content-length: {script.content_length}")
            try:
                conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
                for pause, piece in script.pieces:
                    if pause:
                        time.sleep(pause)
                    conn.sendall(piece)
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._socket.close()


@contextmanager
def loopback() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    try:
        yield server
    finally:
        server.close()
