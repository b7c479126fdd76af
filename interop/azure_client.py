"""The real azure-identity library for Python: WorkloadIdentityCredential, configured only by the
variables Azure's workload identity sets (AZURE_TENANT_ID, AZURE_CLIENT_ID,
AZURE_FEDERATED_TOKEN_FILE, AZURE_AUTHORITY_HOST), asks for a token: it reads the federated token
from the file the sidecar keeps and sends it to the authority (here a fake Entra ID) as its
client assertion. Prints {"token": ...} or {"error": ...}.

    python azure_client.py
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loopback_only  # noqa: E402  (before any client library)

try:
    import azure.identity
    from azure.identity import WorkloadIdentityCredential

    token = WorkloadIdentityCredential().get_token("https://vault.azure.net/.default")
    print(json.dumps({"token": token.token, "library": f"azure-identity {azure.identity.__version__}",
                      "blocked": loopback_only.BLOCKED}))
except Exception as e:  # the test compares the message
    print(json.dumps({"error": f"{type(e).__name__}: {e}"[:600], "blocked": loopback_only.BLOCKED}))
