"""Stand-in server *process* for the start-up robustness tests (no vLLM): answers GET /health with 200.

    python fake_server.py --port P [--delay S] [--exit-code C]

--delay S: sleep S seconds before listening (a server slow to start); --exit-code C: exit with C before listening
(a server that dies during start-up).
"""

import argparse
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


class Health(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()


parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--delay", type=float, default=0.0)
parser.add_argument("--exit-code", type=int)
args = parser.parse_args()
if args.exit_code is not None:
    print(f"fake server: failing on purpose with exit code {args.exit_code}", flush=True)
    sys.exit(args.exit_code)
time.sleep(args.delay)
HTTPServer(("127.0.0.1", args.port), Health).serve_forever()
