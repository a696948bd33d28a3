"""
The benchmark's load clients other than wrk.

Each subcommand runs one bounded measurement against one target and prints
one JSON object on standard output; the driver runs it pinned to the load
core.  Where a proxy's CPU or memory is measured over the client's own
measuring window, the driver passes the proxy's process ids with C{--pids}:
CPU is read from C{/proc/PID/stat} (utime + stime) and memory from
C{/proc/PID/status} (VmRSS), summed over the ids.

  - C{httplat}: sequential GETs on one keep-alive connection, latency
    percentiles.
  - C{download}: one large GET read into a reused buffer, best MiB/s.
  - C{wsmsgs}: N websockets each doing ping-pong of small messages.
  - C{wslat}: one websocket, sequential echo, latency percentiles.
  - C{wsbig}: a few websockets echoing large messages, MiB/s.
  - C{wshs}: websocket open + close handshakes per second.
  - C{wsidle}: open many idle websockets, RSS of the proxy before and after.
"""

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import sys
import time

from wsproto import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    FrameReader,
    clientFrame,
    closePayload,
    handshakeRequest,
)
from wsecho import run as runLoop

_CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def cpuSeconds(pids):
    """
    @return: user + system CPU seconds used so far by the processes C{pids}.
    """
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / _CLOCK_TICK


def rssKiB(pids):
    """
    @return: the summed VmRSS of the processes C{pids}, in KiB.
    """
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def percentiles(samples):
    """
    @param samples: latencies in seconds.
    @return: a dict of p50, p90, p99 and mean in microseconds.
    """
    ordered = sorted(samples)

    def at(q):
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6

    return {
        "p50_us": at(0.50),
        "p90_us": at(0.90),
        "p99_us": at(0.99),
        "mean_us": statistics.fmean(ordered) * 1e6,
        "samples": len(ordered),
    }


# -- HTTP ---------------------------------------------------------------------


class HTTPReader:
    """
    Reads HTTP/1.1 responses from a blocking socket, with a content length
    or chunked.
    """

    def __init__(self, sock):
        self._sock = sock
        self._buffer = b""

    def _fill(self):
        data = self._sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed in the middle of a response")
        self._buffer += data

    def _line(self):
        while b"\r\n" not in self._buffer:
            self._fill()
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line

    def _take(self, n):
        while len(self._buffer) < n:
            self._fill()
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def read(self):
        """
        @return: C{(status, body length)}.
        """
        while b"\r\n\r\n" not in self._buffer:
            self._fill()
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip().lower()
        if b"content-length" in fields:
            return status, len(self._take(int(fields[b"content-length"])))
        if fields.get(b"transfer-encoding") == b"chunked":
            total = 0
            while True:
                size = int(self._line().split(b";")[0], 16)
                self._take(size + 2)
                total += size
                if not size:
                    return status, total
        raise ValueError("response without length: %r" % (head,))


def connect(host, port, timeout=30):
    """
    @return: a connected blocking TCP socket with C{TCP_NODELAY}; a read
        that waits C{timeout} seconds fails.
    """
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def httpLatency(args):
    """
    Sequential GETs on one keep-alive connection.
    """
    sock = connect(args.host, args.port)
    reader = HTTPReader(sock)
    request = b"GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (
        args.path.encode(),
        args.host.encode(),
        args.port,
    )

    def roundTrip():
        sock.sendall(request)
        return reader.read()[0] == 200

    result = timedRoundTrips(args, roundTrip)
    sock.close()
    return result


def timedRoundTrips(args, roundTrip):
    """
    Time C{--warmup} + C{--samples} calls of C{roundTrip()} (which returns
    whether the answer was right), within C{--timeout} seconds; the warm-up
    calls are not kept.

    @return: the percentiles of the kept times and the count of wrong
        answers.
    """
    samples, errors = [], 0
    deadline = time.monotonic() + args.timeout
    for i in range(args.warmup + args.samples):
        if time.monotonic() > deadline:
            break
        start = time.perf_counter()
        right = roundTrip()
        elapsed = time.perf_counter() - start
        if not right:
            errors += 1
        if i >= args.warmup:
            samples.append(elapsed)
    return dict(percentiles(samples), errors=errors)


def download(args):
    """
    GET a large body with C{Connection: close}, reading it into one reused
    buffer; the best of C{--repeat} runs.
    """
    buffer = memoryview(bytearray(1 << 20))
    runs, problems = [], []
    for _ in range(args.repeat):
        sock = connect(args.host, args.port, timeout=10)
        sock.sendall(
            b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n"
            % (args.path.encode(), args.host.encode(), args.port)
        )
        start = time.perf_counter()
        head, total = b"", 0
        try:
            while b"\r\n\r\n" not in head:
                n = sock.recv_into(buffer)
                if not n:
                    break
                head += bytes(buffer[:n])
            _, _, rest = head.partition(b"\r\n\r\n")
            total = len(rest)
            while True:
                n = sock.recv_into(buffer)
                if not n:
                    break
                total += n
        except socket.timeout:
            problems.append(
                "stalled: nothing received for %ds after %s and %d body bytes of %d"
                % (sock.gettimeout(), "the head" if b"\r\n\r\n" in head else
                   "%d bytes of the head" % len(head), total, args.size)
            )
            sock.close()
            continue
        elapsed = time.perf_counter() - start
        sock.close()
        if not head.startswith(b"HTTP/1.1 200"):
            problems.append("status line %r" % head.split(b"\r\n")[0])
        if total < args.size:
            problems.append("body cut short: %d of %d bytes" % (total, args.size))
        runs.append(total / elapsed / 2**20)
    return {"best_mibps": max(runs) if runs else None, "runs_mibps": runs, "problems": problems}


# -- websocket ----------------------------------------------------------------


class WebSocketClient(asyncio.Protocol):
    """
    A raw client connection: the upgrade, then frames counted.

    @ivar opened: a future fired when the 101 arrives (or failed).
    @ivar closed: a future fired when the server's close frame arrives or
        the connection is lost.
    @ivar onMessage: called with C{(self, opcode, length)} for each message.
    """

    def __init__(self, request, onMessage=None):
        loop = asyncio.get_running_loop()
        self._request = request
        self.opened = loop.create_future()
        self.closed = loop.create_future()
        self.onMessage = onMessage
        self._head = b""
        self._reader = FrameReader()
        self.transport = None

    def connection_made(self, transport):
        """
        Send the upgrade request.
        """
        self.transport = transport
        transport.write(self._request)

    def data_received(self, data):
        """
        The 101, then frames.
        """
        if not self.opened.done():
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            status = self._head.split(b"\r\n", 1)[0]
            if not status.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(ConnectionError("upgrade refused: %r" % status))
                self.transport.close()
                return
            data = self._head[end + 4 :]
            self._head = b""
            self.opened.set_result(None)
            if not data:
                return
        for opcode, value in self._reader.feed(data):
            if opcode in (TEXT, BINARY):
                if self.onMessage is not None:
                    self.onMessage(self, opcode, value)
            elif opcode == PING:
                self.transport.write(clientFrame(PONG, value))
            elif opcode == CLOSE:
                if not self.closed.done():
                    self.closed.set_result(value[:2])
                self.transport.close()

    def connection_lost(self, exc):
        """
        Fire whatever is still waiting.
        """
        reason = ConnectionError("connection lost: %s" % (exc or "closed"))
        if not self.opened.done():
            self.opened.set_exception(reason)
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self):
        """
        Send a close frame (1000).
        """
        if not self.transport.is_closing():
            self.transport.write(clientFrame(CLOSE, closePayload(1000)))


async def openWebSocket(args, onMessage=None, timeout=10):
    """
    @return: an open L{WebSocketClient}.
    """
    loop = asyncio.get_running_loop()
    request = handshakeRequest(args.host, args.port, args.path)
    _, client = await asyncio.wait_for(
        loop.create_connection(
            lambda: WebSocketClient(request, onMessage), args.host, args.port
        ),
        timeout,
    )
    await asyncio.wait_for(client.opened, timeout)
    return client


async def closeAll(clients, timeout=20):
    """
    Close every client cleanly, then abort what did not close in time.

    @return: how many did not close cleanly in time.
    """
    for client in clients:
        client.close()
    waiting = [c.closed for c in clients if not c.closed.done()]
    if waiting:
        await asyncio.wait(waiting, timeout=timeout)
    late = 0
    for client in clients:
        if not client.closed.done():
            late += 1
        client.transport.abort()
    return late


async def measureWindow(args, counter):
    """
    Let load run for C{--warmup} seconds, then measure C{counter()} and the
    CPU of C{--pids} over C{--seconds}.

    @return: C{(count, seconds, cpuSeconds)} over the window.
    """
    await asyncio.sleep(args.warmup)
    count0, cpu0, t0 = counter(), cpuSeconds(args.pids), time.perf_counter()
    await asyncio.sleep(args.seconds)
    count1, cpu1, t1 = counter(), cpuSeconds(args.pids), time.perf_counter()
    return count1 - count0, t1 - t0, cpu1 - cpu0


async def pingPong(args, payload, opcode):
    """
    C{--conns} websockets, each sending C{payload} and the next one as soon
    as its echo is back.

    @return: a dict with round trips, relayed messages and bytes per second,
        proxy CPU, errors.
    """
    frame = clientFrame(opcode, payload)
    state = {"running": True, "roundTrips": 0, "wrongSize": 0}

    def onMessage(client, kind, length):
        state["roundTrips"] += 1
        if length != len(payload):
            state["wrongSize"] += 1
        if state["running"]:
            client.transport.write(frame)

    clients = await asyncio.gather(
        *[openWebSocket(args, onMessage) for _ in range(args.conns)],
        return_exceptions=True,
    )
    failed = [c for c in clients if isinstance(c, BaseException)]
    clients = [c for c in clients if not isinstance(c, BaseException)]
    for client in clients:
        client.transport.write(frame)
    count, seconds, cpu = await measureWindow(args, lambda: state["roundTrips"])
    state["running"] = False
    lost = sum(1 for c in clients if c.closed.done())
    await asyncio.sleep(0.2)
    late = await closeAll(clients)
    relayed = 2 * count  # each round trip crosses the proxy twice
    return {
        "round_trips": count,
        "seconds": seconds,
        "messages_per_s": relayed / seconds,
        "mib_per_s": relayed * len(payload) / seconds / 2**20,
        "proxy_cpu_s": cpu,
        "proxy_cpu_us_per_message": cpu / relayed * 1e6 if relayed and args.pids else None,
        "errors": {
            "connect_failed": len(failed),
            "first_connect_error": repr(failed[0]) if failed else None,
            "wrong_size_messages": state["wrongSize"],
            "closed_during_run": lost,
            "close_not_answered": late,
        },
    }


def wsMessages(args):
    """
    Small text messages: ping-pong on C{--conns} websockets.
    """
    return runLoop(pingPong(args, b"x" * args.size, TEXT))


def wsBig(args):
    """
    Large binary messages: ping-pong on a few websockets.
    """
    return runLoop(pingPong(args, os.urandom(args.size), BINARY))


def wsLatency(args):
    """
    One websocket, sequential echo of one small text message.
    """
    sock = connect(args.host, args.port)
    sock.sendall(handshakeRequest(args.host, args.port, args.path))
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed during the handshake")
        head += data
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError("upgrade refused: %r" % head.split(b"\r\n")[0])
    pending = head.partition(b"\r\n\r\n")[2]
    frame = clientFrame(TEXT, b"x" * args.size)
    reader = FrameReader()

    def roundTrip():
        nonlocal pending
        sock.sendall(frame)
        events = reader.feed(pending) if pending else []
        pending = b""
        while not events:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed during the echo")
            events = reader.feed(data)
        return events == [(TEXT, args.size)]

    result = timedRoundTrips(args, roundTrip)
    sock.sendall(clientFrame(CLOSE, closePayload(1000)))
    sock.close()
    return result


async def handshakes(args):
    """
    C{--conns} loops, each opening a websocket, closing it cleanly and
    starting over, for C{--seconds} after C{--warmup}.
    """
    state = {"done": 0, "errors": 0, "running": True, "firstError": None}

    async def loop():
        while state["running"]:
            try:
                client = await openWebSocket(args, timeout=5)
                client.close()
                await asyncio.wait_for(client.closed, 5)
                client.transport.close()
                state["done"] += 1
            except (OSError, asyncio.TimeoutError, ConnectionError) as e:
                state["errors"] += 1
                state["firstError"] = state["firstError"] or repr(e)
                await asyncio.sleep(0.01)

    tasks = [asyncio.ensure_future(loop()) for _ in range(args.conns)]
    count, seconds, cpu = await measureWindow(args, lambda: state["done"])
    state["running"] = False
    await asyncio.wait(tasks, timeout=15)
    for task in tasks:
        task.cancel()
    return {
        "handshakes": count,
        "seconds": seconds,
        "per_s": count / seconds,
        "proxy_cpu_s": cpu,
        "proxy_cpu_us_per_handshake": cpu / count * 1e6 if count and args.pids else None,
        "errors": {"failed": state["errors"], "first_error": state["firstError"]},
    }


def wsHandshakes(args):
    """
    Websocket handshakes (open and close) per second.
    """
    return runLoop(handshakes(args))


async def idle(args):
    """
    Open C{--count} websockets, a hundred at a time, and keep them idle;
    RSS of C{--pids} before and after.
    """
    before = rssKiB(args.pids)
    clients, failed, firstError = [], 0, None
    limit = asyncio.Semaphore(100)
    deadline = time.monotonic() + args.timeout

    async def one():
        nonlocal failed, firstError
        async with limit:
            if time.monotonic() > deadline:
                failed += 1
                return
            try:
                clients.append(await openWebSocket(args, timeout=30))
            except (OSError, asyncio.TimeoutError, ConnectionError) as e:
                failed += 1
                firstError = firstError or repr(e)

    start = time.perf_counter()
    await asyncio.gather(*[one() for _ in range(args.count)])
    openSeconds = time.perf_counter() - start
    await asyncio.sleep(args.settle)
    after = rssKiB(args.pids)
    stillOpen = sum(1 for c in clients if not c.closed.done())
    late = await closeAll(clients, timeout=60)
    return {
        "opened": len(clients),
        "still_open": stillOpen,
        "open_seconds": openSeconds,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "mib_per_1000": (after - before) / 1024 / len(clients) * 1000 if clients else None,
        "errors": {
            "connect_failed": failed,
            "first_error": firstError,
            "lost_while_idle": len(clients) - stillOpen,
            "close_not_answered": late,
        },
    }


def wsIdle(args):
    """
    RSS per idle websocket.
    """
    return runLoop(idle(args))


COMMANDS = {
    "httplat": httpLatency,
    "download": download,
    "wsmsgs": wsMessages,
    "wslat": wsLatency,
    "wsbig": wsBig,
    "wshs": wsHandshakes,
    "wsidle": wsIdle,
}


def parseArgs(argv):
    """
    The command line: a subcommand, a target, and the knobs.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--pids", default="", help="comma-separated process ids")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--conns", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=2)
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args(argv)
    args.pids = [int(p) for p in args.pids.split(",") if p]
    if args.command in ("httplat", "wslat"):
        args.warmup = int(args.warmup)
    return args


def main(argv):
    """
    Run one measurement and print its JSON.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    args = parseArgs(argv)
    print(json.dumps(COMMANDS[args.command](args)))


if __name__ == "__main__":
    main(sys.argv[1:])
