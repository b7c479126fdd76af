"""A fake of Google's STS token exchange and IAM Credentials impersonation, on loopback, that
checks what Google checks of a workload identity federation request (and fails on purpose
otherwise):

- POST /v1/token: grant_type token-exchange, subject_token_type jwt, the pool provider's
  audience; the subject token's signature verified by discovery at its issuer (whose HTTPS CA
  the fake is given), its `iss` the provider's registered issuer, its `aud` the provider's
  audience, not expired. Answers a federated access token.
- POST /v1/projects/-/serviceAccounts/EMAIL:generateAccessToken with that token as Bearer:
  answers the service account's token (`accessToken`, `expireTime`).

Every refusal names its reason in Google's error shape. GET /_impersonated/TOKEN tells the test
which service account a token it answered is for, and whose subject token bought it.

    python fake_google.py ISSUER CA_FILE PORT_FILE PROVIDER...   (serves until killed)
"""

import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import requests


class FakeGoogle:
    def __init__(self, issuer, ca_file, providers):
        """`providers`: the audiences (//iam.googleapis.com/...) registered for `issuer`."""
        self.issuer, self.ca_file, self.providers = issuer, ca_file, set(providers)
        self.seen, self.federated, self.impersonated = [], {}, {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                token = self.path.removeprefix("/_impersonated/")
                found = fake.impersonated.get(token)
                data = json.dumps({"email": found[0], "sub": found[1].get("sub")} if found else {}).encode()
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                status, answer = fake.handle(self.path, self.headers, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self):
        self.server.shutdown()

    def verify(self, token, audience):
        config = requests.get(f"{self.issuer}/.well-known/openid-configuration", verify=self.ca_file,
                              timeout=5).json()
        keys = requests.get(config["jwks_uri"], verify=self.ca_file, timeout=5).json()["keys"]
        kid = jwt.get_unverified_header(token).get("kid")
        key = next((k for k in keys if k.get("kid") == kid), None)
        if key is None:
            raise ValueError(f"no key {kid} in the issuer's JWKS")
        return jwt.decode(token, jwt.PyJWK(key).key, algorithms=["ES256", "RS256"], audience=audience,
                          issuer=self.issuer, options={"require": ["exp", "iat", "sub"]})

    def handle(self, path, headers, body):
        form = dict(urllib.parse.parse_qsl(body)) if "x-www-form-urlencoded" in (headers.get("Content-Type") or "") \
            else json.loads(body or "{}")
        self.seen.append((path, form))
        if path == "/v1/token":
            if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange":
                return 400, {"error": "invalid_request", "error_description": "unsupported grant_type"}
            if form.get("subject_token_type") != "urn:ietf:params:oauth:token-type:jwt":
                return 400, {"error": "invalid_request", "error_description": "subject_token_type"}
            audience = form.get("audience")
            if audience not in self.providers:
                return 400, {"error": "invalid_target", "error_description": f"unknown provider {audience}"}
            try:
                claims = self.verify(form.get("subject_token", ""), audience)
            except Exception as e:
                return 400, {"error": "invalid_grant", "error_description": f"subject token refused: {e}"}
            token = "federated-" + secrets.token_hex(8)
            self.federated[token] = claims
            return 200, {"access_token": token, "issued_token_type":
                         "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer",
                         "expires_in": 3600}
        if path.startswith("/v1/projects/-/serviceAccounts/") and path.endswith(":generateAccessToken"):
            bearer = (headers.get("Authorization") or "").removeprefix("Bearer ")
            if bearer not in self.federated:
                return 401, {"error": {"code": 401, "message": "not a federated token", "status": "UNAUTHENTICATED"}}
            email = path.split("/serviceAccounts/")[1].split(":")[0]
            token = "sa-" + secrets.token_hex(8)
            self.impersonated[token] = (email, self.federated[bearer])
            expire = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
            return 200, {"accessToken": token, "expireTime": expire}
        return 404, {"error": {"code": 404, "message": f"no {path}", "status": "NOT_FOUND"}}


if __name__ == "__main__":
    import os
    import sys

    issuer, ca_file, port_file, *providers = sys.argv[1:]
    fake = FakeGoogle(issuer, ca_file, providers)
    with open(port_file + ".tmp", "w") as f:
        f.write(fake.url)
    os.replace(port_file + ".tmp", port_file)
    threading.Event().wait()
