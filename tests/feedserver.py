"""A feed server for tests: HTTPS on 127.0.0.1, ETags, and the failures a feed can have.

Run as a script (the test stops it by its pid): ``feedserver.py DIR CERT KEY LOG``
prints the port it listens on, then serves DIR. ``/truncated/NAME`` announces
more bytes than it sends; ``/hang/NAME`` never answers. Each request is
logged to LOG as "PATH STATUS".
"""

from __future__ import annotations

import hashlib
import http.server
import ssl
import sys
import time
from pathlib import Path


def main() -> None:
    root, cert, key, log = Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4])

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _log(self, status: int) -> None:
            with log.open("a") as f:
                f.write(f"{self.path} {status}\n")

        def do_GET(self) -> None:
            path = self.path
            if path.startswith("/hang/"):
                self._log(0)
                time.sleep(60)
                return
            truncated = path.startswith("/truncated/")
            name = path.removeprefix("/truncated/").lstrip("/")
            f = root / name
            if not f.is_file():
                self._log(404)
                self.send_error(404)
                return
            data = f.read_bytes()
            etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
            if self.headers.get("If-None-Match") == etag:
                self._log(304)
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return
            self._log(200)
            self.send_response(200)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", str(len(data) + (1000 if truncated else 0)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2] if truncated else data)
            if truncated:
                self.close_connection = True

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
