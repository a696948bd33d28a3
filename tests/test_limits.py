"""
The limits a client is held to, and interim answers: each limit with what
it answers (tables, on a memory reactor, with the real site), and the
connection limits over real sockets.
"""

import socket

from twisted.internet import error
from twisted.internet.defer import inlineCallbacks
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource

from .helpers import proxyConfig, rawRequest, startBackend, startProxy
from .test_httpproxy import OK, ProxyTestCase, parseResponses
from .wsbackends import connectRaw, waitUntil


def statusLine(data):
    """
    @return: the first line of C{data}.
    """
    return data.split(b"\r\n", 1)[0]


class InterimTests(ProxyTestCase):
    """
    1xx answers of a backend (RFC 9110 15.2).
    """

    def answerWith(self, version, answer):
        """
        Send a GET with C{version}; the backend answers C{answer}.

        @return: what the client got.
        """
        self.buildProxy()
        channel, client = self.connectClient()
        channel.dataReceived(b"GET /app/x " + version + b"\r\nHost: h\r\n\r\n")
        protocol, backend = self.acceptBackend()
        protocol.dataReceived(answer)
        return client.value()

    def test_forwardedToHTTP11(self):
        """
        An HTTP/1.1 client gets a 103 (and a 102) before the final answer;
        the backend's 100 Continue is not passed on (the proxy answers
        Expect itself).
        """
        data = self.answerWith(
            b"HTTP/1.1",
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 102 Processing\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" + OK,
        )
        self.assertTrue(
            data.startswith(
                b"HTTP/1.1 102 Processing\r\n\r\n"
                b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                b"HTTP/1.1 200 OK\r\n"
            ),
            data,
        )
        self.assertTrue(data.endswith(b"\r\n\r\nok"))

    def test_droppedForHTTP10(self):
        """
        An HTTP/1.0 client gets only the final answer.
        """
        data = self.answerWith(
            b"HTTP/1.0", b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK
        )
        self.assertTrue(data.startswith(b"HTTP/1.0 200 OK\r\n"), data)

    def test_stormBounded(self):
        """
        More interim answers than a backend may send: 502.
        """
        data = self.answerWith(b"HTTP/1.1", b"HTTP/1.1 102 Processing\r\n\r\n" * 100)
        self.assertIn(b"HTTP/1.1 502 Bad Gateway\r\n", data)


class TimeoutTests(ProxyTestCase):
    """
    A client that is slow to send its head or its body.
    """

    def test_headTimeout(self):
        """
        A head that does not come whole within C{head_timeout}: 408 and the
        connection closes.
        """
        self.buildProxy(server="head_timeout = 5")
        channel, client = self.connectClient()
        channel.dataReceived(b"GET /app/x HTTP/1.1\r\nHo")
        self.reactor.advance(4.9)
        self.assertTrue(client.connected)
        self.reactor.advance(0.2)
        self.assertEqual(statusLine(client.value()), b"HTTP/1.1 408 Request Timeout")
        self.assertFalse(client.connected)

    def test_idleKeepAlive(self):
        """
        Between two requests the idle timeout (C{client_timeout}) applies,
        and an idle connection closes without an answer.
        """
        channel, client, protocol, backend = self.proxiedGet(server="client_timeout = 30\nhead_timeout = 5")
        protocol.dataReceived(OK)
        answered = client.value()
        self.reactor.advance(29)
        self.assertTrue(client.connected)
        self.reactor.advance(2)
        self.assertFalse(client.connected)
        self.assertEqual(client.value(), answered)

    def test_bodyTimeout(self):
        """
        A body that stops coming for C{body_timeout}: 408 when nothing was
        answered, and the backend request is dropped.
        """
        self.buildProxy(server="body_timeout = 5")
        channel, client = self.connectClient()
        channel.dataReceived(b"POST /app/x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
        protocol, backend = self.acceptBackend()
        self.reactor.advance(4)
        channel.dataReceived(b"de")
        self.reactor.advance(4)
        self.assertTrue(client.connected)
        self.reactor.advance(2)
        self.assertEqual(statusLine(client.value()), b"HTTP/1.1 408 Request Timeout")
        self.assertFalse(backend.connected)


class SizeTests(ProxyTestCase):
    """
    Heads and bodies over their limits.
    """

    def test_table(self):
        """
        Each request -> the status line it gets, the connection closed.
        """
        route = 'path = "/app/"\nbackend = "http://127.0.0.1:9000/base/"\nmax_body_size = 100\n'
        rows = [
            (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n", b"HTTP/1.1 414 URI Too Long"),
            (b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"v" * 9000 + b"\r\n\r\n",
             b"HTTP/1.1 431 Request Header Fields Too Large"),
            (b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X: v\r\n" * 101 + b"\r\n",
             b"HTTP/1.1 431 Request Header Fields Too Large"),
            (b"POST /app/x HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n",
             b"HTTP/1.1 413 Content Too Large"),
        ]
        for data, expected in rows:
            self.buildProxy(route=route)
            channel, client = self.connectClient()
            channel.dataReceived(data)
            self.assertEqual(statusLine(client.value()), expected, data[:40])
            self.assertFalse(client.connected, data[:40])

    def test_chunkedOverLimit(self):
        """
        A chunked body that grows over C{max_body_size}: 413 if nothing was
        answered yet, and the backend request is dropped.
        """
        route = 'path = "/app/"\nbackend = "http://127.0.0.1:9000/base/"\nmax_body_size = 100\n'
        self.buildProxy(route=route)
        channel, client = self.connectClient()
        channel.dataReceived(
            b"POST /app/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n50\r\n"
            + b"a" * 80 + b"\r\n"
        )
        protocol, backend = self.acceptBackend()
        channel.dataReceived(b"50\r\n" + b"b" * 80 + b"\r\n")
        self.assertEqual(statusLine(client.value()), b"HTTP/1.1 413 Content Too Large")
        self.assertFalse(backend.connected)
        self.assertFalse(client.connected)


class Named(Resource):
    """
    Answers C{ok}.
    """

    isLeaf = True

    def render(self, request):
        """
        @return: C{ok}.
        """
        return b"ok"


class ConnectionLimitTests(TestCase):
    """
    Open connections per listener and per client, over real sockets.
    """

    timeout = 15

    @inlineCallbacks
    def test_perListener(self):
        """
        At C{max_connections} open connections the listener stops accepting:
        the next connection waits (in the kernel's queue) and is served once
        one closes.
        """
        _, backendPort = startBackend(self, Named())
        config = proxyConfig(backendPort).replace("port = 0\n", "port = 0\nmax_connections = 2\n", 1)
        service, port, _ = startProxy(self, config)
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        self.addCleanup(lambda: [s.close() for s in held])
        site = service.sites[0]
        yield waitUntil(lambda: len(site._channels) == 2)
        waiting = rawRequest(port, b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        yield waitUntil(lambda: not site._accepting)
        self.assertEqual(len(site._channels), 2)
        held.pop().close()
        answer = yield waiting
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer)

    @inlineCallbacks
    def test_perClient(self):
        """
        Beyond C{max_connections_per_client} connections from one address,
        a new connection's request gets 503 and it closes.
        """
        _, backendPort = startBackend(self, Named())
        config = proxyConfig(backendPort, extra="") .replace(
            "[[listen]]", "[server]\nmax_connections_per_client = 1\n\n[[listen]]", 1
        )
        service, port, _ = startProxy(self, config)
        first = yield connectRaw(self, port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        head = yield first.head.wait()
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK"), head)
        answer = yield rawRequest(port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer)
        first.transport.loseConnection()
        yield waitUntil(lambda: not service.sites[0]._perClient)
        answer = yield rawRequest(port, b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer)
