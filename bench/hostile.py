#!/usr/bin/env python3
"""sts-sidecar and sts-sidecar issuer under hostile load: resident memory per phase and peak,
and whether well-behaved clients kept being answered meanwhile. Run by hand; numbers are
reported, not asserted (tests/serve.rs and tests/issuer/ assert the behaviour: 4xx or a closed
connection, service goes on).

    .venv/bin/python bench/hostile.py                    # about 3 minutes
    .venv/bin/python bench/hostile.py --before OLD_BIN   # and the same against an older build,
                                                         # side by side (about 6 minutes)

(.venv is the interop suite's, made by scripts/test.sh: the issuer's clients sign assertions
with its `cryptography`.)

Phases (each bounded in count and time, loopback only):
  flood         1,400 silent connections to the credentials port, each reopened as soon as it
                is closed, for 10 s
  admin flood   the same against the admin port
  trickle flood 1,400 connections to the credentials port sending a header byte every 0.5 s,
                each reopened as soon as it is closed, for 10 s
  idle conns    3,000 connections opened and left silent (the cap is 256 open at once)
  slowloris     1,000 connections sending one header byte per second for 8 s
  big headers   2,000 requests with a 64 KiB header (over the 16 KiB cap)
  bad tokens    wrk, 64 connections, 5 s, wrong authorization token
  long tokens   wrk, 64 connections, 5 s, an 8 KiB authorization token
  pipelining    200 connections each pipelining 100 requests
  garbage       2,000 connections each sending 4 KiB of random bytes
  burst         600 new connections asking at once, beside two CPU hogs (a busy machine)

Against the issuer (bench/hostile_issuer.py), on plain HTTP as the README's manifest runs it,
while a good client (a different app instance each time) asks for a token every 200 ms: body
trickles (one byte per TCP segment), slow bodies, silent and head-trickling floods, a flood of
partial TLS handshakes (against a second issuer serving TLS), one tenant asking as fast as it
can, and a forged log line.

During the floods a second well-behaved client asks the admin port's `/ready` every 50 ms (a
platform's health probe); both clients give up after 2 s there, as a probe would.

    python3 bench/hostile.py --only flood,admin-flood --binary /path/to/sts-sidecar
                                     # some phases, against another build (no bench/hostile.md)

Writes bench/hostile.md. Needs wrk.
"""

import argparse
import selectors

import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import (ROOT, TARGET, TOKEN, free_port, get, log, machine, rss_kib, start_sidecar,  # noqa: E402
                 stop_all)

try:
    import hostile_issuer  # noqa: E402
except ImportError:
    VENV_PY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venv", "bin", "python")
    if os.path.exists(VENV_PY) and os.path.realpath(sys.executable) != os.path.realpath(VENV_PY):
        os.execv(VENV_PY, [VENV_PY, *sys.argv])
    sys.exit("bench/hostile.py: needs the `cryptography` package: run it with .venv/bin/python "
             "(scripts/test.sh makes .venv)")


class GoodClient(threading.Thread):
    """Asks `url` every 50 ms and records each answer's status and latency (status 0: no answer
    within `timeout` seconds, or the connection failed)."""

    def __init__(self, url, timeout=5):
        super().__init__(daemon=True)
        self.url, self.timeout, self.stop, self.samples = url, timeout, threading.Event(), []

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                status = get(self.url, {"Authorization": TOKEN}, timeout=self.timeout)[0]
            except OSError:
                status = 0
            self.samples.append((status, (time.monotonic() - t0) * 1000))
            time.sleep(0.05)

    def take(self):
        s, self.samples = self.samples, []
        return s


def connect(addr):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    s.settimeout(5)
    return s


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def flood(addr, trickle=False, n=1400, secs=10):
    """`n` connections that send nothing (or, with `trickle`, a request head one byte every
    0.5 s that never ends), each reopened as soon as the server closes it, for `secs` seconds."""
    host, port = addr.rsplit(":", 1)
    sel = selectors.DefaultSelector()
    reopened = 0

    def open_one():
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((host, int(port)))
        sel.register(s, selectors.EVENT_READ)

    for _ in range(n):
        open_one()
    end = time.monotonic() + secs
    next_trickle = time.monotonic() + 0.5
    head = b"GET /v1/credentials HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Trickle: "
    sent = {}
    while time.monotonic() < end:
        for key, _ in sel.select(timeout=0.05):
            s = key.fileobj
            try:
                closed = not s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                closed = True
            if closed:
                sel.unregister(s)
                sent.pop(s, None)
                s.close()
                reopened += 1
                open_one()
        if trickle and time.monotonic() >= next_trickle:
            next_trickle += 0.5
            for key in list(sel.get_map().values()):
                s = key.fileobj
                i = sent.get(s, 0)
                try:
                    s.send(head[i:i + 1] if i < len(head) else b"a")
                    sent[s] = i + 1
                except OSError:
                    pass
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    sel.close()
    return f"{n} connections, reopened {reopened} times"


def idle_conns(addr):
    socks = []
    for _ in range(3000):
        try:
            socks.append(connect(addr))
        except OSError:
            break
    time.sleep(6)  # past the 5 s header read timeout
    close_all(socks)
    return f"{len(socks)} opened"


def slowloris(addr):
    socks = [connect(addr) for _ in range(1000)]
    head = b"GET /v1/credentials HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    cut = 0
    for i in range(8):
        for s in socks:
            try:
                s.send(head[i:i + 1])
            except OSError:
                cut += 1
        time.sleep(1)
    close_all(socks)
    return f"{cut} sends refused (connection cut)"


def big_headers(addr):
    big = b"GET /v1/credentials HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n"
    statuses = {}
    for _ in range(2000):
        s = connect(addr)
        try:
            s.sendall(big)
            line = s.recv(64).split(b"\r\n", 1)[0].decode(errors="replace")
        except OSError:
            line = "closed"
        statuses[line] = statuses.get(line, 0) + 1
        s.close()
    return ", ".join(f"{v}× {k}" for k, v in statuses.items())


def wrk_phase(url, token):
    out = subprocess.run(["wrk", "-t2", "-c64", "-d5s", "-H", f"Authorization: {token}", url],
                         capture_output=True, text=True, check=True).stdout
    total = out.split(" requests in ")[0].split()[-1]
    non2xx = [l.split(":")[1].strip() for l in out.splitlines() if "Non-2xx" in l]
    return f"{total} requests, {non2xx[0] if non2xx else 0} non-2xx"


def pipelining(addr):
    req = f"GET /v1/credentials HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {TOKEN}\r\n\r\n".encode()
    ok = 0
    for _ in range(200):
        s = connect(addr)
        s.sendall(req * 100)
        data = b""
        while data.count(b"HTTP/1.1 200") < 100:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            data += chunk
        ok += data.count(b"HTTP/1.1 200")
        s.close()
    return f"{ok} of 20000 answered 200"


def garbage(addr):
    answered = 0
    for _ in range(2000):
        s = connect(addr)
        try:
            s.sendall(os.urandom(4096))
            if s.recv(64).startswith(b"HTTP/1.1 4"):
                answered += 1
        except OSError:
            pass
        s.close()
    return f"{answered} got a 4xx, the rest were closed"


def burst(url, n=600):
    """`n` clients connect and ask at once, beside two processes that keep both cores busy."""
    import urllib.error
    hogs = [subprocess.Popen([sys.executable, "-c",
                              "import time\nend = time.time() + 20\nwhile time.time() < end: pass"])
            for _ in range(2)]
    time.sleep(0.5)
    barrier = threading.Barrier(n)
    statuses = []

    def one():
        barrier.wait()
        try:
            status = get(url, {"Authorization": TOKEN}, timeout=10)[0]
        except urllib.error.HTTPError as e:
            status = e.code
        except OSError:
            status = 0
        statuses.append(status)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for h in hogs:
        h.terminate()
        h.wait()
    ok = statuses.count(200)
    return f"{ok} of {n} answered 200, {statuses.count(0)} without an answer"


def start_upstreams(work, procs):
    """The dev token service, fake STS and PKI, with 64 more instance identities."""
    env_file = os.path.join(work, "up.env")
    up = subprocess.Popen([os.path.join(TARGET, "debug", "examples", "dev_upstreams"), "--env-file", env_file,
                           "--instances", "64"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    procs.append(up)
    for _ in range(300):
        if os.path.exists(env_file):
            break
        time.sleep(0.1)
    time.sleep(0.2)
    return dict(l.split("=", 1) for l in open(env_file).read().splitlines() if "=" in l)


def sidecar_run(binary, upstreams, procs, only):
    """Every sidecar phase against one binary: (rows, peak KiB, alive)."""
    rows = []
    listen, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    sidecar = start_sidecar(binary, upstreams, listen, admin, procs)
    url = f"http://{listen}/v1/credentials"
    for _ in range(100):
        try:
            if get(url, {"Authorization": TOKEN})[0] == 200:
                break
        except OSError:
            time.sleep(0.1)
    time.sleep(1)
    rows.append(("idle", "", rss_kib(sidecar.pid), None, None, None, None))
    good = GoodClient(url)
    good.start()
    phases = [
        ("flood", lambda: flood(listen)),
        ("admin flood", lambda: flood(admin)),
        ("trickle flood", lambda: flood(listen, trickle=True)),
        ("idle conns", lambda: idle_conns(listen)),
        ("slowloris", lambda: slowloris(listen)),
        ("big headers", lambda: big_headers(listen)),
        ("bad tokens", lambda: wrk_phase(url, "wrong-token")),
        ("long tokens", lambda: wrk_phase(url, "t" * 8192)),
        ("pipelining", lambda: pipelining(listen)),
        ("garbage", lambda: garbage(listen)),
        ("burst", lambda: burst(url)),
    ]
    if only:
        phases = [p for p in phases if p[0] in only]
    for name, phase in phases:
        log(f"sidecar phase: {name}")
        flooding = "flood" in name
        if flooding:
            # As a platform probe would: 2 s, both for the app and for the health probe.
            good.stop.set()
            good.join()
            good = GoodClient(url, timeout=2)
            probe = GoodClient(f"http://{admin}/ready", timeout=2)
            good.start()
            probe.start()
        good.take()
        outcome = phase()
        samples = good.take()
        probes = []
        if flooding:
            probe.stop.set()
            probe.join()
            probes = probe.take()
        ok = sum(1 for st, _ in samples if st == 200)
        worst = max((ms for _, ms in samples), default=0)
        pok = sum(1 for st, _ in probes if st == 200)
        pworst = max((ms for _, ms in probes), default=0)
        rows.append((name, outcome, rss_kib(sidecar.pid), f"{ok}/{len(samples)}", worst,
                     f"{pok}/{len(probes)}" if probes else None, pworst if probes else None))
    good.stop.set()
    good.join()
    peak = rss_kib(sidecar.pid, "VmHWM")
    alive = sidecar.poll() is None
    sidecar.terminate()
    sidecar.wait()
    return rows, peak, alive


def ms(v):
    return "" if v is None else f"{v:.0f}"


def sidecar_table(runs):
    """One row per phase; per run: what the attacker got, RSS after, good 200s, slowest."""
    names = [label for label, _ in runs]
    head = "| phase | " + " | ".join(
        f"{n}: attacker got | {n}: RSS after (MiB) | {n}: good client 200s | {n}: slowest (ms) | {n}: `/ready` 200s"
        for n in names) + " |"
    lines = [head, "|---|" + "---|---:|---:|---:|---:|" * len(runs)]
    for i, row in enumerate(runs[0][1][0]):
        cells = []
        for _, (rows, _, _) in runs:
            name, outcome, rss, ok, worst, pok, _ = rows[i]
            cells.append(f"{outcome} | {rss / 1024:.1f} | {ok or ''} | {ms(worst)} | {pok or ''}")
        lines.append(f"| {row[0]} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Peak resident memory (VmHWM): " + ", ".join(
        f"{label} **{peak / 1024:.1f} MiB**{'' if alive else ' (DIED)'}" for label, (_, peak, alive) in runs) + ".")
    return lines


def issuer_table(runs):
    names = [label for label, _ in runs]
    head = "| phase | " + " | ".join(
        f"{n}: attacker did | {n}: RSS after (MiB) | {n}: good tokens | {n}: slowest (ms)" for n in names) + " |"
    lines = [head, "|---|" + "---|---:|---:|---:|" * len(runs)]
    for i, row in enumerate(runs[0][1][0]):
        cells = []
        for _, (rows, _, _, _) in runs:
            name, outcome, rss, ok, worst = rows[i]
            cells.append(f"{outcome} | {rss / 1024:.1f} | {ok or ''} | {ms(worst)}")
        lines.append(f"| {row[0]} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Peak resident memory (VmHWM), plain HTTP issuer / TLS issuer: " + ", ".join(
        f"{label} **{peak / 1024:.1f} / {tls / 1024:.1f} MiB**{'' if alive else ' (one DIED)'}"
        for label, (_, peak, tls, alive) in runs) + ".")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated sidecar phases (names with - for spaces)")
    parser.add_argument("--binary", help="an sts-sidecar binary to test instead of building one")
    parser.add_argument("--before", help="an older sts-sidecar binary to run the same phases against")
    parser.add_argument("--no-issuer", action="store_true", help="leave the issuer's phases out")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
    log("building the release binary and the fake upstreams")
    binary = args.binary or os.path.join(TARGET, "release", "sts-sidecar")
    if not args.binary:
        subprocess.run(["cargo", "build", "--quiet", "--release", "--bin", "sts-sidecar"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--quiet", "--features", "test-util", "--example", "dev_upstreams"],
                   cwd=ROOT, check=True)
    only = args.only.replace("-", " ").split(",") if args.only else None
    binaries = ([("before", args.before)] if args.before else []) + [("after" if args.before else "this build", binary)]
    work = tempfile.mkdtemp(prefix="sts-sidecar-hostile-")
    procs = []
    sidecar_runs, issuer_runs = [], []
    try:
        upstreams = start_upstreams(work, procs)
        for label, b in binaries:
            log(f"== {label}: {b}")
            sidecar_runs.append((label, sidecar_run(b, upstreams, procs, only)))
            if not args.no_issuer:
                issuer_runs.append((label, hostile_issuer.run(b, upstreams, procs, work, rss_kib, free_port, log)))
    finally:
        stop_all(procs)
    lines = [
        "# sts-sidecar and its issuer under hostile load",
        "",
        f"{time.strftime('%Y-%m-%d')}, {machine()}. Produced by `.venv/bin/python bench/hostile.py"
        + (" --before <the build before>" if args.before else "") + "`.",
        "",
        "## The sidecar",
        "",
        "A well-behaved client asked for credentials every 50 ms throughout; its columns show",
        "how many of its requests got 200 during each phase, and the slowest one. During the",
        "floods it gave up after 2 s, and a health probe asked the admin port's `/ready` every",
        "50 ms, also with 2 s. *burst*: 600 new connections asking at once while two processes",
        "keep both cores busy.",
        "",
        *sidecar_table(sidecar_runs),
    ]
    if issuer_runs:
        lines += [
            "",
            "## The issuer",
            "",
            "`sts-sidecar issuer` on plain HTTP with its defaults, as the README's manifest runs it",
            "(the TLS flood against a second one serving TLS). A good client, a different app",
            "instance each time, asked for a token every 200 ms with a fresh assertion and gave up",
            "after 2 s; *good tokens* counts its 200s during each phase.",
            "",
            *issuer_table(issuer_runs),
        ]
    text = "\n".join(lines) + "\n"
    if not args.only:
        with open(os.path.join(ROOT, "bench", "hostile.md"), "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
