#!/usr/bin/env python3
"""Prometheus target of the S3 stand-in: GET /metrics answers 200 with
``s3_gateway_up 1`` while the RADOS Gateway answers HTTP on RGW_PORT, and 503 when it
does not, so that Prometheus' ``up`` for the store is 0 (BackupServerDown) then.
Ceph's own exporter needs a manager, which the stand-in does not run.
    s3-metrics.py LISTEN_PORT RGW_PORT
"""

import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LISTEN_PORT, RGW_PORT = int(sys.argv[1]), int(sys.argv[2])
BODY = (
    b"# HELP s3_gateway_up 1 if the S3 gateway answers HTTP.\n"
    b"# TYPE s3_gateway_up gauge\n"
    b"s3_gateway_up 1\n"
)


def gateway_answers() -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{RGW_PORT}/", timeout=5).close()
    except urllib.error.HTTPError:
        return True  # an S3 error document is an answer
    except OSError:
        return False
    return True


class Metrics(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/metrics":
            self.send_error(404)
        elif not gateway_answers():
            self.send_error(503, "the S3 gateway does not answer")
        else:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: one line per scrape would drown the daemons' messages."""


ThreadingHTTPServer(("0.0.0.0", LISTEN_PORT), Metrics).serve_forever()  # noqa: S104
