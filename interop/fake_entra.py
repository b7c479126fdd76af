"""A fake of Microsoft Entra ID's token endpoint for workload identity federation, over HTTPS on
loopback (azure-identity refuses an http:// authority), that checks the federated credential as
Entra ID does and fails on purpose otherwise:

- GET /TENANT/v2.0/.well-known/openid-configuration: the tenant's endpoints.
- POST /TENANT/oauth2/v2.0/token: client_credentials with a jwt-bearer client_assertion, the
  app's client id; the assertion (the federated token) verified by discovery at its issuer (whose
  HTTPS CA the fake is given): issuer, subject and audience as the federated identity credential
  names them, not expired. Answers an access token.

GET /_issued/TOKEN tells the test whose assertion bought a token.

    python fake_entra.py ISSUER ISSUER_CA SUBJECT AUDIENCE TENANT CLIENT_ID OUT_DIR
    (writes OUT_DIR/url and OUT_DIR/ca.pem, then serves until killed)
"""

import datetime
import json
import os
import secrets
import ssl
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed(out_dir):
    """A CA and a certificate for 127.0.0.1 it signed; the CA's PEM for the client to trust."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fake Entra CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {name: os.path.join(out_dir, name) for name in ("ca.pem", "cert.pem", "key.pem")}
    with open(paths["ca.pem"], "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths["cert.pem"], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths["key.pem"], "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return paths


def main():
    issuer, issuer_ca, subject, audience, tenant, client_id, out_dir = sys.argv[1:]
    issued = {}

    def verify(assertion):
        config = requests.get(f"{issuer}/.well-known/openid-configuration", verify=issuer_ca, timeout=5).json()
        keys = requests.get(config["jwks_uri"], verify=issuer_ca, timeout=5).json()["keys"]
        kid = jwt.get_unverified_header(assertion).get("kid")
        key = next((k for k in keys if k.get("kid") == kid), None)
        if key is None:
            raise ValueError(f"no key {kid} at the issuer")
        claims = jwt.decode(assertion, jwt.PyJWK(key).key, algorithms=["ES256", "RS256"], audience=audience,
                            issuer=issuer, options={"require": ["exp", "sub"]})
        if claims["sub"] != subject:
            raise ValueError(f"subject {claims['sub']!r} is not the federated credential's")
        return claims

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status, doc):
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            base = f"https://127.0.0.1:{self.server.server_address[1]}/{tenant}"
            if self.path.startswith("/_issued/"):
                found = issued.get(self.path.removeprefix("/_issued/"))
                return self.answer(200 if found else 404, found or {})
            if self.path.split("?")[0] == f"/{tenant}/v2.0/.well-known/openid-configuration":
                return self.answer(200, {
                    "issuer": f"{base}/v2.0", "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "jwks_uri": f"{base}/discovery/v2.0/keys", "tenant_region_scope": "EU"})
            return self.answer(404, {"error": "not_found", "error_description": self.path})

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            form = dict(urllib.parse.parse_qsl(body))
            if self.path.split("?")[0] != f"/{tenant}/oauth2/v2.0/token":
                return self.answer(404, {"error": "not_found", "error_description": self.path})
            if form.get("client_id") != client_id:
                return self.answer(400, {"error": "unauthorized_client",
                                         "error_description": f"AADSTS700016: no application {form.get('client_id')}"})
            if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
                return self.answer(400, {"error": "invalid_request", "error_description": "client_assertion_type"})
            try:
                claims = verify(form.get("client_assertion", ""))
            except Exception as e:
                return self.answer(400, {"error": "invalid_client",
                                         "error_description": f"AADSTS70021: no matching federated identity record: {e}"})
            token = "entra-" + secrets.token_hex(8)
            issued[token] = {"sub": claims["sub"], "aud": claims["aud"], "scope": form.get("scope", "")}
            return self.answer(200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                                     "access_token": token})

    paths = self_signed(out_dir)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(paths["cert.pem"], paths["key.pem"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with open(os.path.join(out_dir, "url.tmp"), "w") as f:
        f.write(f"https://127.0.0.1:{server.server_address[1]}")
    os.replace(os.path.join(out_dir, "url.tmp"), os.path.join(out_dir, "url"))
    threading.Event().wait()


if __name__ == "__main__":
    main()
