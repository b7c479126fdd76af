"""Cross-checks the fake IAM Roles Anywhere with a signer nobody here wrote: the PyPI package
iam-rolesanywhere-session signs a CreateSession for the instance certificate, and the fake
(which verifies signature, chain and date) must accept it and issue credentials.

    python ra_crosscheck.py ENDPOINT_HOST:PORT CA_FILE CERT_FILE KEY_FILE REGION
        -> {"access_key_id": "...", "signer": "iam-rolesanywhere-session <version>"}
"""

import json
import sys
from importlib.metadata import version

from iam_rolesanywhere_session import IAMRolesAnywhereSession


def main():
    endpoint, ca, cert_file, key_file, region = sys.argv[1:6]
    with open(cert_file, "rb") as f:
        pem = f.read()
    marker = b"-----END CERTIFICATE-----"
    leaf, _, rest = pem.partition(marker)
    leaf += marker + b"\n"
    with open(key_file, "rb") as f:
        key = f.read()
    session = IAMRolesAnywhereSession(
        profile_arn=f"arn:aws:rolesanywhere:{region}:123456789012:profile/4e5f6a7b-2222",
        role_arn="arn:aws:iam::123456789012:role/cf-ra-app",
        trust_anchor_arn=f"arn:aws:rolesanywhere:{region}:123456789012:trust-anchor/0a1b2c3d-1111",
        certificate=leaf,
        certificate_chain=rest.strip() or None,
        private_key=key,
        region=region,
        endpoint=endpoint,
        verify=ca,
    )
    try:
        creds = session.get_refreshable_credentials().get_frozen_credentials()
    except Exception as e:  # the library's own words, one line
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"access_key_id": creds.access_key,
                      "signer": f"iam-rolesanywhere-session {version('iam-rolesanywhere-session')}"}))


if __name__ == "__main__":
    main()
