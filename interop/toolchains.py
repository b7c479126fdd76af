"""Toolchains and SDKs for the interop clients that do not come from PyPI or npm.

They come from Debian's archive, through apt-get's own client, into one cache folder outside the
clone ($INTEROP_CACHE, default ~/.cache/sts-sidecar/interop, as pip and npm keep
theirs, so that a fresh clone on the same machine fetches nothing): a private apt state per
Debian release (its own package lists, so a fresh
machine needs no `apt-get update` of the system's), `apt-get download` of pinned packages, and
`dpkg-deb -x` into a folder per release. Nothing is installed into the system, and a second run
reuses what the first fetched.

The AWS SDK for Java v2 has no Debian package: it comes as the shaded copy (packages under
smfs.shaded.software.amazon.awssdk) inside the PyPI wheel sagemaker-feature-store-pyspark,
fetched with pip into the same cache; only the jar is kept.

Two Debian releases, because they carry different SDK generations: bookworm (the machine's own
release: Go SDK v2 1.17, v1 1.44, read the token variable only) and trixie (v2 1.30, v1 1.49,
read the token file too). The Go SDKs are built in GOPATH mode against Debian's source packages
(GO111MODULE=off, GOPROXY=off): no module download.
"""

import functools
import hashlib
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("INTEROP_CACHE") or os.path.join(
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
        # SLF4J for the Java SDK (its jar does not bundle it); the no-op binding keeps it quiet.
        "libslf4j-java=1.7.32-1",
        # Ruby 3.1 for trixie's aws-sdk-core (bookworm's 3.168 reads only the relative URI).
        "ruby3.1=3.1.2-7+deb12u1", "libruby3.1=3.1.2-7+deb12u1", "ruby-rubygems", "rubygems-integration",
    ],
    "trixie": [
        "golang-1.24-go", "golang-1.24-src",
        "golang-github-aws-aws-sdk-go-v2-dev=1.30.3-1", "golang-github-aws-aws-sdk-go-dev=1.49.0-2",
        "golang-github-aws-smithy-go-dev=1.20.3-1", "golang-github-jmespath-go-jmespath-dev",
        "golang-golang-x-net-dev", "golang-golang-x-text-dev",
        "ruby-aws-sdk-core=3.212.0-1", "ruby-aws-partitions", "ruby-aws-sigv4", "ruby-aws-eventstream",
        "ruby-jmespath",
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
    """The extracted packages of `release` (fetched on first use); the folder. Named after the
    package list, so that checkouts with different pins share the cache without undoing each
    other's work."""
    want = _digest(*PACKAGES[release])
    root = os.path.join(CACHE, f"root-{release}-{want[:12]}")
    marker = os.path.join(root, ".complete")
    if os.path.exists(marker):
        return root
    if subprocess.run(["sh", "-c", "command -v apt-get && command -v dpkg-deb"],
                      capture_output=True).returncode != 0:
        raise SystemExit("interop: needs apt-get and dpkg-deb (Debian) to fetch the Go toolchains and SDKs")
    log(f"fetching Debian {release} packages into {root} "
        f"({', '.join(p.split('=')[0] for p in PACKAGES[release])})")
    opts = _apt(release)
    subprocess.run(["apt-get", *opts, "-qq", "update"], check=True)
    debs = os.path.join(CACHE, "debs", f"{release}-{want[:12]}")
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
    open(marker, "w").close()
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
        "GOCACHE": os.path.join(root, ".go-build"),
    }


def go_binary(name):
    release, sdk, _ = GO_CLIENTS[name]
    source = os.path.join(ROOT, "interop", "go", sdk, "main.go")
    digest = _digest(open(source).read(), *PACKAGES[release])
    return os.path.join(CACHE, "bin", f"{name}-{digest[:12]}")


def go_clients(names):
    """Builds the Go clients among `names` (once per source change); name -> binary."""
    built = {}
    for name, (release, sdk, _) in GO_CLIENTS.items():
        if name not in names:
            continue
        source = os.path.join(ROOT, "interop", "go", sdk, "main.go")
        binary = go_binary(name)
        if not os.path.exists(binary):
            log(f"building the Go client {name} (Go {GO_VERSION[release]}, GOPATH mode)")
            os.makedirs(os.path.dirname(binary), exist_ok=True)
            subprocess.run(["go", "build", "-o", binary + ".partial", source], check=True,
                           env=go_env(release), cwd=ROOT)
            os.replace(binary + ".partial", binary)
        built[name] = binary
    return built


# The PyPI wheel that carries a shaded AWS SDK for Java v2, and the jar in it (built for Spark
# 3.5; every jar in the wheel has the same SDK).
JAVA_WHEEL = "sagemaker-feature-store-pyspark==2.2.2"
JAVA_JAR = "feature_store_pyspark/jars/sagemaker-feature-store-spark-sdk-3.5.jar"
JAVA_SDK_VERSION = "aws-sdk-java-v2 2.55.9 (shaded, from PyPI sagemaker-feature-store-pyspark 2.2.2)"


@functools.cache
def java_client(pip):
    """The Java client's command line (SDK fetched and client compiled on first use; worked out
    once per run, since every Java check asks for it)."""
    import zipfile

    for tool in ["java", "javac"]:
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode != 0:
            raise SystemExit(f"interop: needs {tool} (a JDK, 17 or later) for the AWS SDK for Java v2 client")
    folder = os.path.join(CACHE, "java")
    jar = os.path.join(folder, "aws-sdk-java-v2-shaded.jar")
    marker = jar + ".source"
    if not (os.path.exists(jar) and os.path.exists(marker) and open(marker).read().strip() == JAVA_WHEEL):
        log(f"fetching the AWS SDK for Java v2 ({JAVA_WHEEL} from PyPI, about 360 MB; only its jar is kept)")
        wheels = os.path.join(folder, "wheel")
        subprocess.run(["rm", "-rf", wheels], check=True)
        subprocess.run([pip, "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                        JAVA_WHEEL, "-d", wheels], check=True)
        (wheel,) = [os.path.join(wheels, n) for n in os.listdir(wheels) if n.endswith(".whl")]
        with zipfile.ZipFile(wheel) as z, open(jar + ".partial", "wb") as out:
            out.write(z.read(JAVA_JAR))
        os.replace(jar + ".partial", jar)
        subprocess.run(["rm", "-rf", wheels], check=True)
        with open(marker, "w") as f:
            f.write(JAVA_WHEEL)
    java_lib = os.path.join(debian_root("bookworm"), "usr", "share", "java")
    classpath = os.pathsep.join([jar, os.path.join(java_lib, "slf4j-api.jar"),
                                 os.path.join(java_lib, "slf4j-nop.jar")])
    source = os.path.join(ROOT, "interop", "java", "JavaV2Client.java")
    want = _digest(open(source).read(), JAVA_WHEEL)
    classes = os.path.join(folder, f"classes-{want[:12]}")
    if not os.path.exists(os.path.join(classes, ".complete")):
        log("compiling the Java client (javac)")
        subprocess.run(["rm", "-rf", classes], check=True)
        subprocess.run(["javac", "-nowarn", "-cp", classpath, "-d", classes, source], check=True)
        open(os.path.join(classes, ".complete"), "w").close()
    return ["java", "-cp", os.pathsep.join([classpath, classes]), "JavaV2Client"]


RUBY_SDK_VERSION = "aws-sdk-core 3.212.0 (Debian trixie) on Ruby 3.1 (Debian bookworm)"


@functools.cache
def ruby_client():
    """The Ruby client's command line and the variables it runs with (fetched on first use).
    Ruby runs from the extracted packages: its shared library and load path point there."""
    import glob

    runtime, gems = debian_root("bookworm"), debian_root("trixie")
    libs = []
    for root in [gems, runtime]:
        libs += sorted(glob.glob(os.path.join(root, "usr", "share", "rubygems-integration", "all", "gems", "*", "lib")))
    libs += sorted(glob.glob(os.path.join(runtime, "usr", "lib", "ruby", "gems", "3.1.0", "gems", "*", "lib")))
    libs += [os.path.join(gems, "usr", "lib", "ruby", "vendor_ruby"),
             os.path.join(runtime, "usr", "lib", "ruby", "vendor_ruby"),
             os.path.join(runtime, "usr", "lib", "ruby", "3.1.0"),
             os.path.join(runtime, "usr", "lib", "x86_64-linux-gnu", "ruby", "3.1.0")]
    env = {
        "RUBYLIB": os.pathsep.join(libs),
        "LD_LIBRARY_PATH": os.path.join(runtime, "usr", "lib", "x86_64-linux-gnu"),
    }
    argv = [os.path.join(runtime, "usr", "bin", "ruby3.1"), os.path.join(ROOT, "interop", "ruby", "client.rb")]
    return argv, env
