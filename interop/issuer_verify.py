"""Verifies an sts-sidecar issuer token the way a relying party does, with PyJWT (nobody here
wrote it): the discovery document names the JWKS, PyJWKClient fetches it and picks the key by
kid, jwt.decode checks the signature, issuer and audience. Also checks that a token whose claims
were altered is refused.

    issuer_verify.py ISSUER_URL CA_FILE CERT_FILE KEY_FILE TOKEN_FILE SUBJECT

Gets a token as a curl loop would (mTLS with the instance certificate, an empty POST), writes it
to TOKEN_FILE, prints one JSON line: verifier, sub, kid, refused_forgery.
"""
import base64
import json
import ssl
import sys
import urllib.request

import jwt

issuer, ca, cert, key, token_file, subject = sys.argv[1:7]
trust = ssl.create_default_context(cafile=ca)
mtls = ssl.create_default_context(cafile=ca)
mtls.load_cert_chain(cert, key)
request = urllib.request.Request(issuer + "/token", data=b"", method="POST")
with urllib.request.urlopen(request, context=mtls, timeout=10) as r:
    token = r.read().decode()
with open(token_file, "w") as f:
    f.write(token)
with urllib.request.urlopen(issuer + "/.well-known/openid-configuration", context=trust, timeout=10) as r:
    discovery = json.load(r)
client = jwt.PyJWKClient(discovery["jwks_uri"], ssl_context=trust)
signing_key = client.get_signing_key_from_jwt(token)
claims = jwt.decode(token, signing_key.key, algorithms=discovery["id_token_signing_alg_values_supported"],
                    audience="sts.amazonaws.com", issuer=discovery["issuer"])
assert claims["sub"] == subject, claims

# The same signature over altered claims must not verify.
header, payload, signature = token.split(".")
altered = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
altered["sub"] = "someone:else:entirely"
forged = ".".join([header, base64.urlsafe_b64encode(json.dumps(altered).encode()).decode().rstrip("="), signature])
try:
    jwt.decode(forged, signing_key.key, algorithms=discovery["id_token_signing_alg_values_supported"],
               audience="sts.amazonaws.com", issuer=discovery["issuer"])
    refused = False
except jwt.InvalidSignatureError:
    refused = True
print(json.dumps({"verifier": f"PyJWT {jwt.__version__}", "sub": claims["sub"],
                  "kid": signing_key.key_id, "refused_forgery": refused}))
