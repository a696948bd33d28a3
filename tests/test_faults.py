"""
Faults, end to end over loopback: backends that break off, answer garbage
or nothing, clients that leave in the middle of an upload, websocket
backends that die in the middle of a message, TLS listeners fed garbage or
plain HTTP, and backend host names that do not resolve.

proxyws runs in this process (L{tests.helpers.startProxy}); the misbehaving
peers are raw sockets that do exactly what a test tells them
(L{ScriptedBackend}, L{Client}).  Each test checks what the client gets,
what the backend sees, that the access log tells the truth, and that
nothing stays open in the proxy afterwards: no client connection of the
site, no request in flight, no backend connection of the pool.
"""

import shutil
import socket
import tempfile

from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.threads import deferToThread
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from proxyws import channel

from . import certs
from .helpers import startProxy
from .wsbackends import (
    BINARY,
    CLOSE,
    TEXT,
    Event,
    _closeAll,
    closePayload,
    decodeFrames,
    encodeFrame,
    reactor,
    switchingProtocols,
    upgradeRequest,
    waitUntil,
)

# The end of a scripted peer's part: a clean close (FIN), a reset (RST),
# or nothing (it stays open and silent).
FIN, RST, STAY = "fin", "rst", "stay"

# A piece of response body, long enough to tell apart from its framing.
PIECE = b"0123456789" * 4


def sendNow(transport, data):
    """
    Write C{data} to a TCP transport's socket at once, so that a reset that
    follows cannot drop it from Twisted's write buffer.
    """
    transport.getHandle().sendall(data)


def finish(transport, end):
    """
    End a scripted peer's part as C{end} says.
    """
    if end == FIN:
        transport.loseConnection()
    elif end == RST:
        transport.abortConnection()


class ScriptedBackend(Protocol):
    """
    A backend that waits for a request head, writes its script at once,
    then ends as told; or, for a websocket upgrade, answers 101 first.

    @ivar heads: the request heads received.
    @ivar body: the bytes received after the first head.
    @ivar lost: L{Event} of the connection's end.
    """

    def connectionMade(self):
        """
        Start recording.
        """
        self.factory.protocols.append(self)
        self.lost = Event()
        self.body = bytearray()
        self._buffer = b""

    def dataReceived(self, data):
        """
        Take in bytes; answer once a whole head is in.
        """
        if self._buffer is None:
            self.body += data
            return
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self._buffer[: end + 4]
        self.body += self._buffer[end + 4 :]
        self._buffer = None
        self.factory.heads.append(head)
        script = self.factory.script
        if self.factory.webSocket:
            script = switchingProtocols(head) + script
        if script:
            sendNow(self.transport, script)
        if not self.factory.reads:
            self.transport.pauseProducing()
        finish(self.transport, self.factory.end)

    def connectionLost(self, reason):
        """
        The connection is gone.
        """
        self.lost.fire(reason.value)


def startScripted(testCase, script, end=STAY, webSocket=False, reads=True):
    """
    Listen on 127.0.0.1 with a L{ScriptedBackend} until the test ends.

    @param script: the bytes written after the request head (after the
        101 for a websocket).
    @param reads: whether it reads what comes after the request head.
    @return: the factory; its C{protocols} and C{heads} fill as requests
        come, and its C{port} is the port number.
    """
    factory = Factory.forProtocol(ScriptedBackend)
    factory.noisy = False
    factory.protocols, factory.heads = [], []
    factory.script, factory.end, factory.webSocket = script, end, webSocket
    factory.reads = reads
    listening = reactor().listenTCP(0, factory, interface="127.0.0.1")
    testCase.addCleanup(listening.stopListening)
    testCase.addCleanup(lambda: _closeAll(factory.protocols))
    factory.port = listening.getHost().port
    return factory


class Client(Protocol):
    """
    A client that writes bytes and keeps what comes back, and how its
    connection ended.

    @ivar received: the bytes received.
    @ivar lost: L{Event} fired with the reason of the connection's end.
    """

    def __init__(self, data=b""):
        self.data = data
        self.received = b""
        self.lost = Event()

    def connectionMade(self):
        """
        Send.
        """
        if self.data:
            self.transport.write(self.data)

    def dataReceived(self, data):
        """
        Keep it.
        """
        self.received += data

    def connectionLost(self, reason):
        """
        The connection is gone.
        """
        self.lost.fire(reason.value)


def connectClient(testCase, port, data=b""):
    """
    Connect a L{Client} that writes C{data}.

    @return: a L{Deferred} firing with the L{Client}.
    """
    client = Client(data)
    testCase.addCleanup(lambda: _closeAll([client]))
    return connectProtocol(TCP4ClientEndpoint(reactor(), "127.0.0.1", port), client)


def route(port, scheme="http", host="127.0.0.1", extra=""):
    """
    A config text with one listener on port 0 and one route to a backend.
    """
    return (
        '[[listen]]\naddress = "127.0.0.1"\nport = 0\n\n'
        '[[route]]\npath = "/"\nbackend = "%s://%s:%d/"\n%s' % (scheme, host, port, extra)
    )


def captureFailures(testCase):
    """
    Collect, until the test ends, the log events of errors: unhandled
    failures (tracebacks) and anything logged at the error or critical
    level.

    @return: the list they go to.
    """
    failures = []

    def observe(event):
        if (
            "log_failure" in event
            or event.get("isError")
            or event.get("log_level") in (LogLevel.error, LogLevel.critical)
        ):
            failures.append(event)

    globalLogPublisher.addObserver(observe)
    testCase.addCleanup(globalLogPublisher.removeObserver, observe)
    return failures


class FaultTestCase(TestCase):
    """
    Start proxyws and check that nothing stays open in it.
    """

    timeout = 20

    def startProxy(self, config):
        """
        Start proxyws on C{config}.

        @return: its port number; C{self.service} and C{self.accessLog} are
            set.
        """
        self.service, port, self.accessLog = startProxy(self, config)
        return port

    def openInProxy(self):
        """
        What is still open in the proxy.

        @return: C{(client connections, websockets, requests in flight,
            backend connections lent out, idle backend connections,
            requests waiting for a backend connection)}.
        """
        site, pool = self.service.site, self.service.pool
        inFlight = sum(r["connections"] for r in self.service.status()["routes"])
        # The pool's counts are not public: read them for the test.
        return (
            len(site.channelGenerations()),
            len(site.relays()),
            inFlight,
            sum(pool._busy.values()),
            len(pool._idleSet),
            sum(map(len, pool._waiting.values())),
        )

    def assertNothingOpen(self):
        """
        Wait until nothing is open in the proxy (or fail after a while).
        """
        return waitUntil(lambda: self.openInProxy() == (0, 0, 0, 0, 0, 0))


class BackendBreaksOffTests(FaultTestCase):
    """
    A backend that closes or resets its connection in the middle of a
    response: the client's connection is aborted (never a truncated body
    that looks complete), and the access-log line has the status and the
    body bytes that went out.
    """

    # Response head, then the body bytes sent before the backend ends.
    HEADS = {
        "length": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + PIECE,
        "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n28\r\n"
        + PIECE + b"\r\n",
        "until close": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + PIECE,
    }

    # (framing, how the backend ends) -> whether the client's connection is
    # aborted.  A body delimited by the close is complete when it closes
    # cleanly: only a reset tells it was cut short.
    TABLE = [
        ("length", FIN, True),
        ("length", RST, True),
        ("chunked", FIN, True),
        ("chunked", RST, True),
        ("until close", RST, True),
        ("until close", FIN, False),
    ]

    @inlineCallbacks
    def test_table(self):
        """
        Each row of L{TABLE}: the client gets the head and the bytes sent,
        then an abort (or, for a clean close of a close-delimited body, the
        chunked body's end); the log line says 200 and 40 bytes.
        """
        results = []
        for framing, end, aborted in self.TABLE:
            backend = startScripted(self, self.HEADS[framing], end)
            port = self.startProxy(route(backend.port))
            client = yield connectClient(
                self, port, b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            )
            reason = yield client.lost.wait()
            yield self.assertNothingOpen()
            results.append(
                (
                    framing,
                    end,
                    isinstance(reason, ConnectionLost),
                    client.received.endswith(b"0\r\n\r\n"),
                    PIECE in client.received,
                    self.accessLog.lines[0].split(b'" ', 1)[1][:7],
                )
            )
        expected = [
            (framing, end, aborted, not aborted, True, b"200 40 ")
            for framing, end, aborted in self.TABLE
        ]
        self.assertEqual(results, expected)


class GarbageTests(FaultTestCase):
    """
    A backend that answers something that is not an HTTP response: 502,
    and the backend connection is closed.
    """

    # What the backend answers, and how it ends after: garbage, another
    # protocol, and the answers issue 11 found taken as valid (a 101 to a
    # request that asked for no upgrade, two lengths, a coding with a
    # length, lengths no server holds, statuses out of range).
    ANSWERS = [
        (b"garbage\r\n\r\n", STAY),
        (b"HTTP/1.1 2OO OK\r\n\r\n", STAY),
        (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", STAY),
        (b"\x00\x01\x02\xff" * 8, FIN),
        (b"\x16\x03\x01\x00\x05hello", RST),
        (b"SSH-2.0-OpenSSH_9.6\r\n", STAY),
        (b"x" * 70000, STAY),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", STAY),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", STAY),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello", STAY),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhello", STAY),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 12345678901234567890123456\r\n\r\n", STAY),
        (b"HTTP/1.1 -1 X\r\n\r\n", STAY),
        (b"HTTP/1.1 1_000 X\r\n\r\n", STAY),
        (b"HTTP/1.1 99999 X\r\n\r\n", STAY),
        (b"HTTP/1.1 100 Continue\r\n\r\n", FIN),
    ]

    @inlineCallbacks
    def test_garbage(self):
        """
        Each answer of L{ANSWERS} gets the client 502 (not a wait for the
        response timeout: the route's is long) and closes the backend
        connection.
        """
        results = []
        for answer, end in self.ANSWERS:
            backend = startScripted(self, answer, end)
            port = self.startProxy(route(backend.port, extra="response_timeout = 30\n"))
            client = yield connectClient(
                self, port, b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            )
            yield client.lost.wait(5)
            yield backend.protocols[0].lost.wait()
            yield self.assertNothingOpen()
            results.append((answer[:50], client.received.split(b"\r\n", 1)[0]))
        self.assertEqual(
            results, [(answer[:50], b"HTTP/1.1 502 Bad Gateway") for answer, _ in self.ANSWERS]
        )


class SilentBackendTests(FaultTestCase):
    """
    A backend that accepts the connection and never answers: 504 after
    the route's response timeout, and the backend connection is closed.
    """

    @inlineCallbacks
    def test_noAnswer(self):
        """
        A request without a body gets 504 "response timeout" and the
        backend connection is closed; the client's connection takes the
        next request, which goes to a new backend connection.
        """
        backend = startScripted(self, b"")
        port = self.startProxy(route(backend.port, extra="response_timeout = 0.3\n"))
        request = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
        text = b"\n\nresponse timeout: the backend sent no response in time\n"
        client = yield connectClient(self, port, request)
        yield waitUntil(lambda: client.received.endswith(text))
        yield backend.protocols[0].lost.wait()
        client.transport.write(request)
        yield waitUntil(lambda: client.received.count(text) == 2)
        answers = client.received.split(b"HTTP/1.1 ")[1:]
        self.assertEqual(
            [answer.split(b"\r\n", 1)[0] for answer in answers], [b"504 Gateway Timeout"] * 2
        )
        self.assertEqual(len(backend.heads), 2)
        self.assertTrue(all(b'"GET /x HTTP/1.1" 504 ' in line for line in self.accessLog.lines))
        client.transport.loseConnection()
        yield self.assertNothingOpen()

    @inlineCallbacks
    def test_noAnswerToUpload(self):
        """
        A request whose body the backend takes but never answers gets 504
        once the body is sent.
        """
        backend = startScripted(self, b"")
        port = self.startProxy(route(backend.port, extra="response_timeout = 0.3\n"))
        client = yield connectClient(
            self, port,
            b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        )
        yield waitUntil(lambda: b"\r\n\r\n" in client.received)
        self.assertTrue(
            client.received.startswith(b"HTTP/1.1 504 Gateway Timeout\r\n"), client.received
        )
        self.assertEqual(backend.protocols[0].body, b"hello")
        client.transport.loseConnection()
        yield self.assertNothingOpen()

    @inlineCallbacks
    def test_notReadingUpload(self):
        """
        A backend that accepts and never reads a large upload: the proxy
        stops reading the client (backpressure), and the client gets 504
        after the response timeout, not 408 after the body timeout (the
        client did not stop sending: the proxy stopped reading).
        """
        backend = startScripted(self, b"", reads=False)
        port = self.startProxy(
            route(backend.port, extra="response_timeout = 0.5\n")
            + "\n[server]\nbody_timeout = 30\n"
        )
        size = 64 * 2**20
        client = yield connectClient(
            self, port,
            b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size,
        )
        # Write until the proxy stops taking it (the producer pauses).
        chunk = b"x" * 2**20
        for _ in range(64):
            client.transport.write(chunk)
        yield waitUntil(lambda: b"\r\n\r\n" in client.received, timeout=10)
        self.assertTrue(
            client.received.startswith(b"HTTP/1.1 504 Gateway Timeout\r\n"), client.received
        )
        self.assertTrue(
            client.received.endswith(
                b"\n\nresponse timeout: the backend stopped reading the request body\n"
            ),
            client.received,
        )
        # The backend reads again, and finds its connection closed.
        backend.protocols[0].transport.resumeProducing()
        yield backend.protocols[0].lost.wait()
        client.transport.abortConnection()
        yield self.assertNothingOpen()
        self.assertIn(b'"POST /x HTTP/1.1" 504 ', self.accessLog.lines[0])


class KeepAliveTests(FaultTestCase):
    """
    A kept-alive client connection goes on reading after a request with a
    body, however the body met the backend connection.
    """

    @inlineCallbacks
    def test_bodyBeforeConnection(self):
        """
        A body that came whole before the backend connection was made (a
        new connection for each request: the backend closes after each
        answer) leaves the client's connection reading: the next request on
        it is answered.  (It was left paused, and the next request waited
        for the idle timeout to close the connection.)
        """
        backend = startScripted(
            self, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", FIN
        )
        port = self.startProxy(route(backend.port))
        post = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
        client = yield connectClient(self, port, post)
        for count in (1, 2, 3):
            yield waitUntil(lambda: client.received.count(b"\r\n\r\nok") == count)
            client.transport.write(post if count < 3 else b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        yield waitUntil(lambda: client.received.count(b"\r\n\r\nok") == 4)
        self.assertEqual([h.split(b" ")[0] for h in backend.heads], [b"POST"] * 3 + [b"GET"])
        client.transport.loseConnection()
        yield self.assertNothingOpen()


class ClientLeavesTests(FaultTestCase):
    """
    A client that leaves in the middle of its upload: the backend's request
    is aborted (its connection closes) and nothing stays open in the proxy.
    """

    # The head of the upload (its body is longer than what is sent).
    HEADS = {
        "length": b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n",
        "chunked": b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    }

    # What is sent of the body, by framing.
    SENT = {
        "length": b"u" * 5000,
        "chunked": b"1388\r\n" + b"u" * 5000 + b"\r\n",
    }

    @inlineCallbacks
    def test_table(self):
        """
        For a body with a length and a chunked one, a client that closes
        and one that resets: the backend sees its connection close, the
        access log says 499, and nothing stays open in the proxy.
        """
        results = []
        for framing in ("length", "chunked"):
            for end in (FIN, RST):
                backend = startScripted(self, b"")
                port = self.startProxy(route(backend.port))
                client = yield connectClient(
                    self, port, self.HEADS[framing] + self.SENT[framing]
                )
                yield waitUntil(
                    lambda: backend.protocols and len(backend.protocols[0].body) >= 5000
                )
                finish(client.transport, end)
                yield backend.protocols[0].lost.wait()
                yield self.assertNothingOpen()
                results.append((framing, end, self.accessLog.lines[0].split(b'" ', 1)[1][:4]))
        self.assertEqual(
            results,
            [(f, e, b"499 ") for f in ("length", "chunked") for e in (FIN, RST)],
        )

    @inlineCallbacks
    def test_whileWaitingForConnection(self):
        """
        A client that leaves while its request waits for a connection to
        the backend (at C{backend_max_connections}) is forgotten, and the
        backend never gets its request.  Without a body, or with one that
        came whole, the proxy reads its close at once (499); with a body
        still to come it reads nothing from the client meanwhile, and
        learns of it when the body timeout ends the wait (408).  Once the
        request ahead is gone too nothing stays open.
        """
        results = []
        for waitingRequest in [
            b"GET /w HTTP/1.1\r\nHost: a\r\n\r\n",
            b"POST /w HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
            self.HEADS["length"] + self.SENT["length"],
        ]:
            backend = startScripted(self, b"")
            port = self.startProxy(
                route(backend.port)
                + "\n[server]\nbackend_max_connections = 1\nbody_timeout = 0.3\n"
            )
            ahead = yield connectClient(self, port, b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
            yield waitUntil(lambda: len(backend.heads) == 1)
            waiting = yield connectClient(self, port, waitingRequest)
            yield waitUntil(lambda: self.openInProxy()[5] == 1)
            waiting.transport.loseConnection()
            yield waitUntil(lambda: self.openInProxy()[5] == 0)
            ahead.transport.loseConnection()
            yield backend.protocols[0].lost.wait()
            yield self.assertNothingOpen()
            statuses = [line.split(b'" ', 1)[1][:4] for line in self.accessLog.lines]
            results.append((len(backend.protocols), statuses))
        self.assertEqual(
            results, [(1, [b"499 ", b"499 "]), (1, [b"499 ", b"499 "]), (1, [b"408 ", b"499 "])]
        )


class WebSocketBackendDiesTests(FaultTestCase):
    """
    A websocket backend that dies in the middle of a message.

    At a frame boundary (after the first fragments of a message) the client
    gets a close frame with 1011: the message it was receiving never ends,
    so a websocket client drops it (RFC 6455 5.4: a message is whole only
    with its final fragment).  Inside a frame no close frame can follow the
    bytes already relayed: the client gets them, then its connection
    closes without a close frame (1006 for a websocket client).  Either way
    the client never gets half a message presented as whole.
    """

    FIRST = encodeFrame(TEXT, b"hello ", mask=False, fin=False)
    HALF = encodeFrame(BINARY, b"b" * 100, mask=False)[:12]
    # Half of the continuation frame that would end FIRST's message.
    HALF_NEXT = encodeFrame(0, b"world" * 20, mask=False)[:12]
    WHOLE = encodeFrame(TEXT, b"whole", mask=False)

    # (what the backend sends after its 101, how it ends) -> the frames the
    # client gets (fin, opcode, payload), the close frame it gets (or None),
    # and the bytes it gets after the last whole frame.
    TABLE = [
        (FIRST, FIN, [(False, TEXT, b"hello ")], 1011, b""),
        (FIRST, RST, [(False, TEXT, b"hello ")], 1011, b""),
        (FIRST + HALF_NEXT, FIN, [(False, TEXT, b"hello ")], None, HALF_NEXT),
        (WHOLE + HALF, RST, [(True, TEXT, b"whole")], None, HALF),
        (HALF, FIN, [], None, HALF),
        (WHOLE, FIN, [(True, TEXT, b"whole")], 1011, b""),
    ]

    @inlineCallbacks
    def test_table(self):
        """
        Each row of L{TABLE}: a client that gets a close frame answers it
        and its connection closes; one cut off inside a frame has its
        connection closed (not reset: it reads everything relayed).  The
        access log says 101; nothing stays open.
        """
        results = []
        for script, end, _, _, _ in self.TABLE:
            backend = startScripted(self, script, end, webSocket=True)
            port = self.startProxy(route(backend.port, scheme="ws"))
            client = yield connectClient(self, port, upgradeRequest(b"/", b"127.0.0.1"))
            yield waitUntil(lambda: backend.protocols and backend.protocols[0].lost.happened)
            yield waitUntil(lambda: client.lost.happened or closeFrameIn(client.received))
            if not client.lost.happened:
                client.transport.write(encodeFrame(CLOSE, closePayload(1011)))
            reason = yield client.lost.wait()
            yield self.assertNothingOpen()
            head, _, stream = client.received.partition(b"\r\n\r\n")
            frames, rest = decodeFrames(stream)
            closes = [parseCode(f[2]) for f in frames if f[1] == CLOSE]
            results.append(
                (
                    head.split(b"\r\n", 1)[0],
                    [f for f in frames if f[1] != CLOSE],
                    closes[0] if closes else None,
                    rest,
                    reason.__class__,
                    self.accessLog.lines[0].split(b'" ', 1)[1][:4],
                )
            )
        self.assertEqual(
            results,
            [
                (b"HTTP/1.1 101 Switching Protocols", frames, close, rest, ConnectionDone, b"101 ")
                for _, _, frames, close, rest in self.TABLE
            ],
        )


    @inlineCallbacks
    def test_clientStillSending(self):
        """
        A backend cut off inside a frame while the client is still sending
        (and the proxy, held back by the backend, has not read all of it):
        the client still gets everything relayed, then the end of its
        connection, not a reset.  (Closing a socket with bytes unread
        resets the connection, and the reset throws away what was relayed
        and not yet taken: the proxy ends its writing, and reads on,
        dropping what comes, until the client closes.)
        """
        backend = startScripted(self, b"", STAY, webSocket=True, reads=False)
        port = self.startProxy(route(backend.port, scheme="ws"))
        client = yield connectClient(self, port, upgradeRequest(b"/", b"127.0.0.1"))
        # The client takes little at a time.
        client.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        yield waitUntil(lambda: b"\r\n\r\n" in client.received)
        head = client.received
        [relay] = self.service.site.relays()
        # Send until the proxy stops reading the client (the backend does
        # not read), and the client's own socket is full.
        frame = encodeFrame(BINARY, b"u" * 2**20)
        for _ in range(32):
            client.transport.write(frame)
        held = relay.client.transport
        yield waitUntil(
            lambda: held not in reactor().getReaders() and client.transport.dataBuffer
        )
        relayed = self.WHOLE * 2**17 + self.HALF
        backend.protocols[0].transport.write(relayed)
        backend.protocols[0].transport.loseConnection()
        reason = yield client.lost.wait(10)
        self.assertEqual(
            (len(client.received), client.received.endswith(self.HALF), reason.__class__),
            (len(head) + len(relayed), True, ConnectionDone),
        )
        yield self.assertNothingOpen()
        self.assertIn(b'"GET / HTTP/1.1" 101 ', self.accessLog.lines[0])


def closeFrameIn(received):
    """
    @return: whether the bytes a websocket client received have a close
        frame after the 101.
    """
    frames, _ = decodeFrames(received.partition(b"\r\n\r\n")[2])
    return any(opcode == CLOSE for _, opcode, _ in frames)


def parseCode(payload):
    """
    @return: the close code in a close frame's payload.
    """
    return int.from_bytes(payload[:2], "big")


class TLSListenerTests(FaultTestCase):
    """
    A TLS listener fed bytes that are not TLS: the client gets a clear
    answer or a close, nothing is logged as an error, and the listener
    goes on serving.
    """

    def setUp(self):
        """
        Start a backend and a proxy with a TLS listener.
        """
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory, True)
        self.authority = certs.makeAuthority()
        cert, key = certs.writePair(
            directory, "proxy", certs.makeCertificate(self.authority, ["127.0.0.1"])
        )
        self.backend = startScripted(
            self, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", STAY
        )
        self.failures = captureFailures(self)
        self.port = self.startProxy(
            route(self.backend.port).replace(
                "port = 0\n", 'port = 0\ntls = { cert = "%s", key = "%s" }\n' % (cert, key), 1
            )
            + "\n[server]\nhead_timeout = 0.5\n"
        )

    @inlineCallbacks
    def send(self, data):
        """
        Send C{data} to the TLS listener and wait for the connection to
        close.

        @return: a L{Deferred} firing with C{(bytes received, reason)}.
        """
        client = yield connectClient(self, self.port, data)
        reason = yield client.lost.wait(5)
        return client.received, reason

    @inlineCallbacks
    def assertServes(self):
        """
        A request over TLS still gets the backend's answer.
        """
        context = certs.clientContext(self.authority)

        def get():
            with socket.create_connection(("127.0.0.1", self.port)) as raw:
                with context.wrap_socket(raw) as tls:
                    tls.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                    return b"".join(iter(lambda: tls.recv(65536), b""))

        answer = yield deferToThread(get)
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer)
        self.assertTrue(answer.endswith(b"\r\n\r\nok"), answer)

    @inlineCallbacks
    def test_garbage(self):
        """
        Bytes that are not a TLS handshake, or a TLS record that is not a
        valid one, get the connection closed; nothing is logged as an
        error and nothing stays open.
        """
        for data in [
            b"\x00\x01\x02\x03" * 64,
            b"\xff" * 300,
            b"\x16\x03\x01\x00\x05hello",
            # A handshake message of a type that does not exist.
            b"\x16\x03\x03\x00\x04\x63\x00\x00\x00",
        ]:
            received, reason = yield self.send(data)
            self.assertNotIn(b"HTTP/", received)
        yield self.assertNothingOpen()
        self.assertEqual(self.failures, [])
        self.assertEqual(self.backend.heads, [])
        yield self.assertServes()

    def test_handshakeListener(self):
        """
        A client connection is told when its TLS handshake is done.
        """
        self.assertTrue(verifyObject(IHandshakeListener, channel.ProxyChannel()))

    @inlineCallbacks
    def test_handshakeTimeout(self):
        """
        A client that does not finish its TLS handshake within the head
        timeout has its connection cut then: no 408 (it could not be
        read), and no wait for the client to take one.
        """
        # Long enough that waiting for it would time the test out.
        self.patch(channel, "ABORT_TIMEOUT", 3600.0)
        for data in [b"", b"\x16\x03\x01\x00\x30" + b"\x01" * 20]:
            received, reason = yield self.send(data)
            self.assertEqual((received, reason.__class__), (b"", ConnectionLost))
        yield self.assertNothingOpen()
        self.assertEqual((self.failures, self.accessLog.lines), ([], []))

    @inlineCallbacks
    def test_plainHTTP(self):
        """
        A plain HTTP request on the TLS port gets 400 saying so, as nginx
        answers it, and a close; nothing is logged as an error.
        """
        received, reason = yield self.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertTrue(received.startswith(b"HTTP/1.1 400 Bad Request\r\n"), received)
        self.assertIn(b"The plain HTTP request was sent to HTTPS port", received)
        self.assertIsInstance(reason, ConnectionDone)
        yield self.assertNothingOpen()
        self.assertEqual(self.failures, [])
        self.assertEqual(self.backend.heads, [])
        [line] = self.accessLog.lines
        size = len(received.partition(b"\r\n\r\n")[2])
        self.assertTrue(line.startswith(b"127.0.0.1 - - ["), line)
        self.assertTrue(line.endswith(b'] "-" 400 %d "-" "-"\n' % size), line)
        yield self.assertServes()


class UnresolvedHostTests(FaultTestCase):
    """
    A backend whose host name does not resolve: 502 naming the host.  The
    name is under C{.invalid} (RFC 2606), which never resolves.
    """

    @inlineCallbacks
    def test_http(self):
        """
        A plain request gets 502 whose body names the host.
        """
        port = self.startProxy(route(8080, host="backend.invalid"))
        client = yield connectClient(
            self, port, b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        yield client.lost.wait(10)
        self.assertIn(b'"GET /x HTTP/1.1" 502 ', self.accessLog.lines[0])
        self.assertTrue(
            client.received.endswith(
                b"\r\n\r\n502 Bad Gateway\n\n"
                b"the backend host name 'backend.invalid' could not be resolved\n"
            ),
            client.received,
        )
        yield self.assertNothingOpen()

    @inlineCallbacks
    def test_webSocket(self):
        """
        A websocket upgrade gets 502 whose body names the host.
        """
        port = self.startProxy(route(8080, scheme="ws", host="backend.invalid"))
        client = yield connectClient(self, port, upgradeRequest(b"/", b"a"))
        yield waitUntil(lambda: b"could not be resolved" in client.received, timeout=10)
        self.assertTrue(
            client.received.startswith(b"HTTP/1.1 502 Bad Gateway\r\n"), client.received
        )
        self.assertIn(
            b"the backend host name 'backend.invalid' could not be resolved", client.received
        )
        client.transport.loseConnection()
        yield self.assertNothingOpen()
