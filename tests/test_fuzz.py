"""
A socket-level fault and fuzz suite: proxyws in this process in front of a
real HTTP backend and the websocket echo backend, fed mutated requests and
mutated websocket frames over loopback for a bounded time.

Each test runs bursts of cases for C{SECONDS} seconds in all, from a fixed
seed so that a failure reproduces (C{PROXYWS_FUZZ_SEED} and
C{PROXYWS_FUZZ_SECONDS} change them for a longer local run).  The cases run
in a thread with blocking sockets while the reactor serves the proxy and the
backends.  After each burst:

  - the proxy still serves a valid request (or websocket echo) correctly;
  - its open descriptors come back to where they were before the first
    burst (within a small margin, counted in /proc/self/fd);
  - nothing was logged as an unhandled error (no C{log_failure}).

At the end the resident set size must be within a margin of where it was
after the warm-up.  With C{PROXYWS_FUZZ_REPORT=FILE} the statistics of the
run (cases per second, answers seen, requests the strict parser of
L{proxyws.framing} refuses that reached the backend) are written to FILE
as JSON.
"""

import json
import os
import random
import socket
import struct
import time

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from proxyws.errors import HeadError
from proxyws.framing import HeadReader, parseRequestHead

from .helpers import rss, startProxy
from .wsbackends import EchoBackend, reactor

SEED = int(os.environ.get("PROXYWS_FUZZ_SEED", "20261206"))
SECONDS = float(os.environ.get("PROXYWS_FUZZ_SECONDS", "8"))

# Seconds per burst, between the checks.
BURST = 1.0

# How long a case waits for an answer the proxy may never send (a request
# whose body never comes): the proxy must cope with clients that leave.
READ_WAIT = 0.25

# Margins for "back to where they were": descriptors of keep-alive backend
# connections the pool may hold, and memory the allocator keeps.
FD_MARGIN = 8
RSS_MARGIN = 16 * 2**20

# Bytes that parsers tend to trip on.
INTERESTING = [
    b"\r", b"\n", b"\r\n", b"\r\n ", b"\x00", b"\x01", b"\x7f", b"\xff", b" ", b"\t", b":",
    b"#", b",", b";", b"\"", b"0", b"-", b"%", b"/",
]

# Fields that change how a request is framed or routed.
FRAMING_FIELDS = [
    b"Content-Length: 0", b"Content-Length: 5", b"Content-Length: 100000", b"Content-Length: -1",
    b"Content-Length: 18446744073709551617", b"Content-Length: 5, 6", b"Content-Length : 3",
    b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip", b"Transfer-Encoding: chunked, identity",
    b"Transfer-Encoding: identity", b"Transfer-Encoding:  chunked", b" Transfer-Encoding: chunked",
    b"Host: other.example", b"Host:", b"Host: a\x01b", b"Expect: 100-continue", b"Connection: keep-alive",
    b"Connection: close", b"Upgrade: websocket", b"Authorization: Basic YTpi",
]

CHUNKED_BODY = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"


def corpus(marker):
    """
    Valid requests, each for a path that names the case.

    @param marker: bytes naming the case.
    """
    path = b"/f/" + marker
    close = b"Host: 127.0.0.1\r\nConnection: close\r\n"
    return [
        b"GET " + path + b" HTTP/1.1\r\n" + close + b"\r\n",
        b"POST " + path + b" HTTP/1.1\r\n" + close + b"Content-Length: 11\r\n\r\nhello world",
        b"POST " + path + b" HTTP/1.1\r\n" + close + b"Transfer-Encoding: chunked\r\n\r\n" + CHUNKED_BODY,
        b"HEAD " + path + b" HTTP/1.1\r\n" + close + b"\r\n",
        b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET " + path + b"/2 HTTP/1.1\r\n" + close + b"\r\n",
        b"GET " + path + b"?q=1 HTTP/1.1\r\n" + close + b"User-Agent: Mozilla/5.0 (X11)\r\n"
        b"Accept: text/html,*/*;q=0.8\r\nAccept-Language: en\r\nCookie: a=1; b=2\r\n\r\n",
        b"GET " + path + b" HTTP/1.0\r\n\r\n",
        b"PUT " + path + b" HTTP/1.1\r\n" + close + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
        b"GET http://127.0.0.1" + path + b" HTTP/1.1\r\n" + close + b"\r\n",
    ]


def _insert(rng, data):
    at = rng.randrange(len(data) + 1)
    return data[:at] + rng.choice(INTERESTING) + data[at:]


def _delete(rng, data):
    at = rng.randrange(len(data))
    return data[:at] + data[at + rng.randint(1, 3) :]


def _replace(rng, data):
    at = rng.randrange(len(data))
    return data[:at] + bytes([rng.randrange(256)]) + data[at + 1 :]


def _headLines(data):
    head, sep, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), sep, body


def _duplicateLine(rng, data):
    lines, sep, body = _headLines(data)
    if len(lines) > 1:
        lines.insert(rng.randrange(1, len(lines) + 1), rng.choice(lines[1:]))
    return b"\r\n".join(lines) + sep + body


def _dropLine(rng, data):
    lines, sep, body = _headLines(data)
    if len(lines) > 1:
        del lines[rng.randrange(1, len(lines))]
    return b"\r\n".join(lines) + sep + body


def _addField(rng, data):
    lines, sep, body = _headLines(data)
    lines.insert(rng.randrange(1, len(lines) + 1), rng.choice(FRAMING_FIELDS))
    return b"\r\n".join(lines) + sep + body


def _length(rng, data):
    lines, sep, body = _headLines(data)
    value = rng.choice([b"0", b"1", b"10", b"12", b"65536", b"9223372036854775807", b"99999999999999999999"])
    lines = [b"Content-Length: " + value if l.lower().startswith(b"content-length:") else l for l in lines]
    return b"\r\n".join(lines) + sep + body


def _chunk(rng, data):
    size = rng.choice([b"4", b"6", b"fffffff", b"10000000000000001", b"5 ", b"5;x=\x01", b"-5", b"5\n"])
    return data.replace(b"5\r\nhello", size + b"\r\nhello", 1)


def _pipeline(rng, data):
    return data + rng.choice(corpus(b"p%d" % rng.randrange(1000)))


def _longLine(rng, data):
    lines, sep, body = _headLines(data)
    if rng.random() < 0.5:
        parts = lines[0].split(b" ")
        parts[1:2] = [parts[1] + b"a" * 65536] if len(parts) > 1 else parts[1:2]
        lines[0] = b" ".join(parts)
    else:
        lines.insert(1, b"X-Long: " + b"a" * 65536)
    return b"\r\n".join(lines) + sep + body


def _manyFields(rng, data):
    lines, sep, body = _headLines(data)
    lines[1:1] = [b"X-%d: v" % i for i in range(rng.choice([101, 600]))]
    return b"\r\n".join(lines) + sep + body


MUTATIONS = [
    _insert, _insert, _insert, _delete, _replace, _duplicateLine, _dropLine, _addField, _addField,
    _length, _chunk, _pipeline, _longLine, _manyFields,
]


def mutatedRequest(rng, case):
    """
    One case: a request of the corpus with one to three mutations, and how
    it is delivered.

    @return: C{(marker, data, delivery)}.
    """
    marker = b"c%d" % case
    data = rng.choice(corpus(marker))
    for _ in range(rng.choice([1, 1, 2, 3])):
        if data:
            data = rng.choice(MUTATIONS)(rng, data)
    delivery = rng.choice(["read", "read", "read", "halfclose", "early", "pieces"])
    return marker, data, delivery


def strictReading(data):
    """
    What the strict parser says of the first head of C{data}.

    @return: L{None} when it takes it (or it is incomplete), else the
        detail of its refusal.
    """
    try:
        found = HeadReader().feed(data)
        if found is not None:
            parseRequestHead(found[0])
    except HeadError as e:
        return "%d %s" % (e.status, e.detail)
    return None


# -- the client side, in a thread ---------------------------------------------


def connect(port):
    """
    @return: a blocking socket connected to the proxy.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def readAll(sock, wait):
    """
    Read until the peer closes, or nothing came for C{wait} seconds.
    """
    sock.settimeout(wait)
    received = []
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            received.append(data)
    except OSError:
        pass
    return b"".join(received)


def sendCase(port, rng, data, delivery):
    """
    Deliver one case and read what comes back.

    @return: the bytes received.
    """
    with connect(port) as sock:
        try:
            if delivery == "early":
                sock.sendall(data[: rng.randrange(len(data) + 1)])
                return b""
            if delivery == "pieces":
                while data:
                    cut = rng.randint(1, 64)
                    sock.sendall(data[:cut])
                    data = data[cut:]
            else:
                sock.sendall(data)
            if delivery == "halfclose":
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            # The proxy closed the connection while the case was sent.
            pass
        return readAll(sock, READ_WAIT)


def validGet(port):
    """
    One valid request on a fresh connection.

    @return: the whole answer.
    """
    with connect(port) as sock:
        sock.sendall(b"GET /check?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        return readAll(sock, 5)


def openFds():
    """
    @return: how many descriptors this process has open.
    """
    return len(os.listdir("/proc/self/fd"))


class Monitor:
    """
    What the checks after each burst found, and the statistics of a run.

    @ivar problems: texts of failed checks.
    @ivar stats: counters and samples for the report.
    """

    def __init__(self, baselineFds):
        self.baselineFds = baselineFds
        self.problems = []
        self.stats = {"cases": 0, "bursts": 0, "answers": {}, "fds": [], "rss": []}

    def count(self, key, name):
        """
        Count one C{name} under C{key}.
        """
        table = self.stats.setdefault(key, {})
        table[name] = table.get(name, 0) + 1

    def note(self, key, name, example):
        """
        Count C{name} under C{key} and keep its shortest example.
        """
        self.count(key, name)
        examples = self.stats.setdefault(key + " examples", {})
        if name not in examples or len(example) < len(examples[name]):
            examples[name] = example

    def settled(self, timeout=10):
        """
        Wait until the descriptors are back within the margin.

        @return: the last count.
        """
        deadline = time.monotonic() + timeout
        while True:
            fds = openFds()
            if fds <= self.baselineFds + FD_MARGIN or time.monotonic() > deadline:
                return fds
            time.sleep(0.05)

    def afterBurst(self, check):
        """
        The checks after a burst: C{check()} (a valid exchange) returns a
        problem text or L{None}; descriptors must come back.
        """
        self.stats["bursts"] += 1
        problem = check()
        if problem is not None:
            self.problems.append("burst %d: %s" % (self.stats["bursts"], problem))
        fds = self.settled()
        self.stats["fds"].append(fds)
        self.stats["rss"].append(rss())
        if fds > self.baselineFds + FD_MARGIN:
            self.problems.append(
                "burst %d: %d descriptors open, %d before" % (self.stats["bursts"], fds, self.baselineFds)
            )


def runBursts(monitor, seconds, case, check, clear):
    """
    Run cases in bursts of L{BURST} seconds for C{seconds} in all, checking
    after each.

    @param case: called with a case number to run one case.
    @param check: the valid exchange of L{Monitor.afterBurst}.
    @param clear: called after each burst to forget what the servers
        recorded.
    """
    started = time.monotonic()
    number = 0
    busy = 0.0
    while time.monotonic() - started < seconds:
        burstStart = time.monotonic()
        while time.monotonic() - burstStart < BURST:
            case(number)
            number += 1
        busy += time.monotonic() - burstStart
        clear()
        monitor.afterBurst(check)
    monitor.stats["cases"] = number
    monitor.stats["cases per second"] = round(number / busy, 1)


def statusOf(answer):
    """
    The status of the first response in C{answer}, C{"none"} when nothing
    came, C{"garbage"} when it is not an HTTP response.
    """
    if not answer:
        return "none"
    line = answer.split(b"\r\n", 1)[0]
    parts = line.split(b" ", 2)
    if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0") or not parts[1].isdigit():
        return "garbage"
    return parts[1].decode("ascii")


# -- the servers ------------------------------------------------------------------


class RecordingRoot(Resource):
    """
    The HTTP backend: answers C{ok METHOD URI BODY-LENGTH} and records the
    request targets it saw.

    @ivar seen: the targets of the requests received since last cleared.
    """

    isLeaf = True

    def __init__(self):
        Resource.__init__(self)
        self.seen = []

    def render(self, request):
        """
        Record and answer.
        """
        body = request.content.read() if request.content is not None else b""
        self.seen.append(request.uri)
        request.setHeader(b"Content-Type", b"text/plain")
        if request.method == b"HEAD":
            return b""
        return b"ok " + request.method + b" " + request.uri + b" %d" % len(body)


def startFuzzProxy(testCase):
    """
    Start a L{RecordingRoot} backend (C{testCase.root}) and an echo websocket
    backend (C{testCase.echo}), and a proxy with a route to each: C{/ws/}
    to the echo backend, C{/} to the recording one.  All stop when the test
    ends.

    @return: what L{startProxy} returns.
    """
    testCase.root = RecordingRoot()
    site = Site(testCase.root)
    site.log = lambda request: None
    listening = reactor().listenTCP(0, site, interface="127.0.0.1")
    testCase.addCleanup(listening.stopListening)
    testCase.echo = EchoBackend(testCase)
    config = (
        '[[listen]]\naddress = "127.0.0.1"\nport = 0\n\n'
        '[[route]]\npath = "/ws/"\nbackend = "http://127.0.0.1:%d/"\n\n'
        '[[route]]\npath = "/"\nbackend = "http://127.0.0.1:%d/"\n'
        % (testCase.echo.port, listening.getHost().port)
    )
    return startProxy(testCase, config)


class FuzzCase(TestCase):
    """
    The proxy with its backends and the checks shared by the fuzz tests.
    """

    timeout = SECONDS * 4 + 60

    def setUp(self):
        """
        Start the backends and the proxy; collect unhandled errors.
        """
        self.service, self.port, self.accessLog = startFuzzProxy(self)
        self.failures = []

        def observe(event):
            if "log_failure" in event:
                self.failures.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def clear(self):
        """
        Forget what the servers recorded (so it does not count as growth).
        """
        del self.accessLog.lines[:]
        del self.root.seen[:]
        factory = self.echo.factory
        del factory.handshakes[:]
        factory.protocols[:] = [p for p in factory.protocols if not p.lost.happened]

    @inlineCallbacks
    def fuzz(self, case, check, warmUp):
        """
        Warm up, take the baselines, run the bursts, and check the results.
        C{case} finds the L{Monitor} in C{self.monitor}.

        @return: a L{Deferred} firing with the L{Monitor}.
        """
        for _ in range(20):
            yield deferToThread(warmUp)
        self.clear()
        monitor = self.monitor = Monitor(openFds())
        monitor.baselineFds = yield deferToThread(monitor.settled, 2)
        baselineRSS = rss()
        yield deferToThread(runBursts, monitor, SECONDS, case, check, self.clear)
        monitor.stats["rss growth"] = max(monitor.stats["rss"]) - baselineRSS
        self.report(monitor)
        self.assertEqual(monitor.problems, [])
        self.assertEqual([e.get("log_format") for e in self.failures], [])
        self.assertLess(monitor.stats["rss growth"], RSS_MARGIN)
        return monitor

    def report(self, monitor):
        """
        Write the statistics where C{PROXYWS_FUZZ_REPORT} says.
        """
        path = os.environ.get("PROXYWS_FUZZ_REPORT")
        if not path:
            return
        reports = {}
        if os.path.exists(path):
            with open(path) as f:
                reports = json.load(f)
        stats = dict(monitor.stats, seed=SEED, seconds=SECONDS, problems=monitor.problems)
        reports[self.id()] = json.loads(json.dumps(stats, default=repr))
        with open(path, "w") as f:
            json.dump(reports, f, indent=1, default=repr)


class HTTPFuzzTests(FuzzCase):
    """
    Mutated requests: bytes, lengths, fields, chunking, pipelining, long
    lines, early closes.
    """

    def checkGet(self):
        """
        A valid request gets the backend's answer.
        """
        answer = validGet(self.port)
        if not answer.startswith(b"HTTP/1.1 200 ") or not answer.endswith(b"\r\n\r\nok GET /check?x=1 0"):
            return "a valid request got %r" % (answer[:300],)
        return None

    def test_mutatedRequests(self):
        """
        Bursts of mutated requests leave the proxy serving, without leaked
        descriptors or memory, and without unhandled errors.
        """
        rng = random.Random(SEED)

        def case(number):
            marker, data, delivery = mutatedRequest(rng, number)
            answer = sendCase(self.port, rng, data, delivery)
            status = statusOf(answer)
            self.monitor.count("answers", status)
            refused = strictReading(data)
            if status == "garbage" or status == "500":
                self.monitor.note("suspect answers", status, repr(data[:400]))
            if refused is not None:
                if any(uri.partition(b"?")[0] == b"/f/" + marker for uri in self.root.seen):
                    self.monitor.note("reached the backend, refused by framing", refused, repr(data[:400]))
                elif status == "none" and delivery in ("read", "pieces"):
                    self.monitor.note("closed without an answer, refused by framing", refused, repr(data[:200]))

        return self.fuzz(case, self.checkGet, lambda: validGet(self.port))


# -- websockets -----------------------------------------------------------------


def frame(rng, opcode, payload, fin=True, rsv=0, masked=True, length=None):
    """
    A client's websocket frame, its mask from C{rng}.

    @param length: the length to declare instead of the payload's.
    """
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = bytes(rng.randrange(256) for _ in range(4))
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def _badOpcode(rng):
    return frame(rng, rng.choice([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]), b"x")


def _reservedBits(rng):
    return frame(rng, rng.choice([1, 2, 9]), b"hello", rsv=rng.choice([0x40, 0x20, 0x10, 0x70]))


def _hugeLength(rng):
    return frame(rng, rng.choice([1, 2]), b"abc", length=rng.choice([2**63 - 1, 2**63, 2**64 - 1, 2**40, 70000]))


def _fragmentedControl(rng):
    return frame(rng, rng.choice([8, 9, 0xA]), b"x", fin=False)


def _longControl(rng):
    return frame(rng, rng.choice([9, 0xA]), b"p" * rng.choice([126, 200]))


def _unmasked(rng):
    return frame(rng, 1, b"hello", masked=False)


def _badUTF8(rng):
    payload = rng.choice([b"\xff\xfe", b"\xc3\x28", b"a\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf"])
    if rng.random() < 0.5:
        return frame(rng, 1, payload)
    return frame(rng, 1, b"ok\xe2", fin=False) + frame(rng, 0, b"\x28\xa1")


def _closeCode(rng):
    code = rng.choice([0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
    payload = rng.choice([struct.pack("!H", code), b"\x03", struct.pack("!H", 1000) + b"\xff"])
    return frame(rng, 8, payload)


def _truncated(rng):
    whole = frame(rng, rng.choice([1, 2]), b"hello world" * rng.randint(1, 20))
    return whole[: rng.randrange(1, len(whole))]


def _continuationFirst(rng):
    return frame(rng, 0, b"orphan")


def _interleaved(rng):
    return frame(rng, 1, b"part", fin=False) + frame(rng, 2, b"other")


def _nonMinimalLength(rng):
    payload = b"short"
    head = bytes([0x81, 0x80 | 126]) + struct.pack("!H", len(payload))
    key = bytes(rng.randrange(256) for _ in range(4))
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def _flipped(rng):
    data = bytearray(frame(rng, rng.choice([1, 2]), b"valid message"))
    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


FRAME_MUTATIONS = [
    _badOpcode, _reservedBits, _hugeLength, _fragmentedControl, _longControl, _unmasked, _badUTF8,
    _closeCode, _truncated, _continuationFirst, _interleaved, _nonMinimalLength, _flipped,
]


def upgrade(port, key):
    """
    Open a websocket through the proxy.

    @return: the socket, after the 101 answer, and what came after it.
    @raise AssertionError: when the answer is not a 101.
    """
    sock = connect(port)
    sock.sendall(
        b"GET /ws/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.settimeout(5)
    received = b""
    while b"\r\n\r\n" not in received:
        data = sock.recv(65536)
        if not data:
            break
        received += data
    head, _, rest = received.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101 "):
        sock.close()
        raise AssertionError("upgrade answered %r" % (received[:300],))
    return sock, rest


def closeCodeOf(data):
    """
    The code of the first close frame the server sent in C{data}, or
    L{None}.
    """
    while len(data) >= 2:
        opcode, n, position = data[0] & 0x0F, data[1] & 0x7F, 2
        if n == 126:
            n, position = struct.unpack("!H", data[2:4])[0], 4
        elif n == 127:
            n, position = struct.unpack("!Q", data[2:10])[0], 10
        if opcode == 8:
            payload = data[position : position + n]
            return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        data = data[position + n :]
    return None


def readUntilClose(sock, received, wait):
    """
    Read frames until a close frame or the end of the connection, or until
    nothing came for C{wait} seconds.

    @param received: what was read already.
    @return: everything read.
    """
    sock.settimeout(wait)
    try:
        while closeCodeOf(received) is None:
            data = sock.recv(65536)
            if not data:
                break
            received += data
    except OSError:
        pass
    return received


class WebSocketFuzzTests(FuzzCase):
    """
    Mutated frames after a valid upgrade.
    """

    def checkEcho(self):
        """
        A new websocket echoes a message and closes cleanly.
        """
        rng = random.Random(0)
        try:
            sock, rest = upgrade(self.port, b"dGhlIHNhbXBsZSBub25jZQ==")
        except (AssertionError, OSError) as e:
            return "a valid upgrade failed: %s" % (e,)
        with sock:
            sock.sendall(frame(rng, 1, b"still there?"))
            sock.settimeout(5)
            received = rest
            try:
                while len(received) < 14:
                    data = sock.recv(65536)
                    if not data:
                        break
                    received += data
            except OSError:
                pass
            sock.sendall(frame(rng, 8, struct.pack("!H", 1000)))
            readAll(sock, 2)
        if received[:14] != b"\x81\x0cstill there?":
            return "the echo came back as %r" % (received[:60],)
        return None

    def test_mutatedFrames(self):
        """
        Bursts of websockets sent mutated frames leave the proxy relaying,
        without leaked descriptors or memory, and without unhandled errors.
        """
        rng = random.Random(SEED)

        def case(number):
            try:
                sock, rest = upgrade(self.port, b"AAAAAAAAAAAAAAAAAAAAAA==")
            except AssertionError as e:
                self.monitor.note("suspect answers", "upgrade refused", str(e))
                return
            mutations = [rng.choice(FRAME_MUTATIONS) for _ in range(rng.choice([1, 1, 2]))]
            with sock:
                data = b""
                if rng.random() < 0.5:
                    data += frame(rng, 1, b"fine")
                data += b"".join(mutation(rng) for mutation in mutations)
                try:
                    sock.sendall(data)
                except OSError:
                    pass
                answer = readUntilClose(sock, rest, READ_WAIT)
            name = "+".join(m.__name__.lstrip("_") for m in mutations)
            self.monitor.count("close codes", "%s -> %s" % (name, closeCodeOf(answer)))

        return self.fuzz(case, self.checkEcho, self.checkEcho)
