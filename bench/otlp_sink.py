"""A local OTLP/HTTP sink for measuring tracing's cost: answers every export 200 (an empty
ExportTraceServiceResponse) and counts the bytes and requests it got, printed at exit.

    .venv/bin/python bench/otlp_sink.py --port 4318 &
    .venv/bin/python bench/ab_cpu.py --base . --only warm --env-b UCGW_TRACING=true \
        --env-b OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318
"""

from __future__ import annotations

import argparse
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

received = {"requests": 0, "bytes": 0}


class Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        received["requests"] += 1
        received["bytes"] += len(body)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Sink)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    finally:
        print(f"otlp sink: {received['requests']} exports, {received['bytes']} bytes", flush=True)


if __name__ == "__main__":
    main()
