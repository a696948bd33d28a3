#!/usr/bin/env python3
"""
What upstreams cost and how fast they react, measured on this machine.

1. The CPU of one member choice (L{proxyws.upstream.Upstream.choose}) for
   each policy and affinity, over 3 members, with the request view it
   needs built from 10 headers, in microseconds (the median of 5 runs of
   20,000 choices each).
2. The time from a member's death to the traffic moving away from it,
   through the proxy (in this process) with real members on 127.0.0.1 and
   a client sending requests back to back: with passive checks (the first
   request refused takes it down, and goes to another member) and with
   active checks (interval 0.5 s, fall 2, timeout 0.25 s; until they take
   it down, each request sent to it is refused and goes to another
   member), the client errors meanwhile, and the time it takes to come
   back after it is restarted (fail_timeout; rise 2).

Run from a checkout::

    python3 bench/upstreams.py
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet.task import Clock  # noqa: E402

from proxyws.affinity import selectionRequest  # noqa: E402
from proxyws.config import parseConfig  # noqa: E402
from proxyws.upstream import Upstreams  # noqa: E402

CONFIG = """
[[listen]]
address = "127.0.0.1"
port = 8080

[[upstream]]
name = "app"
members = {members}
{more}
"""

HEADERS = [
    (b"Host", [b"shiny.example.com"]),
    (b"User-Agent", [b"Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0"]),
    (b"Accept", [b"*/*"]),
    (b"Accept-Language", [b"en-GB,en;q=0.5"]),
    (b"Accept-Encoding", [b"gzip, deflate, br"]),
    (b"Referer", [b"https://shiny.example.com/app/"]),
    (b"X-Requested-With", [b"XMLHttpRequest"]),
    (b"Connection", [b"keep-alive"]),
    (b"X-User", [b"alice"]),
]

CASES = [
    ("round_robin", "", False),
    ("least_conn", 'policy = "least_conn"', False),
    ("random_two", 'policy = "random_two"', False),
    ("hash (client address)", 'policy = "hash"', True),
    ("hash (header)", 'policy = "hash"\nhash = "header:X-User"', True),
    ("sockjs affinity, session request", 'affinity = "sockjs"', True),
    ("sockjs affinity, page (no key)", 'affinity = "sockjs"', True),
    ("cookie affinity, cookie present", 'affinity = "cookie"', True),
]

# The proxy of reaction(): a listener and a route to the upstream.
PROXY = """
[[listen]]
address = "127.0.0.1"
port = 0

[[upstream]]
name = "app"
members = {members}
{more}

[[route]]
path = "/"
upstream = "app"
"""

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"

PATH = b"/app/__sockjs__/n=Xq3Lr8ZkP0aBcD1eF2/123/lqtq3eb5/xhr_send"


def choiceCost(more, withView, path, cookie):
    """
    Microseconds per choice (and view), the median of 5 runs.
    """
    members = '["http://10.0.0.1:3838/", "http://10.0.0.2:3838/", "http://10.0.0.3:3838/"]'
    config = parseConfig(CONFIG.format(members=members, more=more))
    app = Upstreams.fromConfig(config, Clock(), None).get("app")
    headers = HEADERS + ([(b"Cookie", [cookie])] if cookie else [])
    name = app.members[0].name.encode()
    headers = [(n, [v.replace(b"NAME", name) for v in vs]) for n, vs in headers]
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(20000):
            view = selectionRequest("192.0.2.1", headers, path) if withView else None
            app.choose(view)
        runs.append((time.perf_counter() - started) / 20000 * 1e6)
    return statistics.median(runs)


def choices():
    """
    Print the cost of a choice for each case.
    """
    print("CPU per member choice, 3 members (median of 5 runs of 20,000):")
    for label, more, withView in CASES:
        path = b"/app/" if "no key" in label else PATH
        cookie = b"a=1; proxyws_member=NAME" if "cookie present" in label else None
        print("  {:<36} {:6.2f} us".format(label, choiceCost(more, withView, path, cookie)))


def reaction():
    """
    Print how fast traffic leaves a dead member and comes back, through the
    real proxy (in this process) with real members, a real reactor and a
    client sending requests one after the other on a kept-alive connection.
    """
    import tempfile

    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
    from twisted.internet.protocol import Factory, Protocol

    from proxyws.accesslog import MemoryAccessLog
    from proxyws.service import ProxyService
    from proxyws.sockets import bindListeners

    class Answer(Protocol):
        def dataReceived(self, data):
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n" + self.factory.name)
            self.transport.loseConnection()

    factories = []
    for name in (b"a", b"b", b"c"):
        factory = Factory.forProtocol(Answer)
        factory.name = name
        factory.noisy = False
        factories.append(factory)
    ports = [reactor.listenTCP(0, f, interface="127.0.0.1") for f in factories]
    numbers = [port.getHost().port for port in ports]
    members = "[" + ", ".join('"http://127.0.0.1:{}/"'.format(n) for n in numbers) + "]"

    class Client(Protocol):
        """
        Sends a GET, and the next one as soon as the answer is in.
        """

        def connectionMade(self):
            self.buffer = b""
            self.answers = []
            self.transport.write(REQUEST)

        def dataReceived(self, data):
            self.buffer += data
            while b"\r\n\r\n" in self.buffer:
                head, _, rest = self.buffer.partition(b"\r\n\r\n")
                length = int(head.lower().partition(b"content-length: ")[2].split(b"\r\n")[0])
                if len(rest) < length:
                    return
                status = head.split(b" ")[1]
                self.answers.append((time.monotonic(), rest[:length] if status == b"200" else status))
                self.buffer = rest[length:]
                self.transport.write(REQUEST)

    def timeUntil(predicate, limit=30.0):
        started = time.monotonic()
        while not predicate():
            reactor.iterate(0.001)
            if time.monotonic() - started > limit:
                return float("nan")
        return time.monotonic() - started

    def measure(more):
        text = PROXY.format(members=members, more=more)
        config = parseConfig(text, os.path.join(tempfile.gettempdir(), "upstreams-bench.toml"))
        service = ProxyService(config, bindListeners(config), reactor, accessLog=MemoryAccessLog())
        service.startService()
        victim = service.upstreams.get("app").members[0]
        connecting = connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", service.ports[0].getHost().port), Client()
        )
        client = []
        connecting.addCallback(client.append)
        timeUntil(lambda: client and len(client[0].answers) > 300)
        stopped = ports[0].stopListening()
        died = time.monotonic()
        timeUntil(lambda: stopped.called)
        timeUntil(lambda: not victim.up)
        down = time.monotonic() - died
        answers = client[0].answers
        during = [a for t, a in answers if died <= t <= died + down]
        ports[0] = reactor.listenTCP(numbers[0], factories[0], interface="127.0.0.1")
        restarted = time.monotonic()
        timeUntil(lambda: victim.up)
        back = time.monotonic() - restarted
        timeUntil(lambda: any(a == b"a" for t, a in client[0].answers if t > restarted))
        errors = [a for t, a in answers if t >= died and a not in (b"a", b"b", b"c")]
        client[0].transport.loseConnection()
        stopping = service.stopService()
        timeUntil(lambda: stopping.called)
        return down, len(during), errors, back

    print("From a member's death to its traffic moving away, through the proxy")
    print("(3 members, loopback, a client sending GETs back to back):")
    down, count, errors, back = measure("fail_timeout = 2")
    print("  passive (max_fails 1, fail_timeout 2): down after {:.2f} ms, {} requests".format(
        down * 1000, count))
    print("    until then, {} client errors; back after {:.2f} s (fail_timeout)".format(
        len(errors), back))
    down, count, errors, back = measure(
        "max_fails = 0\ncheck = { interval = 0.5, timeout = 0.25, rise = 2, fall = 2 }"
    )
    print("  active (interval 0.5, fall 2, timeout 0.25): down after {:.2f} s, {} requests".format(
        down, count))
    print("    until then (those sent to it refused, and sent on), {} client errors".format(
        len(errors)))
    print("  back after a restart (active, rise 2): {:.2f} s".format(back))
    for port in ports:
        port.stopListening()


if __name__ == "__main__":
    choices()
    reaction()
