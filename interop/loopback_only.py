"""Imported first by the cloud clients: any name lookup of a host off this machine is refused and
recorded (BLOCKED), so a client library that would call out (a project lookup, an instance
discovery) fails here instead of reaching the network, and the test can say it tried."""

import socket

BLOCKED = []
_getaddrinfo = socket.getaddrinfo


def _loopback_only(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name not in ("127.0.0.1", "::1", "localhost") and not name.startswith("127."):
        BLOCKED.append(name)
        raise OSError(f"loopback_only: refused a lookup of {name}")
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _loopback_only
