#!/usr/bin/env python3
"""Every YAML and shell block of the README and of the book (docs/), parsed, and checked against
the binary, so the instructions cannot drift from the program:

- each block parses (PyYAML, every document of it);
- every sts-sidecar command line in it (a Kubernetes container running the sts-sidecar image,
  an exec probe, a Cloud Foundry `command:` or sidecar `command:`) names a subcommand that
  exists and only flags that subcommand accepts (from its own `--help`);
- every `STS_SIDECAR_*` variable it sets (Kubernetes `env:`, Cloud Foundry `env:`) is one the
  binary knows, and so is every one in a `cf set-env` line of a shell block (the binary itself
  judges them: `check --config-only` names each variable of its namespace it does not know);
- no Kubernetes probe sends an `httpGet` to a loopback address (the kubelet probes from the
  node, where the sidecar's loopback listeners are not), and `httpGet` paths are admin paths;
- every sts-sidecar command of a shell block (`sh`), continuation lines joined, comments,
  pipes and redirections cut off, names a subcommand and only flags it accepts.

    python3 interop/check_readme.py [BINARY]     (default target/debug/sts-sidecar)
"""

import os
import re
import shlex
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBCOMMANDS = ["serve", "exec", "credential-process", "check", "issuer", "completions"]
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

    def problem(self, where, message):
        self.problems.append(f"{where}: {message}")

    def command(self, where, argv):
        """An sts-sidecar command line (argv[0] is the program)."""
        if not argv or not os.path.basename(str(argv[0])).startswith("sts-sidecar"):
            return
        self.commands += 1
        args = [str(a) for a in argv[1:]]
        if not args or args[0] not in SUBCOMMANDS:
            self.problem(where, f"{' '.join(map(str, argv))}: no subcommand of {SUBCOMMANDS}")
            return
        sub = args[0]
        for arg in args[1:]:
            if arg == "--":
                break
            if arg.startswith("--"):
                name = arg.split("=", 1)[0]
                if name not in self.flags[sub]:
                    self.problem(where, f"sts-sidecar {sub} has no flag {name}")

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
                if "sts-sidecar" in str(c.get("image", "")):
                    self.command(name, (c.get("command") or ["sts-sidecar"]) + (c.get("args") or []))
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
            for command in commands:
                if isinstance(command, str):
                    self.command(name, shlex.split(command))


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "sts-sidecar")
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
    if checker.problems:
        print("README check FAILED:\n  " + "\n  ".join(checker.problems), file=sys.stderr)
        return 1
    print(f"README check passed: {parsed} YAML and {shells} shell blocks read, {checker.commands} "
          "sts-sidecar command lines checked against the binary's flags")
    return 0


if __name__ == "__main__":
    sys.exit(main())
