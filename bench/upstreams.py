#!/usr/bin/env python3
"""
What upstreams cost and how fast they react, measured on this machine.

1. The CPU of one member choice (L{proxyws.upstream.Upstream.choose}) for
   each policy and affinity, over 3 members, with the request view it
   needs built from 10 headers, in microseconds (the median of 5 runs of
   20,000 choices each).
2. The time from a member's death to the traffic moving away from it, with
   real servers on 127.0.0.1: with passive checks (nginx's defaults: the
   first failed request takes it down) and with active checks (interval
   0.5 s, fall 2, timeout 0.25 s), and the time it takes to come back
   after it is restarted (rise 2).

Run from a checkout::

    python3 bench/upstreams.py
"""

import os
import socket
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
    Print how fast traffic leaves a dead member and comes back, with real
    servers and a real reactor.
    """
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory, Protocol

    class Answer(Protocol):
        def dataReceived(self, data):
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            self.transport.loseConnection()

    factory = Factory.forProtocol(Answer)
    ports = [reactor.listenTCP(0, factory, interface="127.0.0.1") for _ in range(3)]
    numbers = [port.getHost().port for port in ports]
    members = "[" + ", ".join('"http://127.0.0.1:{}/"'.format(n) for n in numbers) + "]"
    results = {}

    def timeUntil(predicate, limit=30.0):
        started = time.monotonic()
        while not predicate():
            reactor.iterate(0.005)
            if time.monotonic() - started > limit:
                return float("nan")
        return time.monotonic() - started

    def run():
        check = "check = { interval = 0.5, timeout = 0.25, rise = 2, fall = 2 }"
        config = parseConfig(CONFIG.format(members=members, more=check + "\nmax_fails = 0"))
        registry = Upstreams.fromConfig(config, reactor, None)
        registry.start()
        victim = registry.get("app").members[0]
        timeUntil(lambda: victim.lastCheck is not None)
        # Active: the member dies between two checks; its checks find it.
        ports[0].stopListening()
        results["active down"] = timeUntil(lambda: not victim.up)
        ports[0] = reactor.listenTCP(numbers[0], factory, interface="127.0.0.1")
        results["active up"] = timeUntil(lambda: victim.up)
        registry.stop()
        # Passive: the first request sent to the dead member finds its
        # connection refused and reports it; the next choice avoids it.
        config = parseConfig(CONFIG.format(members=members, more=""))
        registry = Upstreams.fromConfig(config, reactor, None)
        app = registry.get("app")
        victim = app.members[0]
        stopped = ports[0].stopListening()
        timeUntil(lambda: stopped.called)
        started = time.monotonic()
        probe = socket.socket()
        try:
            probe.connect(("127.0.0.1", numbers[0]))
        except OSError as e:
            victim.failed(e.strerror or "refused")
        probe.close()
        assert all(app.choose().member is not victim for _ in range(6))
        results["passive"] = time.monotonic() - started

    run()
    for port in ports:
        port.stopListening()
    print("From a member's death to its traffic moving away (3 members, loopback):")
    print("  passive (max_fails 1): {:.2f} ms: the first request to it fails, is".format(
        results["passive"] * 1000))
    print("    retried on another member, and the next choices avoid it")
    print("  active (interval 0.5, fall 2, timeout 0.25): {:.2f} s".format(results["active down"]))
    print("  back after a restart (active, rise 2): {:.2f} s".format(results["active up"]))


if __name__ == "__main__":
    choices()
    reaction()
