"""
Tests for L{proxyws.wsproxy}: the websocket relay, driven without sockets.

A real L{proxyws.site.ProxySite} built by L{proxyws.service.buildSite} runs
on a L{MemoryReactorClock}, which also drives every Autobahn timer (pings,
timeouts) of the proxy and of the test's own peers.  The client is an
Autobahn client protocol (or a raw byte recorder) joined in memory to a
channel of that site; the backend connection is whatever the proxy asked the
reactor for (the last entry of C{reactor.tcpClients}), joined in memory to
an Autobahn server protocol (or a raw one).  L{tests.helpers.pumpAll} moves
bytes until nothing moves.

Relay behaviour is written as tables: what goes in on one side, what comes
out on the other.
"""

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from twisted.internet import error
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from proxyws.accesslog import MemoryAccessLog
from proxyws.config import parseConfig
from proxyws.service import buildSite
from proxyws.wsrelay import CLOSE_TIMEOUT

from .helpers import MemoryConnection, pumpAll
from .wsbackends import CLOSE, TEXT, decodeFrames, encodeFrame, switchingProtocols, upgradeRequest

# The client, the address it connected to, and the backend.
CLIENT = IPv4Address("TCP", "10.0.0.1", 5555)
FRONT = IPv4Address("TCP", "127.0.0.1", 8080)
BACKEND = IPv4Address("TCP", "127.0.0.1", 9000)

# 10/Oct/2000:13:55:36 UTC, Apache's example time.
ARRIVAL = 971186136

CONFIG = """
[server]
connect_timeout = 5
response_timeout = 10

[[listen]]
address = "127.0.0.1"
port = 8080

[[route]]
path = "/"
backend = "ws://127.0.0.1:9000/"
{route}
"""

# Messages, in the order they are sent: (sending side, isBinary, payload)
# -> the other side receives the same type and payload, in the same order.
MESSAGES = [
    ("client", False, b"a"),
    ("client", True, b"\x00\x01"),
    ("backend", False, "\u00e9".encode("utf-8")),
    ("backend", True, b""),
    ("client", False, b""),
]

# Closes: (closing side, code, reason) -> (code, reason) the other side's
# onClose reports.  Autobahn reports a close frame without a code as code
# None (not 1005), and an empty reason as no reason, exactly as it does when
# the two peers are connected directly (see test_closesAsIfDirect).
CLOSES = [
    (("client", 1000, "bye"), (1000, "bye")),
    (("client", 1001, "away"), (1001, "away")),
    (("client", 4000, "custom"), (4000, "custom")),
    (("client", 3001, ""), (3001, None)),
    (("client", None, None), (None, None)),
    (("backend", 1000, "bye"), (1000, "bye")),
    (("backend", 1001, "away"), (1001, "away")),
    (("backend", 1011, "oops"), (1011, "oops")),
    (("backend", 4000, "custom"), (4000, "custom")),
    (("backend", 3001, ""), (3001, None)),
    (("backend", None, None), (None, None)),
]

# A side's connection breaks without a close frame -> the close the other
# side gets.
VANISHES = [
    ("client", ("backend", 1001, "proxyws: client connection lost")),
    ("backend", ("client", 1011, "proxyws: backend connection lost")),
]

# A side stops answering pings (ws_ping_interval = 10, ws_ping_timeout = 5)
# -> the close the other side gets.
PING_TIMEOUTS = [
    ("client", ("backend", 1001, "proxyws: client ping timeout")),
    ("backend", ("client", 1011, "proxyws: backend ping timeout")),
]

# The head of a refusal with a chunked body.
CHUNKED = b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n"

# A refusal with a body of known length.
FORBIDDEN = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope"

# What the backend answers the upgrade with, in separate reads -> the status
# and body the client gets.  A refusal passes as it stands, whatever its
# framing; a chunked body reaches the client as the body it encodes, since
# the proxy re-frames it with Content-Length.
REFUSALS = [
    ([b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope"], (403, b"nope")),
    ([b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nno", b"pe"], (403, b"nope")),
    ([b"HTTP/1.1 403 Forb", b"idden\r\nContent-Length: 4\r\n\r\nnope"], (403, b"nope")),
    ([b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"], (404, b"")),
    ([CHUNKED + b"4\r\nnope\r\n0\r\n\r\n"], (401, b"nope")),
    ([CHUNKED + b"4\r\nno", b"pe\r\n0\r\n\r\n"], (401, b"nope")),
    (
        [b"garbage\r\n\r\n"],
        (502, b"502 Bad Gateway\n\nthe backend answered the websocket handshake with garbage\n"),
    ),
    # An interim answer is skipped; the real one follows.
    ([b"HTTP/1.1 100 Continue\r\n\r\n", FORBIDDEN], (403, b"nope")),
    ([b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + FORBIDDEN], (403, b"nope")),
    # A body that runs until the connection closes.
    ([b"HTTP/1.1 403 Forbidden\r\n\r\nno", b"pe", None], (403, b"nope")),
]

# Answers the HTTP path refuses with 502 -> the same 502 on the websocket
# path (each was relayed, or answered otherwise, before the head codec was
# shared).
GARBAGE = b"502 Bad Gateway\n\nthe backend answered the websocket handshake with garbage\n"
BAD_ANSWERS = [
    b"HTTP/1.1 403 Forbidden\r\nX-A: a\nInjected: 1\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 403 Forbidden\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 403 Forbidden\r\nX A: b\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 403 Forbidden\r\nX-A : b\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 403 Forbidden\r\nX-A: a\r\n folded\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 403 Forbidden\r\nX-A: \x01\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 -1 Minus\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 1_000 Underscore\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 99999 Long\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/2.0 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nnope",
    b"HTTP/1.1 403 Forbidden\r\nContent-Length: -1\r\n\r\nnope",
    b"HTTP/1.1 403 Forbidden\r\nContent-Length: " + b"9" * 26 + b"\r\n\r\nnope",
    b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope",
    b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 403 Forbidden\r\nX: " + b"x" * 70000 + b"\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: x\r\nSec-WebSocket-Protocol: never-offered\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: wrong\r\n\r\n",
]

# The backend connection attempt fails -> the status the client gets.
CONNECT_FAILURES = [
    (error.ConnectionRefusedError(), 502),
    (error.TimeoutError(), 504),
]

# Origins on a route with allowed_origins = ["https://ok.example"]: the
# client's Origin header -> the status it gets (101 when the proxy goes on
# to connect to the backend).
ORIGINS = [
    (b"https://evil.example", 403),
    (None, 403),
    (b"https://ok.example.evil", 403),
    (b"https://ok.example", 101),
    (b"HTTPS://OK.EXAMPLE/", 101),
]


class RecordingPeer:
    """
    What both test peers do: record what they receive.

    @ivar opened: whether C{onOpen} ran.
    @ivar messages: C{(isBinary, payload)} of each whole message.
    @ivar frames: how many data frames arrived.
    @ivar pings: the payload of each ping received.
    @ivar closes: C{(wasClean, code, reason)} of each C{onClose}.
    @ivar answerPings: whether pings are answered with pongs.
    """

    answerPings = True

    def __init__(self):
        super().__init__()
        self.opened = False
        self.messages = []
        self.frames = 0
        self.pings = []
        self.closes = []

    def onOpen(self):
        """
        Record that the websocket is open.
        """
        self.opened = True

    def onMessageFrameBegin(self, length):
        """
        Count a data frame.
        """
        self.frames += 1
        super().onMessageFrameBegin(length)

    def onMessage(self, payload, isBinary):
        """
        Record a whole message.
        """
        self.messages.append((isBinary, payload))

    def onPing(self, payload):
        """
        Record a ping; answer it unless told not to.
        """
        self.pings.append(payload)
        if self.answerPings:
            super().onPing(payload)

    def onClose(self, wasClean, code, reason):
        """
        Record the close.
        """
        self.closes.append((wasClean, code, reason))


class ClientPeer(RecordingPeer, WebSocketClientProtocol):
    """
    The test's websocket client.
    """


class BackendPeer(RecordingPeer, WebSocketServerProtocol):
    """
    The test's websocket backend.
    """


class RawPeer(Protocol):
    """
    A peer that writes what it is told and records what it receives.

    @ivar received: the bytes received.
    @ivar lost: whether the connection is lost.
    """

    def __init__(self, greeting=b""):
        self.greeting = greeting
        self.received = b""
        self.lost = False

    def connectionMade(self):
        """
        Write the greeting, if any, in one piece.
        """
        if self.greeting:
            self.transport.write(self.greeting)

    def dataReceived(self, data):
        """
        Record C{data}.
        """
        self.received += data

    def connectionLost(self, reason):
        """
        Record the end.
        """
        self.lost = True


class ClockTimer:
    """
    Autobahn's batched timer (C{factory._batched_timer}) on a test clock,
    as proxyws gives its own factories, so the peers' timers run on the
    same clock as the proxy's.
    """

    def __init__(self, clock):
        self._clock = clock

    def call_later(self, delay, func, *args, **kwargs):
        """
        @return: a call that may be cancelled after it ran.
        """
        call = self._clock.callLater(delay, func, *args, **kwargs)
        return _SafeCall(call)


class _SafeCall:
    def __init__(self, call):
        self._call = call

    def cancel(self):
        if self._call.active():
            self._call.cancel()


def clientFactory(clock, path="/chat", **options):
    """
    An Autobahn client factory whose timers run on C{clock}.
    """
    factory = WebSocketClientFactory("ws://127.0.0.1:8080" + path, reactor=clock, **options)
    factory.protocol = ClientPeer
    factory._batched_timer = ClockTimer(clock)
    return factory


def backendFactory(clock):
    """
    An Autobahn server factory whose timers run on C{clock}.
    """
    factory = WebSocketServerFactory("ws://127.0.0.1:9000", reactor=clock)
    factory.protocol = BackendPeer
    factory._batched_timer = ClockTimer(clock)
    return factory


def statusAndBody(response):
    """
    @return: C{(status code, body)} of one raw HTTP response.
    """
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


class RelayTestCase(SynchronousTestCase):
    """
    A proxy on a memory reactor, with in-memory clients and backends.
    """

    def setUp(self):
        """
        A clock at L{ARRIVAL}; no proxy yet.
        """
        self.reactor = MemoryReactorClock()
        self.reactor.advance(ARRIVAL)
        self.connections = []

    def buildProxy(self, route=""):
        """
        Build the site for a config whose route sends C{/} to
        C{ws://127.0.0.1:9000/}.

        @param route: more keys of the route.
        """
        config = parseConfig(CONFIG.format(route=route), "/tmp/x.toml")
        self.log = MemoryAccessLog()
        self.site, self.pool = buildSite(config, self.reactor, self.log)

    def pump(self):
        """
        Move bytes on every connection until nothing moves.
        """
        pumpAll(self.reactor, self.connections)

    def advance(self, seconds, step=None):
        """
        Let C{seconds} pass, pumping after every C{step} seconds (after all
        of them when C{step} is L{None}).
        """
        step = step or seconds
        while seconds > 0:
            self.reactor.advance(min(step, seconds))
            seconds -= step
            self.pump()

    def connectClient(self, peer):
        """
        Connect C{peer} to a channel of the site.

        @return: the L{MemoryConnection}; its C{serverIO} is the proxy's
            side.
        """
        channel = self.site.buildProtocol(CLIENT)
        connection = MemoryConnection(channel, peer, FRONT, CLIENT)
        self.connections.append(connection)
        return connection

    def acceptBackend(self, peer):
        """
        Accept the proxy's last connection attempt with C{peer}.

        @return: the L{MemoryConnection}; its C{clientIO} is the proxy's
            side.
        """
        host, port, factory, timeout, bindAddress = self.reactor.tcpClients[-1]
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        connection = MemoryConnection(peer, protocol, BACKEND, FRONT)
        self.connections.append(connection)
        return connection

    def openWebSocket(self, route="", **options):
        """
        Build the proxy and open a websocket through it.

        @return: C{(client, backend)}: the two open L{RecordingPeer}s.
        """
        self.buildProxy(route)
        client = clientFactory(self.reactor, **options).buildProtocol(FRONT)
        self.clientConnection = self.connectClient(client)
        self.pump()
        backend = backendFactory(self.reactor).buildProtocol(FRONT)
        self.backendConnection = self.acceptBackend(backend)
        self.pump()
        self.assertTrue(client.opened and backend.opened)
        return client, backend




class MessageTests(RelayTestCase):
    """
    Messages pass unchanged both ways.
    """

    def test_messages(self):
        """
        Each message of L{MESSAGES} reaches the other side with its type and
        payload, in order.
        """
        client, backend = self.openWebSocket()
        peers = {"client": client, "backend": backend}
        for side, isBinary, payload in MESSAGES:
            peers[side].sendMessage(payload, isBinary)
        self.pump()
        self.assertEqual(
            {"client": client.messages, "backend": backend.messages},
            {
                other: [(b, p) for side, b, p in MESSAGES if side != other]
                for other in ("client", "backend")
            },
        )
        self.assertEqual((client.closes, backend.closes), ([], []))

    def test_fragmented(self):
        """
        A text message sent in three frames (and Autobahn's final empty
        one), by either side, reaches the other side as one whole message.
        """
        client, backend = self.openWebSocket()
        for sender in (client, backend):
            sender.beginMessage(isBinary=False)
            for piece in (b"ab", "\u00e9".encode("utf-8"), b"de"):
                sender.beginMessageFrame(len(piece))
                sender.sendMessageFrameData(piece)
            sender.endMessage()
        self.pump()
        whole = [(False, "ab\u00e9de".encode("utf-8"))]
        self.assertEqual((client.messages, backend.messages), (whole, whole))

    def test_fragmentedInterleavedWithOtherDirection(self):
        """
        While a fragmented message from the client is half sent, a message
        from the backend still reaches the client, and the client's message
        arrives whole once finished.
        """
        client, backend = self.openWebSocket()
        client.beginMessage(isBinary=True)
        client.beginMessageFrame(2)
        client.sendMessageFrameData(b"12")
        self.pump()
        backend.sendMessage(b"meanwhile")
        self.pump()
        client.beginMessageFrame(2)
        client.sendMessageFrameData(b"34")
        client.endMessage()
        self.pump()
        self.assertEqual(client.messages, [(False, b"meanwhile")])
        self.assertEqual(backend.messages, [(True, b"1234")])


class CloseTests(RelayTestCase):
    """
    Close codes and reasons pass both ways; a side that vanishes is
    reported to the other with a close of its own.
    """

    def closeOnce(self, side, code, reason):
        """
        Open a websocket and close it from C{side} with C{code} and
        C{reason}.

        @return: C{(closing peer, other peer)}.
        """
        client, backend = self.openWebSocket()
        closer, other = (client, backend) if side == "client" else (backend, client)
        # sendCloseFrame, not sendClose: Autobahn's sendClose refuses codes
        # other than 1000 and 3000-4999, which a peer may still send.
        closer.sendCloseFrame(code, None if reason is None else reason.encode("utf-8"))
        self.pump()
        return closer, other

    def test_closes(self):
        """
        For each row of L{CLOSES}, the other side's C{onClose} reports the
        code and reason sent; both closes are clean, both connections are
        gone and no timer is left on the clock.
        """
        seen = []
        for (side, code, reason), _ in CLOSES:
            closer, other = self.closeOnce(side, code, reason)
            [(closerClean, _, _)] = closer.closes
            [(otherClean, otherCode, otherReason)] = other.closes
            self.assertTrue(closerClean and otherClean)
            seen.append(((side, code, reason), (otherCode, otherReason)))
            self.assertTrue(
                self.clientConnection.serverIO.disconnected
                and self.backendConnection.clientIO.disconnected
            )
            self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(seen, CLOSES)

    def test_closesAsIfDirect(self):
        """
        For each row of L{CLOSES}, the other side sees what it sees when the
        two peers are connected directly, without the proxy.
        """
        for (side, code, reason), _ in CLOSES:
            closer, viaProxy = self.closeOnce(side, code, reason)
            clock = MemoryReactorClock()
            client = clientFactory(clock).buildProtocol(FRONT)
            backend = backendFactory(clock).buildProtocol(FRONT)
            direct = MemoryConnection(backend, client, BACKEND, CLIENT)
            pumpAll(clock, [direct])
            closer, other = (client, backend) if side == "client" else (backend, client)
            closer.sendCloseFrame(code, None if reason is None else reason.encode("utf-8"))
            pumpAll(clock, [direct])
            self.assertEqual(viaProxy.closes, other.closes, (side, code, reason))

    def test_closeLogged(self):
        """
        When both legs are closed, one access-log line with status 101 is
        written.
        """
        self.closeOnce("client", 1000, "bye")
        self.assertEqual(len(self.log.lines), 1)
        self.assertIn(b'"GET /chat HTTP/1.1" 101 ', self.log.lines[0])

    def test_vanish(self):
        """
        For each row of L{VANISHES}, when a side's connection breaks without
        a close frame, the other side gets a clean close with the code and
        reason of L{proxyws.wsrelay.LOST}.
        """
        seen = []
        for gone, _ in VANISHES:
            client, backend = self.openWebSocket()
            connection, other = {
                "client": (self.clientConnection, backend),
                "backend": (self.backendConnection, client),
            }[gone]
            connection.lose(error.ConnectionLost())
            self.pump()
            [(wasClean, code, reason)] = other.closes
            self.assertTrue(wasClean)
            seen.append((gone, ("client" if other is client else "backend", code, reason)))
        self.assertEqual(seen, VANISHES)


    def test_nothingAfterPartialFrame(self):
        """
        A backend gone inside a frame leaves the client in the middle of
        it, its connection closing once it takes what was relayed: nothing
        the proxy would send the client meanwhile follows (a close frame
        for a graceful stop, the idle timeout, a reload, a message too
        big), as the client would read it as the rest of the frame, and
        could take the frame for whole.  The client is cut after
        L{CLOSE_TIMEOUT} when it takes nothing.
        """
        for stop in [
            lambda relay: relay.goAway(),
            lambda relay: relay.closeBoth(1001, "proxyws: idle timeout", "idle timeout"),
            lambda relay: relay._tooBig(relay.client, b"", 0),
        ]:
            client, backend = self.openWebSocket()
            [relay] = self.site.relays()
            half = encodeFrame(TEXT, b"x" * 100, mask=False)[:12]
            self.backendConnection.serverIO.write(half)
            self.pump()
            # The client stops reading: what the proxy writes it waits.
            self.clientConnection.clientIO.pauseProducing()
            self.backendConnection.lose(error.ConnectionLost())
            # A TCP transport takes writes until it is closed (the memory
            # one drops them once closing): record them.
            written = []
            self.clientConnection.serverIO.write = written.append
            stop(relay)
            self.assertEqual(written, [])
            self.advance(CLOSE_TIMEOUT)
            self.assertTrue(self.clientConnection.serverIO.disconnected)
            [(wasClean, code, _)] = client.closes
            self.assertEqual((wasClean, code), (False, 1006))
            self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_unansweredClose(self):
        """
        A backend that never answers the client's close frame: after
        L{CLOSE_TIMEOUT} seconds the proxy answers the client itself, both
        connections close, and no timer is left.
        """
        client, backend = self.openWebSocket()
        backend.dataReceived = lambda data: None
        # The client waits longer than the proxy.
        client.closeHandshakeTimeout = CLOSE_TIMEOUT * 2
        client.sendCloseFrame(1000, b"bye")
        self.pump()
        self.advance(CLOSE_TIMEOUT - 0.5)
        self.assertEqual(client.closes, [])
        self.advance(0.5)
        [(wasClean, code, _)] = client.closes
        self.assertEqual((wasClean, code), (True, 1011))
        self.assertTrue(
            self.clientConnection.serverIO.disconnected
            and self.backendConnection.clientIO.disconnected
        )
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(len(self.log.lines), 1)

    def test_dataAfterClose(self):
        """
        Data frames a client sends after its own close frame do not reach
        the backend, in the same read as the close or later.
        """
        self.buildProxy()
        client = clientFactory(self.reactor).buildProtocol(FRONT)
        self.clientConnection = self.connectClient(client)
        self.pump()
        backend = RawPeer()
        connection = self.acceptBackend(backend)
        self.pump()
        connection.serverIO.write(switchingProtocols(backend.received))
        backend.received = b""
        self.pump()
        self.assertTrue(client.opened)
        client.sendCloseFrame(1000, b"bye")
        client.transport.write(encodeFrame(TEXT, b"same read"))
        self.pump()
        client.transport.write(encodeFrame(TEXT, b"later"))
        self.pump()
        frames, rest = decodeFrames(backend.received)
        self.assertEqual([opcode for _, opcode, _ in frames], [CLOSE])
        self.assertEqual(rest, b"")


class PingTests(RelayTestCase):
    """
    C{ws_ping_interval} and C{ws_ping_timeout} on the clock.
    """

    route = "ws_ping_interval = 10\nws_ping_timeout = 5\n"

    def test_unansweredPings(self):
        """
        A client that does not answer is pinged after 10 s, dropped 5 s
        later, and the backend gets a 1001 close that says why.
        """
        client, backend = self.openWebSocket(self.route)
        client.answerPings = False
        self.advance(9)
        self.assertEqual((client.pings, backend.pings), ([], []))
        self.advance(1)
        self.assertEqual(len(client.pings), 1)
        self.assertEqual(len(backend.pings), 1)
        self.assertEqual(backend.closes, [])
        self.advance(5)
        self.assertTrue(self.clientConnection.serverIO.disconnected)
        self.assertEqual(backend.closes, [(True, 1001, "proxyws: client ping timeout")])
        self.assertFalse(client.closes[0][0])

    def test_pingTimeouts(self):
        """
        For each row of L{PING_TIMEOUTS}, a side that stops answering pings
        is dropped after 15 s and the other side gets a clean close that
        says why.
        """
        seen = []
        for silent, _ in PING_TIMEOUTS:
            client, backend = self.openWebSocket(self.route)
            peers = {"client": client, "backend": backend}
            peers[silent].answerPings = False
            self.advance(15, step=1)
            other = "backend" if silent == "client" else "client"
            [(wasClean, code, reason)] = peers[other].closes
            self.assertTrue(wasClean)
            seen.append((silent, (other, code, reason)))
        self.assertEqual(seen, PING_TIMEOUTS)

    def test_pingWaitsForFrameEnd(self):
        """
        A ping due while a relayed frame is half written to the backend goes
        out after that frame, never inside it.
        """
        client, backend = self.openWebSocket(self.route)
        # Autobahn would answer the proxy's ping in the middle of its own
        # half-sent frame, corrupting its stream: the client stays silent.
        client.answerPings = False
        client.beginMessage(isBinary=True)
        client.beginMessageFrame(4)
        client.sendMessageFrameData(b"12")
        self.pump()
        self.advance(10)
        self.assertEqual(backend.pings, [])
        client.sendMessageFrameData(b"34")
        client.endMessage()
        self.pump()
        self.assertEqual(backend.messages, [(True, b"1234")])
        self.assertEqual(len(backend.pings), 1)
        self.assertEqual(backend.closes, [])

    def test_answeredPingsKeepItOpen(self):
        """
        Peers that answer pings stay open for 60 s and more, pinged every
        10 s, and messages still flow.
        """
        client, backend = self.openWebSocket(self.route)
        self.advance(60, step=1)
        self.assertEqual((len(client.pings), len(backend.pings)), (6, 6))
        self.assertEqual((client.closes, backend.closes), ([], []))
        client.sendMessage(b"still here")
        self.pump()
        self.assertEqual(backend.messages, [(False, b"still here")])


class IdleTests(RelayTestCase):
    """
    C{ws_idle_timeout} on the clock.
    """

    def test_idleTimeout(self):
        """
        Without messages for 30 s, both sides are closed with 1001; a
        message restarts the 30 s.
        """
        client, backend = self.openWebSocket("ws_idle_timeout = 30\n")
        self.advance(29)
        self.assertEqual((client.closes, backend.closes), ([], []))
        backend.sendMessage(b"tick")
        self.pump()
        self.advance(29)
        self.assertEqual((client.closes, backend.closes), ([], []))
        self.advance(1)
        idle = [(True, 1001, "proxyws: idle timeout")]
        self.assertEqual((client.closes, backend.closes), (idle, idle))
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class HandshakeTests(RelayTestCase):
    """
    The backend decides the handshake.
    """

    def rawClient(self, path=b"/chat", headers=(), extra=b""):
        """
        Build the proxy's site first; connect a raw client that writes an
        upgrade request, and C{extra}, in one piece.

        @return: the L{RawPeer}.
        """
        client = RawPeer(upgradeRequest(path, b"127.0.0.1:8080", headers) + extra)
        self.clientConnection = self.connectClient(client)
        self.pump()
        return client

    def test_backendSilent(self):
        """
        A backend that accepts the connection but never answers the
        handshake: after C{response_timeout} the client gets 504 and the
        backend connection is closed.
        """
        self.buildProxy()
        client = self.rawClient()
        backend = RawPeer()
        self.acceptBackend(backend)
        self.pump()
        self.assertTrue(backend.received.startswith(b"GET /chat HTTP/1.1\r\n"))
        self.advance(9.5)
        self.assertEqual(client.received, b"")
        self.advance(0.5)
        status, body = statusAndBody(client.received)
        self.assertEqual(status, 504)
        self.assertIn(b"did not answer the websocket handshake in time", body)
        self.assertTrue(backend.lost)

    def test_backendRefuses(self):
        """
        A backend that answers the upgrade with 403: the client gets that
        status and body.
        """
        self.buildProxy()
        client = self.rawClient()
        backend = RawPeer()
        connection = self.acceptBackend(backend)
        self.pump()
        connection.serverIO.write(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope"
        )
        self.pump()
        self.assertEqual(statusAndBody(client.received), (403, b"nope"))
        self.assertIn(b"\r\nContent-Length: 4\r\n", client.received)
        self.assertTrue(backend.lost)

    def test_refusals(self):
        """
        For each row of L{REFUSALS}, the client gets the backend's status
        and body, and the backend connection is closed.
        """
        seen = []
        for reads, _ in REFUSALS:
            self.buildProxy()
            client = self.rawClient()
            backend = RawPeer()
            connection = self.acceptBackend(backend)
            self.pump()
            for data in reads:
                if data is None:
                    connection.serverIO.loseConnection()
                else:
                    connection.serverIO.write(data)
                self.pump()
            seen.append((reads, statusAndBody(client.received)))
            self.assertTrue(backend.lost)
        self.assertEqual(seen, REFUSALS)

    def test_badAnswers(self):
        """
        Each answer of L{BAD_ANSWERS} gets the client a 502, the backend
        connection closed, and no websocket.
        """
        seen = []
        for answer in BAD_ANSWERS:
            self.buildProxy()
            client = self.rawClient()
            backend = RawPeer()
            connection = self.acceptBackend(backend)
            self.pump()
            connection.serverIO.write(answer)
            self.pump()
            seen.append((answer[:60], statusAndBody(client.received)))
            self.assertTrue(backend.lost, answer[:60])
        self.assertEqual(seen, [(answer[:60], (502, GARBAGE)) for answer in BAD_ANSWERS])

    def test_backendClosesDuringHandshake(self):
        """
        A backend that closes the connection without answering: 502.
        """
        self.buildProxy()
        client = self.rawClient()
        connection = self.acceptBackend(RawPeer())
        self.pump()
        connection.serverIO.loseConnection()
        self.pump()
        self.assertEqual(
            statusAndBody(client.received),
            (
                502,
                b"502 Bad Gateway\n\n"
                b"the backend closed the connection during the websocket handshake\n",
            ),
        )

    def test_connectFailures(self):
        """
        For each row of L{CONNECT_FAILURES}, the client gets the status.
        """
        self.buildProxy()
        seen = []
        for reason, _ in CONNECT_FAILURES:
            client = self.rawClient()
            factory = self.reactor.tcpClients[-1][2]
            factory.clientConnectionFailed(self.reactor.connectors[-1], Failure(reason))
            self.pump()
            seen.append((reason, statusAndBody(client.received)[0]))
        self.assertEqual(seen, CONNECT_FAILURES)

    def test_clientGoneDuringHandshake(self):
        """
        A client that goes away while the backend has not answered: the
        backend connection is closed and no timer is left.
        """
        self.buildProxy()
        self.rawClient()
        backend = RawPeer()
        self.acceptBackend(backend)
        self.pump()
        self.clientConnection.lose(error.ConnectionLost())
        self.pump()
        self.assertTrue(backend.lost)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_clientGoneBeforeConnect(self):
        """
        A client that goes away before the backend connection is made: the
        connection attempt is cancelled.
        """
        self.buildProxy()
        self.rawClient()
        self.clientConnection.lose(error.ConnectionLost())
        self.pump()
        self.assertTrue(self.reactor.connectors[-1].stoppedConnecting)

    def test_origins(self):
        """
        For each row of L{ORIGINS}, an Origin off the allow-list gets 403
        and no backend connection is attempted; one on it is relayed.
        """
        self.buildProxy('allowed_origins = ["https://ok.example"]\n')
        seen = []
        for origin, _ in ORIGINS:
            attempts = len(self.reactor.tcpClients)
            headers = [(b"Origin", origin)] if origin is not None else []
            client = self.rawClient(headers=headers)
            if len(self.reactor.tcpClients) > attempts:
                backend = backendFactory(self.reactor).buildProtocol(FRONT)
                self.acceptBackend(backend)
                self.pump()
            seen.append((origin, statusAndBody(client.received)[0]))
        self.assertEqual(seen, ORIGINS)

    def test_forbiddenOriginNoConnection(self):
        """
        An Origin off the allow-list: 403, and the reactor was never asked
        for a backend connection.
        """
        self.buildProxy('allowed_origins = ["https://ok.example"]\n')
        client = self.rawClient(headers=[(b"Origin", b"https://evil.example")])
        self.assertEqual(statusAndBody(client.received)[0], 403)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_earlyFrame(self):
        """
        A masked text frame in the same read as the upgrade request reaches
        the backend, once, when the websocket is open.
        """
        self.buildProxy()
        client = self.rawClient(extra=encodeFrame(TEXT, b"early"))
        backend = backendFactory(self.reactor).buildProtocol(FRONT)
        self.acceptBackend(backend)
        self.pump()
        self.assertTrue(client.received.startswith(b"HTTP/1.1 101 "))
        self.assertEqual(backend.messages, [(False, b"early")])


class LimitTests(RelayTestCase):
    """
    C{max_message_size} and a graceful stop.
    """

    def test_tooBig(self):
        """
        A message over C{max_message_size} from either side closes that side
        with 1009; the other side never sees the message and is closed.
        """
        for side in ("client", "backend"):
            client, backend = self.openWebSocket("max_message_size = 10\n")
            peers = {"client": client, "backend": backend}
            other = peers["backend" if side == "client" else "client"]
            peers[side].sendMessage(b"small", isBinary=True)
            peers[side].sendMessage(b"y" * 11, isBinary=True)
            self.pump()
            self.assertEqual(peers[side].closes[0][:2], (True, 1009))
            self.assertEqual(other.messages, [(True, b"small")])
            self.assertEqual(len(other.closes), 1)

    def test_drain(self):
        """
        A graceful stop closes open websockets with 1001 on both legs, and
        is drained when both are closed.
        """
        client, backend = self.openWebSocket()
        drained = self.site.drain()
        self.pump()
        shutdown = [(True, 1001, "proxyws: server shutting down")]
        self.assertEqual((client.closes, backend.closes), (shutdown, shutdown))
        self.assertIsNone(self.successResultOf(drained))


class BackpressureTests(RelayTestCase):
    """
    Each leg's transport is the streaming producer of the other's writes.
    """

    def test_slowClient(self):
        """
        The client's connection cannot take more: the backend connection is
        paused, what the backend sends waits, and flows when resumed.
        """
        client, backend = self.openWebSocket()
        front = self.clientConnection.serverIO
        back = self.backendConnection.clientIO
        front.producer.pauseProducing()
        self.assertEqual(back.producerState, "paused")
        backend.sendMessage(b"waits")
        self.pump()
        self.assertEqual(client.messages, [])
        front.producer.resumeProducing()
        self.assertEqual(back.producerState, "producing")
        self.pump()
        self.assertEqual(client.messages, [(False, b"waits")])

    def test_slowBackend(self):
        """
        The backend's connection cannot take more: the client connection is
        paused, what the client sends waits, and flows when resumed.
        """
        client, backend = self.openWebSocket()
        front = self.clientConnection.serverIO
        back = self.backendConnection.clientIO
        back.producer.pauseProducing()
        self.assertEqual(front.producerState, "paused")
        client.sendMessage(b"waits")
        self.pump()
        self.assertEqual(backend.messages, [])
        back.producer.resumeProducing()
        self.assertEqual(front.producerState, "producing")
        self.pump()
        self.assertEqual(backend.messages, [(False, b"waits")])

    def test_pausedThenGone(self):
        """
        A leg paused because the other side was slow is resumed when that
        side goes away, so that it reads its peer's close reply.
        """
        seen = []
        for gone, _ in VANISHES:
            client, backend = self.openWebSocket()
            front = self.clientConnection.serverIO
            back = self.backendConnection.clientIO
            if gone == "client":
                front.producer.pauseProducing()
                self.clientConnection.lose(error.ConnectionLost())
                other, paused = backend, back
            else:
                back.producer.pauseProducing()
                self.backendConnection.lose(error.ConnectionLost())
                other, paused = client, front
            self.pump()
            self.assertEqual(paused.producerState, "producing")
            self.assertTrue(paused.disconnected)
            [(wasClean, code, reason)] = other.closes
            self.assertTrue(wasClean)
            seen.append((gone, ("client" if other is client else "backend", code, reason)))
        self.assertEqual(seen, VANISHES)

    def test_stopDoesNotPass(self):
        """
        Stopping one leg's producer (its peer's connection is gone) does not
        stop the other leg, which must still finish its close handshake.
        """
        client, backend = self.openWebSocket()
        self.clientConnection.serverIO.producer.stopProducing()
        self.assertEqual(self.backendConnection.clientIO.producerState, "producing")
        self.assertFalse(self.backendConnection.clientIO.disconnecting)
