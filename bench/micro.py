#!/usr/bin/env python3
"""
CPU per request (or per websocket message) of proxyws's own code, without
sockets.

A real site built from a config (as C{twistd proxyws} builds it) runs on a
memory reactor: one kept-alive client connection and one kept-alive backend
connection, both in-memory transports.  Each round sends a small GET in and
a small response back, as the C{small GET} row of C{bench/run} does, and
the time per request is what the Python side of proxyws costs (no system
calls, no event loop).

Machines of this kind drift by 10-30% within minutes, so compare two trees
by alternating them::

    python3 bench/micro.py --compare OTHER_TREE [--rounds 10]

which runs this file on each tree in turn (C{PROXYWS_TREE}) and prints the
minimum and median of each.  On its own it prints one figure, in
microseconds per request.

With C{--ws}, a websocket is opened through the site the same way (both
handshakes in memory) and each round relays a 32-byte masked text frame
from the client and a 32-byte text frame from the backend, as the C{ws 32 B
messages} row of C{bench/run} does: microseconds per message.

With C{--upstream MODE}, the route goes to an upstream of 3 members (one
kept-alive connection each) instead of one backend: C{round_robin} and
C{least_conn} spread the requests over the three, C{sockjs} sends requests
of one SockJS session (its key read from the path) and C{cookie} requests
carrying the affinity cookie to their member.  C{--beside} alternates it
with the single backend in the same tree, C{--rounds} times each, and
prints both::

    python3 bench/micro.py --upstream round_robin --beside

With C{--noop}, the routes have a plugin that does nothing: a request
filter that lets every request pass (HTTP), or a websocket filter that lets
every message pass (C{--ws}: messages are then reassembled and go through
the filter, instead of relayed as frames).  C{--plugins} runs this tree
with and without it, alternated, and prints both (the cost of a no-op
filter, and that a route without plugins pays nothing)::

    python3 bench/micro.py --plugins [--ws] [--rounds 10]

With C{--admin}, the site is built as with an C{[admin]} table: metrics
recorded for every request and websocket, and an (empty) table of routes
added through the API tried before the config's routes; with C{--admin api},
the request or websocket goes through such a route instead (its last
activity recorded too).  C{--metrics} runs this tree without C{[admin]},
with it and through an API route, alternated, and prints the three::

    python3 bench/micro.py --metrics [--ws] [--rounds 10]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

# The tree measured: this checkout, or the one --compare names.
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.environ.get("PROXYWS_TREE") or HERE)

CONFIG = """
[server]
access_log = "{log}"

[[listen]]
address = "127.0.0.1"
port = 8080

[[route]]
path = "/ws/"
backend = "ws://127.0.0.1:9001/"
{plugins}

[[route]]
path = "/"
backend = "http://127.0.0.1:9000/"
{plugins}
"""

# The no-op plugin of --noop, as a route names it.
NOOP = 'plugins = [{ name = "noop" }]'


def noopPlugins(config, reactor):
    """
    The plugins of C{config}, with C{noop} installed: a provider of a
    request filter and a websocket filter that let everything pass.
    """
    from zope.interface import implementer

    from proxyws.interfaces import IRequestFilter, IWebSocketFilter
    from proxyws.plugins import buildPlugins

    @implementer(IRequestFilter, IWebSocketFilter)
    class Noop:
        def filterRequest(self, request):
            return None

        def opened(self, connection):
            return None

        def message(self, connection, message):
            return None

        def closed(self, connection, code, reason):
            return None

    return buildPlugins(config, reactor, {"noop": lambda options: Noop()})


def build(reactor, noop, admin=None):
    """
    The site of L{CONFIG}, with the no-op plugin on its routes or not.

    @param admin: L{None}, C{"config"} or C{"api"} (see L{adminSite}).
    """
    from proxyws.accesslog import AccessLog
    from proxyws.config import parseConfig
    from proxyws.service import buildSite

    text = CONFIG.format(log=os.devnull, plugins=NOOP if noop else "")
    config = parseConfig(text, "micro.toml")
    if admin is not None:
        return adminSite(config, reactor, admin == "api")
    # A tree from before plugins builds its sites without them.
    extra = {"plugins": noopPlugins(config, reactor)} if noop else {}
    return buildSite(config, reactor, AccessLog.open(os.devnull), **extra)[0]


def adminSite(config, reactor, api):
    """
    The site of C{config} as the server builds it with an C{[admin]} table:
    with its metrics and the table of API routes.

    @param api: add API routes that take the bench's requests (C{/small})
        and websockets (C{/ws/echo}) before the config's routes.
    """
    from proxyws.accesslog import AccessLog
    from proxyws.apiroutes import APIRouteTable
    from proxyws.metrics import Metrics
    from proxyws.service import buildRoot
    from proxyws.site import ProxySite

    metrics = Metrics(process=False)
    table = APIRouteTable(server=config.server)
    if api:
        table.add("/small", {"target": "http://127.0.0.1:9000"}, reactor.seconds())
        table.add("/ws", {"target": "http://127.0.0.1:9001"}, reactor.seconds())
    root, _ = buildRoot(config, reactor, metrics=metrics, apiRoutes=table)
    server = config.server
    site = ProxySite(
        root, AccessLog.open(os.devnull), reactor, server.clientTimeout,
        trustedProxies=server.trustedProxies, server=server)
    site.metrics, site.apiRoutes = metrics, table
    return site

UPGRADE = (
    b"GET /ws/echo HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8080\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)

# A 32-byte text message as the client sends it (masked) and as the
# backend sends it.
CLIENT_FRAME = b"\x81\xa0\x01\x02\x03\x04" + bytes(b ^ (i % 4 + 1) for i, b in enumerate(b"m" * 32))
BACKEND_FRAME = b"\x81\x20" + b"m" * 32

REQUEST = (
    b"GET /small HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8080\r\n"
    b"User-Agent: bench\r\n"
    b"Accept: */*\r\n"
    b"\r\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: nginx/1.22.1\r\n"
    b"Date: Thu, 26 Nov 2026 02:00:00 GMT\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Length: 5\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n"
    b"hello"
)


def connect(noop, admin, first):
    """
    Build a site on a memory reactor, connect a client to it with in-memory
    transports, send C{first} (a request head) and connect the backend
    connection the site asks for.

    @return: C{(channel, client transport, backend protocol, backend
        transport, reactor)}.
    """
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    reactor = MemoryReactorClock()
    site = build(reactor, noop, admin)
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
    client = StringTransport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
        peerAddress=IPv4Address("TCP", "127.0.0.1", 50000),
    )
    channel.makeConnection(client)
    channel.dataReceived(first)
    host, port, factory, timeout, bindAddress = reactor.tcpClients[0]
    backend = factory.buildProtocol(IPv4Address("TCP", host, port))
    backendTransport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
    backend.makeConnection(backendTransport)
    return channel, client, backend, backendTransport, reactor


def measure(seconds, noop=False, admin=None):
    """
    Relay requests for about C{seconds}.

    @return: microseconds of process CPU time per request.
    """
    channel, client, backend, backendTransport, reactor = connect(noop, admin, REQUEST)
    backend.dataReceived(RESPONSE)
    if not client.value().endswith(b"hello"):
        raise SystemExit("no response: {!r}".format(client.value()))

    clientData, backendData = channel.dataReceived, backend.dataReceived
    done = 0
    start = time.process_time()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(200):
            clientData(REQUEST)
            backendData(RESPONSE)
        done += 200
        client.clear()
        backendTransport.clear()
    used = time.process_time() - start
    if len(reactor.tcpClients) != 1:
        raise SystemExit("the backend connection was not reused")
    return used / done * 1e6


# The upstream of --upstream: three members, and the lines each mode adds.
UPSTREAM_CONFIG = """
[server]
access_log = "{log}"

[[listen]]
address = "127.0.0.1"
port = 8080

[[upstream]]
name = "app"
members = [
    {{ url = "http://127.0.0.1:9000/", name = "a" }},
    {{ url = "http://127.0.0.1:9001/", name = "b" }},
    {{ url = "http://127.0.0.1:9002/", name = "c" }},
]
{lines}

[[route]]
path = "/"
upstream = "app"
"""

# Each --upstream mode: its [[upstream]] lines and the request it relays.
UPSTREAM_MODES = {
    "round_robin": ("", REQUEST),
    "least_conn": ('policy = "least_conn"', REQUEST),
    "sockjs": (
        'affinity = "sockjs"',
        REQUEST.replace(b"/small", b"/app/__sockjs__/n=Xq3Lr8ZkP0aBcD1eF2/123/lqtq3eb5/xhr"),
    ),
    "cookie": (
        'affinity = "cookie"',
        REQUEST.replace(b"\r\n\r\n", b"\r\nCookie: _ga=GA1.2.3; proxyws_member=b\r\n\r\n"),
    ),
}


def measureUpstream(seconds, mode):
    """
    Relay requests through a 3-member upstream for about C{seconds}.

    @param mode: a key of L{UPSTREAM_MODES}.
    @return: microseconds of process CPU time per request.
    """
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    from proxyws.accesslog import AccessLog
    from proxyws.config import parseConfig
    from proxyws.service import buildSite

    lines, request = UPSTREAM_MODES[mode]
    reactor = MemoryReactorClock()
    config = parseConfig(UPSTREAM_CONFIG.format(log=os.devnull, lines=lines), "micro.toml")
    site, pool = buildSite(config, reactor, AccessLog.open(os.devnull))
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
    client = StringTransport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
        peerAddress=IPv4Address("TCP", "127.0.0.1", 50000),
    )
    channel.makeConnection(client)
    # The first three requests: which member connection each went to (the
    # same order repeats, as the choices do for requests one at a time).
    backends, cycle = [], []
    for _ in range(3):
        sent = [len(transport.value()) for _, transport in backends]
        channel.dataReceived(request)
        if len(reactor.tcpClients) > len(backends):
            host, port, factory, timeout, bindAddress = reactor.tcpClients[len(backends)]
            protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
            transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
            protocol.makeConnection(transport)
            backends.append((protocol, transport))
            cycle.append(len(backends) - 1)
        else:
            grew = [i for i, (_, t) in enumerate(backends) if len(t.value()) > sent[i]]
            cycle.append(grew[0])
        backends[cycle[-1]][0].dataReceived(RESPONSE)
    if client.value().count(b"hello") != 3:
        raise SystemExit("no responses: {!r}".format(client.value()))

    clientData = channel.dataReceived
    feeds = [backends[i][0].dataReceived for i in cycle]
    done = 0
    start = time.process_time()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(67):
            for feed in feeds:
                clientData(request)
                feed(RESPONSE)
        done += 67 * len(feeds)
        client.clear()
        for _, transport in backends:
            transport.clear()
    used = time.process_time() - start
    if len(reactor.tcpClients) != len(backends):
        raise SystemExit("the member connections were not reused")
    return used / done * 1e6


def measureWebSocket(seconds, noop=False, admin=None):
    """
    Relay websocket messages both ways for about C{seconds}.

    @return: microseconds of process CPU time per message.
    """
    import base64
    import hashlib

    channel, client, backend, backendTransport, _ = connect(noop, admin, UPGRADE)
    request = backendTransport.value()
    key = [
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    ][0]
    accept = base64.b64encode(
        hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    )
    backend.dataReceived(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    if b" 101 " not in client.value():
        raise SystemExit("no upgrade: {!r}".format(client.value()))
    client.clear()
    backendTransport.clear()
    clientData, backendData = channel.dataReceived, backend.dataReceived
    clientData(CLIENT_FRAME)
    backendData(BACKEND_FRAME)
    if client.value() != BACKEND_FRAME or not backendTransport.value().endswith(CLIENT_FRAME):
        raise SystemExit("frames not relayed: {!r}".format(client.value()))
    done = 0
    start = time.process_time()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(500):
            clientData(CLIENT_FRAME)
            backendData(BACKEND_FRAME)
        done += 1000
        client.clear()
        backendTransport.clear()
    used = time.process_time() - start
    return used / done * 1e6


def compare(other, rounds, seconds, ws, upstream=None):
    """
    Alternate this checkout and C{other}, C{rounds} times each.
    """
    flags = (["--ws"] if ws else []) + (["--upstream", upstream] if upstream else [])
    alternate([("this", HERE, flags), ("other", os.path.abspath(other), flags)], rounds, seconds)


def alternate(runs, rounds, seconds):
    """
    Take turns running this file as each of C{runs} says, C{rounds} times,
    and print the minimum and median of each.

    @param runs: C{(label, tree, flags)} triples.
    """
    results = {label: [] for label, _, _ in runs}
    for _ in range(rounds):
        for label, tree, flags in runs:
            env = dict(os.environ, PROXYWS_TREE=tree)
            command = [sys.executable, os.path.join(HERE, "bench", "micro.py")]
            command += ["--seconds", str(seconds)] + flags
            out = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
            results[label].append(float(out.stdout.split()[0]))
    for label, tree, flags in runs:
        values = results[label]
        print("{:10} {:>8.2f} us min {:>8.2f} us median  ({} {})".format(
            label, min(values), statistics.median(values), tree, " ".join(flags)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--compare", metavar="TREE")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--ws", action="store_true", help="websocket messages")
    parser.add_argument(
        "--upstream", choices=sorted(UPSTREAM_MODES), help="through a 3-member upstream"
    )
    parser.add_argument(
        "--beside", action="store_true", help="alternate --upstream with the single backend"
    )
    parser.add_argument("--noop", action="store_true", help="a no-op plugin on the routes")
    parser.add_argument("--plugins", action="store_true", help="alternate without and with --noop")
    parser.add_argument(
        "--admin", nargs="?", const="config", choices=("config", "api"),
        help="built as with [admin] (metrics); 'api': through an API route")
    parser.add_argument(
        "--metrics", action="store_true", help="alternate without [admin], with it, through the API")
    options = parser.parse_args()
    ws = ["--ws"] if options.ws else []
    if options.compare:
        compare(options.compare, options.rounds, options.seconds, options.ws, options.upstream)
    elif options.plugins:
        runs = [("none", HERE, ws), ("noop", HERE, ws + ["--noop"])]
        alternate(runs, options.rounds, options.seconds)
    elif options.metrics:
        runs = [("no admin", HERE, ws), ("admin", HERE, ws + ["--admin"]),
                ("api route", HERE, ws + ["--admin", "api"])]
        alternate(runs, options.rounds, options.seconds)
    elif options.beside:
        if not options.upstream:
            raise SystemExit("--beside goes with --upstream MODE")
        runs = [("single", HERE, []), (options.upstream, HERE, ["--upstream", options.upstream])]
        alternate(runs, options.rounds, options.seconds)
    elif options.upstream:
        print("{:.1f} us per request".format(measureUpstream(options.seconds, options.upstream)))
    elif options.ws:
        print("{:.2f} us per message".format(
            measureWebSocket(options.seconds, options.noop, options.admin)))
    else:
        print("{:.1f} us per request".format(measure(options.seconds, options.noop, options.admin)))


if __name__ == "__main__":
    main()
