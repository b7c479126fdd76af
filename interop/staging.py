#!/usr/bin/env python3
"""The Cloud Foundry sidecar buildpack, staged and launched the way Cloud Foundry does it.

Follows the documented lifecycle, not our wishes (see docs/cloud-foundry-buildpack.md for the
facts and where they come from):

1. staging: the buildpack zip unpacked with its file modes; `bin/detect BUILD_DIR`;
   `bin/supply BUILD_DIR CACHE_DIR DEPS_DIR 0` with the app's environment; then the final
   buildpack's part, in two styles:
   - a final buildpack built on libbuildpack (the Go-based Java, Python, Node.js, ... buildpacks):
     every regular file in deps/<i>/profile.d/ is copied into the droplet's profile.d as
     <i>_<name>, and deps/<i>/bin goes on PATH;
   - the Ruby-based Java buildpack: deps/<i>/config.yml's config.environment_variables are put
     in front of the start command, and deps/<i>/profile.d is not copied.
2. the droplet laid out at /home/vcap (app, deps, profile.d, tmp, logs), in a private mount and
   network namespace (unshare), so the real paths and the default ports are used, as in a
   container;
3. every process started as the launcher starts it: from /home/vcap/app, after sourcing
   ../profile.d/* and .profile.d/*, through `bash -c COMMAND`, with HOME, TMPDIR and DEPS_DIR set
   and the container's VCAP_APPLICATION, PORT, CF_INSTANCE_CERT and CF_INSTANCE_KEY (the
   Diego-shaped test PKI): the sidecar from launch.yml, and the app's web process: boto3 in the
   first style, the AWS SDK for Java v2 in the second, each calling STS and DynamoDB on moto
   with nothing configured but the endpoint.

Also: staging with nothing configured, a misspelled variable, or a CA file the app does not
carry, fails with what to set; the buildpack as the last one fails with how to order them.

    python3 interop/staging.py --buildpack target/buildpack/sts-sidecar-buildpack-VERSION.zip

Needs unshare (util-linux) and ip (iproute2); runs as any user (a user namespace maps it to
root inside).
"""

import argparse
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import zipfile

import run
import toolchains

HERE = os.path.dirname(os.path.abspath(__file__))
VCAP = "/home/vcap"
LAUNCHER = r"""
cd "$1"
for f in ../profile.d/*; do if [ -f "$f" ]; then source "$f"; fi; done
for f in .profile.d/*; do if [ -f "$f" ]; then source "$f"; fi; done
if [ -f .profile ]; then source .profile; fi
exec bash -c "$2"
"""


class Checks:
    def __init__(self):
        self.failed = 0

    def check(self, name, ok, detail=""):
        print(f"{'ok  ' if ok else 'FAIL'}  {name}{': ' + detail if detail and not ok else ''}", flush=True)
        self.failed += 0 if ok else 1
        return ok


def unpack(zip_path, dest):
    """As the lifecycle extracts a buildpack: every file with the mode it has in the zip."""
    with zipfile.ZipFile(zip_path) as z:
        for info in z.infolist():
            path = z.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(path, mode)


def vcap_application(process_type=None):
    """VCAP_APPLICATION at staging, or (with `process_type`) in a running container after the
    launcher added instance_index to it."""
    app = {"application_name": run.APP, "application_id": "app-guid", "name": run.APP,
           "organization_name": run.ORG, "organization_id": "org-guid",
           "space_name": run.SPACE, "space_id": "space-guid", "limits": {"mem": 1024}}
    if process_type:
        app.update(process_type=process_type, instance_index=0, instance_id="instance-guid")
    return json.dumps(app, separators=(",", ":"))


def app_env(stack):
    """What `cf set-env` (or env: in manifest.yml) gives the app: sts-sidecar's settings, and
    moto's endpoint for the SDKs (against real AWS there would be none)."""
    u = stack.upstreams
    return {
        "STS_SIDECAR_ROLE_ARN": run.ROLE_TEMPLATE,
        "STS_SIDECAR_TOKEN_SERVICE_URL": u["TOKEN_SERVICE_URL"],
        "STS_SIDECAR_TOKEN_SERVICE_CA": f"{VCAP}/app/token-service-ca.pem",
        "STS_SIDECAR_STS_ENDPOINT": f"http://127.0.0.1:{stack.moto_port}",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{stack.moto_port}",
        # Java reads AWS_REGION, botocore AWS_DEFAULT_REGION.
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def stage(checks, buildpack, work, env, style, app_command):
    """Runs detect and supply as the lifecycle does, then the final buildpack's part in `style`;
    lays the droplet out at /home/vcap. Returns the processes: [(type, command)]."""
    build, cache, deps, profile = (os.path.join(work, d) for d in ("app", "cache", "deps", "profile.d"))
    for d in (cache, os.path.join(deps, "0"), os.path.join(deps, "1"), profile):
        os.makedirs(d)
    # The app: a script calling its SDK (used by the boto3 process), and the token service's CA.
    os.makedirs(build)
    shutil.copy(os.path.join(HERE, "boto3_client.py"), os.path.join(build, "app.py"))
    shutil.copy(env["_CA"], os.path.join(build, "token-service-ca.pem"))
    app_files = sorted(os.listdir(build))
    staging_env = {k: v for k, v in env.items() if not k.startswith("_")}
    staging_env.update({"PATH": os.environ["PATH"], "CF_STACK": "cflinuxfs4",
                        "VCAP_APPLICATION": vcap_application()})
    detect = subprocess.run([os.path.join(buildpack, "bin", "detect"), build], env=staging_env,
                            capture_output=True, text=True)
    checks.check(f"{style}: bin/detect applies to a configured app", detect.returncode == 0
                 and detect.stdout.strip() == "sts-sidecar", detect.stdout + detect.stderr)
    supply = subprocess.run([os.path.join(buildpack, "bin", "supply"), build, cache, deps, "0"],
                            env=staging_env, capture_output=True, text=True)
    out = supply.stdout + supply.stderr
    print("".join(f"    | {line}\n" for line in out.splitlines()), end="")
    if not checks.check(f"{style}: bin/supply stages", supply.returncode == 0, out):
        return None
    role = run.ROLE_TEMPLATE.replace("{org}", run.ORG).replace("{space}", run.SPACE)
    checks.check(f"{style}: staging says what it did, in the buildpacks' style",
                 out.startswith("-----> sts-sidecar buildpack ") and f"role              default: {role}" in out
                 and "sidecar for process types: web, 32 MB" in out, out)
    written = sorted(os.path.relpath(os.path.join(d, f), work) for d, _, fs in os.walk(work) for f in fs)
    expected = ["deps/0/bin/sts-sidecar", "deps/0/config.yml", "deps/0/launch.yml",
                "deps/0/profile.d/sts-sidecar.sh"] + [f"app/{f}" for f in app_files]
    checks.check(f"{style}: supply writes only under deps/0", sorted(written) == sorted(expected), str(written))
    import yaml  # PyYAML, from the interop venv (the AWS CLI's dependency)

    launch = yaml.safe_load(open(os.path.join(deps, "0", "launch.yml")))
    (sidecar,) = launch["processes"]
    checks.check(f"{style}: launch.yml declares a sidecar for web with its memory",
                 sidecar["type"] == "sts-sidecar"
                 and sidecar["platforms"]["cloudfoundry"]["sidecar_for"] == ["web"]
                 and sidecar["limits"]["memory"] == 32
                 and "profile.d" not in sidecar["command"] and "$" not in sidecar["command"],
                 json.dumps(sidecar))
    config = yaml.safe_load(open(os.path.join(deps, "0", "config.yml")))
    web = app_command
    if style == "libbuildpack":
        # The final buildpack's finalize: deps/*/profile.d into the droplet's profile.d.
        for idx in sorted(os.listdir(deps)):
            src = os.path.join(deps, idx, "profile.d")
            if os.path.isdir(src):
                for name in sorted(os.listdir(src)):
                    if os.path.isfile(os.path.join(src, name)):
                        shutil.copy(os.path.join(src, name), os.path.join(profile, f"{idx}_{name}"))
        with open(os.path.join(profile, "000_multi-supply.sh"), "w") as f:
            f.write(f'export PATH="$DEPS_DIR/0/bin${{PATH:+:$PATH}}"\n')
    else:
        # The Ruby-based Java buildpack: config.yml's environment in front of its start command.
        pairs = config["config"]["environment_variables"]
        web = " ".join(f"{k}={v}" for k, v in sorted(pairs.items())) + " " + app_command
    if os.path.exists(VCAP):
        shutil.rmtree(VCAP)
    os.makedirs(VCAP)
    for name, src in (("app", build), ("deps", deps), ("profile.d", profile)):
        shutil.copytree(src, os.path.join(VCAP, name), symlinks=True)
    for name in ("tmp", "logs"):
        os.makedirs(os.path.join(VCAP, name))
    return [("sts-sidecar", sidecar["command"]), ("web", web)]


def container_env(stack, env, process_type):
    """A process's environment in the container, as Diego and the launcher set it."""
    u = stack.upstreams
    e = {k: v for k, v in env.items() if not k.startswith("_")}
    e.update({
        "PATH": os.environ["PATH"], "LANG": "en_US.UTF-8", "USER": "vcap",
        "VCAP_APPLICATION": vcap_application(process_type), "PORT": "8080",
        "CF_INSTANCE_CERT": u["CF_INSTANCE_CERT"], "CF_INSTANCE_KEY": u["CF_INSTANCE_KEY"],
        "CF_INSTANCE_INDEX": "0", "INSTANCE_INDEX": "0", "CF_INSTANCE_GUID": "instance-guid",
        "MEMORY_LIMIT": "992m",
        # The launcher's own: HOME is the app directory.
        "HOME": f"{VCAP}/app", "TMPDIR": f"{VCAP}/tmp", "DEPS_DIR": f"{VCAP}/deps",
    })
    return e


def launch(procs, stack, env, process_type, command, log_name):
    return procs.start(process_type, ["bash", "-c", LAUNCHER, "launcher", f"{VCAP}/app", command],
                       env=container_env(stack, env, process_type), log_path=log_name)


def run_app(stack, env, command):
    p = subprocess.run(["bash", "-c", LAUNCHER, "launcher", f"{VCAP}/app", command],
                       env=container_env(stack, env, "web"), capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout.strip().splitlines()[-1:] , p.stderr.strip()[-2000:]


def droplet(checks, stack, procs, buildpack, work, env, style, app_argv):
    table = f"{run.TABLE}-{style.split()[0]}"
    commands = stage(checks, buildpack, os.path.join(work, style.split()[0]), env, style,
                     " ".join(app_argv))
    if commands is None:
        return
    (_, sidecar_cmd), (_, web) = commands
    sidecar = launch(procs, stack, env, "sts-sidecar", sidecar_cmd, os.path.join(work, f"{style.split()[0]}-sidecar.log"))
    try:
        run.wait_until("the sidecar from launch.yml", lambda: run.http_ok("http://127.0.0.1:61680/ready"),
                       proc=sidecar, marker=run.SERVING, timeout=60)
        token = os.path.join(VCAP, "tmp", "sts-sidecar-auth-token")
        mode = stat.S_IMODE(os.stat(token).st_mode)
        checks.check(f"{style}: the sidecar wrote the authorization token file (0600)", mode == 0o600, oct(mode))
        for scenario, expect in (("identity", {"arn": run.EXPECTED_ARN}), ("movies", {"titles": run.TITLES})):
            command = web + f" {scenario}" + (f" {table}" if scenario == "movies" else "")
            code, last, err = run_app(stack, env, command)
            got = json.loads(last[0]) if code == 0 and last else None
            checks.check(f"{style}: the web process ({os.path.basename(app_argv[0])}) {scenario}",
                         got == expect, f"exit {code}: {err or last}")
        sidecar.send_signal(signal.SIGTERM)
        code = sidecar.wait(timeout=30)
        checks.check(f"{style}: the sidecar stops cleanly on SIGTERM", code == 0, f"exit {code}\n{run.log_tail(sidecar)}")
    finally:
        procs.stop(sidecar)


def refusals(checks, buildpack, work, stack):
    """Staging with nothing configured, a misspelled variable, a wrong CA path, and as the last
    buildpack."""
    build, deps = os.path.join(work, "refusal-app"), os.path.join(work, "refusal-deps")
    os.makedirs(build)
    os.makedirs(os.path.join(deps, "0"))
    base = {"PATH": os.environ["PATH"], "CF_STACK": "cflinuxfs4", "VCAP_APPLICATION": vcap_application()}
    supply = [os.path.join(buildpack, "bin", "supply"), build, os.path.join(work, "c"), deps, "0"]
    p = subprocess.run(supply, env=base, capture_output=True, text=True)
    out = p.stdout + p.stderr
    checks.check("nothing configured: staging fails saying what to set", p.returncode != 0
                 and "STS_SIDECAR_ROLE_ARN" in out and "cf restage" in out
                 and not os.path.exists(os.path.join(deps, "0", "launch.yml")), out)
    misspelled = dict(base, STS_SIDECAR_ROLE_ARN=run.ROLE_TEMPLATE,
                      STS_SIDECAR_TOKEN_SERVICE_UR=stack.upstreams["TOKEN_SERVICE_URL"])
    p = subprocess.run(supply, env=misspelled, capture_output=True, text=True)
    out = p.stdout + p.stderr
    checks.check("a misspelled variable: staging fails naming it and the right name", p.returncode != 0
                 and "STS_SIDECAR_TOKEN_SERVICE_UR:" in out and "did you mean STS_SIDECAR_TOKEN_SERVICE_URL" in out, out)
    # The app carries a CA bundle but the variable names it wrongly: at staging the app is not
    # at /home/vcap/app yet, so the buildpack has the path looked for in the build directory.
    open(os.path.join(build, "token-service-ca.pem"), "w").close()
    typo = dict(base, STS_SIDECAR_ROLE_ARN=run.ROLE_TEMPLATE,
                STS_SIDECAR_TOKEN_SERVICE_URL=stack.upstreams["TOKEN_SERVICE_URL"],
                STS_SIDECAR_TOKEN_SERVICE_CA=f"{VCAP}/app/token-service.pem")
    p = subprocess.run(supply, env=typo, capture_output=True, text=True)
    out = p.stdout + p.stderr
    checks.check("a CA path the app does not have: staging fails naming it", p.returncode != 0
                 and f"{VCAP}/app/token-service.pem does not exist" in out
                 and not os.path.exists(os.path.join(deps, "0", "launch.yml")), out)
    os.remove(os.path.join(build, "token-service-ca.pem"))
    p = subprocess.run([os.path.join(buildpack, "bin", "detect"), build], env=base, capture_output=True, text=True)
    checks.check("bin/detect does not apply to an app that does not configure it", p.returncode == 1, p.stdout)
    p = subprocess.run([os.path.join(buildpack, "bin", "finalize"), build, os.path.join(work, "c"), deps, "0",
                        os.path.join(work, "p")], env=base, capture_output=True, text=True)
    checks.check("as the last buildpack: fails saying how to order them",
                 p.returncode != 0 and "-b sts-sidecar-buildpack -b java_buildpack" in p.stderr, p.stderr)


def inside(args):
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # /home/vcap on a tmpfs of this mount namespace; the user's own home (where the interop
    # cache may live) stays visible.
    keep = tempfile.mkdtemp(prefix="sts-sidecar-home-")
    subprocess.run(["mount", "--rbind", "/home", keep], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512m", "tmpfs", "/home"], check=True)
    real_home = args.real_home
    if real_home.startswith("/home/"):
        os.makedirs(real_home, exist_ok=True)
        subprocess.run(["mount", "--rbind", os.path.join(keep, os.path.relpath(real_home, "/home")), real_home],
                       check=True)
    checks = Checks()
    procs = run.Processes()
    work = tempfile.mkdtemp(prefix="sts-sidecar-staging-")
    try:
        stack = run.Stack(procs, work).start_upstreams()
        buildpack = os.path.join(work, "buildpack")
        unpack(args.buildpack, buildpack)
        refusals(checks, buildpack, work, stack)
        env = dict(app_env(stack), _CA=stack.upstreams["TOKEN_SERVICE_CA"])
        python_app = [os.path.join(run.VENV, "bin", "python"), "app.py"]
        droplet(checks, stack, procs, buildpack, work, env, "libbuildpack", python_app)
        droplet(checks, stack, procs, buildpack, work, env, "ruby java-buildpack", args.java)
    finally:
        procs.stop_all()
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"staging: {checks.failed} failed" if checks.failed else "staging: all passed")
    return 1 if checks.failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--buildpack", required=True, help="the buildpack zip (scripts/buildpack.sh)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--real-home", help=argparse.SUPPRESS)
    parser.add_argument("--java", type=json.loads, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        return inside(args)
    run.ensure_python()
    run.build()
    java = toolchains.java_client(os.path.join(run.VENV, "bin", "pip"))
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            raise SystemExit(f"staging: needs {tool} (util-linux, iproute2)")
    cmd = ["unshare", "--mount", "--net", "--map-root-user", "--propagation", "private",
           os.path.join(run.VENV, "bin", "python"), os.path.abspath(__file__), "--inside",
           "--buildpack", os.path.abspath(args.buildpack), "--real-home", os.path.expanduser("~"),
           *(["--keep"] if args.keep else []), "--java", json.dumps(java)]
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main())
