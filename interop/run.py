#!/usr/bin/env python3
"""sts-sidecar interop suite and local stack.

Real clients nobody here wrote get credentials from the real sts-sidecar binary. The binary takes
the flags a CF manifest would use. STS and the AWS API are played by the emulator moto; the
token service is the real `sts-sidecar issuer` (over TLS: the sidecar proves itself with a signed
assertion and its client certificate), whose tokens independent verifiers (PyJWT, jose) check by
discovery. One scenario runs against a fake of the existing CF Identity Token Service (mTLS only,
examples/dev_upstreams.rs), which must keep working.

    python3 interop/run.py test                  every client, token variant and scenario
    python3 interop/run.py test --client boto3 --scenario identity
    python3 interop/run.py stack                 the whole chain until Ctrl-C
    python3 interop/run.py stack --check         the chain, one SDK call, then stop

The first run creates .venv (pinned interop/requirements.txt) and interop/js/node_modules (from
package-lock.json); later runs reuse them while the pins are unchanged. Only loopback is used:
every client runs with an empty HOME, no AWS credentials of any other kind, and
AWS_EC2_METADATA_DISABLED=true.
"""

import argparse
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import toolchains

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".venv")
JS_DIR = os.path.join(ROOT, "interop", "js")
REQUIREMENTS = os.path.join(ROOT, "interop", "requirements.txt")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.path.join(TARGET, "debug")

ACCOUNT = "123456789012"
ORG, SPACE, APP = "demo-org", "dev", "movie-app"
ROLE_TEMPLATE = f"arn:aws:iam::{ACCOUNT}:role/cf-{{org}}-{{space}}"
EXPECTED_ARN = f"arn:aws:sts::{ACCOUNT}:assumed-role/cf-{ORG}-{SPACE}/{APP}-0"
REPORTS_ARN = f"arn:aws:sts::{ACCOUNT}:assumed-role/cf-{ORG}-{SPACE}-reports/{APP}-0"
# A second role next to the one --role-arn sets, served at /v1/credentials/reports.
SIDECAR_CONFIG = """
[[role]]
session_name = "{app}-{instance_index}"

[[role]]
alias = "reports"
arn = "arn:aws:iam::123456789012:role/cf-{org}-{space}-reports"
"""
TABLE = f"{ORG}-{SPACE}-movie"
TITLES = sorted(["Inception", "The Matrix", "Interstellar"])
CLIENT_TIMEOUT = 60


def log(message):
    print(f"==> {message}", file=sys.stderr, flush=True)


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run(cmd, **kwargs):
    subprocess.run(cmd, check=True, **kwargs)


# ---------------------------------------------------------------- installation (idempotent)

def ensure_python():
    marker = os.path.join(VENV, ".interop-requirements.sha256")
    want = sha256_file(REQUIREMENTS)
    if os.path.exists(marker) and open(marker).read().strip() == want:
        return
    log("installing Python packages into .venv (moto, boto3, awscli; pinned): about 75 s, once")
    if not os.path.exists(os.path.join(VENV, "bin", "python")):
        run([sys.executable, "-m", "venv", VENV])
    # One line per package, no progress bars: what is being done shows, the log stays short.
    run([os.path.join(VENV, "bin", "pip"), "install", "--progress-bar", "off",
         "--disable-pip-version-check", "-r", REQUIREMENTS])
    with open(marker, "w") as f:
        f.write(want)


def ensure_node():
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise SystemExit("interop: needs node and npm on PATH (the AWS SDK for JavaScript v3 client)")
    marker = os.path.join(JS_DIR, "node_modules", ".interop-lock.sha256")
    want = sha256_file(os.path.join(JS_DIR, "package-lock.json"))
    if os.path.exists(marker) and open(marker).read().strip() == want:
        return
    log("installing npm packages into interop/js/node_modules (npm ci)")
    run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS_DIR)
    with open(marker, "w") as f:
        f.write(want)


def build():
    log("building sts-sidecar, the dev token service and the Rust client (debug): about 4 "
        "minutes the first time on 2 cores, seconds after")
    started = time.monotonic()
    run(["cargo", "build", "--features", "test-util", "--bin", "sts-sidecar",
         "--example", "dev_upstreams", "--example", "interop_client"], cwd=ROOT)
    log(f"built in {time.monotonic() - started:.0f} s")


# ---------------------------------------------------------------- processes

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Processes this script started; stopped (by PID) on exit."""

    def __init__(self):
        self.procs = []

    def start(self, name, cmd, env=None, log_path=None):
        out = open(log_path, "wb") if log_path else subprocess.DEVNULL
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        proc.name, proc.log_path = name, log_path
        self.procs.append((name, proc))
        return proc

    def stop(self, proc, sig=signal.SIGINT):
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self):
        for _, proc in reversed(self.procs):
            self.stop(proc)


def log_tail(proc, lines=15):
    try:
        with open(proc.log_path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except (OSError, TypeError):
        return ""


def wait_until(what, check, timeout=30, proc=None, marker=None):
    """Waits for `check()`. With `proc`: fails at once, with the end of its log, if it exits,
    and trusts `check` only once `marker` is in its log (a line it writes after binding its
    ports), so that another process already on the port is never taken for ours."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"interop: {what} exited with status {proc.returncode}:\n{log_tail(proc)}")
        try:
            if (marker is None or marker in log_tail(proc, 1000)) and check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    tail = f":\n{log_tail(proc)}" if proc is not None else ""
    raise SystemExit(f"interop: {what} did not come up within {timeout}s{tail}")


SERVING = "sts-sidecar serving"
ISSUER_SERVING = "sts-sidecar issuer serving"


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def tcp_open(port):
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


class Stack:
    """moto, the dev token service and sts-sidecar, all on loopback."""

    def __init__(self, procs, work, listen=None, admin=None):
        self.procs, self.work = procs, work
        self.moto_port = free_port()
        self.issuer_port, self.issuer_admin = free_port(), f"127.0.0.1:{free_port()}"
        self.listen = listen or f"127.0.0.1:{free_port()}"
        self.admin = admin or f"127.0.0.1:{free_port()}"
        self.token_file = os.path.join(work, "sts-sidecar-token")

    def start(self):
        self.start_upstreams()
        self.sidecar = self.start_sidecar(self.listen, self.admin, self.upstreams["TOKEN_SERVICE_URL"], "sidecar.log")
        wait_until("sts-sidecar", lambda: http_ok(f"http://{self.admin}/ready"), proc=self.sidecar,
                   marker=SERVING)
        with open(self.token_file) as f:
            self.token = f.read()
        return self

    def start_upstreams(self):
        """moto, the PKI and the fake of the existing token service, and the issuer."""
        log(f"starting moto (STS and DynamoDB emulator) on 127.0.0.1:{self.moto_port}")
        moto = self.procs.start("moto", [os.path.join(VENV, "bin", "moto_server"), "-H", "127.0.0.1",
                                         "-p", str(self.moto_port)], log_path=os.path.join(self.work, "moto.log"))
        env_file = os.path.join(self.work, "upstreams.env")
        log("starting the dev token service (mTLS, Diego-shaped PKI)")
        upstreams = self.procs.start("dev_upstreams", [os.path.join(BIN, "examples", "dev_upstreams"), "--no-sts",
                                                       "--idp", "--roles-anywhere", "us-east-1",
                                                       "--env-file", env_file],
                                     log_path=os.path.join(self.work, "dev_upstreams.log"))
        wait_until("moto", lambda: tcp_open(self.moto_port), proc=moto, marker="Running on")
        wait_until("the dev token service", lambda: os.path.exists(env_file), proc=upstreams)
        self.upstreams = dict(line.split("=", 1) for line in open(env_file).read().splitlines() if "=" in line)
        # The fake of the existing service stays reachable for the legacy scenario; the issuer
        # is the token service of everything else.
        self.upstreams["LEGACY_TOKEN_SERVICE_URL"] = self.upstreams["TOKEN_SERVICE_URL"]
        self.upstreams["TOKEN_SERVICE_URL"] = self.start_issuer()
        return self

    def start_issuer(self):
        u = self.upstreams
        url = f"https://127.0.0.1:{self.issuer_port}"
        log(f"starting sts-sidecar issuer on {url} (admin {self.issuer_admin})")
        cmd = [os.path.join(BIN, "sts-sidecar"), "issuer", "--issuer-url", url,
               "--listen", f"127.0.0.1:{self.issuer_port}", "--admin-listen", self.issuer_admin,
               "--instance-identity-ca", u["ISSUER_CA"], "--signing-key", u["ISSUER_SIGNING_KEY"],
               "--tls-cert", u["ISSUER_TLS_CERT"], "--tls-key", u["ISSUER_TLS_KEY"],
               # Every sidecar of the suite (a hundred starts in a few minutes) presents the one
               # test instance identity: far more than the per-instance budget allows a real
               # instance (20 tokens, then one every 30 s).
               "--instance-burst", "100000", "--instance-refill-secs", "1",
               # The audiences the identity-token scenarios ask for (STS's first: the default).
               "--audience", ",".join(["sts.amazonaws.com", GCP_AUDIENCE, GCP_AUDIENCE_UNREGISTERED,
                                       AZURE_AUDIENCE, "api://other"])]
        self.issuer = self.procs.start("issuer", cmd, env={"PATH": os.environ.get("PATH", ""),
                                                           "STS_SIDECAR_LOG": "info"},
                                       log_path=os.path.join(self.work, "issuer.log"))
        wait_until("sts-sidecar issuer", lambda: http_ok(f"http://{self.issuer_admin}/ready"),
                   proc=self.issuer, marker=ISSUER_SERVING)
        return url

    def sidecar_env(self):
        return {
            "PATH": os.environ.get("PATH", ""),
            "CF_INSTANCE_CERT": self.upstreams["CF_INSTANCE_CERT"],
            "CF_INSTANCE_KEY": self.upstreams["CF_INSTANCE_KEY"],
            "CF_INSTANCE_INDEX": "0",
            "VCAP_APPLICATION": json.dumps({
                "application_name": APP, "application_id": "app-guid", "organization_name": ORG,
                "organization_id": "org-guid", "space_name": SPACE, "space_id": "space-guid"}),
            "STS_SIDECAR_LOG": "info",
        }

    def upstream_flags(self, token_service_url=None):
        """The flags a CF manifest would pass (shared by serve and exec)."""
        return ["--token-service-url", token_service_url or self.upstreams["TOKEN_SERVICE_URL"],
                "--token-service-ca", self.upstreams["TOKEN_SERVICE_CA"],
                "--role-arn", ROLE_TEMPLATE,
                "--sts-region", "us-east-1",
                "--sts-endpoint", f"http://127.0.0.1:{self.moto_port}"]

    def start_sidecar(self, listen, admin, token_service_url, log_name):
        log(f"starting sts-sidecar on {listen} (admin {admin})")
        config = os.path.join(self.work, "sts-sidecar.toml")
        with open(config, "w") as f:
            f.write(SIDECAR_CONFIG)
        cmd = [os.path.join(BIN, "sts-sidecar"), "serve", "--config", config, "--imds",
               "--listen", listen, "--admin-listen", admin,
               "--auth-token-file", self.token_file] + self.upstream_flags(token_service_url)
        return self.procs.start("sts-sidecar", cmd, env=self.sidecar_env(),
                                log_path=os.path.join(self.work, log_name))

    def client_env(self, variant, token=None, listen=None, path="/v1/credentials"):
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.path.join(self.work, "home"),
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://{listen or self.listen}{path}",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.moto_port}",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "NODE_NO_WARNINGS": "1",
        }
        os.makedirs(env["HOME"], exist_ok=True)
        if variant == "imds":
            # Only the EC2 metadata service: no container variables, IMDS pointed at the sidecar.
            del env["AWS_CONTAINER_CREDENTIALS_FULL_URI"], env["AWS_EC2_METADATA_DISABLED"]
            env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = f"http://{self.listen}"
            return env
        if variant == "process":
            # Only ~/.aws/config's credential_process; the helper asks the running sidecar.
            del env["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
            config = os.path.join(self.work, "aws-config")
            # Written whole and renamed: clients run side by side and may read it meanwhile.
            with open(config + f".{threading.get_ident()}", "w") as f:
                f.write("[default]\ncredential_process = env "
                        f"AWS_CONTAINER_CREDENTIALS_FULL_URI=http://{self.listen}/v1/credentials "
                        f"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE={self.token_file} "
                        f"{os.path.join(BIN, 'sts-sidecar')} credential-process\n")
            os.replace(config + f".{threading.get_ident()}", config)
            env["AWS_CONFIG_FILE"] = config
            return env
        if variant == "exec":
            # exec sets the container variables for its child itself.
            del env["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
            env.update(self.sidecar_env())
            env["STS_SIDECAR_LOG"] = "warn"
            return env
        if variant == "file":
            env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = self.token_file
        else:
            env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = token if token is not None else self.token
        return env


# ---------------------------------------------------------------- clients

def run_client_cmd(cmd, env):
    started = time.monotonic()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=CLIENT_TIMEOUT, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return None, f"hung: no answer within {CLIENT_TIMEOUT}s", time.monotonic() - started
    elapsed = time.monotonic() - started
    if p.returncode != 0:
        return None, (p.stderr.strip().splitlines() or ["(no output)"])[-1], elapsed
    return p.stdout, "", elapsed


def sdk_client(argv):
    def call(scenario, env, prefix=()):
        table = env.get("INTEROP_TABLE", TABLE)
        cmd = list(prefix) + argv + [scenario] + ([table] if scenario == "movies" else [])
        out, err, elapsed = run_client_cmd(cmd, env)
        return (json.loads(out.strip().splitlines()[-1]) if out is not None else None), err, elapsed
    return call


def aws_cli(scenario, env, prefix=()):
    aws = list(prefix) + [os.path.join(VENV, "bin", "aws"), "--output", "json"]
    table = env.get("INTEROP_TABLE", TABLE)
    total = 0.0
    if scenario == "identity":
        out, err, elapsed = run_client_cmd(aws + ["sts", "get-caller-identity"], env)
        return ({"arn": json.loads(out)["Arn"]} if out is not None else None), err, elapsed
    steps = [
        (["dynamodb", "delete-table", "--table-name", table], True),
        (["dynamodb", "create-table", "--table-name", table,
          "--key-schema", "AttributeName=title,KeyType=HASH",
          "--attribute-definitions", "AttributeName=title,AttributeType=S",
          "--billing-mode", "PAY_PER_REQUEST"], False),
    ] + [(["dynamodb", "put-item", "--table-name", table, "--item", json.dumps({"title": {"S": t}})], False)
         for t in ["Inception", "The Matrix", "Interstellar"]]
    for args, may_fail in steps:
        out, err, elapsed = run_client_cmd(aws + args, env)
        total += elapsed
        if out is None and not (may_fail and "ResourceNotFoundException" in err):
            return None, err, total
    out, err, elapsed = run_client_cmd(aws + ["dynamodb", "scan", "--table-name", table], env)
    total += elapsed
    if out is None:
        return None, err, total
    return {"titles": sorted(i["title"]["S"] for i in json.loads(out)["Items"])}, "", total


def java_v2(scenario, env, prefix=()):
    return sdk_client(toolchains.java_client(os.path.join(VENV, "bin", "pip")))(scenario, env, prefix)


def ruby(scenario, env, prefix=()):
    argv, extra = toolchains.ruby_client()
    return sdk_client(argv)(scenario, {**env, **extra}, prefix)


CLIENTS = {
    "boto3": sdk_client([os.path.join(VENV, "bin", "python"), os.path.join(ROOT, "interop", "boto3_client.py")]),
    "awscli": aws_cli,
    "js-v3": sdk_client(["node", os.path.join(JS_DIR, "client.mjs")]),
    "js-v2": sdk_client(["node", os.path.join(JS_DIR, "client-v2.cjs")]),
    "crt": sdk_client([os.path.join(VENV, "bin", "python"), os.path.join(ROOT, "interop", "crt_client.py")]),
    "rust": sdk_client([os.path.join(BIN, "examples", "interop_client")]),
    **{name: sdk_client([toolchains.go_binary(name)]) for name in toolchains.GO_CLIENTS},
    "java-v2": java_v2,
    "ruby": ruby,
}
# Debian packages the Ruby SDK's core (with its STS client) but no DynamoDB client.
ONLY_IDENTITY = {"ruby"}


def client_versions():
    versions = {}
    py = os.path.join(VENV, "bin", "python")
    out = subprocess.run([py, "-c", "import boto3, botocore, moto; from importlib.metadata import version; "
                          "print(boto3.__version__, botocore.__version__, moto.__version__, version('awscrt'))"],
                         capture_output=True, text=True).stdout.split()
    if len(out) == 4:
        versions.update({"boto3": out[0], "botocore": out[1], "moto": out[2], "awscrt": out[3]})
    cli = subprocess.run([os.path.join(VENV, "bin", "aws"), "--version"], capture_output=True, text=True)
    versions["awscli"] = (cli.stdout or cli.stderr).split()[0].split("/")[-1] if (cli.stdout or cli.stderr) else "?"
    lock = json.load(open(os.path.join(JS_DIR, "package-lock.json")))
    for name in ["@aws-sdk/client-sts", "@aws-sdk/client-dynamodb", "@aws-sdk/credential-provider-node", "aws-sdk"]:
        entry = lock.get("packages", {}).get(f"node_modules/{name}")
        if entry:
            versions[name] = entry["version"]
    versions["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    versions["java-v2"] = toolchains.JAVA_SDK_VERSION
    versions["ruby"] = toolchains.RUBY_SDK_VERSION
    for name, (release, _, sdk) in toolchains.GO_CLIENTS.items():
        versions[name] = f"{sdk}, Go {toolchains.GO_VERSION[release]} (Debian {release})"
    cargo_lock = open(os.path.join(ROOT, "Cargo.lock")).read()
    for crate in ["aws-config", "aws-sdk-sts", "aws-sdk-dynamodb"]:
        m = re.search(rf'name = "{crate}"\nversion = "([^"]+)"', cargo_lock)
        if m:
            versions[crate] = m.group(1)
    return versions


# ---------------------------------------------------------------- the suite

# Other ways in (issue 5): (clients, client env variant, expected ARN, exec-wrapped).
WAYS_IN = {
    "imds": (["boto3", "awscli", "js-v3", "rust", "go-v2-1.17", "go-v1-1.44", "go-v2-1.30", "go-v1-1.49", "crt",
              "java-v2", "ruby", "js-v2"],
             "imds", EXPECTED_ARN, False),
    "credential-process": (["awscli", "boto3"], "process", EXPECTED_ARN, False),
    "exec": (["boto3", "js-v3"], "exec", EXPECTED_ARN, True),
    "named-role": (["boto3", "awscli", "js-v3", "js-v2", "crt", "rust", "go-v2-1.30", "go-v1-1.49", "java-v2",
                    "ruby"],
                   "env", REPORTS_ARN, False),
}

# Every identity source (issue 10): (sidecar flags, sidecar env, role name, session name,
# clients, exec-wrapped). The fake identity provider (dev_upstreams --idp) plays the GCP
# metadata server, the OIDC provider and GitHub's job token endpoint on loopback; moto plays STS.
def source_cases(stack):
    u = stack.upstreams
    role = lambda name: f"arn:aws:iam::{ACCOUNT}:role/{name}"
    return {
        "src-token-file": (["--token-file", u["IDP_TOKEN_FILE"], "--role-arn", role("k8s-app"),
                            "--role-session-name", "pod-0"], {}, "k8s-app", "pod-0",
                           ["boto3", "awscli"], False),
        # No source flags at all: the variables the EKS pod identity webhook sets.
        # Role chaining: the token file's role first, then AssumeRole into the deployer role
        # with its credentials (moto implements AssumeRole); the SDK sees the second role.
        "src-chained": (["--token-file", u["IDP_TOKEN_FILE"], "--via-role-arn", role("k8s-app"),
                         "--role-arn", role("prod-deployer"), "--role-session-name", "chained",
                         "--external-id", "ext-4f2a", "--duration", "7200"], {},
                        "prod-deployer", "chained", ["boto3", "awscli", "js-v3"], False),
        "src-irsa": ([], {"AWS_WEB_IDENTITY_TOKEN_FILE": u["IDP_TOKEN_FILE"],
                          "AWS_ROLE_ARN": role("irsa-app"), "AWS_ROLE_SESSION_NAME": "irsa-pod"},
                     "irsa-app", "irsa-pod", ["boto3", "js-v3"], False),
        "src-gcp-metadata": (["--source", "gcp-metadata", "--role-arn", role("cloud-run-app"),
                              "--role-session-name", "cloud-run"], {"GCE_METADATA_HOST": u["IDP_HOST"]},
                             "cloud-run-app", "cloud-run", ["boto3"], False),
        "src-oidc": (["--oidc-token-url", u["IDP_TOKEN_URL"], "--oidc-client-id", u["OIDC_CLIENT_ID"],
                      "--oidc-client-secret-file", u["OIDC_CLIENT_SECRET_FILE"],
                      "--role-arn", role("m2m-app"), "--role-session-name", "m2m"], {},
                     "m2m-app", "m2m", ["boto3", "awscli"], False),
        "src-oidc-issuer": (["--oidc-issuer", u["IDP_URL"], "--oidc-client-id", u["OIDC_CLIENT_ID"],
                             "--role-arn", role("m2m-app"), "--role-session-name", "m2m"],
                            {"STS_SIDECAR_OIDC_CLIENT_SECRET": open(u["OIDC_CLIENT_SECRET_FILE"]).read()},
                            "m2m-app", "m2m", ["boto3"], False),
        "src-github-actions": (["--source", "github-actions", "--role-arn", role("deploy"),
                                "--role-session-name", "gha"],
                               {"ACTIONS_ID_TOKEN_REQUEST_URL": u["GITHUB_REQUEST_URL"],
                                "ACTIONS_ID_TOKEN_REQUEST_TOKEN": u["GITHUB_REQUEST_TOKEN"]},
                               "deploy", "gha", ["boto3", "awscli"], True),
        "src-command": (["--token-command", f"cat {u['IDP_TOKEN_FILE']}", "--role-arn", role("cmd-app"),
                         "--role-session-name", "cmd"], {}, "cmd-app", "cmd", ["boto3"], False),
    }


RA_ROLE = f"arn:aws:iam::{ACCOUNT}:role/cf-ra-app"
RA_FLAGS = ["--trust-anchor-arn", f"arn:aws:rolesanywhere:us-east-1:{ACCOUNT}:trust-anchor/0a1b2c3d-1111",
            "--profile-arn", f"arn:aws:rolesanywhere:us-east-1:{ACCOUNT}:profile/4e5f6a7b-2222",
            "--role-arn", RA_ROLE]
# A Roles Anywhere role (the default) beside a web-identity role from the token service.
RA_MIXED_CONFIG = """
[[role]]
trust_anchor_arn = "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/0a1b2c3d-1111"
profile_arn = "arn:aws:rolesanywhere:us-east-1:123456789012:profile/4e5f6a7b-2222"
arn = "arn:aws:iam::123456789012:role/cf-ra-app"

[[role]]
alias = "web"
arn = "arn:aws:iam::123456789012:role/cf-{org}-{space}"
session_name = "{app}-{instance_index}"
source = "token-service"
"""
RA_SCENARIOS = ["ra-movies", "ra-beside-web-identity", "ra-crosscheck"]


def run_roles_anywhere(stack, procs, clients, scenarios, results):
    u = stack.upstreams
    for scenario in scenarios:
        if scenario == "ra-crosscheck":
            # The fake verified our signer; an independent signer must pass it too.
            endpoint = u["RA_TLS_ENDPOINT"].removeprefix("https://")
            cmd = [os.path.join(VENV, "bin", "python"), os.path.join(ROOT, "interop", "ra_crosscheck.py"),
                   endpoint, u["TOKEN_SERVICE_CA"], u["CF_INSTANCE_CERT"], u["CF_INSTANCE_KEY"], "us-east-1"]
            out, err, elapsed = run_client_cmd(cmd, {"PATH": os.environ.get("PATH", ""), "HOME": stack.work})
            got = json.loads(out) if out else {}
            ok = got.get("access_key_id", "").startswith("ASIAFAKERA")
            results.append(("pyra", "signer", scenario, ok, elapsed,
                             f"{got.get('signer')}: fake accepted, {got.get('access_key_id')}" if ok else err or str(got)))
            continue
        listen, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        cmd = [os.path.join(BIN, "sts-sidecar"), "serve", "--listen", listen, "--admin-listen", admin,
               "--auth-token-file", stack.token_file, "--rolesanywhere-endpoint", u["RA_ENDPOINT"],
               "--sts-region", "us-east-1", "--sts-endpoint", f"http://127.0.0.1:{stack.moto_port}"]
        if scenario == "ra-movies":
            cmd += RA_FLAGS
        else:
            config = os.path.join(stack.work, "ra-mixed.toml")
            with open(config, "w") as f:
                f.write(f'[token_service]\nurl = "{u["TOKEN_SERVICE_URL"]}"\nca_file = "{u["TOKEN_SERVICE_CA"]}"\n'
                        + RA_MIXED_CONFIG)
            cmd += ["--config", config]
        proc = procs.start(scenario, cmd, env=stack.sidecar_env(), log_path=os.path.join(stack.work, f"{scenario}.log"))
        try:
            wait_until(f"sts-sidecar ({scenario})", lambda: http_ok(f"http://{admin}/ready"), proc=proc,
                       marker=SERVING)
        except SystemExit as e:
            results.append(("-", "-", scenario, False, 0.0, f"{e}; see {scenario}.log"))
            procs.stop(proc)
            continue
        with urllib.request.urlopen(f"http://{admin}/status", timeout=2) as r:
            status = json.load(r)
        served_by_fake = status["roles"][0]["access_key_id"].startswith("ASIAFAKERA")
        names = [n for n in clients if n in (["boto3", "awscli"] if scenario == "ra-movies" else ["boto3"])]
        for name in names:
            got, err, elapsed = CLIENTS[name]("movies", stack.client_env("file", listen=listen))
            ok = got == {"titles": TITLES} and served_by_fake
            results.append((name, "file", scenario, ok, elapsed,
                            ", ".join(got["titles"]) + " (DynamoDB with the fake's credentials)" if ok
                            else (err or f"got {got}; served by the fake: {served_by_fake}")))
        if scenario == "ra-beside-web-identity":
            want = {"arn": EXPECTED_ARN}
            for name in names:
                got, err, elapsed = CLIENTS[name]("identity", stack.client_env("file", listen=listen,
                                                                               path="/v1/credentials/web"))
                results.append((name, "file", scenario + "/web", got == want, elapsed,
                                got["arn"] if got == want else (err or f"got {got}, want {want}")))
        procs.stop(proc, signal.SIGTERM)


# The token service (issue 18): the sidecar against the fake of the existing service (mTLS only),
# and the issuer's tokens verified by discovery by verifiers nobody here wrote.
ISSUER_SCENARIOS = ["legacy-token-service", "issuer-pyjwt", "issuer-jose"]


def run_issuer(stack, procs, clients, scenarios, results):
    u = stack.upstreams
    if "legacy-token-service" in scenarios and "boto3" in clients:
        listen, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        proc = stack.start_sidecar(listen, admin, u["LEGACY_TOKEN_SERVICE_URL"], "legacy.log")
        try:
            wait_until("sts-sidecar (legacy token service)", lambda: http_ok(f"http://{admin}/ready"),
                       proc=proc, marker=SERVING)
            got, err, elapsed = CLIENTS["boto3"]("identity", stack.client_env("file", listen=listen))
            ok = got == {"arn": EXPECTED_ARN}
            results.append(("boto3", "file", "legacy-token-service", ok, elapsed,
                            got["arn"] + " (the existing service's mTLS only)" if ok else (err or f"got {got}")))
        except SystemExit as e:
            results.append(("-", "-", "legacy-token-service", False, 0.0, f"{e}; see legacy.log"))
        procs.stop(proc, signal.SIGTERM)
    verifiers = [s for s in scenarios if s in ("issuer-pyjwt", "issuer-jose")]
    if not verifiers:
        return
    # A token as a curl loop would get it (mTLS, empty POST), kept in a file for the verifiers.
    token_file = os.path.join(stack.work, "issuer-token")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": stack.work,
           "NODE_EXTRA_CA_CERTS": u["TOKEN_SERVICE_CA"], "NODE_NO_WARNINGS": "1"}
    args = [u["TOKEN_SERVICE_URL"], u["TOKEN_SERVICE_CA"], u["CF_INSTANCE_CERT"], u["CF_INSTANCE_KEY"],
            token_file, u["CF_SUBJECT"]]
    py = [os.path.join(VENV, "bin", "python"), os.path.join(ROOT, "interop", "issuer_verify.py")]
    js = ["node", os.path.join(JS_DIR, "issuer-verify.mjs")]
    for scenario in verifiers:
        cmd = (py if scenario == "issuer-pyjwt" else js) + args
        out, err, elapsed = run_client_cmd(cmd, env)
        got = json.loads(out.strip().splitlines()[-1]) if out else {}
        ok = got.get("sub") == u["CF_SUBJECT"] and got.get("refused_forgery") is True
        results.append((scenario.split("-")[1], "jwks", scenario, ok, elapsed,
                        f"{got.get('verifier')}: verified by discovery (kid {got.get('kid', '')[:12]}...), "
                        f"refused one with altered claims" if ok else (err or str(got))))


SOURCE_SCENARIOS = ["src-token-file", "src-chained", "src-irsa", "src-gcp-metadata", "src-oidc", "src-oidc-issuer",
                    "src-github-actions", "src-command"]


def run_sources(stack, procs, clients, scenarios, results):
    cases = source_cases(stack)
    for scenario in scenarios:
        flags, extra_env, role_name, session, names, wrapped = cases[scenario]
        want = {"arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/{session}"}
        sts_flags = ["--sts-region", "us-east-1", "--sts-endpoint", f"http://127.0.0.1:{stack.moto_port}"]
        env = {"PATH": os.environ.get("PATH", ""), "STS_SIDECAR_LOG": "info", **extra_env}
        names = [n for n in clients if n in names]
        if wrapped:
            # As a CI step would run it: sts-sidecar exec -- the client.
            for name in names:
                client_env = stack.client_env("exec")
                for k in ["CF_INSTANCE_CERT", "CF_INSTANCE_KEY", "VCAP_APPLICATION"]:
                    client_env.pop(k, None)
                client_env.update(extra_env)
                prefix = [os.path.join(BIN, "sts-sidecar"), "exec"] + flags + sts_flags + ["--"]
                got, err, elapsed = CLIENTS[name]("identity", client_env, prefix)
                ok = got == want
                results.append((name, "exec", scenario, ok, elapsed, got["arn"] if ok else (err or f"got {got}, want {want}")))
            continue
        listen, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        cmd = [os.path.join(BIN, "sts-sidecar"), "serve", "--listen", listen, "--admin-listen", admin,
               "--auth-token-file", stack.token_file] + flags + sts_flags
        log_name = f"{scenario}.log"
        proc = procs.start(scenario, cmd, env=env, log_path=os.path.join(stack.work, log_name))
        try:
            wait_until(f"sts-sidecar ({scenario})", lambda: http_ok(f"http://{admin}/ready"), proc=proc,
                       marker=SERVING)
        except SystemExit as e:
            results.append(("-", "-", scenario, False, 0.0, f"{e}; see {log_name}"))
            procs.stop(proc)
            continue
        for name in names:
            got, err, elapsed = CLIENTS[name]("identity", stack.client_env("file", listen=listen))
            ok = got == want
            results.append((name, "file", scenario, ok, elapsed, got["arn"] if ok else (err or f"got {got}, want {want}")))
        procs.stop(proc, signal.SIGTERM)


# One identity, other clouds (issue 25): the real google-auth library through the sidecar's
# /v1/identity-token and `sts-sidecar gcp-credentials`, against a fake of Google's STS and IAM
# Credentials that verifies the subject token by discovery at the issuer.
CLOUD_SCENARIOS = ["gcp-google-auth", "azure-identity"]
AZURE_AUDIENCE = "api://AzureADTokenExchange"
AZURE_TENANT = "11111111-2222-3333-4444-555555555555"
AZURE_CLIENT = "66666666-7777-8888-9999-000000000000"
GCP_PROJECT_NUMBER = "123456789012"
GCP_SERVICE_ACCOUNT = "movie-app@my-project.iam.gserviceaccount.com"


def gcp_audience(provider):
    return (f"//iam.googleapis.com/projects/{GCP_PROJECT_NUMBER}/locations/global/"
            f"workloadIdentityPools/cf-apps/providers/{provider}")


GCP_AUDIENCE = gcp_audience("sts-sidecar")
# On the sidecar's and the issuer's lists, but not registered at Google: Google refuses it.
GCP_AUDIENCE_UNREGISTERED = gcp_audience("unregistered")


def run_clouds(stack, procs, scenarios, results):
    if "gcp-google-auth" in scenarios:
        run_gcp(stack, procs, results)
    if "azure-identity" in scenarios:
        run_azure(stack, procs, results)


def run_azure(stack, procs, results):
    """azure-identity's WorkloadIdentityCredential reads the federated token file the sidecar
    keeps (--azure-token-file) and sends it to a fake Entra ID that verifies it by discovery; a
    sidecar keeping a token for another audience is refused."""
    u = stack.upstreams
    out_dir = os.path.join(stack.work, "fake-entra")
    os.makedirs(out_dir, exist_ok=True)
    fake = procs.start("fake-entra", [os.path.join(VENV, "bin", "python"),
                                      os.path.join(ROOT, "interop", "fake_entra.py"),
                                      u["TOKEN_SERVICE_URL"], u["TOKEN_SERVICE_CA"], u["CF_SUBJECT"],
                                      AZURE_AUDIENCE, AZURE_TENANT, AZURE_CLIENT, out_dir],
                       env={"PATH": os.environ.get("PATH", "")},
                       log_path=os.path.join(stack.work, "fake-entra.log"))
    url_file = os.path.join(out_dir, "url")
    wait_until("the fake Entra ID", lambda: os.path.exists(url_file), proc=fake)
    entra = open(url_file).read().strip()
    client = [os.path.join(VENV, "bin", "python"), os.path.join(ROOT, "interop", "azure_client.py")]
    for name, audience, ok in [
        ("azure-identity", AZURE_AUDIENCE, lambda got: got.get("token", "").startswith("entra-")),
        ("azure-identity other audience", "api://other",
         lambda got: "AADSTS70021" in got.get("error", "")),
    ]:
        token_file = os.path.join(stack.work, f"azure-token-{secrets.token_hex(4)}")
        listen, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        cmd = [os.path.join(BIN, "sts-sidecar"), "serve", "--listen", listen, "--admin-listen", admin,
               "--auth-token-file", stack.token_file, "--azure-token-file", token_file,
               "--azure-audience", audience] + stack.upstream_flags()
        proc = procs.start("azure", cmd, env=stack.sidecar_env(), log_path=os.path.join(stack.work, "azure.log"))
        try:
            wait_until("the federated token file", lambda: os.path.exists(token_file), proc=proc, marker=SERVING)
        except SystemExit as e:
            results.append(("azure-identity", "file", "azure-identity", False, 0.0, f"{name}: {e}; see azure.log"))
            procs.stop(proc)
            continue
        env = {"PATH": os.environ.get("PATH", ""), "HOME": stack.work,
               "AZURE_TENANT_ID": AZURE_TENANT, "AZURE_CLIENT_ID": AZURE_CLIENT,
               "AZURE_FEDERATED_TOKEN_FILE": token_file, "AZURE_AUTHORITY_HOST": entra,
               "REQUESTS_CA_BUNDLE": os.path.join(out_dir, "ca.pem")}
        out, err, elapsed = run_client_cmd(client, env)
        got = json.loads(out.strip().splitlines()[-1]) if out else {"error": err}
        passed = ok(got) and not got.get("blocked")
        detail = (f"{got.get('library', '')}: an access token for the federated credential "
                  f"(issuer, subject, audience checked)" if "token" in got else got.get("error", ""))
        results.append(("azure-identity", "file", "azure-identity", passed, elapsed,
                        (name + ": " + detail)[:200] if passed else f"{name}: {got}"))
        procs.stop(proc, signal.SIGTERM)
    procs.stop(fake)


def run_gcp(stack, procs, results):
    u = stack.upstreams
    # The fake runs with the venv's Python (PyJWT, requests), as its own process.
    url_file = os.path.join(stack.work, "fake-google.url")
    fake = procs.start("fake-google", [os.path.join(VENV, "bin", "python"),
                                       os.path.join(ROOT, "interop", "fake_google.py"),
                                       u["TOKEN_SERVICE_URL"], u["TOKEN_SERVICE_CA"], url_file, GCP_AUDIENCE],
                       env={"PATH": os.environ.get("PATH", "")},
                       log_path=os.path.join(stack.work, "fake-google.log"))
    wait_until("the fake Google", lambda: os.path.exists(url_file), proc=fake)
    google_url = open(url_file).read().strip()

    def impersonated(token):
        try:
            with urllib.request.urlopen(f"{google_url}/_impersonated/{token}", timeout=5) as r:
                return json.loads(r.read())
        except Exception:
            return {}

    listen, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    cmd = [os.path.join(BIN, "sts-sidecar"), "serve", "--listen", listen, "--admin-listen", admin,
           "--auth-token-file", stack.token_file,
           "--token-audience", f"{GCP_AUDIENCE},{GCP_AUDIENCE_UNREGISTERED}"] + stack.upstream_flags()
    proc = procs.start("gcp", cmd, env=stack.sidecar_env(), log_path=os.path.join(stack.work, "gcp.log"))
    try:
        wait_until("sts-sidecar (gcp)", lambda: http_ok(f"http://{admin}/ready"), proc=proc, marker=SERVING)
    except SystemExit as e:
        results.append(("-", "-", "gcp-google-auth", False, 0.0, f"{e}; see gcp.log"))
        procs.stop(proc)
        procs.stop(fake)
        return

    def credentials(provider):
        path = os.path.join(stack.work, f"gcp-{provider}.json")
        subprocess.run([os.path.join(BIN, "sts-sidecar"), "gcp-credentials",
                        "--project-number", GCP_PROJECT_NUMBER, "--pool", "cf-apps", "--provider", provider,
                        "--service-account", GCP_SERVICE_ACCOUNT, "--listen", listen,
                        "--auth-token-file", stack.token_file, "--out", path,
                        "--google-token-url", f"{google_url}/v1/token",
                        "--google-iam-credentials-url", google_url],
                       check=True, capture_output=True, env={"PATH": os.environ.get("PATH", "")})
        return path

    env = {"PATH": os.environ.get("PATH", ""), "HOME": stack.work}
    client = [os.path.join(VENV, "bin", "python"), os.path.join(ROOT, "interop", "gcp_client.py")]
    cases = [
        ("google-auth", "sts-sidecar", lambda got: impersonated(got.get("token", "none"))
         == {"email": GCP_SERVICE_ACCOUNT, "sub": u["CF_SUBJECT"]}),
        # The sidecar serves it, Google refuses it: the library says so.
        ("google-auth unregistered provider", "unregistered",
         lambda got: "unknown provider" in got.get("error", "")),
        # Not on the sidecar's allow-list: 403 before anything is asked of the issuer.
        ("google-auth audience not allowed", "elsewhere",
         lambda got: "403" in got.get("error", "") or "AudienceNotAllowed" in got.get("error", "")),
    ]
    for name, provider, ok in cases:
        out, err, elapsed = run_client_cmd(client + [credentials(provider)], env)
        got = json.loads(out.strip().splitlines()[-1]) if out else {"error": err}
        passed = ok(got) and not got.get("blocked")
        detail = (f"{got.get('library', '')}: a service account token for {GCP_SERVICE_ACCOUNT}, "
                  f"the subject token verified by discovery" if "token" in got else got.get("error", ""))
        results.append((name.split()[0], "gcp", "gcp-google-auth", passed, elapsed,
                        (name + ": " + detail)[:200] if passed else f"{name}: {got}"))
    procs.stop(proc, signal.SIGTERM)
    procs.stop(fake)


NEGATIVE = {
    "wrong-token": r"403|InvalidAuthorization",
    "not-ready": r"503|CredentialsUnavailable|not available",
    "stopped": r"(?i)refused|could not connect|ECONNREFUSED",
}

# What an SDK does differently, checked as such (the README's SDK table says the same).
# These releases do not read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: with only the file set they
# send no Authorization header, and the sidecar answers 401 MissingAuthorization.
NO_TOKEN_FILE = {"go-v2-1.17", "go-v1-1.44"}
NO_TOKEN_FILE_ERROR = r"401|MissingAuthorization"
# The JavaScript v2 and Java v2 container providers give up after 1 s, before the sidecar's
# 1.5 s cold-start wait ends with a 503: a sidecar that is not ready shows as a timeout. Java
# reports the error body's message, not the status.
NEGATIVE_FOR = {
    ("js-v2", "not-ready"): r"timed out after 1000ms",
    ("java-v2", "not-ready"): r"Read timed out",
    ("java-v2", "wrong-token"): r"Authorization header does not match the authorization token",
    # Ruby names neither the status nor the body, only a non-200 answer; its read also times out.
    ("ruby", "wrong-token"): r"Non200Response",
    ("ruby", "not-ready"): r"ReadTimeout",
}


def client_checks(stack, name, positive, ways_in, negatives, envs):
    """The checks of one client: the positive scenarios with both token ways, the other ways in
    and the negative scenarios; each a function returning one result row."""
    checks = []

    def positive_check(variant, scenario):
        env = stack.client_env(variant)
        env["INTEROP_TABLE"] = f"{TABLE}-{name}"
        got, err, elapsed = CLIENTS[name](scenario, env)
        if variant == "file" and name in NO_TOKEN_FILE:
            ok = got is None and re.search(NO_TOKEN_FILE_ERROR, err) is not None
            detail = f"reads no token file, as documented: {err}" if ok else (err or f"unexpectedly got {got}")
            return (name, variant, scenario, ok, elapsed, detail)
        want = {"arn": EXPECTED_ARN} if scenario == "identity" else {"titles": TITLES}
        ok = got == want
        detail = (got.get("arn") or ", ".join(got.get("titles", []))) if ok else (err or f"got {got}, want {want}")
        return (name, variant, scenario, ok, elapsed, detail)

    def way_in_check(scenario):
        _, variant, want_arn, wrapped = WAYS_IN[scenario]
        env = stack.client_env(variant, path="/v1/credentials/reports") if scenario == "named-role" \
            else stack.client_env(variant)
        prefix = [os.path.join(BIN, "sts-sidecar"), "exec"] + stack.upstream_flags() + ["--"] if wrapped else []
        got, err, elapsed = CLIENTS[name]("identity", env, prefix)
        ok = got == {"arn": want_arn}
        detail = got["arn"] if ok else (err or f"got {got}, want {want_arn}")
        return (name, variant, scenario, ok, elapsed, detail)

    def negative_check(scenario):
        got, err, elapsed = CLIENTS[name]("identity", envs[scenario])
        expected = NEGATIVE_FOR.get((name, scenario), NEGATIVE[scenario])
        ok = got is None and re.search(expected, err) is not None and elapsed < CLIENT_TIMEOUT
        detail = err if got is None else f"unexpectedly succeeded: {got}"
        return (name, "env", scenario, ok, elapsed, detail)

    for variant in ["env", "file"]:
        for scenario in positive:
            if scenario == "identity" or name not in ONLY_IDENTITY:
                checks.append(lambda v=variant, s=scenario: positive_check(v, s))
    for scenario in ways_in:
        if name in WAYS_IN[scenario][0]:
            checks.append(lambda s=scenario: way_in_check(s))
    for scenario in negatives:
        checks.append(lambda s=scenario: negative_check(s))
    return checks


def run_side_by_side(groups, workers=3):
    """Runs each group's checks in order, several groups at once; the rows in group order."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(lambda g=g: [check() for check in g]) for g in groups]
        return [row for f in futures for row in f.result()]


def suite(args):
    ensure_python()
    ensure_node()
    build()
    procs = Processes()
    work = tempfile.mkdtemp(prefix="sts-sidecar-interop-")
    results = []
    started = time.monotonic()
    try:
        stack = Stack(procs, work).start()
        clients = args.client or list(CLIENTS)
        toolchains.go_clients(clients)
        if "java-v2" in clients:
            toolchains.java_client(os.path.join(VENV, "bin", "pip"))
        if "ruby" in clients:
            toolchains.ruby_client()
        scenarios = args.scenario or (["identity", "movies"] + list(WAYS_IN) + SOURCE_SCENARIOS + RA_SCENARIOS
                                      + ISSUER_SCENARIOS + CLOUD_SCENARIOS + list(NEGATIVE))
        for name in clients:
            if name not in CLIENTS:
                raise SystemExit(f"interop: unknown client {name!r} (known: {', '.join(CLIENTS)})")
        for scenario in scenarios:
            if scenario not in ["identity", "movies", *WAYS_IN, *SOURCE_SCENARIOS, *RA_SCENARIOS, *ISSUER_SCENARIOS,
                                *CLOUD_SCENARIOS, *NEGATIVE]:
                raise SystemExit(f"interop: unknown scenario {scenario!r}")
        positive = [s for s in scenarios if s in ("identity", "movies")]
        negatives = [s for s in scenarios if s in NEGATIVE]
        envs = {}
        dead = None
        if negatives:
            not_ready_listen, not_ready_admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
            # A sidecar whose token service never answers: it never becomes ready.
            dead = stack.start_sidecar(not_ready_listen, not_ready_admin, f"https://127.0.0.1:{free_port()}", "not-ready.log")
            wait_until("the not-ready sidecar", lambda: tcp_open(int(not_ready_listen.rsplit(":", 1)[1])),
                       proc=dead, marker=SERVING)
            stopped_listen = f"127.0.0.1:{free_port()}"
            envs = {
                "wrong-token": stack.client_env("env", token="wrong-" + secrets.token_urlsafe(16)),
                "not-ready": stack.client_env("env", listen=not_ready_listen),
                "stopped": stack.client_env("env", listen=stopped_listen),
            }
        # One list of checks per client; the clients run side by side (each on its own table),
        # every client's checks one after the other.
        groups = [client_checks(stack, name, positive, [s for s in scenarios if s in WAYS_IN], negatives, envs)
                  for name in clients]
        results.extend(run_side_by_side(groups))
        if dead is not None:
            procs.stop(dead)
        run_sources(stack, procs, clients, [s for s in scenarios if s in SOURCE_SCENARIOS], results)
        run_roles_anywhere(stack, procs, clients, [s for s in scenarios if s in RA_SCENARIOS], results)
        run_issuer(stack, procs, clients, [s for s in scenarios if s in ISSUER_SCENARIOS], results)
        run_clouds(stack, procs, [s for s in scenarios if s in CLOUD_SCENARIOS], results)
    finally:
        procs.stop_all()
        if args.keep:
            log(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"{'':4} {'client':10} {'via':7} {'scenario':18} {'time':>6}  detail")
    for name, variant, scenario, ok, elapsed, detail in results:
        print(f"{'PASS' if ok else 'FAIL':4} {name:10} {variant:7} {scenario:18} {elapsed:5.1f}s  {detail[:140]}")
    print()
    for k, v in client_versions().items():
        print(f"  {k} {v}")
    passed = sum(1 for r in results if r[3])
    failed = len(results) - passed
    print(f"\nsuite time {time.monotonic() - started:.1f}s")
    print(f"interop: {passed} passed, {failed} failed")
    return 1 if failed or not results else 0


def stack_mode(args):
    ensure_python()
    build()
    procs = Processes()
    work = tempfile.mkdtemp(prefix="sts-sidecar-stack-")
    try:
        # Free ports unless given: the well-known 61679/61680 may be taken on a busy machine.
        stack = Stack(procs, work, listen=os.environ.get("LISTEN"),
                      admin=os.environ.get("ADMIN_LISTEN")).start()
        print(f"""
The whole chain runs locally: sts-sidecar issuer (the token service, {stack.upstreams["TOKEN_SERVICE_URL"]})
-> sts-sidecar -> moto (STS, DynamoDB).
Your app would export:

  export AWS_CONTAINER_CREDENTIALS_FULL_URI=http://{stack.listen}/v1/credentials
  export AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE={stack.token_file}
  export AWS_ENDPOINT_URL=http://127.0.0.1:{stack.moto_port}   # moto; not needed against real AWS
  export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1

Admin: http://{stack.admin}/status  http://{stack.admin}/metrics
""", flush=True)
        got, err, _ = CLIENTS["boto3"]("identity", stack.client_env("file"))
        if got != {"arn": EXPECTED_ARN}:
            print(f"boto3 sts.get_caller_identity() failed: {err or got}", file=sys.stderr)
            return 1
        print(f"boto3 sts.get_caller_identity() through sts-sidecar: {got['arn']}", flush=True)
        if args.check:
            return 0
        print("\nRunning; Ctrl-C stops everything this script started.", flush=True)
        try:
            while stack.sidecar.poll() is None:
                time.sleep(0.5)
            print(f"sts-sidecar exited ({stack.sidecar.returncode}); see {work}/sidecar.log", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 0
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("test", help="run the interop suite")
    t.add_argument("--client", action="append", help=f"only this client ({', '.join(CLIENTS)}); repeatable")
    t.add_argument("--scenario", action="append",
                   help="only this scenario (identity, movies, imds, credential-process, exec, named-role, "
                        f"{', '.join(SOURCE_SCENARIOS)}, {', '.join(RA_SCENARIOS)}, {', '.join(ISSUER_SCENARIOS)}, "
                        "wrong-token, not-ready, "
                        "stopped); repeatable")
    t.add_argument("--keep", action="store_true", help="keep the work directory with the logs")
    s = sub.add_parser("stack", help="run the local stack")
    s.add_argument("--check", action="store_true", help="stop after the SDK call")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(suite(args) if args.mode == "test" else stack_mode(args))


if __name__ == "__main__":
    main()
