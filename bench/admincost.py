#!/usr/bin/env python3
"""
What the admin listener's pieces cost on the proxy's paths, without
sockets: recording a finished request (L{RouteMetrics.requestDone}),
counting a websocket message (two integer adds on a L{WebSocketCounter}),
a batch of messages, looking a request up in a table of API routes and
recording its activity, and a scrape.  With C{--redis}, also how long a
route added through one Redis route store takes to reach another (a
C{redis-server} is started on a free port and stopped at the end).

    python3 bench/admincost.py [--redis]

Prints microseconds per operation (the best of five runs) and, for Redis,
the propagation delays in milliseconds.  A benchmark, not a test.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

from proxyws.apiroutes import APIRouteTable  # noqa: E402
from proxyws.metrics import Metrics  # noqa: E402


def best(function, count, repeat=5):
    """
    The best time per call of C{function(count)}, which does C{count}
    operations, in microseconds.
    """
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function(count)
        times.append((time.perf_counter() - start) / count * 1e6)
    return min(times)


def empty(count):
    """
    The loop alone, subtracted from the others.
    """
    for _ in range(count):
        pass


def requestDone(count):
    """
    One finished request recorded per iteration.
    """
    route = Metrics(process=False).forRoute("route[0]")
    record = route.requestDone
    for n in range(count):
        record(200, 0.0012)


def webSocketMessages(count):
    """
    One message counted per iteration, as a relay adds to its counter.
    """
    counter = Metrics(process=False).forRoute("route[0]").webSocketOpened()
    for n in range(count):
        counter.messagesIn += 1
        counter.bytesIn += 32


def messageBatches(count):
    """
    One batch of messages added per iteration.
    """
    route = Metrics(process=False).forRoute("route[0]")
    for n in range(count):
        route.messages("in", 10, 320)


def apiTable(size):
    """
    A table of C{size} user routes and the hub's root route.
    """
    table = APIRouteTable()
    table.add("/", {"target": "http://127.0.0.1:8081"}, 0.0)
    for n in range(size):
        table.add("/user/user{}".format(n), {"target": "http://127.0.0.1:9000"}, 0.0)
    return table


TABLE = apiTable(1000)


def lookup(count):
    """
    One request looked up in a table of 1000 API routes per iteration.
    """
    find = TABLE.lookup
    for n in range(count):
        find(None, b"/user/user500/api/kernels/abc/channels", b"session_id=x")


def lookupAndTouch(count):
    """
    A lookup and the activity of the finished request, per iteration.
    """
    find = TABLE.lookup
    done = TABLE.requestDone
    for n in range(count):
        match = find(None, b"/user/user500/api/contents", None)
        done(match.route.prefix, 200, 1795000000.0)


def scrapeCost():
    """
    Milliseconds per scrape with 100 routes and 10,000 open websockets.
    """
    metrics = Metrics(process=False)
    for n in range(100):
        route = metrics.forRoute("route[{}]".format(n))
        route.requestDone(200, 0.01)
        for _ in range(100):
            route.webSocketOpened().messagesIn += 5
    start = time.perf_counter()
    for _ in range(20):
        metrics.exposition()
    return (time.perf_counter() - start) / 20 * 1000


def redisPropagation(rounds):
    """
    Milliseconds from a route added through one Redis store to its arrival
    in another's table, C{rounds} times.
    """
    from twisted.internet import reactor, task
    from twisted.internet.defer import ensureDeferred

    from proxyws.redisstore import RedisRouteStore

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    delays = []

    async def measure():
        url = "redis://127.0.0.1:{}/0".format(port)
        first = RedisRouteStore(url, APIRouteTable(), reactor)
        second = RedisRouteStore(url, APIRouteTable(), reactor)
        await first.start()
        await second.start()
        while not (first.healthy and second.healthy):
            await task.deferLater(reactor, 0.05, lambda: None)
        for n in range(rounds):
            prefix = "/user/u{}".format(n)
            start = time.perf_counter()
            await first.add(prefix, {"target": "http://127.0.0.1:9000"})
            while second.table.get(prefix) is None:
                await task.deferLater(reactor, 0, lambda: None)
            delays.append((time.perf_counter() - start) * 1000)
        await first.stop()
        await second.stop()

    def run():
        ensureDeferred(measure()).addErrback(lambda f: f.printTraceback()).addBoth(
            lambda _: reactor.stop())

    try:
        time.sleep(0.3)
        reactor.callWhenRunning(run)
        reactor.run()
    finally:
        server.kill()
        server.wait()
    return delays


def main():
    """
    Print the figures.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", action="store_true", help="measure Redis propagation")
    options = parser.parse_args()
    count = 200000
    loop = best(empty, count)
    rows = [
        ("requestDone, per request", best(requestDone, count)),
        ("websocket message counted, per message", best(webSocketMessages, count)),
        ("messages() batch, per call", best(messageBatches, count)),
        ("API table lookup (1000 routes), per request", best(lookup, count)),
        ("API lookup + requestDone activity, per request", best(lookupAndTouch, count)),
    ]
    print("loop overhead subtracted: {:.3f} us".format(loop))
    for name, micros in rows:
        print("{:50s} {:7.3f} us".format(name, micros - loop))
    print("{:50s} {:7.2f} ms".format("scrape, 100 routes and 10,000 websockets", scrapeCost()))
    if options.redis:
        delays = redisPropagation(200)
        print("Redis propagation, {} routes: median {:.2f} ms, max {:.2f} ms".format(
            len(delays), statistics.median(delays), max(delays)))


if __name__ == "__main__":
    main()
