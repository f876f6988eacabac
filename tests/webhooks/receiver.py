"""A real HTTP receiver on loopback for webhook tests: records requests, fails on demand.

``http.server`` in a thread rather than anything async, so it answers independently of
the event loop the sender under test runs on (a hang on its side cannot stall the test).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        #: answer the next N requests with ``fail_status``
        self.fail_next = 0
        self.fail_status = 500
        #: hold the next N requests without answering (until stop)
        self.hang_next = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(Received(self.path, dict(self.headers), body))
                    hang = receiver.hang_next > 0
                    fail = not hang and receiver.fail_next > 0
                    if hang:
                        receiver.hang_next -= 1
                    elif fail:
                        receiver.fail_next -= 1
                if hang:
                    receiver._release.wait(30)
                    return  # the client gave up long ago; close without an answer
                status = receiver.fail_status if fail else 200
                payload = b"boom" if fail else b"ok"
                self.send_response(status)
                if 300 <= status < 400:
                    # somewhere that would answer 200: following it would "deliver"
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
