"""Toolchains and SDKs for the interop clients that do not come from PyPI or npm.

They come from Debian's archive, through apt-get's own client, into one cache folder outside the
clone ($STS_SIDECAR_INTEROP_CACHE, default ~/.cache/sts-sidecar/interop, as pip and npm keep
theirs, so that a fresh clone on the same machine fetches nothing): a private apt state per
Debian release (its own package lists, so a fresh
machine needs no `apt-get update` of the system's), `apt-get download` of pinned packages, and
`dpkg-deb -x` into a folder per release. Nothing is installed into the system, and a second run
reuses what the first fetched.

Two Debian releases, because they carry different SDK generations: bookworm (the machine's own
release: Go SDK v2 1.17, v1 1.44, read the token variable only) and trixie (v2 1.30, v1 1.49,
read the token file too). The Go SDKs are built in GOPATH mode against Debian's source packages
(GO111MODULE=off, GOPROXY=off): no module download.
"""

import hashlib
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("STS_SIDECAR_INTEROP_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
    "sts-sidecar", "interop")
# Of the SDKs' service packages only these are built (the rest, most of the 1 GB, is removed).
KEEP_SERVICES = {"sts", "sso", "ssooidc", "dynamodb", "internal"}

# Debian release -> packages (pinned where the version is what the suite proves).
PACKAGES = {
    "bookworm": [
        "golang-1.19-go=1.19.8-2", "golang-1.19-src=1.19.8-2",
        "golang-github-aws-aws-sdk-go-v2-dev=1.17.1-3", "golang-github-aws-aws-sdk-go-dev=1.44.133-1",
        "golang-github-aws-smithy-go-dev", "golang-github-jmespath-go-jmespath-dev",
        "golang-golang-x-net-dev", "golang-github-pkg-errors-dev",
    ],
    "trixie": [
        "golang-1.24-go", "golang-1.24-src",
        "golang-github-aws-aws-sdk-go-v2-dev=1.30.3-1", "golang-github-aws-aws-sdk-go-dev=1.49.0-2",
        "golang-github-aws-smithy-go-dev=1.20.3-1", "golang-github-jmespath-go-jmespath-dev",
        "golang-golang-x-net-dev", "golang-golang-x-text-dev",
    ],
}
GO_VERSION = {"bookworm": "1.19", "trixie": "1.24"}

# Client name -> (Debian release, SDK source folder under interop/go, SDK version proven).
GO_CLIENTS = {
    "go-v2-1.17": ("bookworm", "v2", "aws-sdk-go-v2 1.17.1"),
    "go-v1-1.44": ("bookworm", "v1", "aws-sdk-go 1.44.133"),
    "go-v2-1.30": ("trixie", "v2", "aws-sdk-go-v2 1.30.3"),
    "go-v1-1.49": ("trixie", "v1", "aws-sdk-go 1.49.0"),
}


def log(message):
    print(f"==> {message}", file=sys.stderr, flush=True)


def _digest(*parts):
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _apt(release):
    """apt-get options for a private state of `release` under the cache."""
    state = os.path.join(CACHE, "apt", release)
    os.makedirs(os.path.join(state, "lists", "partial"), exist_ok=True)
    os.makedirs(os.path.join(state, "archives", "partial"), exist_ok=True)
    sources = os.path.join(state, "sources.list")
    with open(sources, "w") as f:
        f.write(f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
                f"http://deb.debian.org/debian {release} main\n")
    return ["-o", f"Dir::State::Lists={state}/lists", "-o", f"Dir::Cache={state}",
            "-o", f"Dir::Cache::archives={state}/archives", "-o", f"Dir::Etc::SourceList={sources}",
            "-o", "Dir::Etc::SourceParts=/nonexistent", "-o", "Dir::State::status=/dev/null",
            "-o", "APT::Architecture=amd64", "-o", "APT::Sandbox::User=root"]


def debian_root(release):
    """The extracted packages of `release` (fetched on first use); the folder."""
    root = os.path.join(CACHE, f"root-{release}")
    marker = os.path.join(root, ".packages.sha256")
    want = _digest(*PACKAGES[release])
    if os.path.exists(marker) and open(marker).read().strip() == want:
        return root
    if subprocess.run(["sh", "-c", "command -v apt-get && command -v dpkg-deb"],
                      capture_output=True).returncode != 0:
        raise SystemExit("interop: needs apt-get and dpkg-deb (Debian) to fetch the Go toolchains and SDKs")
    log(f"fetching Debian {release} packages into {root} "
        f"({', '.join(p.split('=')[0] for p in PACKAGES[release])})")
    opts = _apt(release)
    subprocess.run(["apt-get", *opts, "-qq", "update"], check=True)
    debs = os.path.join(CACHE, "debs", release)
    os.makedirs(debs, exist_ok=True)
    for name in os.listdir(debs):
        os.remove(os.path.join(debs, name))
    subprocess.run(["apt-get", *opts, "-qq", "download", *PACKAGES[release]], check=True, cwd=debs)
    subprocess.run(["rm", "-rf", root], check=True)
    os.makedirs(root)
    for name in sorted(os.listdir(debs)):
        subprocess.run(["dpkg-deb", "-x", os.path.join(debs, name), root], check=True)
    for sdk in ["aws-sdk-go-v2", "aws-sdk-go"]:
        services = os.path.join(root, "usr", "share", "gocode", "src", "github.com", "aws", sdk, "service")
        for service in os.listdir(services) if os.path.isdir(services) else []:
            if service not in KEEP_SERVICES:
                subprocess.run(["rm", "-rf", os.path.join(services, service)], check=True)
    subprocess.run(["rm", "-rf", debs], check=True)
    with open(marker, "w") as f:
        f.write(want)
    return root


def go_env(release):
    root = debian_root(release)
    goroot = os.path.join(root, "usr", "lib", f"go-{GO_VERSION[release]}")
    return {
        "PATH": os.path.join(goroot, "bin") + os.pathsep + os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/root"),
        "GOROOT": goroot,
        "GOPATH": os.path.join(root, "usr", "share", "gocode"),
        "GO111MODULE": "off",
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "",
        "CGO_ENABLED": "0",
        "GOCACHE": os.path.join(CACHE, f"go-build-{release}"),
    }


def go_binary(name):
    return os.path.join(CACHE, "bin", name)


def go_clients(names):
    """Builds the Go clients among `names` (once per source change); name -> binary."""
    built = {}
    for name, (release, sdk, _) in GO_CLIENTS.items():
        if name not in names:
            continue
        source = os.path.join(ROOT, "interop", "go", sdk, "main.go")
        binary = go_binary(name)
        marker = binary + ".sha256"
        want = _digest(open(source).read(), *PACKAGES[release])
        if not (os.path.exists(marker) and open(marker).read().strip() == want and os.path.exists(binary)):
            log(f"building the Go client {name} (Go {GO_VERSION[release]}, GOPATH mode)")
            os.makedirs(os.path.dirname(binary), exist_ok=True)
            subprocess.run(["go", "build", "-o", binary, source], check=True, env=go_env(release), cwd=ROOT)
            with open(marker, "w") as f:
                f.write(want)
        built[name] = binary
    return built
