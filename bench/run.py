#!/usr/bin/env python3
"""sts-sidecar benchmark: serving from cache against a bare hyper server returning the same
bytes, interleaved in one run on one machine. Run by hand; numbers are not asserted.

    python3 bench/run.py                 # full run, about 4 minutes
    python3 bench/run.py --quick         # shorter rounds and idle window, for a smoke test

It builds the release binaries, starts the fake upstreams (dev token service over mTLS and fake
STS), and measures:

- requests/s and p50/p99/max latency at 1, 64 and 512 connections (wrk, interleaved rounds,
  medians), with the ratio to the bare server;
- resident memory idle, after each load step, and peak; idle memory split into anonymous and
  file-backed pages, and the working set of serving from cache (pages referenced during 3 s at
  one connection, after clearing the referenced bits);
- memory-limited runs: the sidecar inside memory cgroups of 6, 8, 10 and 16 MiB (its binary's
  page cache counted), with time to first credentials, major faults and req/s (needs a writable
  cgroup v1 or v2 memory controller, usually root; skipped otherwise or with --no-cgroup);
- time from process start to the first credentials served, the upstreams' share of it, and the
  sidecar's CPU time until then;
- token-service and STS calls during the whole run;
- CPU time over an idle window;
- binary sizes.

Results: bench/results.md (a table, with the machine described) and bench/results.svg (latency
percentiles and memory per step). Needs wrk (Debian package `wrk`).
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
TOKEN = "bench-authorization-token-0123456789abcdef"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_split(pid):
    """(anonymous, file-backed) resident KiB."""
    return rss_kib(pid, "RssAnon"), rss_kib(pid, "RssFile")


def cpu_ns(pid):
    """CPU time of every thread of `pid` so far, in nanoseconds (schedstat, not clock ticks)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def major_faults(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[9])


def referenced_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Referenced:"):
                return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def get(url, headers=None, timeout=2):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def parse_wrk(text):
    def ms(v):
        m = re.match(r"([\d.]+)(us|ms|s)", v)
        n, unit = float(m.group(1)), m.group(2)
        return n / 1000 if unit == "us" else n * 1000 if unit == "s" else n

    out = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))}
    for p in ["50", "99"]:
        out[f"p{p}"] = ms(re.search(rf"\s{p}%\s+(\S+)", text).group(1))
    out["max"] = ms(re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", text).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non2xx"] = int(errors.group(1)) if errors else 0
    return out


def wrk(url, conns, secs, with_token):
    cmd = ["wrk", f"-t{min(2, conns)}", f"-c{conns}", f"-d{secs}s", "--latency"]
    if with_token:
        cmd += ["-H", f"Authorization: {TOKEN}"]
    return parse_wrk(subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout)


def start_upstreams(work, procs):
    """Starts the dev token service (mTLS) and fake STS; returns their env file as a dict."""
    env_file = os.path.join(work, "up.env")
    up = subprocess.Popen([os.path.join(TARGET, "debug", "examples", "dev_upstreams"), "--env-file", env_file],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    procs.append(up)
    for _ in range(100):
        if os.path.exists(env_file):
            break
        time.sleep(0.1)
    return dict(l.split("=", 1) for l in open(env_file).read().splitlines() if "=" in l)


def start_sidecar(sidecar_bin, upstreams, listen, admin, procs, prefix=(), extra=()):
    """Starts `sts-sidecar serve` against the upstreams with the bench token (`prefix`: a
    command that execs the rest, such as the memory cgroup wrapper; `extra`: more flags)."""
    env = dict(os.environ, AWS_CONTAINER_AUTHORIZATION_TOKEN=TOKEN, STS_SIDECAR_LOG="warn",
               CF_INSTANCE_CERT=upstreams["CF_INSTANCE_CERT"], CF_INSTANCE_KEY=upstreams["CF_INSTANCE_KEY"])
    sidecar = subprocess.Popen([*prefix, sidecar_bin, "serve", "--listen", listen, "--admin-listen", admin,
                                "--token-service-url", upstreams["TOKEN_SERVICE_URL"],
                                "--token-service-ca", upstreams["TOKEN_SERVICE_CA"],
                                "--role-arn", "arn:aws:iam::123456789012:role/bench",
                                "--sts-endpoint", upstreams["STS_ENDPOINT"], *extra], env=env)
    procs.append(sidecar)
    return sidecar


def memory_cgroup(name, limit_bytes):
    """Creates a memory cgroup with a hard limit; returns (path of its cgroup.procs, cleanup) or
    None when this machine has no writable memory controller (v2, or v1)."""
    candidates = [("/sys/fs/cgroup", "memory.max"), ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")]
    for root, limit_file in candidates:
        if not os.path.exists(os.path.join(root, limit_file.replace("memory.max", "cgroup.subtree_control"))):
            continue
        path = os.path.join(root, name)
        try:
            os.makedirs(path, exist_ok=True)
        except OSError:
            continue
        try:
            with open(os.path.join(path, limit_file), "w") as f:
                f.write(str(limit_bytes))
        except OSError:
            os.rmdir(path)
            continue
        return os.path.join(path, "cgroup.procs"), lambda: os.rmdir(path)
    return None


def limited_runs(sidecar_bin, upstreams, limits_mib, secs):
    """Runs the sidecar inside memory cgroups of each limit. The binary is copied from inside the
    cgroup first, so its page cache is charged to it as it would be in a container whose droplet
    was just unpacked. Returns one row per limit, or None without a writable memory cgroup."""
    rows = []
    for limit in limits_mib:
        cg = memory_cgroup(f"sts-sidecar-bench-{os.getpid()}-{limit}", limit << 20)
        if cg is None:
            return None
        procs_file, cleanup = cg
        work = tempfile.mkdtemp(prefix="sts-sidecar-cg-")
        copy = os.path.join(work, "sts-sidecar")
        wrapper = ["sh", "-c", 'echo $$ > "$0" && cp "$1" "$2" && shift 2 && exec "$@"', procs_file, sidecar_bin, copy]
        listen, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        procs = []
        try:
            t0 = time.monotonic()
            p = start_sidecar(copy, upstreams, listen, admin, procs, prefix=wrapper)
            first = None
            while time.monotonic() - t0 < 30 and p.poll() is None:
                try:
                    if get(f"http://{listen}/v1/credentials", {"Authorization": TOKEN})[0] == 200:
                        first = time.monotonic() - t0
                        break
                except OSError:
                    pass
                time.sleep(0.002)
            row = {"limit_mib": limit, "first_ms": None if first is None else first * 1000}
            if first is not None:
                row["majflt_start"] = major_faults(p.pid)
                row["rss_idle"] = rss_kib(p.pid)
                row["rps"] = wrk(f"http://{listen}/v1/credentials", 64, secs, True)["rps"]
                row["majflt_load"] = major_faults(p.pid) - row["majflt_start"]
                row["rss_load"] = rss_kib(p.pid)
            rows.append(row)
            log(f"memory limit {limit} MiB: {row}")
        finally:
            stop_all(procs)
            shutil.rmtree(work, ignore_errors=True)
            for _ in range(50):
                try:
                    cleanup()
                    break
                except OSError:
                    time.sleep(0.1)
    return rows


def stop_all(procs):
    """SIGINT to every process, newest first; kill what does not exit within 10 s."""
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 s rounds, 2 rounds, 10 s idle window")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=int, default=5, help="seconds per wrk round")
    ap.add_argument("--idle-secs", type=int, default=60)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench"))
    ap.add_argument("--no-cgroup", action="store_true", help="skip the memory-limited runs")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.secs, args.idle_secs = 2, 2, 10
    if shutil.which("wrk") is None:
        raise SystemExit("bench: needs wrk (apt-get install wrk)")

    log("building release binaries (sts-sidecar, bare_hyper) and the fake upstreams (debug)")
    subprocess.run(["cargo", "build", "--quiet", "--release", "--bin", "sts-sidecar", "--example", "bare_hyper"],
                   cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--quiet", "--features", "test-util", "--example", "dev_upstreams"],
                   cwd=ROOT, check=True)
    sidecar_bin = os.path.join(TARGET, "release", "sts-sidecar")
    bare_bin = os.path.join(TARGET, "release", "examples", "bare_hyper")

    work = tempfile.mkdtemp(prefix="sts-sidecar-bench-")
    procs = []
    try:
        upstreams = start_upstreams(work, procs)
        listen, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        url = f"http://{listen}/v1/credentials"
        log("cold start: process start to the first credentials served")
        t0 = time.monotonic()
        # The 512-connection step needs more than the default 256 slots (one app's SDK never
        # opens that many; the step measures the server, not the cap).
        sidecar = start_sidecar(sidecar_bin, upstreams, listen, admin, procs,
                                extra=("--max-connections", "1024"))
        first = None
        while time.monotonic() - t0 < 10:
            try:
                status, body = get(url, {"Authorization": TOKEN})
                if status == 200:
                    first = time.monotonic() - t0
                    first_cpu_ms = cpu_ns(sidecar.pid) / 1e6
                    break
            except OSError:
                pass
            time.sleep(0.001)
        if first is None:
            raise SystemExit("bench: the sidecar never served credentials")
        metrics = get(f"http://{admin}/metrics")[1].decode()
        upstream_secs = sum(float(m) for m in re.findall(
            r'upstream_request_duration_seconds_sum\{upstream="\w+",outcome="success"\} ([\d.e-]+)', metrics))

        body_file = os.path.join(work, "body.json")
        with open(body_file, "wb") as f:
            f.write(body)
        bare_listen = f"127.0.0.1:{free_port()}"
        bare = subprocess.Popen([bare_bin, bare_listen, body_file])
        procs.append(bare)
        for _ in range(100):
            try:
                get(f"http://{bare_listen}/")
                break
            except OSError:
                time.sleep(0.05)
        time.sleep(2)
        rss = {"idle": {"sidecar": rss_kib(sidecar.pid), "bare": rss_kib(bare.pid)}}
        split = {"sidecar": rss_split(sidecar.pid), "bare": rss_split(bare.pid)}

        # The working set of serving from cache: pages touched during 3 s at one connection,
        # after clearing the referenced bits (clear_refs), against everything resident.
        working_set = {}
        for who, pid, target in (("sidecar", sidecar.pid, url), ("bare", bare.pid, f"http://{bare_listen}/")):
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("1")
            wrk(target, 1, 3, who == "sidecar")
            working_set[who] = referenced_kib(pid)

        steps = {}
        for conns in [1, 64, 512]:
            rounds = {"sidecar": [], "bare": []}
            for r in range(args.rounds):
                order = ["sidecar", "bare"] if r % 2 == 0 else ["bare", "sidecar"]
                for who in order:
                    target = url if who == "sidecar" else f"http://{bare_listen}/v1/credentials"
                    res = wrk(target, conns, args.secs, who == "sidecar")
                    rounds[who].append(res)
                    log(f"{conns:>3} connections, round {r + 1}, {who:7}: {res['rps']:>9.0f} req/s  "
                        f"p99 {res['p99']:.2f} ms  non-2xx {res['non2xx']}")
            steps[conns] = {who: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for who, rs in rounds.items()}
            rss[f"after {conns}c"] = {"sidecar": rss_kib(sidecar.pid), "bare": rss_kib(bare.pid)}
        rss["peak"] = {"sidecar": rss_kib(sidecar.pid, "VmHWM"), "bare": rss_kib(bare.pid, "VmHWM")}

        log(f"idle CPU over {args.idle_secs} s")
        c0 = cpu_ticks(sidecar.pid)
        time.sleep(args.idle_secs)
        idle_cpu_ms = (cpu_ticks(sidecar.pid) - c0) * 1000 / CLK_TCK

        total_requests = None
        metrics = get(f"http://{admin}/metrics")[1].decode()
        m = re.search(r'http_requests_total\{listener="credentials",status="200"\} (\d+)', metrics)
        if m:
            total_requests = int(m.group(1))
        refreshes = int(re.search(r'refreshes_total\{role="default",outcome="success"\} (\d+)', metrics).group(1))
    finally:
        stop_all(procs)
        upstream_report = procs[0].stderr.read() if procs and procs[0].stderr else ""
        shutil.rmtree(work, ignore_errors=True)
    m = re.search(r"(\d+) token requests, (\d+) fake STS requests", upstream_report)
    token_calls, sts_calls = (int(m.group(1)), int(m.group(2))) if m else (None, None)

    limited = None
    if not args.no_cgroup:
        log("memory-limited runs (cgroup), against upstreams of their own")
        work = tempfile.mkdtemp(prefix="sts-sidecar-bench-")
        procs = []
        try:
            limited = limited_runs(sidecar_bin, start_upstreams(work, procs), [6, 8, 10, 16], args.secs)
        finally:
            stop_all(procs)
            shutil.rmtree(work, ignore_errors=True)

    sizes = {"sidecar": os.path.getsize(sidecar_bin), "bare": os.path.getsize(bare_bin)}
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "first_credentials_ms": first * 1000,
        "first_credentials_cpu_ms": first_cpu_ms,
        "rss_split_idle_kib": split,
        "working_set_kib": working_set,
        "memory_limited": limited,
        "upstream_ms": upstream_secs * 1000,
        "steps": steps,
        "rss_kib": rss,
        "idle_cpu_ms": idle_cpu_ms,
        "idle_secs": args.idle_secs,
        "requests_served": total_requests,
        "refreshes": refreshes,
        "token_calls": token_calls,
        "sts_calls": sts_calls,
        "binary_bytes": sizes,
        "rounds": args.rounds,
        "secs": args.secs,
    }
    write_markdown(report, os.path.join(args.out, "results.md"))
    write_svg(report, os.path.join(args.out, "results.svg"))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(open(os.path.join(args.out, "results.md")).read())


def machine():
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        mem = f"{int(open('/proc/meminfo').readline().split()[1]) / 1048576:.0f} GiB"
    except (OSError, ValueError):
        pass
    return f"{os.cpu_count()} cores ({model}), {mem} RAM, Linux {platform.release()}, wrk on the same cores"


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def write_markdown(r, path):
    s = r["steps"]
    lines = [
        "# Benchmark results",
        "",
        f"Measured {r['date']} by `python3 bench/run.py` on {r['machine']}. Loopback only; "
        f"{r['rounds']} interleaved rounds of {r['secs']} s per step, medians. The bare server is "
        "`examples/bare_hyper.rs`: hyper returning the same bytes, no checks.",
        "",
        "| connections | sts-sidecar req/s | bare req/s | ratio | p50 sidecar / bare (ms) | p99 sidecar / bare (ms) | p99 ratio | max sidecar / bare (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for conns, v in s.items():
        a, b = v["sidecar"], v["bare"]
        lines.append(
            f"| {conns} | {a['rps']:,.0f} | {b['rps']:,.0f} | {a['rps'] / b['rps']:.2f} | "
            f"{a['p50']:.3f} / {b['p50']:.3f} | {a['p99']:.3f} / {b['p99']:.3f} | {a['p99'] / b['p99']:.2f} | "
            f"{a['max']:.1f} / {b['max']:.1f} |")
    lines += ["", "| resident memory | sts-sidecar | bare hyper | difference |", "|---|---|---|---|"]
    for step, v in r["rss_kib"].items():
        lines.append(f"| {step} | {mib(v['sidecar'])} | {mib(v['bare'])} | {mib(v['sidecar'] - v['bare'])} |")
    sp, ws = r["rss_split_idle_kib"], r["working_set_kib"]
    lines += [
        f"| idle, anonymous (heap, stacks) | {mib(sp['sidecar'][0])} | {mib(sp['bare'][0])} | {mib(sp['sidecar'][0] - sp['bare'][0])} |",
        f"| idle, file-backed (binary and shared libraries) | {mib(sp['sidecar'][1])} | {mib(sp['bare'][1])} | {mib(sp['sidecar'][1] - sp['bare'][1])} |",
        f"| working set serving from cache (pages referenced in 3 s at 1 connection) | {mib(ws['sidecar'])} | {mib(ws['bare'])} | {mib(ws['sidecar'] - ws['bare'])} |",
    ]
    if r.get("memory_limited"):
        lines += ["", "Inside a memory cgroup with a hard limit (the binary copied from inside it, so its page cache "
                  "counts against the limit, as in a freshly unpacked container):", "",
                  "| limit | first credentials | major faults at start | resident | req/s at 64 connections | major faults under load |",
                  "|---|---|---|---|---|---|"]
        for row in r["memory_limited"]:
            if row["first_ms"] is None:
                lines.append(f"| {row['limit_mib']} MiB | none within 30 s | | | | |")
                continue
            lines.append(f"| {row['limit_mib']} MiB | {row['first_ms']:.0f} ms | {row['majflt_start']} | {mib(row['rss_idle'])} | "
                         f"{row['rps']:,.0f} | {row['majflt_load']} |")
    lines += [
        "",
        "| other | value |",
        "|---|---|",
        f"| first credentials after process start | {r['first_credentials_ms']:.1f} ms, of which the upstreams took {r['upstream_ms']:.1f} ms (as timed by the sidecar around each call) |",
        f"| sidecar CPU time until the first credentials (all threads) | {r['first_credentials_cpu_ms']:.1f} ms |",
        f"| credentials requests answered during the run | {r['requests_served']:,} |",
        f"| token-service calls / STS calls / refreshes | {r['token_calls']} / {r['sts_calls']} / {r['refreshes']} |",
        f"| CPU time over {r['idle_secs']} s idle | {r['idle_cpu_ms']:.0f} ms |",
        f"| binary, stripped | sts-sidecar {r['binary_bytes']['sidecar'] / 1048576:.1f} MiB, bare hyper {r['binary_bytes']['bare'] / 1048576:.1f} MiB |",
        "",
        "![latency and memory](results.svg)",
        "",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def write_svg(r, path):
    """Two small bar charts: p50/p99 latency per step, resident memory per step."""
    w, h, pad = 760, 300, 50
    colors = {"sidecar": "#1f77b4", "bare": "#aaaaaa"}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
             f'<rect width="{w}" height="{h}" fill="white"/>']

    def chart(x0, title, groups, unit):
        cw, ch = w / 2 - pad - 10, h - 2 * pad
        top = max(v for g in groups for _, v in g[1]) or 1
        parts.append(f'<text x="{x0 + cw / 2}" y="20" text-anchor="middle" font-size="13">{title}</text>')
        parts.append(f'<line x1="{x0}" y1="{pad + ch}" x2="{x0 + cw}" y2="{pad + ch}" stroke="black"/>')
        gw = cw / len(groups)
        for gi, (label, bars) in enumerate(groups):
            bw = gw / (len(bars) + 1)
            for bi, (who, v) in enumerate(bars):
                bh = ch * v / top
                x = x0 + gi * gw + bw * (bi + 0.5)
                parts.append(f'<rect x="{x:.1f}" y="{pad + ch - bh:.1f}" width="{bw * 0.9:.1f}" height="{bh:.1f}" fill="{colors[who.split()[0]]}" opacity="{0.55 if "p50" in who else 1}"/>')
                parts.append(f'<text x="{x + bw * 0.45:.1f}" y="{pad + ch - bh - 3:.1f}" text-anchor="middle" font-size="9">{v:.2f}</text>')
            parts.append(f'<text x="{x0 + gi * gw + gw / 2:.1f}" y="{pad + ch + 15}" text-anchor="middle">{label}</text>')
        parts.append(f'<text x="{x0 - 5}" y="{pad - 5}" text-anchor="end">{unit}</text>')

    lat = [(f"{c} conn", [("sidecar p50", v["sidecar"]["p50"]), ("bare p50", v["bare"]["p50"]),
                          ("sidecar p99", v["sidecar"]["p99"]), ("bare p99", v["bare"]["p99"])])
           for c, v in r["steps"].items()]
    chart(pad, "latency p50 (light) and p99 (dark), ms", lat, "ms")
    mem = [(step, [("sidecar", v["sidecar"] / 1024), ("bare", v["bare"] / 1024)]) for step, v in r["rss_kib"].items()]
    chart(w / 2 + pad, "resident memory, MiB", mem, "MiB")
    parts.append(f'<rect x="{w - 170}" y="{h - 22}" width="10" height="10" fill="{colors["sidecar"]}"/>'
                 f'<text x="{w - 156}" y="{h - 13}">sts-sidecar</text>'
                 f'<rect x="{w - 90}" y="{h - 22}" width="10" height="10" fill="{colors["bare"]}"/>'
                 f'<text x="{w - 76}" y="{h - 13}">bare hyper</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts))


if __name__ == "__main__":
    main()
