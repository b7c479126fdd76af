#!/usr/bin/env python3
"""The local stack on a busy machine: with ADMIN_LISTEN taken by a process that answers /ready
with 200 (as a stale sidecar would), `scripts/dev-stack.sh --check` must not take that process
for its own sidecar: it must exit 1 with the sidecar's own bind error, and no traceback.

    python3 interop/check_busy_stack.py
"""

import http.server
import os
import subprocess
import sys
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Impostor(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        body = b'{"ready":true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Impostor)
    taken = f"127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        out = subprocess.run([os.path.join(ROOT, "scripts", "dev-stack.sh"), "--check"],
                             env=dict(os.environ, ADMIN_LISTEN=taken), capture_output=True, text=True,
                             timeout=300)
    finally:
        server.shutdown()
    text = out.stdout + out.stderr
    problems = []
    if out.returncode != 1:
        problems.append(f"exit status {out.returncode}, expected 1")
    if f"cannot listen on {taken}" not in text:
        problems.append(f"the sidecar's bind error for {taken} is not shown")
    if "Traceback" in text:
        problems.append("a Python traceback")
    if "get_caller_identity() through sts-sidecar" in text:
        problems.append("it took the impostor for its sidecar")
    if problems:
        print("busy-port stack check FAILED: " + "; ".join(problems) + "\n" + text[-3000:], file=sys.stderr)
        return 1
    print(f"busy-port stack check passed: exit 1 with the sidecar's own error for {taken}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
