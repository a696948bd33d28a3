"""
Tests for L{proxyws.demo}: the demo backend on a real loopback port, plus a
few checks on an in-memory clock.
"""

import json
import subprocess
import sys
from datetime import datetime
from io import BytesIO

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    connectWS,
)
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IListeningPort, ITCPTransport
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH
from twisted.web.resource import IResource
from twisted.web.server import Site
from zope.interface.verify import verifyObject

from proxyws.demo import demoResource, demoSite

from .helpers import rawRequest, subprocessEnvironment


def _tcpSelectables(reactor):
    """
    @return: the TCP connections and listening ports in C{reactor}.
    """
    return {
        selectable
        for selectable in set(reactor.getReaders()) | set(reactor.getWriters())
        if ITCPTransport.providedBy(selectable) or IListeningPort.providedBy(selectable)
    }


def _settle(reactor, before, timeout=2.0):
    """
    Wait until the TCP connections and ports opened since C{before} are
    gone, so that both sides have run C{connectionLost} (and cancelled
    their timers) before trial looks for a dirty reactor.

    @param before: L{_tcpSelectables} at the start of the test.
    @return: a L{Deferred} that fires once they are all gone.
    """
    from twisted.internet.task import deferLater

    deadline = reactor.seconds() + timeout

    def check():
        left = _tcpSelectables(reactor) - before
        if not left:
            return None
        if reactor.seconds() > deadline:
            raise AssertionError(f"sockets still open: {left!r}")
        return deferLater(reactor, 0.005, check)

    return check()


class _StopAfter(Protocol):
    """
    A response body consumer that drops the connection after C{n} reads.
    """

    def __init__(self, n):
        """
        @param n: how many reads to take before dropping the connection.
        """
        self.n = n
        self.received = []
        self.done = Deferred()

    def dataReceived(self, data):
        """
        Keep C{data}; drop the connection after the C{n}th read.
        """
        self.received.append(data)
        if len(self.received) == self.n:
            self.transport.stopProducing()

    def connectionLost(self, reason):
        """
        Fire C{done} with everything received.
        """
        self.done.callback(b"".join(self.received))


class _EchoClient(WebSocketClientProtocol):
    """
    Send C{factory.script} on open, collect replies; after one reply per
    message send a normal close, unless C{factory.waitForServer}.
    """

    def onOpen(self):
        """
        Send the script.
        """
        self.replies = []
        for payload, isBinary in self.factory.script:
            self.sendMessage(payload, isBinary)

    def onMessage(self, payload, isBinary):
        """
        Keep the reply; close normally once every message got one.
        """
        self.replies.append((payload, isBinary))
        done = len(self.replies) == len(self.factory.script)
        if done and not self.factory.waitForServer:
            self.sendClose(1000)

    def onClose(self, wasClean, code, reason):
        """
        Fire C{factory.closed} with the replies and how the close went.
        """
        replies = getattr(self, "replies", [])
        self.factory.closed.callback((replies, wasClean, code, reason))


class DemoLoopbackTests(unittest.TestCase):
    """
    L{demoSite} served on 127.0.0.1, exercised over real sockets.
    """

    def setUp(self):
        """
        Serve L{demoSite} on a free port until the test and its sockets end.
        """
        from twisted.internet import reactor

        self.reactor = reactor
        self.addCleanup(_settle, reactor, _tcpSelectables(reactor))
        self.port = reactor.listenTCP(0, demoSite(reactor), interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.base = b"http://127.0.0.1:%d" % (self.port.getHost().port,)
        self.agent = Agent(reactor)

    @inlineCallbacks
    def fetch(self, path, method=b"GET", headers=None, body=None):
        """
        Make one request through L{Agent}.

        @return: a L{Deferred} firing with C{(response, body)}.
        """
        producer = None if body is None else FileBodyProducer(BytesIO(body))
        url = self.base + path
        response = yield self.agent.request(method, url, Headers(headers or {}), producer)
        content = yield readBody(response)
        return response, content

    def raw(self, data):
        """
        Send raw request bytes on a fresh connection.

        @return: a L{Deferred} firing with all bytes received until close.
        """
        return rawRequest(self.port.getHost().port, data)

    def websocket(self, script, waitForServer=False):
        """
        Run C{script} against C{/ws}.

        @return: a L{Deferred} firing with C{(replies, wasClean, code, reason)}.
        """
        url = "ws://127.0.0.1:%d/ws" % (self.port.getHost().port,)
        factory = WebSocketClientFactory(url, reactor=self.reactor)
        factory.protocol = _EchoClient
        factory.script, factory.waitForServer, factory.closed = script, waitForServer, Deferred()
        connectWS(factory)
        return factory.closed

    @inlineCallbacks
    def test_indexShowsRequestSeenByBackend(self):
        """
        C{/} is an HTML page titled "proxyws is working" listing the request
        line and headers as received, HTML-escaped, proxy headers marked.
        """
        headers = {"X-Forwarded-For": ["203.0.113.7"], "X-Evil": ["<script>alert(1)</script>"]}
        response, body = yield self.fetch(b"/", headers=headers)
        self.assertEqual(response.code, 200)
        contentType = response.headers.getRawHeaders(b"content-type")
        self.assertEqual(contentType, [b"text/html; charset=utf-8"])
        self.assertIn(b"<title>proxyws is working</title>", body)
        self.assertIn(b"GET / HTTP/1.1", body)
        row = b'<tr class="proxy"><td>X-Forwarded-For</td><td>203.0.113.7</td></tr>'
        self.assertIn(row, body)
        self.assertIn(b"<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>", body)
        self.assertNotIn(b"<script>alert", body)

    @inlineCallbacks
    def test_indexUsesOnlyRelativeURLs(self):
        """
        The page reaches C{events}, C{headers} and C{ws} by relative URLs,
        building the websocket URL from C{location}, and loads no asset.
        """
        _, body = yield self.fetch(b"/")
        self.assertIn(b'new EventSource("events")', body)
        self.assertIn(b'fetch("headers")', body)
        self.assertIn(b'"wss://" : "ws://") + location.host + dir + "ws"', body)
        for absolute in [b'"/events"', b'"/ws"', b'"/headers"', b"src=", b"href=", b"http://"]:
            self.assertNotIn(absolute, body)

    @inlineCallbacks
    def test_headersKeepsWireOrderAndCase(self):
        """
        C{/headers} lists the headers in the order and case they arrived,
        repeated headers as separate entries.
        """
        reply = yield self.raw(
            b"GET /headers?a=1 HTTP/1.1\r\nhost: demo\r\nX-Rep: one\r\n"
            b"accept: */*\r\nx-rep: two\r\nConnection: close\r\n\r\n"
        )
        head, _, body = reply.partition(b"\r\n\r\n")
        self.assertIn(b"Content-Type: application/json", head)
        self.assertEqual(
            json.loads(body),
            {
                "method": "GET",
                "uri": "/headers?a=1",
                "headers": [
                    ["host", "demo"],
                    ["X-Rep", "one"],
                    ["accept", "*/*"],
                    ["x-rep", "two"],
                    ["Connection", "close"],
                ],
            },
        )

    @inlineCallbacks
    def test_headersAnswersAnyMethod(self):
        """
        C{/headers} reports the method and target of a POST too.
        """
        _, body = yield self.fetch(b"/headers?x=%20y", method=b"POST", body=b"ignored")
        dump = json.loads(body)
        self.assertEqual((dump["method"], dump["uri"]), ("POST", "/headers?x=%20y"))
        self.assertIn(["Content-Length", "7"], dump["headers"])

    @inlineCallbacks
    def test_eventsFinishAfterCount(self):
        """
        C{/events?count=3} sends three C{data: <ISO time>} events, with the
        SSE content type and no caching, then ends the response.
        """
        response, body = yield self.fetch(b"/events?count=3&interval=0.01")
        contentType = response.headers.getRawHeaders(b"content-type")
        self.assertEqual(contentType, [b"text/event-stream"])
        self.assertEqual(response.headers.getRawHeaders(b"cache-control"), [b"no-cache"])
        events = body.split(b"\n\n")
        self.assertEqual(events[-1], b"")
        self.assertEqual(len(events), 4)
        for event in events[:-1]:
            self.assertTrue(event.startswith(b"data: "), event)
            datetime.fromisoformat(event[6:].decode("ascii"))

    @inlineCallbacks
    def test_eventsStopWhenClientLeaves(self):
        """
        C{/events} sends its first event at once and runs until the client
        goes; its timer is then cancelled (trial fails on a pending call).
        """
        response = yield self.agent.request(b"GET", self.base + b"/events?interval=30")
        consumer = _StopAfter(1)
        response.deliverBody(consumer)
        body = yield consumer.done
        self.assertTrue(body.startswith(b"data: "))

    @inlineCallbacks
    def test_badQueryArgumentsAre400(self):
        """
        Malformed or out-of-range C{count}, C{interval} and C{chunks} get a
        400 naming the argument.
        """
        paths = [b"/events?interval=abc", b"/events?count=0", b"/stream?chunks=nan"]
        for path in paths + [b"/stream?delay=inf", b"/stream?size=%C3%A9"]:
            response, body = yield self.fetch(path)
            self.assertEqual(response.code, 400, path)
            self.assertIn(path.split(b"?")[1].split(b"=")[0] + b"=", body)

    @inlineCallbacks
    def test_statusRelaysCode(self):
        """
        C{/status/<code>} answers with that code and a short text body; a
        code outside 200-599 or not a number is a plain 404.
        """
        for path, code, text in [
            (b"/status/404", 404, b"404 Not Found\n"),
            (b"/status/500", 500, b"500 Internal Server Error\n"),
            (b"/status/201", 201, b"201 Created\n"),
            (b"/status/102", 404, b"404 Not Found\n"),
            (b"/status/teapot", 404, b"404 Not Found\n"),
        ]:
            response, body = yield self.fetch(path)
            self.assertEqual((response.code, body), (code, text), path)

    @inlineCallbacks
    def test_unknownPathIsNotFound(self):
        """
        A path outside the tree is a 404.
        """
        response, _ = yield self.fetch(b"/nowhere")
        self.assertEqual(response.code, 404)

    @inlineCallbacks
    def test_streamSendsChunks(self):
        """
        C{/stream?chunks=3&size=4} sends a body of unknown length made of
        C{aaaa}, C{bbbb}, C{cccc}.
        """
        response, body = yield self.fetch(b"/stream?chunks=3&size=4&delay=0.01")
        self.assertEqual(response.length, UNKNOWN_LENGTH)
        self.assertEqual(body, b"aaaabbbbcccc")

    @inlineCallbacks
    def test_streamIsChunkedOnTheWire(self):
        """
        Each piece of C{/stream} is its own HTTP/1.1 chunk.
        """
        reply = yield self.raw(
            b"GET /stream?chunks=2&size=3&delay=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        head, _, body = reply.partition(b"\r\n\r\n")
        self.assertIn(b"Transfer-Encoding: chunked", head)
        self.assertEqual(body, b"3\r\naaa\r\n3\r\nbbb\r\n0\r\n\r\n")

    @inlineCallbacks
    def test_echoReturnsBody(self):
        """
        C{/echo} returns a POST or PUT body and its content type, including
        a body large enough for Twisted to spool it to a file.
        """
        big = bytes(range(256)) * 1200
        for method, body in [(b"POST", b"hello"), (b"PUT", big), (b"POST", b"")]:
            response, echoed = yield self.fetch(
                b"/echo", method=method, headers={"Content-Type": ["x/y"]}, body=body
            )
            self.assertEqual(echoed, body)
            self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"x/y"])

    @inlineCallbacks
    def test_echoRefusesGet(self):
        """
        C{/echo} only takes POST and PUT.
        """
        response, _ = yield self.fetch(b"/echo")
        self.assertEqual(response.code, 405)

    @inlineCallbacks
    def test_redirectUsesHostReceived(self):
        """
        C{/redirect} answers 302 to C{http://<Host received>} plus C{target},
        C{/} by default.
        """
        for path, location in [
            (b"/redirect", b"http://public.example:8443/"),
            (b"/redirect?target=/a/b%3Fc", b"http://public.example:8443/a/b?c"),
            (b"/redirect?target=x", b"http://public.example:8443/x"),
        ]:
            response, _ = yield self.fetch(path, headers={"Host": ["public.example:8443"]})
            self.assertEqual(response.code, 302)
            self.assertEqual(response.headers.getRawHeaders(b"location"), [location])

    @inlineCallbacks
    def test_websocketEchoesTextAndBinary(self):
        """
        C{/ws} echoes text as text and binary as binary.
        """
        script = [(b"hello", False), (b"\x00\xffbin", True), ("h\u00e9".encode("utf-8"), False)]
        replies, wasClean, code, _ = yield self.websocket(script)
        self.assertEqual(replies, script)
        self.assertEqual((wasClean, code), (True, 1000))

    @inlineCallbacks
    def test_websocketCloseCommand(self):
        """
        Text C{close:<code>:<reason>} makes the server close with that code
        and reason, including codes C{sendClose} refuses such as 1011.
        """
        for command, code, reason in [
            (b"close:4000:bye: now", 4000, "bye: now"),
            (b"close:1011:oops", 1011, "oops"),
            (b"close:1000", 1000, None),
        ]:
            replies, wasClean, gotCode, gotReason = yield self.websocket(
                [(command, False)], waitForServer=True
            )
            self.assertEqual((replies, wasClean, gotCode, gotReason), ([], True, code, reason))

    @inlineCallbacks
    def test_websocketBadCloseCommand(self):
        """
        A close command with a code that may not be sent gets an error
        message back, and the connection stays open.
        """
        codes = ["1006", "abc", "\u00b2", ""]
        script = [(f"close:{code}:x".encode("utf-8"), False) for code in codes]
        replies, _, code, _ = yield self.websocket(script)
        expected = [f"error: cannot close with code {code!r}" for code in codes]
        self.assertEqual(replies, [(e.encode("utf-8"), False) for e in expected])
        self.assertEqual(code, 1000)


class DemoClockTests(unittest.TestCase):
    """
    L{proxyws.demo} driven in memory, on a L{Clock}.
    """

    def test_eventsRunOnGivenReactor(self):
        """
        C{/events} timestamps with and schedules on the reactor it was given.
        """
        clock = Clock()
        clock.advance(86400)
        channel = _channel(clock)
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"GET /events?count=2&interval=5 HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(transport.value().count(b"data: 1970-01-02T00:00:00.000+00:00\n\n"), 1)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(5)
        self.assertIn(b"data: 1970-01-02T00:00:05.000+00:00\n\n", transport.value())
        clock.advance(5)
        self.assertTrue(transport.value().endswith(b"0\r\n\r\n"))
        self.assertEqual(clock.getDelayedCalls(), [])
        channel.connectionLost(Failure(ConnectionDone()))

    def test_streamPausesWithItsClient(self):
        """
        C{/stream} is its response's push producer: while the connection
        is paused (a client that does not read) it makes no pieces, and it
        goes on when the connection resumes.
        """
        clock = Clock()
        channel = _channel(clock)
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(
            b"GET /stream?count=100&size=10&interval=1 HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        clock.advance(1)
        written = len(transport.value())
        transport.producer.pauseProducing()
        clock.advance(50)
        self.assertEqual(len(transport.value()), written)
        self.assertEqual(clock.getDelayedCalls(), [])
        transport.producer.resumeProducing()
        clock.advance(0)
        clock.advance(1)
        self.assertGreater(len(transport.value()), written)
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_eventsTimerCancelledOnDisconnect(self):
        """
        Losing the connection cancels the C{/events} timer.
        """
        clock = Clock()
        channel = _channel(clock)
        channel.makeConnection(StringTransport())
        channel.dataReceived(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_demoSiteWritesNoAccessLog(self):
        """
        L{demoSite} is a L{Site} over an L{IResource} whose C{log} does nothing.
        """
        site = demoSite(Clock())
        self.assertIsInstance(site, Site)
        verifyObject(IResource, site.resource)
        verifyObject(IResource, demoResource(Clock()))
        self.assertIsNone(site.log(None))

    def test_importLeavesReactorAlone(self):
        """
        Importing L{proxyws.demo} does not install a reactor.
        """
        code = "import sys, proxyws.demo; print('twisted.internet.reactor' in sys.modules)"
        command = [sys.executable, "-c", code]
        out = subprocess.run(command, capture_output=True, check=True, env=subprocessEnvironment())
        self.assertEqual(out.stdout.strip(), b"False")


def _channel(clock):
    """
    @return: a demo site's channel on C{clock}, with no idle timeout (its
        timer would sit among the ones the tests count).
    """
    site = demoSite(clock)
    site.timeOut = None
    return site.buildProtocol(None)
