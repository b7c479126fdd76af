#!/usr/bin/env python3
"""Checks docker-compose.yml without a Docker engine: `docker compose config` when the plugin
exists, otherwise a structural check with PyYAML (from .venv): every service has an image or a
build, every depends_on / network_mode / volume names something that exists, the sidecar runs
with the flags the README documents, and the Dockerfile stages it builds from exist. In both
cases: every command of the product image (the sidecar's, the issuer's, the health checks) is
checked against the binary as interop/check_readme.py checks the README's, and every /pki file
they name is one the dev PKI (examples/dev_upstreams, as the dev-upstreams target runs it)
really writes.

    python3 interop/check_compose.py [BINARY]     (default target/debug/sts-sidecar)"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

import check_readme

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPOSE = os.path.join(ROOT, "docker-compose.yml")


def pki_files(command):
    """The files examples/dev_upstreams writes to --out-dir when run with `command` (the
    token-service service's); it serves until stopped, so it is stopped once they are there."""
    dev = os.path.join(ROOT, "target", "debug", "examples", "dev_upstreams")
    if not os.path.exists(dev):
        subprocess.run(["cargo", "build", "--quiet", "--locked", "--features", "test-util",
                        "--example", "dev_upstreams"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory() as out:
        args, i = [], 0
        while i < len(command):
            # Its own folder, and loopback instead of the container's 0.0.0.0.
            if command[i] in ("--out-dir", "--env-file", "--token-service-listen"):
                i += 2
                continue
            args.append(command[i])
            i += 1
        env_file = os.path.join(out, "upstreams.env")
        proc = subprocess.Popen([dev, *args, "--out-dir", out, "--env-file", env_file,
                                 "--token-service-listen", "127.0.0.1:0"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not os.path.exists(env_file) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            return {f for f in os.listdir(out)}
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def check_commands(doc, binary):
    """The product image's commands against the binary, and /pki paths against the dev PKI."""
    services = doc.get("services") or {}
    problems = []
    checker = check_readme.Checker(check_readme.flags_of(binary))
    for name, svc in services.items():
        if svc.get("build") != ".":
            continue
        checker.command(f"{name} command", ["sts-sidecar", *svc.get("command", [])],
                        {k: str(v) for k, v in (svc.get("environment") or {}).items()})
        test = (svc.get("healthcheck") or {}).get("test") or []
        if test[:1] == ["CMD"]:
            checker.command(f"{name} healthcheck", test[1:])
    checker.run_all(binary)
    problems += checker.problems
    written = pki_files((services.get("token-service") or {}).get("command", []))
    for name, svc in services.items():
        words = [*map(str, svc.get("command") or []), *map(str, (svc.get("environment") or {}).values())]
        for word in words:
            if word.startswith("/pki/") and os.path.basename(word) not in written:
                problems.append(f"{name}: {word} is not a file the dev PKI writes ({', '.join(sorted(written))})")
    return problems


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "sts-sidecar"))
    import yaml  # installed in .venv with moto

    doc = yaml.safe_load(open(COMPOSE))
    problems = check_commands(doc, binary)
    if problems:
        print("docker-compose.yml: " + "\n  ".join(["problems:"] + problems), file=sys.stderr)
        sys.exit(1)
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        subprocess.run(["docker", "compose", "-f", COMPOSE, "config", "--quiet"], check=True)
        print("docker-compose.yml: docker compose config passed; its commands checked against the binary")
        return

    services = doc.get("services") or {}
    volumes = set((doc.get("volumes") or {}).keys())
    for name in ["moto", "token-service", "issuer", "sts-sidecar", "demo-client"]:
        if name not in services:
            problems.append(f"service {name} missing")
    for name, svc in services.items():
        if not ("image" in svc or "build" in svc):
            problems.append(f"{name}: neither image nor build")
        deps = svc.get("depends_on") or {}
        for dep in deps if isinstance(deps, (list, dict)) else []:
            if dep not in services:
                problems.append(f"{name}: depends_on unknown service {dep}")
        mode = svc.get("network_mode", "")
        if mode.startswith("service:") and mode.split(":", 1)[1] not in services:
            problems.append(f"{name}: network_mode names unknown service {mode}")
        for v in svc.get("volumes") or []:
            source = v.split(":", 1)[0]
            if not source.startswith(("/", ".")) and source not in volumes:
                problems.append(f"{name}: volume {source} not declared")
        if svc.get("build") == "." and not os.path.exists(os.path.join(ROOT, "Dockerfile")):
            problems.append(f"{name}: builds from . but there is no Dockerfile")
    cmd = " ".join(services.get("sts-sidecar", {}).get("command", []))
    for flag in ["serve", "--token-service-url", "--token-service-ca", "--role-arn", "--auth-token-file", "--sts-endpoint"]:
        if flag not in cmd:
            problems.append(f"sts-sidecar: command lacks {flag}")
    client_env = services.get("demo-client", {}).get("environment", {})
    if "AWS_CONTAINER_CREDENTIALS_FULL_URI" not in client_env:
        problems.append("demo-client: no AWS_CONTAINER_CREDENTIALS_FULL_URI")
    dockerfile = open(os.path.join(ROOT, "Dockerfile")).read()
    for needle in ["AS build", "--bin sts-sidecar", "--example dev_upstreams", "dev-token-service",
                   "AS dev-upstreams", "USER 65532:65532"]:
        if needle not in dockerfile:
            problems.append(f"Dockerfile lacks {needle!r}")
    stages = [line.split()[-1] for line in dockerfile.splitlines() if line.startswith("FROM ") and " AS " in line]
    for name, svc in services.items():
        build = svc.get("build")
        target = build.get("target") if isinstance(build, dict) else None
        if target and target not in stages:
            problems.append(f"{name}: builds target {target}, which the Dockerfile does not have")
        test = (svc.get("healthcheck") or {}).get("test") or []
        if test[:1] == ["CMD"] and target is None and build is not None and test[1] != "/usr/local/bin/sts-sidecar":
            problems.append(f"{name}: health check runs {test[1]}, which the product image does not have")
    # The product image is the last stage: only the sidecar, no dev token service.
    last = dockerfile[dockerfile.rindex("\nFROM "):]
    if "dev_upstreams" in last or "dev-token-service" in last:
        problems.append("Dockerfile: the product stage ships the dev token service")
    if problems:
        print("docker-compose.yml: " + "\n  ".join(["problems:"] + problems), file=sys.stderr)
        sys.exit(1)
    print(f"docker-compose.yml: {len(services)} services parsed and cross-checked, the product image's "
          "commands run against the binary, /pki paths found in the dev PKI (no compose plugin here; not run)")


if __name__ == "__main__":
    main()
