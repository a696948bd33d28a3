"""
End-to-end tests of the websocket relay: proxyws in this process, real
backends (L{tests.wsbackends}) and real clients (Autobahn's, the
C{websockets} library's sync client in a thread, raw sockets), all over
127.0.0.1.
"""

import re
import time

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as websocketsConnect

from .helpers import freePort, proxyConfig, rawRequest, startProxy
from .wsbackends import (
    CLOSE,
    COOKIES,
    PING,
    TEXT,
    WAIT,
    EchoBackend,
    RawBackendProtocol,
    SilentProtocol,
    SlowCloseBackendProtocol,
    closePayload,
    connectAutobahn,
    connectRaw,
    encodeFrame,
    reactor,
    startSocketBackend,
    upgradeRequest,
    waitUntil,
)

# Client-initiated closes: what the client sends -> what the backend must
# see.  None is a close frame without a code (RFC 6455 7.1.5: "no status").
CLIENT_CLOSES = [
    (1000, "bye"),
    (1001, "away"),
    (4000, "custom"),
    (3001, ""),
    (None, ""),
]

# Backend-initiated closes (the echo backend's "close:" command): what the
# backend sends -> what the client must see.
BACKEND_CLOSES = [
    (1000, "done"),
    (1001, "going away"),
    (1011, "internal trouble"),
    (4005, "app reason"),
]


def wsRoute(port, extra="", scheme="ws"):
    """
    The text of a C{[[route]]} sending C{/} to a backend on 127.0.0.1.
    """
    return 'path = "/"\nbackend = "%s://127.0.0.1:%d/"\n%s' % (scheme, port, extra)


def upgradeThenClose(path, headers=()):
    """
    A websocket upgrade request that also asks for the connection to close
    after a refusal, so that L{rawRequest} ends.
    """
    return upgradeRequest(path, b"127.0.0.1", headers).replace(
        b"Connection: Upgrade\r\n", b"Connection: Upgrade, close\r\n"
    )


def statusLine(response):
    """
    @return: the first line of a raw HTTP response.
    """
    return response.split(b"\r\n", 1)[0]


class RelayTestCase(TestCase):
    """
    Starts the echo backend and a proxy routing C{/} to it as C{ws://}.

    @cvar routeExtra: more keys of the route, as TOML text.
    """

    timeout = 10
    routeExtra = ""

    def setUp(self):
        """
        Start the echo backend and the proxy.
        """
        self.backend = EchoBackend(self)
        self.service, self.port, self.accessLog = startProxy(
            self, proxyConfig(0, route=wsRoute(self.backend.port, self.routeExtra))
        )

    def connect(self, path="/echo", **options):
        """
        Open a websocket through the proxy with Autobahn's client.
        """
        return connectAutobahn(self, self.port, path, **options)

    def url(self, path="/echo"):
        """
        @return: the C{ws://} URL of C{path} on the proxy.
        """
        return "ws://127.0.0.1:%d%s" % (self.port, path)

    def inThread(self, function, *args):
        """
        Run a blocking C{websockets} session in a thread.
        """
        return deferToThread(function, *args)

    @inlineCallbacks
    def closeClient(self, client):
        """
        Close C{client} normally and wait until both ends are gone.
        """
        backend = self.backend.last()
        client.sendClose(1000)
        yield client.lost.wait()
        yield backend.lost.wait()


def websocketsOptions(**more):
    """
    Options of the C{websockets} sync client: short timeouts, no keep-alive
    pings, no size limit.
    """
    options = dict(open_timeout=WAIT, close_timeout=WAIT, ping_interval=None, max_size=None)
    options.update(more)
    return options


class MessageTypeTests(RelayTestCase):
    """
    Text stays text and binary stays binary, both ways, with two client
    libraries.
    """

    @inlineCallbacks
    def test_autobahnTextAndBinary(self):
        """
        Autobahn's client: the backend receives text as text and binary as
        binary, and the echoes come back with their types.
        """
        client = yield self.connect()
        messages = [("h\u00e9llo".encode("utf-8"), False), (b"\x00\xffbin\x80", True)]
        for payload, isBinary in messages:
            client.sendMessage(payload, isBinary)
            echoed = yield client.nextMessage()
            self.assertEqual(echoed, (payload, isBinary))
        self.assertEqual(self.backend.last().received, messages)
        yield self.closeClient(client)

    @inlineCallbacks
    def test_websocketsTextAndBinary(self):
        """
        The C{websockets} client: C{str} comes back as C{str} and C{bytes} as
        C{bytes}, and the backend saw the same types.
        """

        def session(url):
            with websocketsConnect(url, **websocketsOptions()) as ws:
                ws.send("h\u00e9llo")
                text = ws.recv(timeout=WAIT)
                ws.send(b"\x00\xffbin\x80")
                binary = ws.recv(timeout=WAIT)
            return text, binary

        text, binary = yield self.inThread(session, self.url())
        self.assertEqual((text, binary), ("h\u00e9llo", b"\x00\xffbin\x80"))
        self.assertEqual(
            self.backend.last().received,
            [("h\u00e9llo".encode("utf-8"), False), (b"\x00\xffbin\x80", True)],
        )
        yield self.backend.last().lost.wait()

    @inlineCallbacks
    def test_httpRouteCarriesUpgrades(self):
        """
        A route to an C{http://} backend relays websocket upgrades too.
        """
        service, port, log = startProxy(
            self, proxyConfig(0, route=wsRoute(self.backend.port, scheme="http"))
        )
        client = yield connectAutobahn(self, port, "/echo")
        client.sendMessage(b"over http route")
        echoed = yield client.nextMessage()
        self.assertEqual(echoed, (b"over http route", False))
        yield self.closeClient(client)


class HandshakeTests(RelayTestCase):
    """
    The backend sees the client's request; the client sees the backend's
    answer.
    """

    @inlineCallbacks
    def test_backendReceivesClientRequest(self):
        """
        The raw path and query, Origin, Cookie, Authorization, User-Agent
        and a custom header reach the backend, with X-Forwarded-For, -Proto,
        -Host and -Port added and the backend's own Host.
        """
        target = "/chat/room%20one?a=1&b=%2f&c=x+y&c=&d"
        client = yield self.connect(
            target,
            origin="https://app.example",
            useragent="proxyws-test/1.0",
            headers={
                "Cookie": "k1=v1; k2=v2",
                "Authorization": "Bearer token-123",
                "X-Custom": "custom value",
            },
        )
        handshake = self.backend.handshakes[-1]
        self.assertEqual(handshake.uri, target)
        expected = {
            "origin": "https://app.example",
            "cookie": "k1=v1; k2=v2",
            "authorization": "Bearer token-123",
            "user-agent": "proxyws-test/1.0",
            "x-custom": "custom value",
            "x-forwarded-for": "127.0.0.1",
            "x-forwarded-proto": "http",
            "x-forwarded-host": "127.0.0.1:%d" % self.port,
            "x-forwarded-port": "%d" % self.port,
            "host": "127.0.0.1:%d" % self.backend.port,
        }
        self.assertEqual(
            {name: handshake.headers.get(name) for name in expected}, expected
        )
        yield self.closeClient(client)

    @inlineCallbacks
    def test_backendReceivesSubprotocolList(self):
        """
        The backend receives the client's whole subprotocol list, in order.
        (None of them is one the backend speaks, so it chooses none.)
        """
        offered = ["gamma", "delta.v2", "epsilon"]
        client = yield self.connect(protocols=offered)
        self.assertEqual(self.backend.handshakes[-1].protocols, offered)
        self.assertIsNone(client.response.protocol)
        yield self.closeClient(client)

    @inlineCallbacks
    def test_clientSeesBackendCookies(self):
        """
        Autobahn's client gets both of the backend's Set-Cookie headers, as
        two header lines.
        """
        client = yield self.connect()
        head = client.http_response_data
        for cookie in COOKIES:
            self.assertIn(b"\r\nSet-Cookie: " + cookie.encode("ascii") + b"\r\n", head)
        yield self.closeClient(client)

    @inlineCallbacks
    def test_clientSeesBackendSubprotocol(self):
        """
        Autobahn's client gets the subprotocol the backend chose (not its own
        first choice), with the backend's cookies.
        """
        client = yield self.connect(protocols=["alpha", "beta", "gamma"])
        self.assertEqual(client.response.protocol, "beta")
        self.assertEqual(self.backend.last().websocket_protocol_in_use, "beta")
        head = client.http_response_data
        for cookie in COOKIES:
            self.assertIn(b"\r\nSet-Cookie: " + cookie.encode("ascii") + b"\r\n", head)
        yield self.closeClient(client)

    @inlineCallbacks
    def test_websocketsClientSeesBackendAnswer(self):
        """
        The C{websockets} client gets the backend's subprotocol and cookies.
        """

        def session(url):
            with websocketsConnect(
                url, subprotocols=["gamma", "alpha", "beta"], **websocketsOptions()
            ) as ws:
                return ws.subprotocol, ws.response.headers.get_all("Set-Cookie")

        protocol, cookies = yield self.inThread(session, self.url())
        self.assertEqual((protocol, cookies), ("beta", COOKIES))
        yield self.backend.last().lost.wait()

    @inlineCallbacks
    def test_rawHandshakeHeaderCase(self):
        """
        The handshake bytes the backend receives spell the websocket header
        names as RFC 6455 does (C{Sec-WebSocket-Key}, not Twisted's
        C{Sec-Websocket-Key}): some backends compare names case-sensitively.
        """
        factory, port = startSocketBackend(self, RawBackendProtocol)
        service, proxyPort, log = startProxy(self, proxyConfig(0, route=wsRoute(port)))
        client = yield connectAutobahn(
            self, proxyPort, "/raw?x=1", protocols=["alpha"], headers={"X-Custom": "1"}
        )
        raw = factory.requests[0]
        self.assertTrue(raw.startswith(b"GET /raw?x=1 HTTP/1.1\r\n"), raw)
        self.assertRegex(raw, rb"\r\nSec-WebSocket-Key: [A-Za-z0-9+/]{22}==\r\n")
        self.assertIn(b"\r\nSec-WebSocket-Version: 13\r\n", raw)
        self.assertIn(b"\r\nSec-WebSocket-Protocol: alpha\r\n", raw)
        self.assertIn(b"\r\nX-Custom: 1\r\n", raw)
        self.assertNotIn(b"Sec-Websocket-", raw)
        client.sendClose(1000)
        yield client.lost.wait()
        yield factory.protocols[0].lost.wait()


class RefusalTests(TestCase):
    """
    An upgrade the backend does not accept gets the backend's answer, or 502
    or 504, and an access-log line.
    """

    timeout = 10

    @inlineCallbacks
    def test_backendRefusals(self):
        """
        A backend answering 401, 403 or 404 to the upgrade: the client gets
        that status, the backend's headers and body.
        """
        backend = EchoBackend(self)
        service, port, log = startProxy(self, proxyConfig(0, route=wsRoute(backend.port)))
        seen = []
        for code in (401, 403, 404):
            path = b"/refuse/%d" % code
            response = yield rawRequest(port, upgradeThenClose(path))
            seen.append(
                (
                    statusLine(response).split(b" ")[1],
                    b"\r\nX-Refused-By: backend\r\n" in response,
                    response.endswith(b"\r\n\r\nrefused by the backend"),
                    b'"GET %s HTTP/1.1" %d 22 ' % (path, code) in log.lines[-1],
                )
            )
        self.assertEqual(
            seen, [(b"%d" % code, True, True, True) for code in (401, 403, 404)], log.lines
        )
        self.assertEqual(len(log.lines), 3)
        self.assertEqual(backend.handshakes, [])

    @inlineCallbacks
    def test_backendRedirectMappedBack(self):
        """
        A backend redirecting the upgrade to a URL of its own: the client
        gets the redirect with C{Location} mapped to the proxy, as for any
        relayed response.
        """
        backend = EchoBackend(self)
        service, port, log = startProxy(self, proxyConfig(0, route=wsRoute(backend.port)))
        response = yield rawRequest(port, upgradeThenClose(b"/refuse/302"))
        self.assertEqual(statusLine(response).split(b" ")[1], b"302")
        self.assertIn(b"\r\nLocation: http://127.0.0.1/login\r\n", response)

    @inlineCallbacks
    def test_backendDown(self):
        """
        A backend port where nothing listens gives 502 and a log line.
        """
        service, port, log = startProxy(self, proxyConfig(0, route=wsRoute(freePort())))
        response = yield rawRequest(port, upgradeThenClose(b"/down"))
        self.assertEqual(statusLine(response), b"HTTP/1.1 502 Bad Gateway")
        self.assertEqual(len(log.lines), 1)
        self.assertIn(b'"GET /down HTTP/1.1" 502 ', log.lines[0])

    @inlineCallbacks
    def test_slowHandshake(self):
        """
        A backend that accepts the connection but never answers the
        handshake gives 504 after C{response_timeout}, and a log line.
        """
        factory, backendPort = startSocketBackend(self, SilentProtocol)
        service, port, log = startProxy(
            self, proxyConfig(0, route=wsRoute(backendPort, "response_timeout = 0.3\n"))
        )
        started = time.monotonic()
        response = yield rawRequest(port, upgradeThenClose(b"/slow"))
        elapsed = time.monotonic() - started
        self.assertEqual(statusLine(response), b"HTTP/1.1 504 Gateway Timeout")
        self.assertTrue(0.25 < elapsed < 1.5, elapsed)
        self.assertEqual(len(log.lines), 1)
        self.assertIn(b'"GET /slow HTTP/1.1" 504 ', log.lines[0])
        yield factory.protocols[0].lost.wait()


class CloseCodeTests(RelayTestCase):
    """
    Close codes and reasons pass through both ways (tables L{CLIENT_CLOSES}
    and L{BACKEND_CLOSES}).
    """

    @inlineCallbacks
    def test_clientCloses(self):
        """
        Each close the client sends reaches the backend with the same code
        and reason.
        """
        seen = []
        for code, reason in CLIENT_CLOSES:
            client = yield self.connect()
            backend = self.backend.last()
            client.sendCloseFrame(code, reason.encode("utf-8") if code else None)
            backendCode, backendReason = yield backend.closed.wait()
            seen.append((backendCode, backendReason or ""))
            yield client.lost.wait()
        self.assertEqual(seen, CLIENT_CLOSES)

    @inlineCallbacks
    def test_backendCloses(self):
        """
        Each close the backend sends reaches the client with the same code
        and reason.
        """
        seen = []
        for code, reason in BACKEND_CLOSES:
            client = yield self.connect()
            backend = self.backend.last()
            client.sendMessage(b"close:%d:%s" % (code, reason.encode("utf-8")))
            clientCode, clientReason = yield client.closed.wait()
            seen.append((clientCode, clientReason))
            yield backend.lost.wait()
        self.assertEqual(seen, BACKEND_CLOSES)

    @inlineCallbacks
    def test_closesWithWebsocketsClient(self):
        """
        The same with the C{websockets} client: its close reaches the
        backend, the backend's close reaches it.
        """

        def clientCloses(url):
            with websocketsConnect(url, **websocketsOptions()) as ws:
                ws.close(4000, "custom")

        def backendCloses(url):
            with websocketsConnect(url, **websocketsOptions()) as ws:
                ws.send("close:1011:internal trouble")
                try:
                    ws.recv(timeout=WAIT)
                except ConnectionClosed as e:
                    return e.rcvd.code, e.rcvd.reason
                return None

        yield self.inThread(clientCloses, self.url())
        closed = yield self.backend.last().closed.wait()
        self.assertEqual(closed, (4000, "custom"))
        received = yield self.inThread(backendCloses, self.url())
        self.assertEqual(received, (1011, "internal trouble"))
        yield self.backend.last().lost.wait()


    @inlineCallbacks
    def test_proxyWaitsForClientCloseReply(self):
        """
        When the backend closes, the proxy sends the client a close frame and
        keeps the connection open for the client's answering close frame
        (RFC 6455 5.5.1, 7.1.1), then closes it.
        """
        client = yield connectRaw(self, self.port, upgradeRequest(b"/echo", b"127.0.0.1"))
        yield client.head.wait()
        client.transport.write(encodeFrame(TEXT, b"close:4005:bye now"))
        message = yield client.nextMessage()
        self.assertEqual(message, (CLOSE, closePayload(4005, b"bye now")))
        yield deferLater(reactor(), 0.1, lambda: None)
        self.assertFalse(
            client.lost.happened, "the proxy closed the TCP connection before the close reply"
        )
        client.transport.write(encodeFrame(CLOSE, closePayload(4005, b"bye now")))
        yield client.lost.wait(timeout=1.0)

    @inlineCallbacks
    def test_proxyWaitsForBackendCloseReply(self):
        """
        When the client vanishes, the proxy sends the backend close 1001 and
        keeps the backend connection open for the backend's answering close
        frame.
        """
        factory, port = startSocketBackend(self, SlowCloseBackendProtocol)
        service, proxyPort, log = startProxy(self, proxyConfig(0, route=wsRoute(port)))
        client = yield connectAutobahn(self, proxyPort, "/slow-close")
        client.transport.abortConnection()
        backend = factory.protocols[0]
        stillOpen = yield backend.replied.wait()
        self.assertEqual(backend.closeReceived[:2], closePayload(1001))
        self.assertTrue(stillOpen, "the proxy closed the TCP connection before the close reply")
        yield backend.lost.wait()


class MessageTests(RelayTestCase):
    """
    Messages arrive whole, whatever their framing and size.
    """

    @inlineCallbacks
    def test_fragmentedAutobahn(self):
        """
        A text message sent in three frames (a UTF-8 character split between
        two of them) and a binary one in two reach the backend as one
        message each, and come back whole.
        """
        client = yield self.connect()
        messages = [
            ([b"frag", b"ment \xc3", b"\xa9"], False),
            ([b"\x00\x01", b"\x02" * 300], True),
        ]
        for chunks, isBinary in messages:
            client.beginMessage(isBinary=isBinary)
            for chunk in chunks:
                client.beginMessageFrame(len(chunk))
                client.sendMessageFrameData(chunk)
            client.endMessage()
            echoed = yield client.nextMessage()
            self.assertEqual(echoed, (b"".join(chunks), isBinary))
        self.assertEqual(
            self.backend.last().received, [(b"".join(c), b) for c, b in messages]
        )
        yield self.closeClient(client)

    @inlineCallbacks
    def test_fragmentedWebsockets(self):
        """
        C{websockets}' C{send(iterable)} sends fragments; they arrive whole.
        """

        def session(url):
            with websocketsConnect(url, **websocketsOptions()) as ws:
                ws.send(["fr", "ag", "ments"])
                text = ws.recv(timeout=WAIT)
                ws.send([b"\x00", b"\x01\x02"])
                binary = ws.recv(timeout=WAIT)
            return text, binary

        received = yield self.inThread(session, self.url())
        self.assertEqual(received, ("fragments", b"\x00\x01\x02"))
        self.assertEqual(
            self.backend.last().received, [(b"fragments", False), (b"\x00\x01\x02", True)]
        )
        yield self.backend.last().lost.wait()

    @inlineCallbacks
    def test_emptyMessages(self):
        """
        Empty text and empty binary messages pass with their types.
        """
        client = yield self.connect()
        for isBinary in (False, True):
            client.sendMessage(b"", isBinary)
            echoed = yield client.nextMessage()
            self.assertEqual(echoed, (b"", isBinary))
        self.assertEqual(self.backend.last().received, [(b"", False), (b"", True)])
        yield self.closeClient(client)

    @inlineCallbacks
    def test_sixteenMebibytes(self):
        """
        A 16 MiB binary message reaches the backend byte-exact, and its echo
        reaches the client byte-exact.
        """
        payload = bytes(range(256)) * (16 * 4096)
        client = yield self.connect()
        client.sendMessage(payload, isBinary=True)
        echoed, isBinary = yield client.nextMessage(timeout=5)
        received, receivedBinary = self.backend.last().received[0]
        self.assertTrue(isBinary and receivedBinary)
        self.assertTrue(received == payload, "backend got a different message")
        self.assertTrue(echoed == payload, "client got a different message")
        yield self.closeClient(client)


class EarlyFrameTests(RelayTestCase):
    """
    Frames that come before the proxy answered the handshake are kept.
    """

    @inlineCallbacks
    def test_frameInSameWriteAsUpgrade(self):
        """
        A client that writes its upgrade request and a text frame in one
        piece gets the 101 and then the echo of that frame.
        """
        initial = upgradeRequest(b"/early", b"127.0.0.1") + encodeFrame(TEXT, b"early bird")
        client = yield connectRaw(self, self.port, initial)
        head = yield client.head.wait()
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
        message = yield client.nextMessage()
        self.assertEqual(message, (TEXT, b"early bird"))
        self.assertEqual(self.backend.last().received, [(b"early bird", False)])
        client.transport.write(encodeFrame(CLOSE, closePayload(1000)))
        yield client.lost.wait()
        yield self.backend.last().lost.wait()


class VanishTests(RelayTestCase):
    """
    When one side goes away without a close frame, the other is closed.
    """

    @inlineCallbacks
    def test_clientAbort(self):
        """
        A client whose TCP connection is aborted: within 1 s the backend gets
        a close 1001 that names the client.
        """
        client = yield self.connect()
        backend = self.backend.last()
        client.transport.abortConnection()
        code, reason = yield backend.closed.wait(timeout=1.0)
        self.assertEqual(code, 1001)
        self.assertIn("client", reason)

    @inlineCallbacks
    def test_backendAbort(self):
        """
        A backend that aborts its TCP connection: within 1 s the client gets
        a close 1011 that names the backend.
        """
        client = yield self.connect()
        client.sendMessage(b"abort")
        code, reason = yield client.closed.wait(timeout=1.0)
        self.assertEqual(code, 1011)
        self.assertIn("backend", reason)
        yield client.lost.wait()


class PingTimeoutTests(RelayTestCase):
    """
    A client that does not answer the proxy's pings is closed.
    """

    # The shortest interval a config may give (schema.PING_MINIMUM).
    routeExtra = "ws_ping_interval = 1\nws_ping_timeout = 0.3\n"

    @inlineCallbacks
    def test_unansweredPings(self):
        """
        A raw client that never answers pings: the proxy pings it, drops it,
        and closes the backend with 1001 and a reason naming the client.
        """
        client = yield connectRaw(self, self.port, upgradeRequest(b"/ping", b"127.0.0.1"))
        head = yield client.head.wait()
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
        backend = self.backend.last()
        yield client.lost.wait(timeout=3.0)
        self.assertIn(PING, [opcode for _, opcode, _ in client.frames])
        code, reason = yield backend.closed.wait(timeout=1.0)
        self.assertEqual(code, 1001)
        self.assertIn("client", reason)


    @inlineCallbacks
    def test_answeredPingsKeepItOpen(self):
        """
        Peers that answer pings (Autobahn's client and echo server both do)
        stay connected across several ping intervals, and messages flow.
        """
        client = yield self.connect()
        backend = self.backend.last()
        for i in range(6):
            yield deferLater(reactor(), 0.5, lambda: None)
            self.assertFalse(
                client.closed.happened or backend.closed.happened,
                "closed after %.1f s: client %r, backend %r"
                % ((i + 1) * 0.5, client.closed.result, backend.closed.result),
            )
            client.sendMessage(b"tick %d" % i)
            echoed = yield client.nextMessage()
            self.assertEqual(echoed, (b"tick %d" % i, False))
        yield self.closeClient(client)


class OriginTests(RelayTestCase):
    """
    C{allowed_origins} admits listed origins and refuses the rest before
    the backend is contacted.
    """

    routeExtra = 'allowed_origins = ["https://good.example", "*.trusted.example"]\n'

    @inlineCallbacks
    def test_allowedOrigins(self):
        """
        A listed origin and an origin under a listed host pattern open.
        """
        for origin in ("https://good.example", "https://a.trusted.example"):
            client = yield self.connect(origin=origin)
            self.assertEqual(self.backend.handshakes[-1].headers["origin"], origin)
            yield self.closeClient(client)
        self.assertEqual(len(self.backend.handshakes), 2)

    @inlineCallbacks
    def test_forbiddenOrigin(self):
        """
        Another origin gets 403 and a log line; the backend never sees a
        connection.
        """
        response = yield rawRequest(
            self.port, upgradeThenClose(b"/echo", [(b"Origin", b"https://evil.example")])
        )
        self.assertEqual(statusLine(response), b"HTTP/1.1 403 Forbidden")
        self.assertEqual(self.backend.site.connections, 0)
        self.assertIn(b'"GET /echo HTTP/1.1" 403 ', self.accessLog.lines[0])


class MessageSizeTests(RelayTestCase):
    """
    C{max_message_size} closes a client that sends more with 1009.
    """

    routeExtra = "max_message_size = 1000\n"

    @inlineCallbacks
    def test_tooBig(self):
        """
        A 1000-byte message passes; a 2000-byte one gets the client closed
        with 1009 and is not delivered.
        """
        client = yield self.connect()
        backend = self.backend.last()
        client.sendMessage(b"x" * 1000, isBinary=True)
        echoed = yield client.nextMessage()
        self.assertEqual(echoed, (b"x" * 1000, True))
        client.sendMessage(b"y" * 2000, isBinary=True)
        code, reason = yield client.closed.wait()
        self.assertEqual(code, 1009)
        yield backend.lost.wait()
        self.assertEqual([(len(p), b) for p, b in backend.received], [(1000, True)])


class BufferSizeTests(RelayTestCase):
    """
    C{ws_buffer_size} sets how much may wait on a leg before the other
    leg's reading pauses.
    """

    routeExtra = "ws_buffer_size = 8192\n"

    @inlineCallbacks
    def test_bufferSize(self):
        """
        Both legs' TCP transports take the route's buffer size.
        """
        client = yield self.connect()
        client.sendMessage(b"x", isBinary=True)
        yield client.nextMessage()
        [relay] = self.service.sites[0]._relays
        sizes = [leg.transport.bufferSize for leg in (relay.client, relay.backend)]
        self.assertEqual(sizes, [8192, 8192])


class IdleTimeoutTests(RelayTestCase):
    """
    C{ws_idle_timeout} closes a websocket without messages on both sides.
    """

    routeExtra = "ws_idle_timeout = 0.3\n"

    @inlineCallbacks
    def test_idleClosesBoth(self):
        """
        No traffic: after 0.3 s the client and the backend get 1001.
        """
        client = yield self.connect()
        backend = self.backend.last()
        started = time.monotonic()
        clientClose = yield client.closed.wait(timeout=1.5)
        elapsed = time.monotonic() - started
        backendClose = yield backend.closed.wait(timeout=1.0)
        self.assertEqual((clientClose[0], backendClose[0]), (1001, 1001))
        self.assertTrue(0.25 < elapsed < 1.0, elapsed)

    @inlineCallbacks
    def test_trafficKeepsItOpen(self):
        """
        A message every 0.1 s keeps the websocket open past the timeout.
        """
        client = yield self.connect()
        for i in range(6):
            yield deferLater(reactor(), 0.1, lambda: None)
            client.sendMessage(b"tick")
            yield client.nextMessage()
        self.assertFalse(client.closed.happened)
        yield self.closeClient(client)


class AccessLogTests(RelayTestCase):
    """
    A websocket's access-log line is written when it closes.
    """

    @inlineCallbacks
    def test_lineWhenClosed(self):
        """
        No line while the websocket is open; at close one line with the
        request line, status 101 and the bytes sent to the client.
        """
        client = yield self.connect("/logged/path?q", useragent="tester/2")
        client.sendMessage(b"hello")
        yield client.nextMessage()
        self.assertEqual(self.accessLog.lines, [])
        yield self.closeClient(client)
        yield waitUntil(lambda: self.accessLog.lines)
        self.assertEqual(len(self.accessLog.lines), 1)
        line = self.accessLog.lines[0]
        match = re.match(
            rb'127\.0\.0\.1 - - \[[^]]+\] "GET /logged/path\?q HTTP/1\.1" 101 (\d+) '
            rb'"-" "tester/2"\n\Z',
            line,
        )
        self.assertIsNotNone(match, line)
        self.assertGreater(int(match.group(1)), 0)


class GracefulStopTests(RelayTestCase):
    """
    Stopping the service closes open websockets with 1001 on both legs.
    """

    @inlineCallbacks
    def test_stopService(self):
        """
        C{stopService} with an open websocket: the client and the backend
        get 1001, and the Deferred of C{stopService} fires.  A second
        C{stopService} does no harm.
        """
        client = yield self.connect()
        backend = self.backend.last()
        stopped = self.service.stopService()
        clientClose = yield client.closed.wait()
        backendClose = yield backend.closed.wait()
        self.assertEqual((clientClose[0], backendClose[0]), (1001, 1001))
        yield stopped.addTimeout(WAIT, reactor())
        # Twisted's own services may be stopped twice (a parent
        # MultiService stops its children whether or not they still run).
        yield self.service.stopService()


class PlainHTTPTests(RelayTestCase):
    """
    Plain HTTP on a C{ws://} route goes to the backend over C{http://}.
    """

    @inlineCallbacks
    def test_plainGet(self):
        """
        A GET without upgrade reaches the backend's web resource.
        """
        response = yield rawRequest(
            self.port, b"GET /plain?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        self.assertEqual(statusLine(response), b"HTTP/1.1 200 OK")
        self.assertTrue(response.endswith(b"\r\n\r\nplain http GET /plain?x=1"), response)
        self.assertIn(b'"GET /plain?x=1 HTTP/1.1" 200 ', self.accessLog.lines[0])
