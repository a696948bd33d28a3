"""
End-to-end tests of the HTTP proxy path: proxyws in this process, a real
twisted.web backend, real clients, all over 127.0.0.1.
"""

import socket

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from .helpers import freePort, proxyConfig, rawRequest, startBackend, startProxy


class Hello(Resource):
    """
    Answers every request with a short body and the request's method.
    """

    isLeaf = True

    def render(self, request):
        request.setHeader(b"Content-Type", b"text/plain")
        request.responseHeaders.setRawHeaders(b"Set-Cookie", [b"a=1; Path=/", b"b=2; Path=/"])
        request.setHeader(b"X-Method", request.method)
        request.setHeader(b"X-Uri", request.uri)
        return b"hello " + request.uri


class Held(Resource):
    """
    Writes the response head and a first chunk, then waits for the test.

    @ivar requests: the requests being held.
    """

    isLeaf = True

    def __init__(self):
        Resource.__init__(self)
        self.requests = []
        self.arrived = Deferred()
        self.gone = Deferred()

    def render(self, request):
        request.write(b"first;")
        self.requests.append(request)
        request.notifyFinish().addErrback(lambda f: self.gone.callback(f.value))
        self.arrived.callback(request)
        return NOT_DONE_YET


class Silent(Resource):
    """
    Never answers.
    """

    isLeaf = True

    def render(self, request):
        return NOT_DONE_YET


class Status(Resource):
    """
    Answers with the status and headers given in the query: C{?code=304}.
    """

    isLeaf = True

    def render(self, request):
        code = int(request.args[b"code"][0])
        request.setResponseCode(code)
        if b"location" in request.args:
            request.setHeader(b"Location", request.args[b"location"][0])
        return b"" if code in (204, 304) else b"body of " + str(code).encode()


class Echo(Resource):
    """
    Answers with the request body and its length.
    """

    isLeaf = True

    def render(self, request):
        body = request.content.read()
        request.setHeader(b"X-Length", b"%d" % len(body))
        return body


def backendTree():
    """
    The resources of the test backend.
    """
    root = Resource()
    root.putChild(b"hello", Hello())
    root.putChild(b"held", Held())
    root.putChild(b"silent", Silent())
    root.putChild(b"status", Status())
    root.putChild(b"echo", Echo())
    return root


class ProxyTestCase(TestCase):
    """
    Starts a backend and a proxy routing C{/} to it.
    """

    routeExtra = ""

    def setUp(self):
        from twisted.internet import reactor

        self.root = backendTree()
        self.backend, self.backendPort = startBackend(self, self.root)
        self.service, self.port, self.accessLog = startProxy(
            self, proxyConfig(self.backendPort, self.routeExtra)
        )
        self.pool = HTTPConnectionPool(reactor)
        self.addCleanup(self.pool.closeCachedConnections)
        self.agent = Agent(reactor, pool=self.pool)

    def url(self, path):
        return b"http://127.0.0.1:%d%s" % (self.port, path)

    @inlineCallbacks
    def get(self, path, method=b"GET", headers=None, body=None):
        response = yield self.agent.request(method, self.url(path), headers, body)
        content = yield readBody(response)
        return response, content


class ForwardingTests(ProxyTestCase):
    """
    Requests and responses pass through with the proxy's header rules.
    """

    @inlineCallbacks
    def test_getPassesThrough(self):
        """
        A GET reaches the backend with its path and query, and the body,
        status and repeated Set-Cookie headers come back.
        """
        response, body = yield self.get(b"/hello?x=1")
        self.assertEqual(response.code, 200)
        self.assertEqual(body, b"hello /hello?x=1")
        self.assertEqual(
            response.headers.getRawHeaders(b"Set-Cookie"), [b"a=1; Path=/", b"b=2; Path=/"]
        )

    @inlineCallbacks
    def test_keepAliveReusesOneBackendConnection(self):
        """
        Many requests in a row use one backend connection.
        """
        for i in range(20):
            response, body = yield self.get(b"/hello")
            self.assertEqual(response.code, 200)
        self.assertEqual(self.backend.connections, 1)

    @inlineCallbacks
    def test_accessLogLine(self):
        """
        Each request leaves one combined-format line with status and size.
        """
        yield self.get(b"/hello?q=1", headers=Headers({b"User-Agent": [b"tester/1"]}))
        yield self.get(b"/status?code=404")
        self.assertEqual(len(self.accessLog.lines), 2)
        first, second = self.accessLog.lines
        self.assertTrue(first.startswith(b"127.0.0.1 - - ["), first)
        self.assertTrue(
            first.endswith(b'] "GET /hello?q=1 HTTP/1.1" 200 16 "-" "tester/1"\n'), first
        )
        self.assertIn(b'"GET /status?code=404 HTTP/1.1" 404 11 ', second)

    @inlineCallbacks
    def test_noBodyForHeadAnd204And304(self):
        """
        HEAD, 204 and 304 responses reach the client without a body, and the
        connection stays usable.
        """
        for path, method, code in [
            (b"/hello", b"HEAD", 200),
            (b"/status?code=204", b"GET", 204),
            (b"/status?code=304", b"GET", 304),
        ]:
            response, body = yield self.get(path, method)
            self.assertEqual((response.code, body), (code, b""), path)
        response, body = yield self.get(b"/hello")
        self.assertEqual(body, b"hello /hello")

    @inlineCallbacks
    def test_expectContinue(self):
        """
        A request with C{Expect: 100-continue} gets 100 Continue, then the
        backend's answer to the body.
        """
        data = (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        from twisted.internet import reactor

        received = []
        done = Deferred()

        class Client(Protocol):
            def connectionMade(self):
                self.transport.write(data)

            def dataReceived(self, chunk):
                received.append(chunk)
                if b"100 Continue" in chunk and len(received) == 1:
                    self.transport.write(b"hello")

            def connectionLost(self, reason):
                done.callback(b"".join(received))

        factory = ClientFactory.forProtocol(Client)
        reactor.connectTCP("127.0.0.1", self.port, factory)
        response = yield done
        self.assertTrue(response.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK"), response)
        self.assertTrue(response.endswith(b"\r\n\r\nhello"), response)

    @inlineCallbacks
    def test_locationRewritten(self):
        """
        A redirect to the backend's own URL reaches the client as a URL of
        the proxy.
        """
        target = b"http://127.0.0.1:%d/hello" % self.backendPort
        response, body = yield self.get(b"/status?code=302&location=" + target)
        self.assertEqual(
            response.headers.getRawHeaders(b"Location"),
            [b"http://127.0.0.1:%d/hello" % self.port],
        )

    @inlineCallbacks
    def test_largeUploadAndDownload(self):
        """
        A 5 MB request body arrives whole and the answer comes back whole.
        """
        from twisted.web.client import FileBodyProducer
        from io import BytesIO

        payload = bytes(range(256)) * (5 * 4096)
        response, body = yield self.get(
            b"/echo", b"POST", body=FileBodyProducer(BytesIO(payload))
        )
        self.assertEqual(response.headers.getRawHeaders(b"X-Length"), [b"%d" % len(payload)])
        self.assertEqual(body, payload)

    @inlineCallbacks
    def test_chunkedUpload(self):
        """
        A chunked request body is passed on whole.
        """
        data = (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        response = yield rawRequest(self.port, data)
        self.assertIn(b"\r\nX-Length: 11\r\n", response)
        self.assertTrue(response.endswith(b"hello world") or b"hello world" in response, response)


class StreamingTests(ProxyTestCase):
    """
    Response bodies reach the client as the backend writes them.
    """

    @inlineCallbacks
    def test_firstChunkArrivesBeforeTheEnd(self):
        """
        The client reads the first chunk while the backend still holds the
        response open, as server-sent events and xhr-streaming need.
        """
        from twisted.internet import reactor

        held = self.root.children[b"held"]
        received = Deferred()

        class Client(Protocol):
            buffer = b""

            def connectionMade(self):
                self.transport.write(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")

            def dataReceived(self, data):
                self.buffer += data
                if b"first;" in self.buffer and not received.called:
                    received.callback(self.buffer)

        client = Client()
        reactor.connectTCP("127.0.0.1", self.port, ClientFactory.forProtocol(lambda: client))
        data = yield received
        self.assertIn(b"first;", data)
        request = held.requests[0]
        request.write(b"second")
        request.finish()
        client.transport.loseConnection()

    @inlineCallbacks
    def test_clientDisconnectCancelsBackendRequest(self):
        """
        A client that goes away makes the proxy drop the backend request.
        """
        held = self.root.children[b"held"]
        rawRequest(self.port, b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n", closeAfter=0.2)
        yield held.arrived
        reason = yield held.gone
        self.assertIsNotNone(reason)


class FailureTests(TestCase):
    """
    Backend failures give 502 or 504 with a text saying which.
    """

    @inlineCallbacks
    def request(self, config, path=b"/"):
        service, port, log = startProxy(self, config)
        response = yield rawRequest(
            port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        return response, log

    @inlineCallbacks
    def test_refused(self):
        """
        A backend that refuses the connection gives 502.
        """
        response, log = yield self.request(proxyConfig(freePort()))
        self.assertTrue(response.startswith(b"HTTP/1.1 502 Bad Gateway\r\n"), response)
        self.assertTrue(
            response.endswith(b"502 Bad Gateway\n\nconnection refused by the backend\n"), response
        )
        self.assertIn(b'"GET / HTTP/1.1" 502 ', log.lines[0])

    @inlineCallbacks
    def test_connectTimeout(self):
        """
        A backend that does not accept in time gives 504 "connect timeout".
        """
        # A listening socket whose accept queue is full drops new SYNs.
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        fillers = []
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(listener.getsockname())
            fillers.append(s)
        self.addCleanup(lambda: [s.close() for s in fillers])
        port = listener.getsockname()[1]
        response, log = yield self.request(
            proxyConfig(port, route='path = "/"\nbackend = "http://127.0.0.1:%d/"\nconnect_timeout = 0.5\n' % port)
        )
        self.assertTrue(response.startswith(b"HTTP/1.1 504 Gateway Timeout\r\n"), response)
        self.assertIn(b"connect timeout", response)

    @inlineCallbacks
    def test_responseTimeout(self):
        """
        A backend that sends no response head in time gives 504.
        """
        backend, backendPort = startBackend(self, backendTree())
        response, log = yield self.request(
            proxyConfig(
                backendPort,
                route='path = "/"\nbackend = "http://127.0.0.1:%d/"\nresponse_timeout = 0.3\n'
                % backendPort,
            ),
            b"/silent",
        )
        self.assertTrue(response.startswith(b"HTTP/1.1 504 Gateway Timeout\r\n"), response)
        self.assertIn(b"response timeout", response)

    @inlineCallbacks
    def test_readTimeout(self):
        """
        A backend that stops in the middle of a body makes the proxy close
        the client connection before the end of the body.
        """
        backend, backendPort = startBackend(self, backendTree())
        response, log = yield self.request(
            proxyConfig(
                backendPort,
                route='path = "/"\nbackend = "http://127.0.0.1:%d/"\nread_timeout = 0.3\n'
                % backendPort,
            ),
            b"/held",
        )
        self.assertTrue(response.startswith(b"HTTP/1.1 200 OK\r\n"), response)
        self.assertIn(b"first;", response)
        self.assertFalse(response.endswith(b"0\r\n\r\n"), response)

    @inlineCallbacks
    def test_noRoute(self):
        """
        A request that no route matches gets 404 and a log line.
        """
        config = proxyConfig(1, route='path = "/app/"\nbackend = "http://127.0.0.1:1/"\n')
        response, log = yield self.request(config, b"/other")
        self.assertTrue(response.startswith(b"HTTP/1.1 404 Not Found\r\n"), response)
        self.assertIn(b'"GET /other HTTP/1.1" 404 ', log.lines[0])

    @inlineCallbacks
    def test_badPath(self):
        """
        A request path with a broken percent-encoding gets 400.
        """
        response, log = yield self.request(proxyConfig(1), b"/a%zz")
        self.assertTrue(response.startswith(b"HTTP/1.1 400 Bad Request\r\n"), response)
