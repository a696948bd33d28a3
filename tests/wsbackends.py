"""
Real websocket backends and clients for the loopback tests of the relay
(L{tests.test_loopback_ws}): an Autobahn echo server behind a twisted.web
site that also refuses and serves plain HTTP, a raw-socket backend that
records the exact handshake bytes, a backend that never answers, an Autobahn
client, and a raw-socket client that writes whatever bytes a test gives it.

Every server and connection is closed by a cleanup of the test that started
it, so each test leaves a clean reactor.  Waits take a timeout, so that a
relay that loses a message fails the test in seconds instead of hanging it.
"""

import base64
import hashlib
import os
import struct
import time

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    DeferredQueue,
    inlineCallbacks,
    succeed,
)
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.web.resource import Resource

from .helpers import CountingSite

# RFC 6455 section 1.3: the GUID that turns Sec-WebSocket-Key into
# Sec-WebSocket-Accept.
ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# The subprotocols the echo backend speaks, best first: it picks the first
# of these that the client offers, whatever the client's order, so a test
# can tell the backend's choice from the client's first wish.
SUBPROTOCOLS = ("beta", "alpha")

# The cookies the echo backend sets in its 101 answer, in order.
COOKIES = ["a=1", "b=2"]

# Opcodes of RFC 6455 section 5.2 used by the raw peers.
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA

# How long a wait may take before the test fails, in seconds.
WAIT = 2.0


def reactor():
    """
    @return: the global reactor, imported when a test runs.
    """
    from twisted.internet import reactor

    return reactor


@inlineCallbacks
def waitUntil(predicate, timeout=WAIT, step=0.01):
    """
    Poll C{predicate} on the reactor until it is true.

    @raise AssertionError: after C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %r" % (predicate,))
        yield deferLater(reactor(), step, lambda: None)


def acceptKey(key):
    """
    @param key: a C{Sec-WebSocket-Key} value.
    @return: the C{Sec-WebSocket-Accept} value answering it.
    """
    return base64.b64encode(hashlib.sha1(key + ACCEPT_GUID).digest())


def switchingProtocols(request, extra=b""):
    """
    The 101 answer to a raw websocket upgrade request.

    @param request: the request's head.
    @param extra: more header lines, each ending with CRLF.
    """
    key = [
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    ][0]
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + acceptKey(key) + b"\r\n"
        + extra + b"\r\n"
    )


def encodeFrame(opcode, payload, mask=True, fin=True):
    """
    One websocket frame; a client's frames are masked (RFC 6455 5.3).
    """
    head = bytes([(0x80 if fin else 0) | opcode])
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + _unmask(key, payload)


def _unmask(key, payload):
    whole = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(whole, "big")).to_bytes(
        len(payload), "big"
    )


def closePayload(code, reason=b""):
    """
    @return: the payload of a close frame.
    """
    return struct.pack("!H", code) + reason


def decodeFrames(buffer):
    """
    Split C{buffer} into whole frames.

    @return: C{([(fin, opcode, payload), ...], rest)}.
    """
    frames = []
    while len(buffer) >= 2:
        n, pos = buffer[1] & 0x7F, 2
        if n == 126:
            if len(buffer) < 4:
                break
            n, pos = struct.unpack("!H", buffer[2:4])[0], 4
        elif n == 127:
            if len(buffer) < 10:
                break
            n, pos = struct.unpack("!Q", buffer[2:10])[0], 10
        key = None
        if buffer[1] & 0x80:
            key, pos = buffer[pos : pos + 4], pos + 4
        if len(buffer) < pos + n:
            break
        payload = buffer[pos : pos + n]
        if key is not None:
            payload = _unmask(key, payload)
        frames.append((bool(buffer[0] & 0x80), buffer[0] & 0x0F, payload))
        buffer = buffer[pos + n :]
    return frames, buffer


def upgradeRequest(path, host, headers=(), key=b"dGhlIHNhbXBsZSBub25jZQ=="):
    """
    The bytes of a websocket upgrade request.

    @param headers: more C{(name, value)} pairs, as bytes.
    """
    lines = [
        b"GET " + path + b" HTTP/1.1",
        b"Host: " + host,
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Key: " + key,
        b"Sec-WebSocket-Version: 13",
    ]
    lines.extend(name + b": " + value for name, value in headers)
    return b"\r\n".join(lines) + b"\r\n\r\n"


class Event:
    """
    Something that happens once, waited for by any number of waiters, each
    with a timeout.

    @ivar result: what it happened with, once it happened.
    """

    _NOTHING = object()

    def __init__(self):
        self.result = self._NOTHING
        self._waiters = []

    @property
    def happened(self):
        """
        Whether L{fire} was called.
        """
        return self.result is not self._NOTHING

    def fire(self, result=None):
        """
        It happened: wake the waiters.
        """
        if self.happened:
            return
        self.result = result
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(result)

    def wait(self, timeout=WAIT):
        """
        @return: a L{Deferred} that fires with the result, or fails with
            L{twisted.internet.defer.TimeoutError} after C{timeout} seconds.
        """
        if self.happened:
            return succeed(self.result)
        waiter = Deferred(lambda d: self._waiters.remove(d))
        self._waiters.append(waiter)
        return waiter.addTimeout(timeout, reactor())


def _closeAll(protocols):
    """
    Abort the connections of C{protocols} still open and wait until they
    are gone.
    """
    waits = []
    for protocol in protocols:
        if not protocol.lost.happened:
            if protocol.transport is not None:
                protocol.transport.abortConnection()
            waits.append(protocol.lost.wait())
    return DeferredList(waits)


# --- The echo backend ---------------------------------------------------


class Handshake:
    """
    What the echo backend received in one upgrade request.

    @ivar uri: the request target, path and query, as received.
    @ivar headers: the headers, names lower-cased, repeated values joined.
    @ivar protocols: the subprotocols the client offered, in order.
    """

    def __init__(self, uri, headers, protocols):
        self.uri = uri
        self.headers = headers
        self.protocols = protocols


class EchoProtocol(WebSocketServerProtocol):
    """
    Echoes text as text and binary as binary, with commands in text
    messages: C{close:<code>:<reason>} closes with that code and reason,
    C{abort} drops the TCP connection without a close frame.

    @ivar received: C{(payload, isBinary)} of every message received.
    @ivar opened: L{Event} of the open handshake.
    @ivar closed: L{Event} fired with C{(code, reason)} of C{onClose}.
    @ivar lost: L{Event} of the TCP connection's end.
    """

    def onConnect(self, request):
        """
        Record the request; choose a subprotocol; set two cookies.
        """
        self.factory.handshakes.append(
            Handshake(self.http_request_uri, dict(request.headers), list(request.protocols))
        )
        chosen = next((p for p in SUBPROTOCOLS if p in request.protocols), None)
        return chosen, {"Set-Cookie": list(COOKIES)}

    def onOpen(self):
        """
        The websocket is open.
        """
        self.opened.fire(self)

    def onMessage(self, payload, isBinary):
        """
        Echo, or obey a command.
        """
        self.received.append((payload, isBinary))
        if not isBinary and payload.startswith(b"close:"):
            _, code, reason = payload.split(b":", 2)
            # sendClose() refuses 1001 and 1011; a server may send them.
            self.sendCloseFrame(int(code), reason)
        elif not isBinary and payload == b"abort":
            self.transport.abortConnection()
        else:
            self.sendMessage(payload, isBinary)

    def onClose(self, wasClean, code, reason):
        """
        The websocket is closed.
        """
        self.closed.fire((code, reason))

    def connectionLost(self, reason):
        """
        The TCP connection is gone.
        """
        WebSocketServerProtocol.connectionLost(self, reason)
        self.lost.fire(reason.value)


class EchoFactory(WebSocketServerFactory):
    """
    The echo backend's factory.

    @ivar handshakes: a L{Handshake} per upgrade request.
    @ivar protocols: every L{EchoProtocol} built, in order.
    """

    protocol = EchoProtocol

    def __init__(self):
        WebSocketServerFactory.__init__(self, reactor=reactor())
        self.handshakes = []
        self.protocols = []

    def buildProtocol(self, addr):
        """
        Build an L{EchoProtocol} with its events.
        """
        protocol = WebSocketServerFactory.buildProtocol(self, addr)
        protocol.received = []
        protocol.opened = Event()
        protocol.closed = Event()
        protocol.lost = Event()
        self.protocols.append(protocol)
        return protocol


class BackendRoot(Resource):
    """
    The echo backend's site: websocket upgrades go to the echo server, except
    under C{/refuse/<code>}, which answers that status (a redirect to this
    backend's C{/login} for a 3xx); plain requests get a
    C{text/plain} answer naming their method and target.
    """

    isLeaf = True

    def __init__(self, factory):
        Resource.__init__(self)
        self._webSocket = WebSocketResource(factory)

    def render(self, request):
        """
        Dispatch on C{Upgrade} and path.
        """
        if request.requestHeaders.getRawHeaders(b"Upgrade"):
            parts = request.path.split(b"/")
            if parts[1:2] == [b"refuse"]:
                request.setResponseCode(int(parts[2]))
                request.setHeader(b"X-Refused-By", b"backend")
                if 300 <= request.code < 400:
                    request.setHeader(
                        b"Location", b"http://127.0.0.1:%d/login" % request.getHost().port
                    )
                return b"refused by the backend"
            return self._webSocket.render(request)
        request.setHeader(b"Content-Type", b"text/plain")
        return b"plain http " + request.method + b" " + request.uri


class EchoBackend:
    """
    The echo backend, listening on 127.0.0.1 until the test ends.

    @ivar factory: the L{EchoFactory}.
    @ivar site: the L{CountingSite} (its C{connections} counts TCP
        connections).
    @ivar port: the port number.
    """

    def __init__(self, testCase):
        self.factory = EchoFactory()
        self.site = CountingSite(BackendRoot(self.factory))
        self.site.log = lambda request: None
        # A channel taken over by the websocket would keep its timer.
        self.site.timeOut = None
        listening = reactor().listenTCP(0, self.site, interface="127.0.0.1")
        testCase.addCleanup(listening.stopListening)
        testCase.addCleanup(lambda: _closeAll(self.factory.protocols))
        self.port = listening.getHost().port

    @property
    def handshakes(self):
        """
        The L{Handshake}s received so far.
        """
        return self.factory.handshakes

    def last(self):
        """
        @return: the last L{EchoProtocol} built.
        """
        return self.factory.protocols[-1]


# --- Backends at the socket level ----------------------------------------


class RawBackendProtocol(Protocol):
    """
    Records the exact bytes of the handshake request, answers 101, then
    answers a close frame with a close frame and closes.
    """

    def connectionMade(self):
        """
        Start recording.
        """
        self.factory.protocols.append(self)
        self.lost = Event()
        self._buffer = b""
        self._open = False

    def dataReceived(self, data):
        """
        Take in bytes.
        """
        self._buffer += data
        if not self._open:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self._buffer = self._buffer[: end + 4], self._buffer[end + 4 :]
            self.factory.requests.append(head)
            self.transport.write(switchingProtocols(head))
            self._open = True
        frames, self._buffer = decodeFrames(self._buffer)
        if any(opcode == CLOSE for _, opcode, _ in frames):
            self.transport.write(encodeFrame(CLOSE, closePayload(1000), mask=False))
            self.transport.loseConnection()

    def connectionLost(self, reason):
        """
        The connection is gone.
        """
        self.lost.fire(reason.value)


class SlowCloseBackendProtocol(RawBackendProtocol):
    """
    A raw backend that answers a close frame only after C{REPLY_DELAY}
    seconds, as a busy peer may, and notes whether the connection was still
    open then.

    @ivar closeReceived: the payload of the close frame received.
    @ivar replied: L{Event} fired, when it answers, with whether the
        connection was still open.
    """

    REPLY_DELAY = 0.1

    def connectionMade(self):
        """
        Start recording.
        """
        RawBackendProtocol.connectionMade(self)
        self.closeReceived = None
        self.replied = Event()

    def dataReceived(self, data):
        """
        Take in bytes.
        """
        if not self._open:
            return RawBackendProtocol.dataReceived(self, data)
        self._buffer += data
        frames, self._buffer = decodeFrames(self._buffer)
        for _, opcode, payload in frames:
            if opcode == CLOSE and self.closeReceived is None:
                self.closeReceived = payload
                reactor().callLater(self.REPLY_DELAY, self._reply)

    def _reply(self):
        stillOpen = not self.lost.happened
        if stillOpen:
            self.transport.write(encodeFrame(CLOSE, self.closeReceived, mask=False))
            self.transport.loseConnection()
        self.replied.fire(stillOpen)


class SilentProtocol(Protocol):
    """
    Accepts the connection and never says a word.
    """

    def connectionMade(self):
        """
        Start recording.
        """
        self.factory.protocols.append(self)
        self.lost = Event()

    def connectionLost(self, reason):
        """
        The connection is gone.
        """
        self.lost.fire(reason.value)


def startSocketBackend(testCase, protocol):
    """
    Listen on 127.0.0.1 with C{protocol} until the test ends.

    @return: C{(factory, port number)}; the factory's C{protocols} and
        C{requests} lists fill as connections come.
    """
    factory = Factory.forProtocol(protocol)
    factory.noisy = False
    factory.protocols = []
    factory.requests = []
    listening = reactor().listenTCP(0, factory, interface="127.0.0.1")
    testCase.addCleanup(listening.stopListening)
    testCase.addCleanup(lambda: _closeAll(factory.protocols))
    return factory, listening.getHost().port


# --- Clients ---------------------------------------------------------------


class RecordingClientProtocol(WebSocketClientProtocol):
    """
    An Autobahn client that records what it gets.

    @ivar response: the C{ConnectionResponse} of the handshake.
    @ivar messages: a L{DeferredQueue} of C{(payload, isBinary)}.
    @ivar opened: L{Event} fired with the protocol when open, or with
        L{None} when the connection closed before.
    @ivar closed: L{Event} fired with C{(code, reason)} of C{onClose}.
    @ivar lost: L{Event} of the TCP connection's end.
    """

    response = None

    def onConnect(self, response):
        """
        Keep the handshake answer.
        """
        self.response = response

    def onOpen(self):
        """
        The websocket is open.
        """
        self.opened.fire(self)

    def onMessage(self, payload, isBinary):
        """
        Queue the message.
        """
        self.messages.put((payload, isBinary))

    def onClose(self, wasClean, code, reason):
        """
        The websocket is closed.
        """
        self.closed.fire((code, reason))
        self.opened.fire(None)

    def connectionLost(self, reason):
        """
        The TCP connection is gone.
        """
        WebSocketClientProtocol.connectionLost(self, reason)
        self.lost.fire(reason.value)

    def nextMessage(self, timeout=WAIT):
        """
        @return: a L{Deferred} of the next C{(payload, isBinary)}.
        """
        return self.messages.get().addTimeout(timeout, reactor())


class RecordingClientFactory(WebSocketClientFactory):
    """
    Builds L{RecordingClientProtocol}s and remembers them.
    """

    protocol = RecordingClientProtocol

    def buildProtocol(self, addr):
        """
        Build a protocol with its queue and events.
        """
        protocol = WebSocketClientFactory.buildProtocol(self, addr)
        protocol.messages = DeferredQueue()
        protocol.opened = self.opened
        protocol.closed = Event()
        protocol.lost = Event()
        self.built.append(protocol)
        return protocol


def connectAutobahn(testCase, port, path="/", **options):
    """
    Open a websocket to C{ws://127.0.0.1:port/path} with Autobahn's client.

    @param options: passed to C{WebSocketClientFactory} (C{protocols},
        C{headers}, C{origin}, C{useragent}).
    @return: a L{Deferred} firing with the L{RecordingClientProtocol} once
        open, or failing when the connection closes before.
    """
    factory = RecordingClientFactory(
        "ws://127.0.0.1:%d%s" % (port, path), reactor=reactor(), **options
    )
    factory.noisy = False
    factory.built = []
    factory.opened = Event()
    factory.clientConnectionFailed = lambda connector, reason: factory.opened.fire(None)
    testCase.addCleanup(lambda: _closeAll(factory.built))
    reactor().connectTCP("127.0.0.1", port, factory)

    def check(protocol):
        if protocol is None:
            built = factory.built[-1] if factory.built else None
            raise AssertionError(
                "websocket closed before open: %r"
                % (built and (built.closed.result, built.wasNotCleanReason),)
            )
        return protocol

    return factory.opened.wait().addCallback(check)


class RawClient(Protocol):
    """
    Writes C{initial} in one piece, then records the response head and the
    frames that follow.  It answers nothing, pings included.

    @ivar head: L{Event} fired with the response head.
    @ivar frames: every C{(fin, opcode, payload)} received.
    @ivar queue: a L{DeferredQueue} of C{(opcode, payload)}: data messages
        once whole (their fragments joined), control frames as they come.
    @ivar lost: L{Event} of the connection's end.
    """

    def __init__(self, initial):
        self.initial = initial
        self.head = Event()
        self.frames = []
        self.queue = DeferredQueue()
        self.lost = Event()
        self._buffer = b""
        self._fragments = []

    def connectionMade(self):
        """
        Start recording.
        """
        self.transport.write(self.initial)

    def dataReceived(self, data):
        """
        Take in bytes.
        """
        self._buffer += data
        if not self.head.happened:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self._buffer = self._buffer[: end + 4], self._buffer[end + 4 :]
            self.head.fire(head)
        frames, self._buffer = decodeFrames(self._buffer)
        for fin, opcode, payload in frames:
            self.frames.append((fin, opcode, payload))
            if opcode >= CLOSE:
                self.queue.put((opcode, payload))
                continue
            self._fragments.append((opcode, payload))
            if fin:
                fragments, self._fragments = self._fragments, []
                self.queue.put((fragments[0][0], b"".join(p for _, p in fragments)))

    def connectionLost(self, reason):
        """
        The connection is gone.
        """
        self.lost.fire(reason.value)

    def nextMessage(self, timeout=WAIT):
        """
        @return: a L{Deferred} of the next C{(opcode, payload)}.
        """
        return self.queue.get().addTimeout(timeout, reactor())


def connectRaw(testCase, port, initial):
    """
    Connect a L{RawClient} that writes C{initial} at once.

    @return: a L{Deferred} firing with the L{RawClient}.
    """
    client = RawClient(initial)
    testCase.addCleanup(lambda: _closeAll([client]))
    return connectProtocol(TCP4ClientEndpoint(reactor(), "127.0.0.1", port), client)
