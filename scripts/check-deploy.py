#!/usr/bin/env python3
"""The Kubernetes manifests (deploy/kubernetes) and the Helm chart (deploy/helm/sts-sidecar),
checked without a cluster:

- the chart is linted (`helm lint --strict`) and rendered (`helm template`) by Helm's own Go
  SDK, for each values file under the chart's ci/ folder, at the oldest Kubernetes the chart
  supports (1.29: the first with native sidecars on by default) and the newest the schemas know;
  rendering without the required values fails naming them;
- every manifest and every rendered object is validated against the Kubernetes API's JSON
  schema for both versions, strictly (an unknown or misspelled field is an error, as
  `kubectl apply --validate=strict` makes it);
- every pod is checked for what the schema cannot see: the sidecar is a native sidecar whose
  startup probe is `sts-sidecar check --wait`, its arguments are accepted by the binary
  (`check --config-only` with the container's own arguments and environment, IRSA's variables
  added where the webhook would add them), the app's AWS_CONTAINER_CREDENTIALS_FULL_URI points at
  the sidecar's --listen, the app reads the authorization token file the sidecar writes, through a
  volume both mount, the app has AWS_REGION, and the sidecar image is this version's;
- every `helm install` / `helm template` of the chart in the README and the book is rendered
  with its own --set values and checked the same way, and every `kubectl apply -f deploy/...`
  names a folder or file that exists;
- and the checks are shown to fail: a misspelled field, a wrong type, a port that does not
  match, an unknown flag and a manifest of native sidecars checked against Kubernetes 1.27 are
  each refused.

Helm comes from the PyPI package helm-python-sdk (Helm's Go SDK built as a C library): the
project's machines reach PyPI but not the Go module proxy, and Helm publishes no other package.
The schemas come from the PyPI package kubernetes-validate.

    .venv/bin/python scripts/check-deploy.py [BINARY]     (default target/debug/sts-sidecar)
"""

import copy
import glob
import os
import re
import shlex
import subprocess
import sys
import tempfile
import urllib.parse

import helm_python
import kubernetes_validate
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(ROOT, "deploy", "helm", "sts-sidecar")
MANIFESTS = os.path.join(ROOT, "deploy", "kubernetes")
# The oldest Kubernetes with native sidecars on by default, and the newest the schemas know.
# Broken variants self_test shows refused.
SELF_TESTS = 9
KUBE_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
SIDECAR = "sts-sidecar"
DEFAULT_LISTEN = "127.0.0.1:61679"
IRSA_TOKEN = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"


def cargo_version():
    text = open(os.path.join(ROOT, "Cargo.toml")).read()
    return re.search(r'^version = "([^"]+)"', text, re.M).group(1)


def image_name():
    """The image a release publishes: ghcr.io/<owner>/<name>:<version>, after Cargo.toml's
    repository (the release workflow refuses to publish from any other repository)."""
    text = open(os.path.join(ROOT, "Cargo.toml")).read()
    repo = re.search(r'^repository = "https://github.com/([^"]+)"', text, re.M).group(1)
    return f"ghcr.io/{repo.lower()}:{cargo_version()}"


class Problems:
    def __init__(self):
        self.found = []

    def add(self, where, message):
        self.found.append(f"{where}: {message}")


def schema_check(problems, where, doc):
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = "/".join(str(p) for p in e.path)
            problems.add(where, f"Kubernetes {version} schema: {e.message} (at {path or 'the top'})")
        except kubernetes_validate.SchemaNotFoundError:
            problems.add(where, f"Kubernetes {version} has no {doc.get('apiVersion')} {doc.get('kind')}")


def env_of(container):
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def flag(args, name):
    """The value of --name (as --name=V or --name V) in args, or None."""
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a[len(name) + 1:]
    return None


def mount_of(container, path):
    """The volumeMount of container under which path lies, or None."""
    best = None
    for m in container.get("volumeMounts", []):
        base = m["mountPath"].rstrip("/")
        if (path == base or path.startswith(base + "/")) and (best is None or len(base) > len(best["mountPath"])):
            best = m
    return best


def config_only(binary, args, env):
    """`check --config-only` with the sidecar's serve arguments and environment; the problems."""
    with tempfile.TemporaryDirectory() as tmp:
        run_env = {"PATH": os.environ.get("PATH", ""), "HOME": tmp, **env}
        p = subprocess.run([binary, "check", "--config-only", *args], env=run_env,
                           capture_output=True, text=True, timeout=30)
    return p.returncode, p.stderr + p.stdout


def pod_check(problems, where, pod, annotations, service_accounts, binary):
    """What the schema cannot see, in one pod template's spec."""
    inits = {c["name"]: c for c in pod.get("initContainers", [])}
    sidecar = inits.get(SIDECAR)
    if sidecar is None:
        problems.add(where, f"no init container named {SIDECAR}")
        return
    if sidecar.get("restartPolicy") != "Always":
        problems.add(where, "the sidecar is not a native sidecar (restartPolicy: Always)")
    probe = sidecar.get("startupProbe", {}).get("exec", {}).get("command", [])
    if probe[1:3] != ["check", "--wait"] or not probe[0].endswith("/sts-sidecar"):
        problems.add(where, f"the sidecar's startupProbe is not `sts-sidecar check --wait`: {probe}")
    if sidecar.get("image") != image_name():
        problems.add(where, f"the sidecar image is {sidecar.get('image')!r}, not {image_name()!r}")
    args = list(sidecar.get("command", [])[1:]) + list(sidecar.get("args", []))
    if not args or args[0] != "serve":
        problems.add(where, f"the sidecar does not run `serve`: {args}")
        return
    args = args[1:]
    sidecar_env = env_of(sidecar)
    irsa = "eks.amazonaws.com/role-arn" in service_accounts.get(pod.get("serviceAccountName", "default"), {})
    if irsa:
        # What the pod identity webhook adds to every container not skipped.
        sidecar_env.setdefault("AWS_ROLE_ARN", service_accounts[pod["serviceAccountName"]]["eks.amazonaws.com/role-arn"])
        sidecar_env.setdefault("AWS_WEB_IDENTITY_TOKEN_FILE", IRSA_TOKEN)
        skipped = annotations.get("eks.amazonaws.com/skip-containers", "").split(",")
        if "app" not in [s.strip() for s in skipped]:
            problems.add(where, "IRSA: the app container is not in eks.amazonaws.com/skip-containers "
                                "(its SDK would call STS itself)")
    code, out = config_only(binary, args, sidecar_env)
    if code != 0:
        # Files the pod mounts are not on this machine; anything else is a real problem.
        missing = re.findall(r"^  \S+: (\S+) does not exist", out, re.M)
        if not missing or not all(mount_of(sidecar, path) for path in missing) or \
                "files the configuration names cannot be used" not in out or \
                len(re.findall(r"^  \S+: ", out, re.M)) != len(missing):
            problems.add(where, f"sts-sidecar check --config-only {shlex.join(args)} refuses: {out.strip()}")
    listen = flag(args, "--listen") or sidecar_env.get("STS_SIDECAR_LISTEN") or DEFAULT_LISTEN
    token_file = flag(args, "--auth-token-file") or sidecar_env.get("STS_SIDECAR_AUTH_TOKEN_FILE")
    token_dir_mount = mount_of(sidecar, token_file or "/nonexistent")
    if token_dir_mount is None:
        problems.add(where, f"the sidecar writes its authorization token to {token_file}, on no volume")
    identity_file = flag(args, "--token-file")
    if identity_file:
        m = mount_of(sidecar, identity_file)
        volume = next((v for v in pod.get("volumes", []) if m and v["name"] == m["name"]), {})
        sources = volume.get("projected", {}).get("sources", [])
        if not any("serviceAccountToken" in s for s in sources):
            problems.add(where, f"--token-file {identity_file} is not on a projected service-account token volume")
    for app in pod.get("containers", []):
        env = env_of(app)
        if "AWS_REGION" not in env:
            problems.add(where, f"container {app['name']} has no AWS_REGION")
        uri = env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        if uri is None:
            problems.add(where, f"container {app['name']} has no AWS_CONTAINER_CREDENTIALS_FULL_URI")
            continue
        if urllib.parse.urlsplit(uri).netloc != listen:
            problems.add(where, f"container {app['name']} asks {uri}, the sidecar listens on {listen}")
        app_token = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
        if app_token != token_file:
            problems.add(where, f"container {app['name']} reads the token from {app_token}, the sidecar writes {token_file}")
            continue
        m = mount_of(app, app_token)
        if m is None or token_dir_mount is None or m["name"] != token_dir_mount["name"]:
            problems.add(where, f"container {app['name']} does not mount the volume the sidecar writes {token_file} on")
        elif not m.get("readOnly"):
            problems.add(where, f"container {app['name']} mounts the token volume writable")
        if identity_file and mount_of(app, identity_file):
            problems.add(where, f"container {app['name']} can read the identity token {identity_file}")
    if flag(args, "--auth-token-file-mode") == "0640" and not pod.get("securityContext", {}).get("fsGroup"):
        problems.add(where, "--auth-token-file-mode 0640 without an fsGroup: the app cannot read the token")


def check_objects(problems, where, docs, binary):
    """Schema and pod checks for the objects of one manifest set (one folder, one rendering)."""
    service_accounts = {}
    for doc in docs:
        if doc.get("kind") == "ServiceAccount":
            service_accounts[doc["metadata"]["name"]] = doc["metadata"].get("annotations", {})
    for doc in docs:
        name = f"{where} {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        schema_check(problems, name, doc)
        if doc.get("kind") == "Deployment":
            template = doc["spec"]["template"]
            pod_check(problems, name, template["spec"], template.get("metadata", {}).get("annotations", {}),
                      service_accounts, binary)


def manifest_sets():
    """deploy/kubernetes/<variant>/*.yaml: the objects of each variant."""
    for folder in sorted(glob.glob(os.path.join(MANIFESTS, "*", ""))):
        docs = []
        for path in sorted(glob.glob(os.path.join(folder, "*.yaml"))):
            docs += [d for d in yaml.safe_load_all(open(path)) if d]
        yield os.path.relpath(folder, ROOT).rstrip("/"), docs


def chart_renderings(problems):
    """The chart, linted and rendered for each ci/*-values.yaml: (where, objects)."""
    chart = helm_python.Chart.load(CHART)
    if chart.version != cargo_version() or chart.metadata.get("appVersion") != cargo_version():
        problems.add("Chart.yaml", f"version/appVersion are not Cargo.toml's {cargo_version()}")
    for path in sorted(glob.glob(os.path.join(CHART, "ci", "*-values.yaml"))):
        values = yaml.safe_load(open(path))
        where = f"helm template -f {os.path.relpath(path, ROOT)}"
        for version in KUBE_VERSIONS:
            report = helm_python.lint(CHART, values, strict=True, kube_version=f"v{version}")
            for m in report["messages"]:
                if m["severity"] >= 2:
                    problems.add(f"helm lint --strict ({version}) -f {os.path.basename(path)}", f"{m['path']}: {m['error']}")
            for e in report["errors"]:
                problems.add(f"helm lint --strict ({version}) -f {os.path.basename(path)}", e)
        rendered = chart.render(values, name="movie-app", namespace="default", is_install=True)
        docs = []
        for template, text in sorted(rendered.items()):
            if template.endswith(".yaml"):
                docs += [d for d in yaml.safe_load_all(text) if d]
        yield where, docs
    # Without the required values: an error naming them, not a broken manifest.
    try:
        chart.render({}, name="movie-app", namespace="default", is_install=True)
        problems.add("helm template (no values)", "rendered without app.image and role.arn")
    except helm_python.HelmRenderError as e:
        if "is required" not in str(e):
            problems.add("helm template (no values)", f"fails, but not naming what is required: {e}")


def merge(into, new):
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            merge(into[k], v)
        else:
            into[k] = v
    return into


def documented_commands():
    """(where, argv) of each command line in the sh blocks of the README and the book."""
    pages = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
    for page in pages:
        text = open(page).read()
        for m in re.finditer(r"^```sh\n(.*?)^```", text, re.M | re.S):
            line_no = text[:m.start()].count("\n") + 2
            for line in re.sub(r"\\\n", " ", m.group(1)).splitlines():
                try:
                    argv = shlex.split(line, comments=True)
                except ValueError:
                    continue
                if argv:
                    yield f"{os.path.relpath(page, ROOT)}:{line_no}", argv


def documented_renderings(problems):
    """The chart as each documented `helm install` renders it: (where, objects)."""
    chart = helm_python.Chart.load(CHART)
    for where, argv in documented_commands():
        if argv[0] == "kubectl" and "apply" in argv and "-f" in argv:
            path = argv[argv.index("-f") + 1]
            if not os.path.exists(os.path.join(ROOT, path)):
                problems.add(where, f"kubectl apply -f {path}: no such file or folder")
            continue
        if argv[0] != "helm" or len(argv) < 4 or argv[1] not in ("install", "upgrade", "template"):
            continue
        if os.path.normpath(os.path.join(ROOT, argv[3])) != CHART:
            problems.add(where, f"helm {argv[1]} of {argv[3]}, not deploy/helm/sts-sidecar")
            continue
        values, rest = {}, argv[4:]
        for i, a in enumerate(rest):
            if a == "--set" and i + 1 < len(rest):
                merge(values, helm_python.parse_set_string(rest[i + 1]))
            elif a.startswith("-") and a not in ("--set", "--namespace", "-n"):
                problems.add(where, f"helm {argv[1]}: option {a} not checked here")
        try:
            chart.validate_schema(values)
            rendered = chart.render(values, name=argv[2], namespace="default", is_install=True)
        except helm_python.HelmError as e:
            problems.add(where, f"helm {argv[1]} {shlex.join(argv[2:])}: {e}")
            continue
        docs = [d for t, text in sorted(rendered.items()) if t.endswith(".yaml")
                for d in yaml.safe_load_all(text) if d]
        yield f"{where} (helm {argv[1]})", docs


def self_test(binary):
    """The checks above, each shown to refuse a broken pod."""
    (where, docs), = [s for s in manifest_sets() if s[0].endswith("projected-token")]

    def deployment(d):
        return next(x for x in d if x["kind"] == "Deployment")["spec"]["template"]["spec"]

    def broken(change):
        d = copy.deepcopy(docs)
        change(deployment(d))
        return d

    cases = {
        "a misspelled field": broken(lambda p: p["initContainers"][0].update(restartPolcy="Always")),
        "a wrong type": broken(lambda p: p["securityContext"].update(fsGroup="2000")),
        "the app asking another port": broken(lambda p: p["containers"][0]["env"].__setitem__(
            1, {"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI", "value": "http://127.0.0.1:61680/v1/credentials"})),
        "an unknown flag": broken(lambda p: p["initContainers"][0]["args"].append("--role-arm=x")),
        "the app without the token volume": broken(lambda p: p["containers"][0].update(volumeMounts=[])),
    }
    failed = []
    for name, d in cases.items():
        problems = Problems()
        check_objects(problems, where, d, binary)
        if not problems.found:
            failed.append(f"{name} was not refused")
    chart = helm_python.Chart.load(CHART)
    good = {"app": {"image": "registry.example.com/movie-app:1.0.0"},
            "role": {"arn": "arn:aws:iam::123456789012:role/movie-app"}}
    for name, values in {"a misspelled value": merge(copy.deepcopy(good), {"app": {"imag": "x"}}),
                         "an identity mode that does not exist": merge(copy.deepcopy(good), {"identity": {"mode": "irs"}}),
                         "a role that is no role ARN": merge(copy.deepcopy(good), {"role": {"arn": "movie-app"}})}.items():
        try:
            chart.validate_schema(values)
            failed.append(f"the chart's schema accepted {name}")
        except helm_python.HelmError:
            pass
    global KUBE_VERSIONS
    saved, KUBE_VERSIONS = KUBE_VERSIONS, ["1.27.0"]
    problems = Problems()
    check_objects(problems, where, docs, binary)
    KUBE_VERSIONS = saved
    if not any("restartPolicy" in p for p in problems.found):
        failed.append("a native sidecar against Kubernetes 1.27 was not refused")
    return failed


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "sts-sidecar")
    helm_python.disable_logging()
    print(f"==> Helm SDK {helm_python.helm_sdk_version()} (helm-python-sdk), Kubernetes schemas "
          f"{', '.join(KUBE_VERSIONS)} (kubernetes-validate {kubernetes_validate.version.__version__})", flush=True)
    problems = Problems()
    checked = 0
    sets = list(manifest_sets()) + list(chart_renderings(problems)) + list(documented_renderings(problems))
    for where, docs in sets:
        check_objects(problems, where, docs, binary)
        checked += len(docs)
        print(f"    {where}: {', '.join(d['kind'] for d in docs)}", flush=True)
    failed = self_test(binary)
    for f in failed:
        problems.add("self-test", f)
    for p in problems.found:
        print(f"FAIL  {p}", file=sys.stderr)
    if problems.found:
        sys.exit(1)
    print(f"deploy: {checked} objects valid; each of the {SELF_TESTS} broken variants refused")


if __name__ == "__main__":
    main()
