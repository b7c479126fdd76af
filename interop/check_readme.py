#!/usr/bin/env python3
"""Every YAML and shell block of the README and of the book (docs/), parsed, and checked against
the binary, so the instructions cannot drift from the program:

- each block parses (PyYAML, every document of it);
- every sts-sidecar command line in it (a Kubernetes container running the sts-sidecar image,
  an exec probe, a Cloud Foundry `command:` or sidecar `command:`, a CI job's `script:` or
  `run:` line) names a subcommand that
  exists and only flags that subcommand accepts (from its own `--help`);
- every `STS_SIDECAR_*` variable it sets (Kubernetes `env:`, Cloud Foundry `env:`) is one the
  binary knows, and so is every one in a `cf set-env` line of a shell block (the binary itself
  judges them: `check --config-only` names each variable of its namespace it does not know);
- no Kubernetes probe sends an `httpGet` to a loopback address (the kubelet probes from the
  node, where the sidecar's loopback listeners are not), and `httpGet` paths are admin paths;
- every sts-sidecar command of a shell block (`sh`), continuation lines joined, comments,
  pipes and redirections cut off, names a subcommand and only flags it accepts;
- and every one of those command lines is then run against the binary, as far as it can run
  here: `completions` and `gcp-credentials` for real; `check --wait` (a probe) once, where 1 (not ready) is an
  answer; `serve`, `exec`, `credential-process` and `check` through
  `check --config-only` with the same flags (and the container's or app's variables), which
  judges the whole configuration as `serve` would without calling anything; `issuer` and
  `issuer publish` for real, with a time limit. Files a command names that are not on this
  machine (a certificate in a container, a signing key the reader makes) may be refused as
  missing, and nothing else may be.

    python3 interop/check_readme.py [BINARY]     (default target/debug/sts-sidecar)
"""

import os
import re
import shlex
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBCOMMANDS = ["serve", "exec", "credential-process", "check", "issuer", "completions", "gcp-credentials"]
# Subcommands of subcommands whose flags count for their parent's command lines.
NESTED = {"issuer": ["publish"]}
ADMIN_PATHS = {"/healthz", "/ready", "/metrics", "/status"}


def flags_of(binary):
    """Each subcommand's long flags, from its --help (global flags included)."""
    flags = {}
    for sub in SUBCOMMANDS:
        flags[sub] = set()
        for argv in [[sub]] + [[sub, nested] for nested in NESTED.get(sub, [])]:
            out = subprocess.run([binary, *argv, "--help"], capture_output=True, text=True, check=True).stdout
            flags[sub] |= set(re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", out))
    return flags


def shell_commands(text):
    """The simple commands of a shell block, each as argv: continuation lines joined, comments
    dropped, cut at pipes, redirections and command separators, leading VAR=value dropped."""
    joined = re.sub(r"\\\n", " ", text)
    for line in joined.splitlines():
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            continue
        argv = []
        for tok in tokens + [";"]:
            if tok in ("|", "||", "&&", ";", "&") or tok.startswith((">", "<", "2>")):
                while argv and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", argv[0]):
                    argv.pop(0)
                if argv:
                    yield argv
                argv = []
                if tok.startswith((">", "<", "2>")):
                    break
            else:
                argv.append(tok)


def unknown_variables(binary, names):
    """The names among `names` the binary does not know, in its own words."""
    env = {"PATH": os.environ.get("PATH", "")}
    env.update({name: "0" for name in names})
    out = subprocess.run([binary, "check", "--config-only"], env=env, capture_output=True, text=True)
    return {name for name in names if f"{name}: is not a variable sts-sidecar knows" in out.stderr}


# What a Cloud Foundry container has, for role templates ({org}, {space}, {app}).
VCAP_APPLICATION = ('{"application_name":"movie-app","organization_name":"demo-org",'
                    '"space_name":"dev","instance_index":0}')
# Flags of exec and credential-process that `check --config-only` does not take: name -> takes a value.
NOT_CONFIG = {"--ready-timeout": True, "--trust-policy": True, "--wait": True}


def missing_files_only(out):
    """Whether every complaint in `out` is a file that is not on this machine."""
    complaints = re.findall(r"^  (\S+): (.*)$", out, re.M)
    return bool(complaints) and all(" does not exist" in text or "No such file" in text
                                    for _, text in complaints)


def p256_key_pem():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def run_one(binary, args, env, tmp):
    """Runs one documented command line as far as it can run here; the problem, or None."""
    sub, rest = args[0], args[1:]
    if "--" in rest:
        rest = rest[:rest.index("--")]
    run_env = {"PATH": os.environ.get("PATH", ""), "HOME": tmp, "VCAP_APPLICATION": VCAP_APPLICATION,
               "AWS_CONTAINER_AUTHORIZATION_TOKEN": "0123456789abcdef0123456789abcdef", **env}
    if "gitlab" in rest or "--gitlab-token-variable" in " ".join(rest):
        # What GitLab gives a job that asks for an ID token under id_tokens.
        name = next((a.split("=", 1)[1] if "=" in a else rest[i + 1] for i, a in enumerate(rest)
                     if a.startswith("--gitlab-token-variable")), "ID_TOKEN")
        run_env[name] = "a.job-token.x"
    if "circleci" in rest:
        run_env["CIRCLE_OIDC_TOKEN_V2"] = "a.job-token.x"
    if "github-actions" in rest:
        # What GitHub gives a job with `permissions: id-token: write`.
        run_env.update(ACTIONS_ID_TOKEN_REQUEST_URL="https://pipelines.actions.githubusercontent.com/x",
                       ACTIONS_ID_TOKEN_REQUEST_TOKEN="request-token")
    for name, value in list(run_env.items()):
        # A manifest variable (`((signing_key))`, given with cf push --var): a key of the kind
        # the README generates, made here.
        if re.fullmatch(r"\(\([a-z_]+\)\)", value):
            run_env[name] = p256_key_pem()
    if sub == "gcp-credentials":
        # For real, in an empty folder (its --out lands there), with a stand-in token.
        p = subprocess.run([binary, *args], env=run_env, cwd=tmp, capture_output=True, text=True, timeout=30)
        return None if p.returncode == 0 else f"exit {p.returncode}: {p.stderr.strip()[-600:]}"
    if sub == "completions":
        p = subprocess.run([binary, *args], env=run_env, capture_output=True, text=True, timeout=30)
        return None if p.returncode == 0 and p.stdout else f"exit {p.returncode}: {p.stderr.strip()}"
    if sub == "issuer":
        # For real, in an empty folder, for at most 3 s: it may only stop over files this
        # machine does not have (the CA, the signing key), or keep running.
        try:
            p = subprocess.run([binary, *args, *([] if "publish" in rest else ["--listen", "127.0.0.1:0",
                                "--admin-listen", "127.0.0.1:0"])],
                               env=run_env, cwd=tmp, capture_output=True, text=True, timeout=3)
        except subprocess.TimeoutExpired:
            return None
        out = p.stderr + p.stdout
        if p.returncode == 0 or (p.returncode == 64 and re.search(r"(does not exist|No such file|is not set)", out)):
            return None
        return f"exit {p.returncode}: {out.strip()[-600:]}"
    if sub == "check" and any(a.split("=", 1)[0] == "--wait" for a in rest):
        # A probe: asks /ready once (--wait 0). Nothing listens here, or something that is not
        # ready: 1 is its answer; 2 or 64 would be a command line it refuses.
        argv = [a if not a.startswith("--wait=") else "--wait=0" for a in rest]
        argv = ["0" if i > 0 and argv[i - 1] == "--wait" else a for i, a in enumerate(argv)]
        p = subprocess.run([binary, "check", *argv], env=run_env, cwd=tmp, capture_output=True,
                           text=True, timeout=30)
        return None if p.returncode in (0, 1) else f"exit {p.returncode}: {(p.stderr + p.stdout).strip()[-600:]}"
    config = []
    i = 0
    while i < len(rest):
        name = rest[i].split("=", 1)[0]
        if name in NOT_CONFIG:
            i += 1 if "=" in rest[i] or not NOT_CONFIG[name] else 2
            continue
        config.append(rest[i])
        i += 1
    p = subprocess.run([binary, "check", "--config-only", *config], env=run_env, cwd=tmp,
                       capture_output=True, text=True, timeout=30)
    out = p.stderr + p.stdout
    if p.returncode == 0 or (p.returncode == 64 and missing_files_only(out)):
        return None
    return f"check --config-only {shlex.join(config)} exits {p.returncode}: {out.strip()[-600:]}"


def blocks(path, lang):
    text = open(path).read()
    for m in re.finditer(rf"^```{lang}\n(.*?)^```", text, re.S | re.M):
        line = text[:m.start()].count("\n") + 1
        yield line, m.group(1)


class Checker:
    def __init__(self, flags):
        self.flags = flags
        self.variables = []  # (where, name), judged at the end by the binary
        self.problems = []
        self.commands = 0
        self.runs = []  # (where, args, env): run against the binary at the end

    def problem(self, where, message):
        self.problems.append(f"{where}: {message}")

    def command(self, where, argv, env=None):
        """An sts-sidecar command line (argv[0] is the program), with the variables it runs
        with where the block says (a container's env:, an app's env:)."""
        if not argv or not os.path.basename(str(argv[0])).startswith("sts-sidecar"):
            return
        self.commands += 1
        args = [str(a) for a in argv[1:]]
        if not args or args[0] not in SUBCOMMANDS:
            self.problem(where, f"{' '.join(map(str, argv))}: no subcommand of {SUBCOMMANDS}")
            return
        sub = args[0]
        known = True
        for arg in args[1:]:
            if arg == "--":
                break
            if arg.startswith("--"):
                name = arg.split("=", 1)[0]
                if name not in self.flags[sub]:
                    self.problem(where, f"sts-sidecar {sub} has no flag {name}")
                    known = False
        if known:
            self.runs.append((where, args, dict(env or {})))

    def run_all(self, binary):
        """Each command line, run as far as it can run here (see the module's docstring)."""
        ran = 0
        with tempfile.TemporaryDirectory() as tmp:
            for where, args, env in self.runs:
                problem = run_one(binary, args, env, tmp)
                ran += 1
                if problem:
                    self.problem(where, f"sts-sidecar {shlex.join(args)}: {problem}")
        return ran

    def variable(self, where, name):
        if name.startswith("STS_SIDECAR_"):
            self.variables.append((where, name))

    def judge_variables(self, binary):
        unknown = unknown_variables(binary, {name for _, name in self.variables})
        for where, name in self.variables:
            if name in unknown:
                self.problem(where, f"{name} is not a variable sts-sidecar knows")

    def walk(self, where, node):
        if isinstance(node, dict):
            # A CI job's shell lines: GitLab's script:, GitHub's and CircleCI's run:.
            for key in ("script", "before_script", "after_script", "run"):
                lines = node.get(key)
                for line in lines if isinstance(lines, list) else [lines]:
                    if isinstance(line, str):
                        for argv in shell_commands(line):
                            self.command(where, argv)
            self.kubernetes(where, node)
            self.cloud_foundry(where, node)
            for value in node.values():
                self.walk(where, value)
        elif isinstance(node, list):
            for value in node:
                self.walk(where, value)

    def kubernetes(self, where, node):
        for key in ("containers", "initContainers"):
            for c in node.get(key) or []:
                if not isinstance(c, dict):
                    continue
                name = f"{where} container {c.get('name')}"
                env = {str(e.get("name")): str(e.get("value", "")) for e in c.get("env") or []
                       if isinstance(e, dict)}
                if "sts-sidecar" in str(c.get("image", "")):
                    self.command(name, (c.get("command") or ["sts-sidecar"]) + (c.get("args") or []), env)
                for e in c.get("env") or []:
                    if isinstance(e, dict):
                        self.variable(name, str(e.get("name", "")))
                for probe_key in ("startupProbe", "readinessProbe", "livenessProbe"):
                    probe = c.get(probe_key)
                    if not isinstance(probe, dict):
                        continue
                    http = probe.get("httpGet")
                    if isinstance(http, dict):
                        host = str(http.get("host", ""))
                        if host in ("127.0.0.1", "localhost", "::1") or host.startswith("127."):
                            self.problem(name, f"{probe_key} httpGet to {host}: the kubelet probes from "
                                               "the node, which cannot reach the pod's loopback")
                        # Without a host the probe goes to the pod's address: the sidecar's
                        # admin listener must be bound there, not to loopback (its default).
                        args = [str(a) for a in (c.get("command") or []) + (c.get("args") or [])]
                        admin = next((args[i + 1] if a == "--admin-listen" else a.split("=", 1)[1]
                                      for i, a in enumerate(args)
                                      if a == "--admin-listen" and i + 1 < len(args)
                                      or a.startswith("--admin-listen=")), "127.0.0.1:61680")
                        if "sts-sidecar" in str(c.get("image", "")) and not host and (
                                admin.startswith(("127.", "[::1]", "localhost"))
                                and admin.rsplit(":", 1)[-1] == str(http.get("port"))):
                            self.problem(name, f"{probe_key} httpGet to port {http.get('port')}: the "
                                               f"admin listener is on loopback ({admin}), which the "
                                               "probe does not reach; use an exec probe "
                                               "(sts-sidecar check --wait 0) or --admin-listen 0.0.0.0:PORT")
                        if http.get("path") not in ADMIN_PATHS:
                            self.problem(name, f"{probe_key} httpGet path {http.get('path')} is not an admin path")
                    exec_ = probe.get("exec")
                    if isinstance(exec_, dict):
                        self.command(f"{name} {probe_key}", exec_.get("command") or [])

    def cloud_foundry(self, where, node):
        for app in node.get("applications") or []:
            if not isinstance(app, dict):
                continue
            name = f"{where} application {app.get('name')}"
            for key in (app.get("env") or {}):
                self.variable(name, str(key))
            commands = [app.get("command")] + [s.get("command") for s in app.get("sidecars") or []
                                               if isinstance(s, dict)]
            env = {str(k): str(v) for k, v in (app.get("env") or {}).items()}
            for command in commands:
                if isinstance(command, str):
                    self.command(name, shlex.split(command), env)


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "sts-sidecar"))
    checker = Checker(flags_of(binary))
    files = [os.path.join(ROOT, "README.md")] + sorted(
        os.path.join(ROOT, "docs", f) for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md"))
    parsed = shells = 0
    for path in files:
        rel = os.path.relpath(path, ROOT)
        for line, text in blocks(path, "yaml"):
            where = f"{rel}:{line}"
            try:
                docs = list(yaml.safe_load_all(text))
            except yaml.YAMLError as e:
                checker.problem(where, f"does not parse: {e}")
                continue
            parsed += 1
            for doc in docs:
                checker.walk(where, doc)
        for line, text in blocks(path, "sh"):
            shells += 1
            for m in re.finditer(r"cf set-env \S+ (STS_SIDECAR_[A-Z0-9_]+)", text):
                checker.variable(f"{rel}:{line}", m.group(1))
            for argv in shell_commands(text):
                checker.command(f"{rel}:{line}", argv)
    checker.judge_variables(binary)
    ran = checker.run_all(binary)
    if checker.problems:
        print("README check FAILED:\n  " + "\n  ".join(checker.problems), file=sys.stderr)
        return 1
    print(f"README check passed: {parsed} YAML and {shells} shell blocks read, {checker.commands} "
          f"sts-sidecar command lines checked against the binary's flags, {ran} of them run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
