"""The issuer under hostile load (used by bench/hostile.py): phases that attack `sts-sidecar
issuer` as a client without any certificate would (and one as a greedy tenant would), while a
well-behaved client (a different app instance each time, signing its own assertion) asks for a
token every 200 ms and gives up after 2 s. Every phase is bounded in count and time, loopback
only. Needs the `cryptography` package (the interop suite's .venv has it)."""

import base64
import http.client
import json
import os
import random
import selectors
import socket
import subprocess
import threading
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Instance:
    """An app instance: its certificate chain and key, signing its own assertions."""

    def __init__(self, cert_path, key_path):
        pem = open(cert_path, "rb").read()
        blocks = [b"-----BEGIN" + b for b in pem.split(b"-----BEGIN")[1:]]
        certs = [x509.load_pem_x509_certificate(b) for b in blocks]
        self.chain = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in certs]
        self.cn = certs[0].subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
        self.key = serialization.load_pem_private_key(open(key_path, "rb").read(), password=None)

    def assertion(self, aud):
        rsa_key = isinstance(self.key, rsa.RSAPrivateKey)
        header = {"alg": "RS256" if rsa_key else "ES256", "typ": "JWT", "x5c": self.chain}
        now = int(time.time())
        claims = {"iss": self.cn, "sub": self.cn, "aud": aud, "iat": now, "exp": now + 120,
                  "jti": b64u(os.urandom(24))}
        signing_input = f"{b64u(json.dumps(header).encode())}.{b64u(json.dumps(claims).encode())}"
        if rsa_key:
            sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        else:
            r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{signing_input}.{b64u(sig)}"


def token_request(addr, instance, aud, timeout=2):
    """One token request with a fresh assertion; returns the status (0: no answer in time)."""
    host, port = addr.rsplit(":", 1)
    body = f"grant_type={GRANT}&assertion={instance.assertion(aud)}"
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("POST", "/token", body, {"Content-Type": "application/x-www-form-urlencoded"})
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


class GoodTenants(threading.Thread):
    """Asks for a token every 200 ms, each time as the next of `instances` (real sidecars ask
    about every half hour; many of them at once look like this). With 63 instances over the
    whole run none asks more than its budget's burst."""

    def __init__(self, addr, aud, instances):
        super().__init__(daemon=True)
        self.addr, self.aud, self.instances = addr, aud, instances
        self.stop, self.samples, self.i = threading.Event(), [], 0

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            status = token_request(self.addr, self.instances[self.i % len(self.instances)], self.aud)
            self.i += 1
            self.samples.append((status, (time.monotonic() - t0) * 1000))
            time.sleep(0.2)

    def take(self):
        s, self.samples = self.samples, []
        return s


def reopening(addr, n, secs, on_open, on_tick=None, tick=0.5):
    """`n` connections, each reopened as soon as the server closes it, for `secs` seconds;
    `on_open(sock)` sends what a new one sends, `on_tick(sock, i)` what each sends every `tick`
    seconds. Returns how many were reopened."""
    host, port = addr.rsplit(":", 1)
    sel = selectors.DefaultSelector()
    reopened = 0
    count = {}

    def open_one():
        s = socket.socket()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(2)
        try:
            s.connect((host, int(port)))
            on_open(s)
        except OSError:
            pass
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        count[s] = 0

    for _ in range(n):
        open_one()
    end = time.monotonic() + secs
    next_tick = time.monotonic() + tick
    while time.monotonic() < end:
        for key, _ in sel.select(timeout=0.02):
            s = key.fileobj
            try:
                closed = not s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                closed = True
            if closed:
                sel.unregister(s)
                count.pop(s, None)
                s.close()
                reopened += 1
                open_one()
        if on_tick and time.monotonic() >= next_tick:
            next_tick += tick
            for key in list(sel.get_map().values()):
                s = key.fileobj
                try:
                    on_tick(s, count.get(s, 0))
                    count[s] = count.get(s, 0) + 1
                except OSError:
                    pass
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    sel.close()
    return reopened


def head(declared):
    return (f"POST /token HTTP/1.1\r\nHost: issuer\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {declared}\r\n\r\n").encode()


def body_trickle(addr, declared, conns=8, secs=6):
    """`conns` connections each declaring `declared` bytes and sending them one byte per TCP
    segment as fast as they can; a connection the server ends is reopened."""
    host, port = addr.rsplit(":", 1)
    sent = [0]
    stop = time.monotonic() + secs

    def one():
        while time.monotonic() < stop:
            s = socket.socket()
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.settimeout(1)
            try:
                s.connect((host, int(port)))
                s.sendall(head(declared))
                while time.monotonic() < stop:
                    s.send(b"a")
                    sent[0] += 1
                    time.sleep(0.0002)
            except OSError:
                pass
            finally:
                s.close()

    threads = [threading.Thread(target=one, daemon=True) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return f"{conns} connections, {sent[0]:,} body bytes sent one per segment"


def slow_bodies(addr, declared, n=1400, secs=10):
    reopened = reopening(addr, n, secs, lambda s: s.sendall(head(declared)),
                         lambda s, i: s.send(b"a"))
    return f"{n} connections declaring {declared:,} bytes, a byte every 0.5 s; reopened {reopened:,} times"


def silent_flood(addr, n=1400, secs=10):
    return f"{n} silent connections, reopened {reopening(addr, n, secs, lambda s: None):,} times"


def head_trickle(addr, n=1400, secs=10):
    text = head(100)

    def tick(s, i):
        s.send(text[i:i + 1] if i < len(text) else b"x")
    return f"{n} connections trickling a head, reopened {reopening(addr, n, secs, lambda s: None, tick):,} times"


def tls_flood(addr, n=1400, secs=10):
    """Connections that start a TLS record announcing 16 KiB of handshake, send 4 KiB of it,
    then a byte every 0.5 s."""
    record = b"\x16\x03\x01\x40\x00" + b"\x01\x00\x3f\xfc" + os.urandom(4000)
    reopened = reopening(addr, n, secs, lambda s: s.sendall(record), lambda s, i: s.send(b"\x00"))
    return f"{n} partial TLS handshakes (4 KiB of a 16 KiB record), reopened {reopened:,} times"


def greedy_tenant(addr, instance, aud, secs=8, threads=4):
    """One instance asks for tokens as fast as `threads` threads can sign assertions."""
    stop = time.monotonic() + secs
    statuses = {}
    lock = threading.Lock()

    def run():
        while time.monotonic() < stop:
            st = token_request(addr, instance, aud, timeout=5)
            with lock:
                statuses[st] = statuses.get(st, 0) + 1

    ts = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    total = sum(statuses.values())
    return f"{total:,} requests by one instance: " + ", ".join(f"{v:,}× {k}" for k, v in sorted(statuses.items()))


def forged_line(addr, log_path):
    """A duplicated form key holding a newline and a forged log line, 5 KB long (the whole
    body well under either build's body limit)."""
    import urllib.parse
    forged = "x\n2026-12-07T00:00:00.000000Z  INFO sts_sidecar::issuer: token issued org_guid=victim-org " + "y" * 5000
    key = urllib.parse.quote_plus(forged)
    body = f"{key}=1&{key}=2"
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("POST", "/token", body, {"Content-Type": "application/x-www-form-urlencoded"})
        status = conn.getresponse().status
    except OSError:
        status = 0
    finally:
        conn.close()
    time.sleep(0.5)
    lines = open(log_path, errors="replace").read().splitlines()
    forged_lines = sum(1 for l in lines if l.startswith("2026-12-07T00:00:00.000000Z"))
    longest = max((len(l) for l in lines), default=0)
    return f"status {status}; forged lines in the log: {forged_lines}; longest line {longest:,} bytes"


def start_issuer(binary, upstreams, listen, admin, log_path, procs, tls=False):
    """`sts-sidecar issuer` on plain HTTP as the README's manifest runs it (or TLS), with its
    defaults (the good tenants are enough instances that none meets its budget)."""
    url = f"{'https' if tls else 'http'}://{listen}"
    cmd = [binary, "issuer", "--issuer-url", url, "--listen", listen, "--admin-listen", admin,
           "--instance-identity-ca", upstreams["ISSUER_CA"], "--signing-key", upstreams["ISSUER_SIGNING_KEY"]]
    if tls:
        cmd += ["--tls-cert", upstreams["ISSUER_TLS_CERT"], "--tls-key", upstreams["ISSUER_TLS_KEY"]]
    log_file = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=log_file,
                            env={"PATH": os.environ.get("PATH", ""), "STS_SIDECAR_LOG": "info"})
    procs.append(proc)
    for _ in range(100):
        try:
            socket.create_connection(tuple(admin.rsplit(":", 1)), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, url


def instances_of(upstreams):
    d, n = upstreams["INSTANCES_DIR"], int(upstreams["INSTANCES"])
    return [Instance(os.path.join(d, f"instance-{i}.crt"), os.path.join(d, f"instance-{i}.key")) for i in range(n)]


def phases(addr, tls_addr, url, log_path, instances):
    """(name, phase) for the plain-HTTP issuer; the TLS flood runs against `tls_addr`."""
    greedy = instances[-1]
    return [
        ("body trickle, 65,536 declared", lambda: body_trickle(addr, 65536)),
        ("body trickle, 15,000 declared", lambda: body_trickle(addr, 15000)),
        ("slow bodies, 60,000 declared", lambda: slow_bodies(addr, 60000)),
        ("slow bodies, 15,000 declared", lambda: slow_bodies(addr, 15000)),
        ("silent flood", lambda: silent_flood(addr)),
        ("head trickle flood", lambda: head_trickle(addr)),
        ("TLS handshake flood", lambda: tls_flood(tls_addr)),
        ("greedy tenant", lambda: greedy_tenant(addr, greedy, url)),
        ("forged log line", lambda: forged_line(addr, log_path)),
    ]


def run(binary, upstreams, procs, work, rss_kib, free_port, log):
    """Every phase against one binary; returns (rows, peak RSS KiB, alive, a greedy-tenant
    check) where rows are (phase, outcome, RSS after KiB, good 200s, good slowest ms)."""
    instances = instances_of(upstreams)
    listen, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    tls_listen, tls_admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    log_path = os.path.join(work, f"issuer-{os.path.basename(os.path.dirname(binary))}.log")
    proc, url = start_issuer(binary, upstreams, listen, admin, log_path, procs)
    tls_proc, _ = start_issuer(binary, upstreams, tls_listen, tls_admin, log_path + ".tls", procs, tls=True)
    time.sleep(1)
    rows = [("idle", "", rss_kib(proc.pid), None, None)]
    good = GoodTenants(listen, url, instances[:-1])
    good.start()
    for name, phase in phases(listen, tls_listen, url, log_path, instances):
        log(f"issuer phase: {name}")
        good.take()
        target = tls_proc if name.startswith("TLS") else proc
        outcome = phase()
        samples = good.take()
        ok = sum(1 for s, _ in samples if s == 200)
        worst = max((ms for _, ms in samples), default=0)
        rows.append((name, outcome, rss_kib(target.pid), f"{ok}/{len(samples)}", worst))
        time.sleep(1)
    good.stop.set()
    good.join()
    peak = max(rss_kib(proc.pid, "VmHWM"), 0)
    tls_peak = rss_kib(tls_proc.pid, "VmHWM")
    alive = proc.poll() is None and tls_proc.poll() is None
    proc.terminate()
    tls_proc.terminate()
    return rows, peak, tls_peak, alive
