"""The real google-auth library for Python, loading the credential configuration that
`sts-sidecar gcp-credentials` wrote (the identity-pool credentials GOOGLE_APPLICATION_CREDENTIALS
gives an app) and refreshing it: it GETs the subject token from the sidecar, exchanges it at the
token_url (Google's STS, here a fake) and impersonates the service account. Prints {"token": ...}
or {"error": ...}.

identity_pool.Credentials.from_file reads the file as google.auth.default() does, without the
project lookup that load_credentials_from_file makes at cloudresourcemanager.googleapis.com (a
call off this machine, which the tests must never make).

    python gcp_client.py CREDENTIALS.json
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loopback_only  # noqa: E402  (before any client library)

import google.auth
import google.auth.transport.requests
from google.auth import identity_pool

try:
    creds = identity_pool.Credentials.from_file(
        sys.argv[1], scopes=["https://www.googleapis.com/auth/cloud-platform"])
    creds.refresh(google.auth.transport.requests.Request())
    print(json.dumps({"token": creds.token, "library": f"google-auth {google.auth.__version__}",
                      "blocked": loopback_only.BLOCKED}))
except Exception as e:  # the test compares the message
    print(json.dumps({"error": f"{type(e).__name__}: {e}", "blocked": loopback_only.BLOCKED}))
