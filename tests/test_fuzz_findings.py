"""
What the fuzz suite (L{tests.test_fuzz}) found wrong in the server, each
reduced to one request or frame, end to end over loopback.

Every test here FAILS on the server as it is when this file was written: the
front end (L{proxyws.site}) still reads requests with Twisted's lenient
parser, and the websocket fast relay passes a client's invalid frames on.
They pass once the front end reads heads and bodies with L{proxyws.framing}
and L{proxyws.bodies} (refusing with the status of the L{HeadError} or
L{BodyError}, then closing), and once the relay checks the frame headers of
a client.  Each docstring says what happens today.
"""

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase

from .test_fuzz import closeCodeOf, startFuzzProxy
from .wsbackends import encodeFrame, reactor, upgradeRequest, waitUntil


def request(*lines, body=b""):
    """
    The bytes of a request of C{lines}, asking to close after the answer.
    """
    return b"\r\n".join(lines) + b"\r\nConnection: close\r\n\r\n" + body


HOST = b"Host: 127.0.0.1"

# Seconds a client waits for the proxy to answer and close before it
# closes itself (a request forwarded today may never be answered).
WAIT = 3


class _Exchange(Protocol):
    """
    Sends bytes, keeps what comes back, and closes after L{WAIT} seconds if
    the proxy has not.
    """

    def __init__(self, data):
        self.data = data
        self.received = []
        self.done = Deferred()

    def connectionMade(self):
        """
        Send, and start the clock.
        """
        self.transport.write(self.data)
        self._timer = reactor().callLater(WAIT, self.transport.abortConnection)

    def dataReceived(self, data):
        """
        Keep it.
        """
        self.received.append(data)

    def connectionLost(self, reason):
        """
        Stop the clock; hand on what came.
        """
        if self._timer.active():
            self._timer.cancel()
        self.done.callback(b"".join(self.received))


@inlineCallbacks
def exchange(port, data):
    """
    Send C{data} on a new connection to C{port}.

    @return: a L{Deferred} firing with all the bytes that came back.
    """
    protocol = _Exchange(data)
    yield connectProtocol(TCP4ClientEndpoint(reactor(), "127.0.0.1", port), protocol)
    answer = yield protocol.done
    return answer


class FuzzFindingsTests(TestCase):
    """
    Requests today's server forwards or drops that it must refuse with a
    status, and a frame it relays that it must refuse.
    """

    def setUp(self):
        """
        Start a recording backend, the echo backend and the proxy.
        """
        _, self.port, _ = startFuzzProxy(self)

    @inlineCallbacks
    def assertRefused(self, data, status):
        """
        C{data} gets C{status} and a close, and nothing reaches the backend.
        """
        answer = yield exchange(self.port, data)
        self.assertEqual(
            (answer.split(b"\r\n", 1)[0][:12], self.root.seen), (b"HTTP/1.1 %d" % status, []), answer[:200]
        )

    def test_fragment(self):
        """
        A raw C{#} in the target: today forwarded (the backend drops the
        fragment, so C{/admin#} escapes a rule for C{/admin}).
        """
        return self.assertRefused(request(b"GET /admin# HTTP/1.1", HOST), 400)

    def test_noHost(self):
        """
        An HTTP/1.1 request without Host: today forwarded.
        """
        return self.assertRefused(request(b"GET /x HTTP/1.1"), 400)

    def test_twoHosts(self):
        """
        Two Host fields: today forwarded (the first one routes).
        """
        return self.assertRefused(request(b"GET /x HTTP/1.1", HOST, b"Host: other.example"), 400)

    def test_twoAuthorizations(self):
        """
        Two Authorization fields: today forwarded, both.
        """
        return self.assertRefused(
            request(b"GET /x HTTP/1.1", HOST, b"Authorization: Basic YTpi", b"Authorization: Basic Yzpk"), 400
        )

    def test_obsoleteFolding(self):
        """
        A folded field line: today forwarded, unfolded.
        """
        return self.assertRefused(request(b"GET /x HTTP/1.1", HOST, b"X-A: a", b" b"), 400)

    def test_controlByteInHost(self):
        """
        C{\\x01} in Host: today forwarded.
        """
        return self.assertRefused(request(b"GET /x HTTP/1.1", b"Host: 127.0.\x010.1"), 400)

    def test_identityAndLength(self):
        """
        C{Transfer-Encoding: identity} with a Content-Length: today Twisted
        ignores the coding and forwards by the length.
        """
        return self.assertRefused(
            request(b"POST /x HTTP/1.1", HOST, b"Transfer-Encoding: identity", b"Content-Length: 2", body=b"ab"), 400
        )

    def test_unknownCoding(self):
        """
        C{Transfer-Encoding: gzip, chunked}: today forwarded (501 is the
        answer for a coding the proxy does not implement).
        """
        return self.assertRefused(
            request(b"POST /x HTTP/1.1", HOST, b"Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n"), 501
        )

    def test_manyFields(self):
        """
        101 header fields: today forwarded (Twisted allows 500).
        """
        return self.assertRefused(request(b"GET /x HTTP/1.1", HOST, *[b"X-%d: v" % i for i in range(101)]), 431)

    def test_longRequestLine(self):
        """
        A 64 KiB request line: today the connection is closed with no answer.
        """
        return self.assertRefused(request(b"GET /" + b"a" * 65536 + b" HTTP/1.1", HOST), 414)

    def test_longFieldLine(self):
        """
        A 64 KiB field line: today the connection is closed with no answer.
        """
        return self.assertRefused(request(b"GET /x HTTP/1.1", HOST, b"X-Long: " + b"a" * 65536), 431)

    def test_hugeLength(self):
        """
        A Content-Length past 2^64: today forwarded as it came.
        """
        return self.assertRefused(
            request(b"POST /x HTTP/1.1", HOST, b"Content-Length: 18446744073709551617", body=b"ab"), 400
        )

    @inlineCallbacks
    def test_hugeChunk(self):
        """
        A chunk size past 2^64: today taken.  The head may have gone to the
        backend before the body is read, so only the answer is checked.
        """
        data = request(b"POST /x HTTP/1.1", HOST, b"Transfer-Encoding: chunked", body=b"10000000000000001\r\nab\r\n0\r\n\r\n")
        answer = yield exchange(self.port, data)
        self.assertEqual(answer.split(b"\r\n", 1)[0][:12], b"HTTP/1.1 400", answer[:200])

    @inlineCallbacks
    def test_reservedOpcode(self):
        """
        A client frame with a reserved opcode: today the fast relay passes it
        to the backend, which drops the connection, and the client is told
        1011 ("backend connection lost") instead of 1002 (protocol error).
        """
        received = []
        client = _RawWebSocket(received)
        yield connectProtocol(TCP4ClientEndpoint(reactor(), "127.0.0.1", self.port), client)
        self.addCleanup(lambda: client.transport.abortConnection() if client.transport.connected else None)
        yield waitUntil(lambda: b"\r\n\r\n" in b"".join(received))
        client.transport.write(encodeFrame(0x3, b"x"))
        yield waitUntil(lambda: closeCodeOf(b"".join(received).partition(b"\r\n\r\n")[2]) is not None or client.lost)
        self.assertEqual(closeCodeOf(b"".join(received).partition(b"\r\n\r\n")[2]), 1002)


class _RawWebSocket(Protocol):
    """
    Sends an upgrade for C{/ws/echo} and keeps what comes back.
    """

    lost = False

    def __init__(self, received):
        self.received = received

    def connectionMade(self):
        """
        Ask for the upgrade.
        """
        self.transport.write(upgradeRequest(b"/ws/echo", b"127.0.0.1"))

    def dataReceived(self, data):
        """
        Keep it.
        """
        self.received.append(data)

    def connectionLost(self, reason):
        """
        Note it.
        """
        self.lost = True

