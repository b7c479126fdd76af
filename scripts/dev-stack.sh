#!/usr/bin/env bash
# Runs the whole chain on this machine: fake CF Identity Token Service (mTLS) and fake STS,
# sts-sidecar started with the flags a CF manifest would use, and a call through the Rust AWS
# SDK's container credentials provider. Prints the environment your own app would export.
#
#   scripts/dev-stack.sh           run until Ctrl-C
#   scripts/dev-stack.sh --check   run the SDK call, then stop (exit 0 only if it worked)
#
# Ports: LISTEN (default 127.0.0.1:61679) and ADMIN_LISTEN (default 127.0.0.1:61680).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-run}
listen=${LISTEN:-127.0.0.1:61679}
admin=${ADMIN_LISTEN:-127.0.0.1:61680}

echo "==> building (debug)" >&2
cargo build --quiet --features test-util --bin sts-sidecar --example dev_upstreams --example aws_config_probe

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

target/debug/examples/dev_upstreams --env-file "$work/upstreams.env" >/dev/null &
pids+=($!)
for _ in $(seq 100); do [ -f "$work/upstreams.env" ] && break; sleep 0.1; done
[ -f "$work/upstreams.env" ] || { echo "dev_upstreams did not start" >&2; exit 1; }
# shellcheck disable=SC1091
. "$work/upstreams.env"

token=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
echo "==> starting sts-sidecar on $listen (admin $admin)" >&2
AWS_CONTAINER_AUTHORIZATION_TOKEN="$token" CF_INSTANCE_CERT="$CF_INSTANCE_CERT" CF_INSTANCE_KEY="$CF_INSTANCE_KEY" \
  target/debug/sts-sidecar serve \
    --listen "$listen" --admin-listen "$admin" \
    --token-service-url "$TOKEN_SERVICE_URL" --token-service-ca "$TOKEN_SERVICE_CA" \
    --role-arn "arn:aws:iam::123456789012:role/cf-demo-org-dev" --role-session-name "demo-app-0" \
    --sts-region us-east-1 --sts-endpoint "$STS_ENDPOINT" &
pids+=($!)

ready=0
for _ in $(seq 100); do
  if python3 - "$admin" <<'PY' 2>/dev/null; then ready=1; break; fi
import sys, urllib.request
urllib.request.urlopen(f"http://{sys.argv[1]}/ready", timeout=1)
PY
  sleep 0.1
done
[ "$ready" = 1 ] || { echo "sts-sidecar did not become ready" >&2; exit 1; }

cat <<EOT

Your app would export:
  export AWS_CONTAINER_CREDENTIALS_FULL_URI=http://$listen/v1/credentials
  export AWS_CONTAINER_AUTHORIZATION_TOKEN=$token

==> the Rust AWS SDK's container credentials provider, with only those two variables:
EOT
env -i PATH="$PATH" HOME="$work" \
  AWS_CONTAINER_CREDENTIALS_FULL_URI="http://$listen/v1/credentials" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN="$token" \
  target/debug/examples/aws_config_probe
echo "==> status: http://$admin/status" >&2

if [ "$mode" = "--check" ]; then
  echo "dev stack check passed" >&2
  exit 0
fi
echo "Running; Ctrl-C stops everything this script started." >&2
wait "${pids[1]}"
