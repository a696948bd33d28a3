"""
Tests for L{proxyws.httpproxy}: the HTTP proxy path, driven without sockets.

A real L{proxyws.site.ProxySite} built by L{proxyws.service.buildSite} runs
on a L{MemoryReactorClock}.  The client is a L{StringTransportWithDisconnection}
under a channel of that site; each backend connection is whatever the proxy
asked the reactor for (an entry of C{reactor.tcpClients}), accepted by
building its protocol and connecting it to another in-memory transport.
Bytes go in with C{dataReceived} and come out of C{transport.value()}.
"""

import gc
import os
import time
import weakref

from twisted.internet.address import IPv4Address
from twisted.internet.error import (
    ConnectionDone,
    ConnectionRefusedError,
    ConnectingCancelledError,
    TimeoutError,
)
from twisted.internet.testing import (
    MemoryReactorClock,
    StringTransportWithDisconnection,
)
from twisted.internet import error
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from proxyws import accesslog
from proxyws.accesslog import MemoryAccessLog
from proxyws.config import parseConfig
from proxyws.service import buildSite

# The client, and the address it connected to.
CLIENT = IPv4Address("TCP", "10.0.0.1", 5555)
FRONT = IPv4Address("TCP", "127.0.0.1", 8080)

# 10/Oct/2000:13:55:36 UTC, Apache's example time.
ARRIVAL = 971186136

PREFIX_ROUTE = 'path = "/app/"\nbackend = "http://127.0.0.1:9000/base/"\n'
REGEX_ROUTE = "match = '^/app/(.*)'\nbackend = \"http://127.0.0.1:9000/base/$1\"\n"

CONFIG = """
[server]
connect_timeout = 5
response_timeout = 10
read_timeout = 7
{server}

[[listen]]
address = "127.0.0.1"
port = 8080

[[route]]
{route}
"""

# A backend response with a 2-byte body, for tests about anything else.
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


def parseResponses(data, headRequests=0):
    """
    Split what a client received into responses.

    @param data: the bytes written to the client.
    @param headRequests: how many of the first responses answer HEAD
        requests (and so have no body whatever their headers say).
    @return: a L{list} of C{(status line, [(lower name, value)], body)};
        a response whose body is not complete is left out.
    """
    responses = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        status, *lines = head.split(b"\r\n")
        headers = []
        for line in lines:
            name, _, value = line.partition(b":")
            headers.append((name.strip().lower(), value.strip()))
        fields = dict(headers)
        code = int(status.split(b" ")[1])
        if len(responses) < headRequests or code in (204, 304):
            body = b""
        elif b"content-length" in fields:
            length = int(fields[b"content-length"])
            if len(rest) < length:
                break
            body, rest = rest[:length], rest[length:]
        elif fields.get(b"transfer-encoding") == b"chunked":
            body = b""
            while True:
                size, sep, rest = rest.partition(b"\r\n")
                if not sep:
                    return responses
                size = int(size, 16)
                if size == 0:
                    if not rest.startswith(b"\r\n"):
                        return responses
                    rest = rest[2:]
                    break
                if len(rest) < size + 2:
                    return responses
                body, rest = body + rest[:size], rest[size + 2 :]
        else:
            body, rest = rest, b""
        responses.append((status, headers, body))
        data = rest
    return responses


class ProxyTestCase(SynchronousTestCase):
    """
    A proxy on a memory reactor, with its clients and backend connections.
    """

    def setUp(self):
        """
        A clock at L{ARRIVAL}; no proxy yet.
        """
        self.reactor = MemoryReactorClock()
        self.reactor.advance(ARRIVAL)

    def buildProxy(self, server="", route=PREFIX_ROUTE):
        """
        Build the site and pool for a config with one route.

        @param server: extra lines for the C{[server]} table.
        @param route: the body of the C{[[route]]} table.
        """
        config = parseConfig(CONFIG.format(server=server, route=route), "/tmp/x.toml")
        self.log = MemoryAccessLog()
        self.site, self.pool = buildSite(config, self.reactor, self.log)

    def connectClient(self):
        """
        Open a client connection to the site.

        @return: C{(channel, transport)}.
        """
        channel = self.site.buildProtocol(CLIENT)
        transport = StringTransportWithDisconnection(hostAddress=FRONT, peerAddress=CLIENT)
        transport.protocol = channel
        channel.makeConnection(transport)
        self.addCleanup(self._closeClient, channel, transport)
        return channel, transport

    def _closeClient(self, channel, transport):
        # End every client connection as a real client would, so that what
        # the proxy does then also runs within the test.
        if transport.connected:
            transport.loseConnection()

    def acceptBackend(self, index=-1):
        """
        Accept the connection attempt C{reactor.tcpClients[index]}.

        @return: C{(protocol, transport)} of the proxy's side of the
            backend connection; C{transport.value()} is what the proxy sent.
        """
        host, port, factory, timeout, bindAddress = self.reactor.tcpClients[index]
        address = IPv4Address("TCP", host, port)
        protocol = factory.buildProtocol(address)
        transport = StringTransportWithDisconnection(peerAddress=address)
        transport.protocol = protocol
        protocol.makeConnection(transport)
        return protocol, transport

    def proxiedGet(self, target=b"/app/x", server=""):
        """
        Build the proxy (with C{server} lines), open a client connection,
        send a GET of C{target} and accept the backend connection it makes.

        @return: C{(channel, client transport, backend protocol, backend
            transport)}.
        """
        self.buildProxy(server)
        channel, client = self.connectClient()
        channel.dataReceived(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n")
        protocol, backend = self.acceptBackend()
        return channel, client, protocol, backend

    def failConnect(self, reason, index=-1):
        """
        Fail the connection attempt C{reactor.tcpClients[index]}.
        """
        factory = self.reactor.tcpClients[index][2]
        factory.clientConnectionFailed(self.reactor.connectors[index], Failure(reason))

    def assertErrorResponse(self, data, status, text):
        """
        C{data} is one plain-text error response.

        @param status: the full status line.
        @param text: the body.
        """
        [(line, headers, body)] = parseResponses(data)
        self.assertEqual(line, status)
        fields = dict(headers)
        self.assertEqual(fields[b"content-type"], b"text/plain; charset=utf-8")
        self.assertEqual(fields[b"content-length"], b"%d" % len(text))
        self.assertEqual(body, text)


class RequestAndResponseTests(ProxyTestCase):
    """
    What goes to the backend, what comes back, what is logged.
    """

    def setUp(self):
        """
        Log times in UTC.
        """
        ProxyTestCase.setUp(self)
        old = os.environ.get("TZ")

        def restore():
            if old is None:
                os.environ.pop("TZ", None)
            else:
                os.environ["TZ"] = old
            time.tzset()

        self.addCleanup(restore)
        os.environ["TZ"] = "UTC"
        time.tzset()
        self.patch(accesslog, "_timeCache", (None, b""))

    def test_getRelayedBothWays(self):
        """
        A GET reaches the backend with the rewritten target, the backend's
        Host, X-Forwarded-* and no hop-by-hop headers; the response, repeated
        Set-Cookie included, reaches the client; one combined-format line is
        logged with the time the request arrived.
        """
        self.buildProxy()
        channel, client = self.connectClient()
        channel.dataReceived(
            b"GET /app/x?q=1 HTTP/1.1\r\n"
            b"Host: h\r\n"
            b"Connection: keep-alive, X-Drop\r\n"
            b"X-Drop: secret\r\n"
            b"Keep-Alive: timeout=5\r\n"
            b"TE: trailers\r\n"
            b"Proxy-Authorization: Basic eDp5\r\n"
            b"X-Keep: y\r\n"
            b"Referer: http://ref.example/\r\n"
            b"User-Agent: agent/1.0\r\n"
            b"\r\n"
        )
        [(host, port, factory, timeout, bindAddress)] = self.reactor.tcpClients
        self.assertEqual((host, port, timeout), ("127.0.0.1", 9000, 5.0))
        protocol, backend = self.acceptBackend()
        self.assertEqual(
            backend.value(),
            b"GET /base/x?q=1 HTTP/1.1\r\n"
            b"Host: 127.0.0.1:9000\r\n"
            b"X-Keep: y\r\n"
            b"Referer: http://ref.example/\r\n"
            b"User-Agent: agent/1.0\r\n"
            b"X-Forwarded-For: 10.0.0.1\r\n"
            b"X-Forwarded-Proto: http\r\n"
            b"X-Forwarded-Host: h\r\n"
            b"X-Forwarded-Port: 8080\r\n"
            b"\r\n",
        )
        self.assertEqual(client.value(), b"")
        # The log line carries the arrival time, not the time of the answer.
        self.reactor.advance(3)
        protocol.dataReceived(
            b"HTTP/1.1 200 OK\r\n"
            b"Content-Type: text/plain\r\n"
            b"Set-Cookie: a=1\r\n"
            b"Set-Cookie: b=2\r\n"
            b"Connection: keep-alive\r\n"
            b"Keep-Alive: timeout=5\r\n"
            b"Content-Length: 5\r\n"
            b"\r\n"
            b"hello"
        )
        self.assertEqual(
            client.value(),
            b"HTTP/1.1 200 OK\r\n"
            b"Content-Type: text/plain\r\n"
            b"Set-Cookie: a=1\r\n"
            b"Set-Cookie: b=2\r\n"
            b"Content-Length: 5\r\n"
            b"\r\n"
            b"hello",
        )
        self.assertEqual(
            self.log.lines,
            [
                b'10.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "GET /app/x?q=1 HTTP/1.1"'
                b' 200 5 "http://ref.example/" "agent/1.0"\n'
            ],
        )
        self.assertTrue(client.connected)

    def test_noContentTypeInvented(self):
        """
        A response without C{Content-Type} reaches the client without one:
        the proxy does not label the backend's bytes C{text/html}.
        """
        channel, client, protocol, backend = self.proxiedGet()
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        self.assertEqual(
            client.value(), b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
        )

    def clientWrites(self, client):
        """
        Record each write to the client transport.

        @return: the list the writes go to.
        """
        writes = []
        write = client.write

        def recorded(data):
            writes.append(data)
            write(data)

        client.write = recorded
        return writes

    def test_headAndWholeBodyInOneWrite(self):
        """
        When the whole body came with the head, the client gets head and body
        in one write.
        """
        self.buildProxy()
        channel, client = self.connectClient()
        writes = self.clientWrites(client)
        channel.dataReceived(b"GET /app/x HTTP/1.1\r\nHost: h\r\n\r\n")
        protocol, backend = self.acceptBackend()
        protocol.dataReceived(OK)
        self.assertEqual(
            writes,
            [b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"],
        )

    def test_wholeBodyNeedsNoProducer(self):
        """
        A response whose whole body came with its head is written at once,
        without registering the backend connection as the client's producer
        (nothing is left to pause); one still arriving is registered, so
        that a slow client pauses the backend.
        """
        for response, registered in ((OK, 0), (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nok", 1)):
            self.buildProxy()
            channel, client = self.connectClient()
            channel.dataReceived(b"GET /app/x HTTP/1.1\r\nHost: h\r\n\r\n")
            [request] = channel.requests
            calls = []
            register = request.registerProducer
            request.registerProducer = lambda *a: (calls.append(a), register(*a))
            protocol, backend = self.acceptBackend()
            protocol.dataReceived(response)
            self.assertEqual(len(calls), registered, response)
            if registered:
                protocol.dataReceived(b"ok")
            [(status, headers, body)] = parseResponses(client.value())
            self.assertEqual(body, b"okok" if registered else b"ok")
            self.assertIsNone(request.producer)

    def test_headSentBeforeTheBody(self):
        """
        When the body is not all there, the head goes out at once: a stream
        (server-sent events) reaches the client before its first event.
        """
        self.buildProxy()
        for head in (
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npart",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n",
        ):
            channel, client = self.connectClient()
            writes = self.clientWrites(client)
            channel.dataReceived(b"GET /app/x HTTP/1.1\r\nHost: h\r\n\r\n")
            protocol, backend = self.acceptBackend()
            protocol.dataReceived(head)
            self.assertTrue(writes, head)
            self.assertTrue(writes[0].startswith(b"HTTP/1.1 200 OK\r\n"), head)
            self.assertTrue(writes[0].endswith(b"\r\n\r\n"), head)

    def test_fieldsKeepTheirOrder(self):
        """
        The backend's fields reach the client in the order sent, repeated
        names where they were.
        """
        channel, client, protocol, backend = self.proxiedGet()
        protocol.dataReceived(
            b"HTTP/1.1 200 OK\r\n"
            b"Set-Cookie: a=1\r\n"
            b"X-A: 1\r\n"
            b"set-cookie: b=2\r\n"
            b"Content-Length: 2\r\n"
            b"X-B: 2\r\n"
            b"\r\nok"
        )
        self.assertEqual(
            client.value(),
            b"HTTP/1.1 200 OK\r\n"
            b"Set-Cookie: a=1\r\n"
            b"X-A: 1\r\n"
            b"set-cookie: b=2\r\n"
            b"X-B: 2\r\n"
            b"Content-Length: 2\r\n"
            b"\r\nok",
        )

    def test_proxyHeadersReplaceTheBackends(self):
        """
        A header the proxy sets itself (HSTS on a TLS listener, here set
        the same way) replaces the backend's fields of that name.
        """
        self.buildProxy()
        channel, client = self.connectClient()
        channel.dataReceived(b"GET /app/x HTTP/1.1\r\nHost: h\r\n\r\n")
        [request] = channel.requests
        request.responseHeaders.setRawHeaders(b"Strict-Transport-Security", [b"max-age=60"])
        protocol, backend = self.acceptBackend()
        protocol.dataReceived(
            b"HTTP/1.1 200 OK\r\n"
            b"strict-transport-security: max-age=0\r\n"
            b"X-A: 1\r\n"
            b"Strict-Transport-Security: max-age=1\r\n"
            b"Content-Length: 2\r\n"
            b"\r\nok"
        )
        self.assertEqual(
            client.value(),
            b"HTTP/1.1 200 OK\r\n"
            b"X-A: 1\r\n"
            b"Strict-Transport-Security: max-age=60\r\n"
            b"Content-Length: 2\r\n"
            b"\r\nok",
        )

    def test_earlyAnswerWithoutBodyDuringUpload(self):
        """
        An answer without a body (204, 304, to HEAD) that comes while the
        client still uploads reaches the client at once.
        """
        for status in (b"204 No Content", b"304 Not Modified"):
            self.buildProxy()
            channel, client = self.connectClient()
            channel.dataReceived(
                b"PUT /app/x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc"
            )
            protocol, backend = self.acceptBackend()
            protocol.dataReceived(b"HTTP/1.1 " + status + b"\r\n\r\n")
            self.assertEqual(client.value(), b"HTTP/1.1 " + status + b"\r\n\r\n")

    def test_emptyBodyKeepsContentLength(self):
        """
        A response with C{Content-Length: 0} reaches the client framed the
        same way, not re-framed as an empty chunked body.
        """
        channel, client, protocol, backend = self.proxiedGet()
        protocol.dataReceived(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
        )
        self.assertEqual(
            client.value(),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n",
        )

    def test_locationRewrittenForRegexRoute(self):
        """
        On C{match = '^/app/(.*)'} to C{http://127.0.0.1:9000/base/$1}, the
        target is expanded and a C{Location} under the backend's
        C{/base/} becomes the same place under the client's C{/app/}.
        """
        self.buildProxy(route=REGEX_ROUTE)
        channel, client = self.connectClient()
        channel.dataReceived(b"GET /app/old?a=b HTTP/1.1\r\nHost: h\r\n\r\n")
        protocol, backend = self.acceptBackend()
        self.assertTrue(backend.value().startswith(b"GET /base/old?a=b HTTP/1.1\r\n"))
        protocol.dataReceived(
            b"HTTP/1.1 302 Found\r\n"
            b"Location: http://127.0.0.1:9000/base/x\r\n"
            b"Content-Length: 0\r\n"
            b"\r\n"
        )
        [(status, headers, body)] = parseResponses(client.value())
        self.assertEqual(status, b"HTTP/1.1 302 Found")
        self.assertIn((b"location", b"http://h/app/x"), headers)


class KeepAliveTests(ProxyTestCase):
    """
    Backend connections are kept, shared and limited by the pool.
    """

    def test_connectionReused(self):
        """
        Once a response is complete, the next request goes on the same
        backend connection.
        """
        channel, client, protocol, backend = self.proxiedGet(b"/app/1")
        protocol.dataReceived(OK)
        backend.clear()
        channel.dataReceived(b"GET /app/2 HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertTrue(backend.value().startswith(b"GET /base/2 HTTP/1.1\r\n"))
        protocol.dataReceived(OK)
        responses = parseResponses(client.value())
        self.assertEqual([body for _, _, body in responses], [b"ok", b"ok"])
        self.assertTrue(backend.connected)

    def test_noKeepalive(self):
        """
        With C{backend_keepalive = 0} a connection is closed after its
        response and the next request makes a new one.
        """
        self.buildProxy(server="backend_keepalive = 0")
        channel, client = self.connectClient()
        channel.dataReceived(b"GET /app/1 HTTP/1.1\r\nHost: h\r\n\r\n")
        protocol, backend = self.acceptBackend()
        protocol.dataReceived(OK)
        self.assertFalse(backend.connected)
        channel.dataReceived(b"GET /app/2 HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(len(self.reactor.tcpClients), 2)
        protocol2, backend2 = self.acceptBackend()
        self.assertTrue(backend2.value().startswith(b"GET /base/2 HTTP/1.1\r\n"))
        protocol2.dataReceived(OK)
        responses = parseResponses(client.value())
        self.assertEqual([body for _, _, body in responses], [b"ok", b"ok"])

    def test_idleTimeout(self):
        """
        An idle backend connection is closed after C{backend_idle_timeout}
        and forgotten: the next request makes a new connection.
        """
        self.buildProxy(server="backend_idle_timeout = 5")
        channel, client = self.connectClient()
        channel.dataReceived(b"GET /app/1 HTTP/1.1\r\nHost: h\r\n\r\n")
        protocol, backend = self.acceptBackend()
        protocol.dataReceived(OK)
        route = self.site.resource._http[0].route
        self.assertEqual(self.pool.idleCount(route.backend), 1)
        self.reactor.advance(5)
        self.assertFalse(backend.connected)
        self.assertEqual(self.pool.idleCount(route.backend), 0)
        channel.dataReceived(b"GET /app/2 HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(len(self.reactor.tcpClients), 2)
        protocol2, backend2 = self.acceptBackend()
        protocol2.dataReceived(OK)
        responses = parseResponses(client.value())
        self.assertEqual([body for _, _, body in responses], [b"ok", b"ok"])

    def test_idleTimeoutAfterManyRequests(self):
        """
        A backend connection that carried requests (each timing its response)
        is still closed C{backend_idle_timeout} after the last one.
        """
        self.buildProxy(server="backend_idle_timeout = 5")
        channel, client = self.connectClient()
        channel.dataReceived(b"GET /app/1 HTTP/1.1\r\nHost: h\r\n\r\n")
        protocol, backend = self.acceptBackend()
        protocol.dataReceived(OK)
        for n in range(3):
            self.reactor.advance(4)
            channel.dataReceived(b"GET /app/x HTTP/1.1\r\nHost: h\r\n\r\n")
            self.reactor.advance(4)
            protocol.dataReceived(OK)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.reactor.advance(4.9)
        self.assertTrue(backend.connected)
        self.reactor.advance(0.1)
        self.assertFalse(backend.connected)

    def test_requestsScheduleNoCalls(self):
        """
        Requests on kept-alive client and backend connections schedule no
        timed calls of their own: the idle, response and read timeouts of
        both connections restart the connections' deadlines.
        """
        channel, client, protocol, backend = self.proxiedGet(b"/app/1")
        protocol.dataReceived(OK)
        scheduled = []
        callLater = self.reactor.callLater

        def counted(*args, **kwargs):
            scheduled.append(args)
            return callLater(*args, **kwargs)

        self.reactor.callLater = counted
        for n in range(10):
            channel.dataReceived(b"GET /app/x HTTP/1.1\r\nHost: h\r\n\r\n")
            protocol.dataReceived(OK)
        self.assertEqual(len(parseResponses(client.value())), 11)
        self.assertEqual(scheduled, [])

    def test_requestsLeaveNoCycles(self):
        """
        A relayed request and its exchange are freed by reference counting
        when the response is out: no reference cycle is left for the cycle
        collector, which would otherwise run over them on every request.
        """
        channel, client, protocol, backend = self.proxiedGet()
        protocol.dataReceived(OK)
        gc.collect()
        self.addCleanup(gc.enable)
        self.addCleanup(gc.set_debug, gc.get_debug())
        self.addCleanup(gc.garbage.clear)
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        for n in range(10):
            channel.dataReceived(b"GET /app/x HTTP/1.1\r\nHost: h\r\n\r\n")
            protocol.dataReceived(OK)
        self.assertEqual(len(parseResponses(client.value())), 11)
        gc.collect()
        left = [type(o).__name__ for o in gc.garbage]
        self.assertNotIn("ProxyRequest", left)
        self.assertNotIn("_Exchange", left)
        self.assertNotIn("Headers", left)

    def test_clientIdleTimeout(self):
        """
        An idle client connection is closed C{client_timeout} after its
        last response, however many requests it carried, and not while a
        request waits for its answer.
        """
        self.buildProxy(server="client_timeout = 5")
        channel, client = self.connectClient()
        channel.dataReceived(b"GET /app/1 HTTP/1.1\r\nHost: h\r\n\r\n")
        protocol, backend = self.acceptBackend()
        self.reactor.advance(8)
        self.assertTrue(client.connected)
        protocol.dataReceived(OK)
        for n in range(3):
            self.reactor.advance(4)
            channel.dataReceived(b"GET /app/x HTTP/1.1\r\nHost: h\r\n\r\n")
            protocol.dataReceived(OK)
        self.reactor.advance(4.9)
        self.assertTrue(client.connected)
        self.reactor.advance(0.1)
        self.assertFalse(client.connected)

    def test_closedConnectionsLeaveNoCalls(self):
        """
        Once a client connection and its backend connection are closed, no
        timed call of theirs is left on the reactor (which would keep them
        in memory until it fired).
        """
        channel, client, protocol, backend = self.proxiedGet()
        protocol.dataReceived(OK)
        client.loseConnection()
        backend.loseConnection()
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_connectionsClosedByThePoolLeaveNoCalls(self):
        """
        Backend connections the pool closes itself (none kept idle, or found
        closing when taken) leave no timed call behind, and nothing keeps
        their requests in memory.
        """
        channel, client, protocol, backend = self.proxiedGet(server="backend_keepalive = 0")
        request = weakref.ref(channel.requests[0])
        protocol.dataReceived(OK)
        self.assertFalse(backend.connected)
        client.loseConnection()
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        del channel, client, protocol, backend
        gc.collect()
        self.assertIsNone(request())

        channel, client, protocol, backend = self.proxiedGet()
        protocol.dataReceived(OK)
        backend.disconnecting = True
        channel.dataReceived(b"GET /app/2 HTTP/1.1\r\nHost: h\r\n\r\n")
        protocol2, backend2 = self.acceptBackend()
        protocol2.dataReceived(OK)
        client.loseConnection()
        backend.loseConnection()
        backend2.loseConnection()
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_maxConnections(self):
        """
        With C{backend_max_connections = 1}, two clients at once share one
        backend connection: the second request waits and is sent on it once
        the first response is complete.
        """
        self.buildProxy(server="backend_max_connections = 1")
        channel1, client1 = self.connectClient()
        channel2, client2 = self.connectClient()
        channel1.dataReceived(b"GET /app/1 HTTP/1.1\r\nHost: h\r\n\r\n")
        channel2.dataReceived(b"GET /app/2 HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(len(self.reactor.tcpClients), 1)
        protocol, backend = self.acceptBackend()
        self.assertTrue(backend.value().startswith(b"GET /base/1 HTTP/1.1\r\n"))
        self.assertNotIn(b"/base/2", backend.value())
        backend.clear()
        protocol.dataReceived(OK)
        self.reactor.advance(0)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertTrue(backend.value().startswith(b"GET /base/2 HTTP/1.1\r\n"))
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")
        [(_, _, body1)] = parseResponses(client1.value())
        [(_, _, body2)] = parseResponses(client2.value())
        self.assertEqual((body1, body2), (b"ok", b"two"))


class FailureTests(ProxyTestCase):
    """
    What the client is told when the backend cannot be reached or is slow,
    and what happens to the backend when the client leaves.
    """

    def test_connectRefused(self):
        """
        A refused connection is a 502 that says so.
        """
        self.buildProxy()
        channel, client = self.connectClient()
        channel.dataReceived(b"GET /app/x HTTP/1.1\r\nHost: h\r\n\r\n")
        self.failConnect(ConnectionRefusedError())
        self.assertErrorResponse(
            client.value(),
            b"HTTP/1.1 502 Bad Gateway",
            b"502 Bad Gateway\n\nconnection refused by the backend\n",
        )
        self.assertEqual(len(self.log.lines), 1)
        self.assertIn(b'" 502 ', self.log.lines[0])

    def test_connectTimeout(self):
        """
        The connect timeout is the endpoint's; when it fires the client gets
        504 "connect timeout".
        """
        self.buildProxy()
        channel, client = self.connectClient()
        channel.dataReceived(b"GET /app/x HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(self.reactor.tcpClients[-1][3], 5.0)
        self.failConnect(TimeoutError())
        self.assertErrorResponse(
            client.value(),
            b"HTTP/1.1 504 Gateway Timeout",
            b"504 Gateway Timeout\n\n"
            b"connect timeout: the backend did not accept the connection in time\n",
        )

    def test_responseTimeout(self):
        """
        A backend that takes the request and does not answer within
        C{response_timeout} is cut off and the client gets 504.
        """
        channel, client, protocol, backend = self.proxiedGet()
        self.assertTrue(backend.value().startswith(b"GET /base/x HTTP/1.1\r\n"))
        self.reactor.advance(9.9)
        self.assertEqual(client.value(), b"")
        self.assertTrue(backend.connected)
        self.reactor.advance(0.1)
        self.assertErrorResponse(
            client.value(),
            b"HTTP/1.1 504 Gateway Timeout",
            b"504 Gateway Timeout\n\n"
            b"response timeout: the backend sent no response in time\n",
        )
        self.assertTrue(backend.disconnected)
        self.assertFalse(backend.connected)
        self.assertTrue(client.connected)

    def test_readTimeoutMidBody(self):
        """
        A backend that stops sending for C{read_timeout} part-way through a
        chunked body: the client's connection is aborted before the
        terminating chunk, so the client knows the body is incomplete.  Each
        piece restarts the timer.
        """
        channel, client, protocol, backend = self.proxiedGet()
        protocol.dataReceived(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        self.reactor.advance(6)
        protocol.dataReceived(b"6\r\n world\r\n")
        self.reactor.advance(6)
        self.assertTrue(client.connected)
        self.assertTrue(client.value().endswith(b"5\r\nhello\r\n6\r\n world\r\n"))
        self.reactor.advance(1)
        self.assertFalse(client.connected)
        self.assertTrue(client.disconnected)
        self.assertFalse(client.value().endswith(b"0\r\n\r\n"))
        self.assertFalse(backend.connected)

    def test_clientGoneWhileWaiting(self):
        """
        A client that disconnects while its request is at the backend
        closes the backend connection (its response can go nowhere).
        """
        channel, client, protocol, backend = self.proxiedGet()
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(backend.disconnected)
        self.assertFalse(backend.connected)
        self.assertEqual(self.pool.idleCount(self.site.resource._http[0].route.backend), 0)

    def test_clientGoneWhileConnecting(self):
        """
        A client that disconnects while the backend connection is being
        made stops the attempt.
        """
        self.buildProxy()
        channel, client = self.connectClient()
        channel.dataReceived(b"GET /app/x HTTP/1.1\r\nHost: h\r\n\r\n")
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(self.reactor.connectors[-1].stoppedConnecting)
        # The reactor then reports the attempt as failed; nothing is sent.
        self.failConnect(ConnectingCancelledError(self.reactor.connectors[-1]))
        self.assertEqual(client.value(), b"")

    def test_requestBodyDrainedAfterConnectFailure(self):
        """
        When the backend cannot be reached while a request body is still
        arriving, the client gets its 502 and the rest of the body is read
        and dropped: the client is not left paused, the request finishes
        when the body is in, and the connection takes the next request.
        """
        self.buildProxy()
        channel, client = self.connectClient()
        channel.dataReceived(
            b"POST /app/up HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n01234"
        )
        self.assertEqual(client.producerState, "paused")
        self.failConnect(ConnectionRefusedError())
        self.assertEqual(client.producerState, "producing")
        channel.dataReceived(b"56789")
        self.assertEqual(len(self.log.lines), 1)
        self.assertErrorResponse(
            client.value(),
            b"HTTP/1.1 502 Bad Gateway",
            b"502 Bad Gateway\n\nconnection refused by the backend\n",
        )
        client.clear()
        channel.dataReceived(b"GET /app/x HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_clientGoneWhileQueued(self):
        """
        With C{backend_max_connections = 1}, a client that leaves while its
        request waits for the connection gives up its place: nothing is sent
        for it and the connection goes back to the pool.
        """
        self.buildProxy(server="backend_max_connections = 1")
        channel1, client1 = self.connectClient()
        channel2, client2 = self.connectClient()
        channel1.dataReceived(b"GET /app/1 HTTP/1.1\r\nHost: h\r\n\r\n")
        channel2.dataReceived(b"GET /app/2 HTTP/1.1\r\nHost: h\r\n\r\n")
        protocol, backend = self.acceptBackend()
        channel2.connectionLost(Failure(ConnectionDone()))
        backend.clear()
        protocol.dataReceived(OK)
        self.reactor.advance(0)
        self.assertEqual(backend.value(), b"")
        route = self.site.resource._http[0].route
        self.assertEqual(self.pool.idleCount(route.backend), 1)

    def test_clientGoneDuringHandOver(self):
        """
        With C{backend_max_connections = 1}, a client that leaves after the
        pool has picked its request for the freed connection, but before the
        connection is handed over (one reactor turn later), is forgotten
        cleanly: nothing is sent for it and the connection goes back to the
        pool.
        """
        # Collect garbage before the test ends, so that an error left
        # unhandled in a Deferred is logged, and fails, in this test.
        self.addCleanup(gc.collect)
        self.buildProxy(server="backend_max_connections = 1")
        channel1, client1 = self.connectClient()
        channel2, client2 = self.connectClient()
        channel1.dataReceived(b"GET /app/1 HTTP/1.1\r\nHost: h\r\n\r\n")
        channel2.dataReceived(b"GET /app/2 HTTP/1.1\r\nHost: h\r\n\r\n")
        protocol, backend = self.acceptBackend()
        backend.clear()
        protocol.dataReceived(OK)
        channel2.connectionLost(Failure(ConnectionDone()))
        self.reactor.advance(0)
        self.assertEqual(backend.value(), b"")
        self.assertEqual(self.flushLoggedErrors(), [])
        route = self.site.resource._http[0].route
        self.assertEqual(self.pool.idleCount(route.backend), 1)


class FlowControlTests(ProxyTestCase):
    """
    Bodies stream both ways, and a slow reader on one side pauses the other.
    """

    def test_requestBodyStreams(self):
        """
        A request body is sent to the backend piece by piece as it arrives;
        until the backend connection is made the client is not read from.
        """
        self.buildProxy()
        channel, client = self.connectClient()
        channel.dataReceived(
            b"POST /app/up HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n"
            + b"a" * 1000
        )
        self.assertEqual(client.producerState, "paused")
        protocol, backend = self.acceptBackend()
        self.assertEqual(client.producerState, "producing")
        head, _, body = backend.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"POST /base/up HTTP/1.1\r\n"))
        self.assertIn(b"\r\nContent-Length: 100000", head)
        self.assertEqual(body, b"a" * 1000)
        backend.clear()
        for piece in (b"b" * 49000, b"c" * 49999):
            channel.dataReceived(piece)
            self.assertEqual(backend.value(), piece)
            backend.clear()
        self.assertEqual(client.value(), b"")
        channel.dataReceived(b"d")
        self.assertEqual(backend.value(), b"d")
        protocol.dataReceived(OK)
        [(status, _, body)] = parseResponses(client.value())
        self.assertEqual((status, body), (b"HTTP/1.1 200 OK", b"ok"))
        self.assertEqual(client.producerState, "producing")

    def test_responseBackpressure(self):
        """
        A client that does not read pauses the backend connection; when it
        reads again the backend is resumed.
        """
        channel, client, protocol, backend = self.proxiedGet()
        protocol.dataReceived(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        self.assertEqual(backend.producerState, "producing")
        channel.pauseProducing()
        self.assertEqual(backend.producerState, "paused")
        channel.resumeProducing()
        self.assertEqual(backend.producerState, "producing")
        protocol.dataReceived(b"0\r\n\r\n")
        [(_, _, body)] = parseResponses(client.value())
        self.assertEqual(body, b"hello")

    def test_requestBackpressure(self):
        """
        A backend that does not read pauses the client connection; what the
        client sends meanwhile waits and follows when the backend reads.
        """
        self.buildProxy()
        channel, client = self.connectClient()
        channel.dataReceived(
            b"POST /app/up HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nabc"
        )
        protocol, backend = self.acceptBackend()
        self.assertEqual(client.producerState, "producing")
        self.assertTrue(backend.value().endswith(b"\r\n\r\nabc"))
        backend.clear()
        backend.producer.pauseProducing()
        self.assertEqual(client.producerState, "paused")
        channel.dataReceived(b"de")
        self.assertEqual(backend.value(), b"")
        backend.producer.resumeProducing()
        self.assertEqual(client.producerState, "producing")
        self.assertEqual(backend.value(), b"de")
        channel.dataReceived(b"f")
        self.assertEqual(backend.value(), b"def")
        protocol.dataReceived(OK)
        [(_, _, body)] = parseResponses(client.value())
        self.assertEqual(body, b"ok")

    def test_lastPieceFillsBackendSocket(self):
        """
        A body whose last piece fills the backend's socket (the backend
        connection pauses the body as it takes it) leaves the client's
        connection reading once the body is whole: the backend connection
        lets go of the body then and never resumes it, and the next request
        on the connection must still be read.
        """
        self.buildProxy()
        channel, client = self.connectClient()
        channel.dataReceived(
            b"POST /app/up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n"
        )
        protocol, backend = self.acceptBackend()
        writeSequence = backend.writeSequence

        def fill(pieces):
            # The socket is full once this is written: the transport pauses
            # its producer within the write, as Twisted's does.
            writeSequence(pieces)
            backend.producer.pauseProducing()

        backend.writeSequence = fill
        channel.dataReceived(b"3\r\ndef\r\n0\r\n\r\n")
        self.assertTrue(backend.value().endswith(b"3\r\ndef\r\n0\r\n\r\n"))
        self.assertIsNone(backend.producer)
        self.assertEqual(client.producerState, "producing")
        protocol.dataReceived(OK)
        channel.dataReceived(b"GET /app/2 HTTP/1.1\r\nHost: h\r\n\r\n")
        protocol.dataReceived(OK)
        self.assertEqual([body for _, _, body in parseResponses(client.value())], [b"ok"] * 2)

    def test_answeredWhileNotReadingBody(self):
        """
        A backend that answers whole while it is not reading the request
        body: its connection is cut (a close would wait for it to take what
        waits to be written to it, which may be never, and hold one of its
        connections meanwhile), and the rest of the body is read from the
        client and dropped, under the body timeout; the answer finishes,
        and the connection takes the next request.  (The client was held
        back for good: no timer ran once the answer was whole.)
        """
        self.buildProxy()
        channel, client = self.connectClient()
        channel.dataReceived(
            b"POST /app/up HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc"
        )
        protocol, backend = self.acceptBackend()
        backend.producer.pauseProducing()
        self.assertEqual(client.producerState, "paused")
        protocol.dataReceived(OK)
        self.assertTrue(backend.disconnected)
        self.assertEqual(client.producerState, "producing")
        channel.dataReceived(b"defg")
        self.reactor.advance(59)
        channel.dataReceived(b"hij")
        self.assertFalse(backend.value().endswith(b"defghij"))
        [(status, _, body)] = parseResponses(client.value())
        self.assertEqual((status, body), (b"HTTP/1.1 200 OK", b"ok"))
        channel.dataReceived(b"GET /app/2 HTTP/1.1\r\nHost: h\r\n\r\n")
        protocol, backend = self.acceptBackend()
        protocol.dataReceived(OK)
        self.assertEqual(len(parseResponses(client.value())), 2)

    def test_answeredWhileNotReadingBodyTimesOut(self):
        """
        After such an answer, a client that stops sending the rest of its
        body has the body timeout: its connection is cut (the answer went
        out, so no 408 can follow it).
        """
        self.buildProxy()
        channel, client = self.connectClient()
        channel.dataReceived(
            b"POST /app/up HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc"
        )
        protocol, backend = self.acceptBackend()
        backend.producer.pauseProducing()
        protocol.dataReceived(OK)
        self.reactor.advance(59)
        self.assertTrue(client.connected)
        self.reactor.advance(1)
        self.assertFalse(client.connected)

    def test_slowUploadIsNotAResponseTimeout(self):
        """
        C{response_timeout} is how long the backend may take to answer a
        request it has whole: a body that keeps arriving for longer than
        that is not cut off, and the timer starts when the body is in.
        """
        self.buildProxy()
        channel, client = self.connectClient()
        channel.dataReceived(
            b"POST /app/up HTTP/1.1\r\nHost: h\r\nContent-Length: 30\r\n\r\n"
            + b"a" * 10
        )
        protocol, backend = self.acceptBackend()
        for piece in (b"b" * 10, b"c" * 10):
            self.reactor.advance(6)
            channel.dataReceived(piece)
        self.assertEqual(client.value(), b"")
        self.assertTrue(backend.connected)
        self.assertTrue(backend.value().endswith(b"a" * 10 + b"b" * 10 + b"c" * 10))
        self.reactor.advance(9.9)
        self.assertEqual(client.value(), b"")
        protocol.dataReceived(OK)
        [(status, _, body)] = parseResponses(client.value())
        self.assertEqual((status, body), (b"HTTP/1.1 200 OK", b"ok"))

    def test_pausedClientIsNotAReadTimeout(self):
        """
        C{read_timeout} is about a backend that stops sending: while the
        proxy itself holds the backend paused because the client does not
        read, the backend's silence does not end the response.
        """
        channel, client, protocol, backend = self.proxiedGet()
        protocol.dataReceived(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        channel.pauseProducing()
        self.reactor.advance(20)
        self.assertTrue(client.connected)
        self.assertTrue(backend.connected)
        channel.resumeProducing()
        protocol.dataReceived(b"0\r\n\r\n")
        [(_, _, body)] = parseResponses(client.value())
        self.assertEqual(body, b"hello")


class NoBodyTests(ProxyTestCase):
    """
    Responses that have no body: to HEAD, 204 and 304.
    """

    def assertNoBodyThenUsable(self, method, answer, expectedStatus):
        """
        Send C{method}, answer C{answer}: the client gets the status and no
        body byte, and the next request on the same connections works.
        """
        self.buildProxy()
        channel, client = self.connectClient()
        channel.dataReceived(method + b" /app/x HTTP/1.1\r\nHost: h\r\n\r\n")
        protocol, backend = self.acceptBackend()
        protocol.dataReceived(answer)
        head, sep, rest = client.value().partition(b"\r\n\r\n")
        self.assertTrue(sep)
        self.assertEqual(head.split(b"\r\n")[0], expectedStatus)
        self.assertEqual(rest, b"")
        self.assertNotIn(b"transfer-encoding", head.lower())
        client.clear()
        backend.clear()
        channel.dataReceived(b"GET /app/next HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertTrue(backend.value().startswith(b"GET /base/next HTTP/1.1\r\n"))
        protocol.dataReceived(OK)
        [(status, _, body)] = parseResponses(client.value())
        self.assertEqual((status, body), (b"HTTP/1.1 200 OK", b"ok"))
        return head

    def test_head(self):
        """
        A response to HEAD has no body, and keeps its C{Content-Length} (the
        size a GET would get).
        """
        head = self.assertNoBodyThenUsable(
            b"HEAD",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 42\r\n\r\n",
            b"HTTP/1.1 200 OK",
        )
        self.assertIn(b"\r\nContent-Length: 42", head)

    def test_noContent(self):
        """
        A 204 has no body.
        """
        self.assertNoBodyThenUsable(
            b"DELETE", b"HTTP/1.1 204 No Content\r\n\r\n", b"HTTP/1.1 204 No Content"
        )

    def test_notModified(self):
        """
        A 304 has no body.
        """
        self.assertNoBodyThenUsable(
            b"GET",
            b"HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n\r\n",
            b"HTTP/1.1 304 Not Modified",
        )


class NotFoundTests(ProxyTestCase):
    """
    Requests no route takes.
    """

    def test_get(self):
        """
        A GET no route matches gets 404 and connects nowhere.
        """
        self.buildProxy()
        channel, client = self.connectClient()
        channel.dataReceived(b"GET /other HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertErrorResponse(
            client.value(),
            b"HTTP/1.1 404 Not Found",
            b"404 Not Found\n\nno route matches this request\n",
        )
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertTrue(client.connected)

    def test_postBodyConsumed(self):
        """
        A POST no route matches: its body is read and dropped, the request
        finishes (and is logged) once the body is in, and the connection
        takes the next request.
        """
        self.buildProxy()
        channel, client = self.connectClient()
        channel.dataReceived(
            b"POST /other HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n01234"
        )
        self.assertEqual(self.log.lines, [])
        self.assertEqual(client.producerState, "producing")
        channel.dataReceived(b"56789")
        self.assertEqual(len(self.log.lines), 1)
        self.assertErrorResponse(
            client.value(),
            b"HTTP/1.1 404 Not Found",
            b"404 Not Found\n\nno route matches this request\n",
        )
        client.clear()
        channel.dataReceived(b"GET /other2 HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertErrorResponse(
            client.value(),
            b"HTTP/1.1 404 Not Found",
            b"404 Not Found\n\nno route matches this request\n",
        )
        self.assertEqual(len(self.log.lines), 2)
        self.assertIn(b'"GET /other2 HTTP/1.1" 404', self.log.lines[1])
        self.assertTrue(client.connected)
        self.assertEqual(self.reactor.tcpClients, [])


class StaleConnectionTests(ProxyTestCase):
    """
    A kept-alive backend connection that the backend closed while idle.
    """

    def staleConnection(self):
        """
        Serve one GET, leaving its backend connection idle in the pool.

        @return: C{(channel, client, protocol, backend)}.
        """
        channel, client, protocol, backend = self.proxiedGet(b"/app/1")
        protocol.dataReceived(OK)
        client.clear()
        backend.clear()
        return channel, client, protocol, backend

    def test_getRetried(self):
        """
        A GET sent on a connection that turns out closed before any response
        is sent again, once, on a new connection.
        """
        channel, client, protocol, backend = self.staleConnection()
        channel.dataReceived(b"GET /app/2 HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertTrue(backend.value().startswith(b"GET /base/2 HTTP/1.1\r\n"))
        # The backend's FIN arrives only now.
        backend.loseConnection()
        self.assertEqual(client.value(), b"")
        self.assertEqual(len(self.reactor.tcpClients), 2)
        protocol2, backend2 = self.acceptBackend()
        self.assertTrue(backend2.value().startswith(b"GET /base/2 HTTP/1.1\r\n"))
        protocol2.dataReceived(OK)
        [(status, _, body)] = parseResponses(client.value())
        self.assertEqual((status, body), (b"HTTP/1.1 200 OK", b"ok"))

    def test_getRetriedOnlyOnce(self):
        """
        A fresh connection that also closes without a response is a 502;
        there is no third attempt.
        """
        channel, client, protocol, backend = self.staleConnection()
        channel.dataReceived(b"GET /app/2 HTTP/1.1\r\nHost: h\r\n\r\n")
        backend.loseConnection()
        protocol2, backend2 = self.acceptBackend()
        backend2.loseConnection()
        self.assertEqual(len(self.reactor.tcpClients), 2)
        self.assertErrorResponse(
            client.value(),
            b"HTTP/1.1 502 Bad Gateway",
            b"502 Bad Gateway\n\nthe backend closed the connection without a response\n",
        )

    def test_postNotRetried(self):
        """
        A POST with a body on a stale connection is not repeated: 502.
        """
        channel, client, protocol, backend = self.staleConnection()
        channel.dataReceived(
            b"POST /app/2 HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nabcd"
        )
        self.assertTrue(backend.value().startswith(b"POST /base/2 HTTP/1.1\r\n"))
        self.assertTrue(backend.value().endswith(b"\r\n\r\nabcd"))
        backend.loseConnection()
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertErrorResponse(
            client.value(),
            b"HTTP/1.1 502 Bad Gateway",
            b"502 Bad Gateway\n\nthe backend closed the connection without a response\n",
        )


class BackendAnswerTests(ProxyTestCase):
    """
    Backend answers the proxy must not pass on as they are, and answers that
    end a connection's use.
    """

    def test_answeredBeforeBodyClosesBackend(self):
        """
        A backend that answers before it has the whole request body gets its
        connection closed: it cannot carry another request, and it must not
        stay open (and count against the pool) when the client leaves.
        """
        self.buildProxy()
        channel, client = self.connectClient()
        channel.dataReceived(
            b"POST /app/up HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000
        )
        protocol, backend = self.acceptBackend()
        protocol.dataReceived(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\n\r\nbig")
        self.assertFalse(backend.connected)

    def test_controlByteInStatusLine(self):
        """
        A status line with a bare LF (which a client would read as a line
        of its own) is refused with 502, not passed on.
        """
        channel, client, protocol, backend = self.proxiedGet()
        protocol.dataReceived(
            b"HTTP/1.1 200 OK\nSet-Cookie: session=attacker\r\nContent-Length: 2\r\n\r\nok"
        )
        self.assertTrue(client.value().startswith(b"HTTP/1.1 502 Bad Gateway\r\n"), client.value())
        self.assertNotIn(b"attacker", client.value())

    def test_invalidHeaderName(self):
        """
        A header name that is not a token gives 502, not a reset client
        connection.
        """
        channel, client, protocol, backend = self.proxiedGet()
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nX Powered: by-app\r\nContent-Length: 2\r\n\r\nok")
        self.assertTrue(client.value().startswith(b"HTTP/1.1 502 Bad Gateway\r\n"), client.value())
        self.assertTrue(client.connected)

    def test_closeDelimitedBodyReset(self):
        """
        A backend that resets a body delimited by the connection's end: the
        client's connection is aborted, never given a complete-looking
        (chunk-terminated) body; closed cleanly, the same body completes.
        """
        for reason, complete in [(error.ConnectionLost(), False), (error.ConnectionDone(), True)]:
            channel, client, protocol, backend = self.proxiedGet()
            protocol.dataReceived(b"HTTP/1.1 200 OK\r\n\r\npart")
            protocol.connectionLost(Failure(reason))
            self.assertEqual(client.value().endswith(b"0\r\n\r\n"), complete, reason)
            self.assertEqual(client.connected, complete, reason)

    def test_ambiguousFraming(self):
        """
        Responses whose body length a client could read otherwise than the
        proxy get 502 (each was relayed before): two Content-Length values,
        an unsupported transfer coding beside a length, a negative or
        oversized length, a 101 nobody asked for.
        """
        answers = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nContent-Length: " + b"1" * 26 + b"\r\n\r\nok",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        ]
        seen = []
        for answer in answers:
            channel, client, protocol, backend = self.proxiedGet()
            protocol.dataReceived(answer)
            seen.append(client.value().split(b"\r\n", 1)[0])
            self.assertFalse(backend.connected)
        self.assertEqual(seen, [b"HTTP/1.1 502 Bad Gateway"] * len(answers))

    def test_closingIdleConnectionNotLent(self):
        """
        An idle connection that is closing (its idle timer fired, the close
        is not complete yet) is not lent out: the next request gets a new
        connection, and the pool's counts stay right.
        """
        self.buildProxy(server="backend_max_connections = 1")
        channel, client = self.connectClient()
        channel.dataReceived(b"GET /app/1 HTTP/1.1\r\nHost: h\r\n\r\n")
        protocol, backend = self.acceptBackend()
        protocol.dataReceived(OK)
        # A close under way: Twisted marks the transport as disconnecting
        # until the socket is gone.
        backend.disconnecting = True
        channel.dataReceived(b"GET /app/2 HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(len(self.reactor.tcpClients), 2)
        protocol2, backend2 = self.acceptBackend()
        protocol2.dataReceived(OK)
        protocol.connectionLost(Failure(ConnectionDone()))
        channel.dataReceived(b"GET /app/3 HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(len(self.reactor.tcpClients), 2)
        protocol2.dataReceived(OK)
        responses = parseResponses(client.value())
        self.assertEqual([body for _, _, body in responses], [b"ok", b"ok", b"ok"])

    def test_continueBeforeEarlyAnswer(self):
        """
        A request with C{Expect: 100-continue} that is answered at once (no
        route) gets the answer without "100 Continue" (its body is not
        wanted), and the connection closes after it, without waiting for a
        body the client may never send.
        """
        self.buildProxy()
        channel, client = self.connectClient()
        channel.dataReceived(
            b"POST /nowhere HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        data = client.value()
        self.assertTrue(data.startswith(b"HTTP/1.1 404 Not Found\r\n"), data)
        self.assertIn(b"\r\nConnection: close\r\n", data)
        self.assertNotIn(b"100 Continue", data)
        self.assertFalse(client.connected)

    def test_continueWhenBodyWanted(self):
        """
        A request with C{Expect: 100-continue} routed to a backend gets
        "100 Continue" once, before its body is read.
        """
        self.buildProxy()
        channel, client = self.connectClient()
        channel.dataReceived(
            b"POST /app/up HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        self.assertEqual(client.value(), b"HTTP/1.1 100 Continue\r\n\r\n")
        channel.dataReceived(b"hello")
        protocol, backend = self.acceptBackend()
        self.assertTrue(backend.value().endswith(b"\r\n\r\nhello"), backend.value())
        self.assertEqual(client.value().count(b"100 Continue"), 1)

    def test_pausedConnectionResumedForNextRequest(self):
        """
        A backend connection paused by a slow client when its response ends
        reads again when it carries the next request.
        """
        channel, client, protocol, backend = self.proxiedGet(b"/app/1")
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        channel.pauseProducing()
        self.assertEqual(backend.producerState, "paused")
        protocol.dataReceived(b"cd")
        channel.dataReceived(b"GET /app/2 HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual(backend.producerState, "producing")


class HeadParsingTests(ProxyTestCase):
    """
    A request head is read by one parser (L{proxyws.framing}), whole or in
    pieces, to the same end: the same request to the backend, the same
    answer to the client.
    """

    HEADS = [
        b"GET /app/x?q=1 HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /app/x HTTP/1.1\r\nhost: h\r\nx-ONE: 1\r\nX-One: 2\r\nte: trailers\r\n"
        b"dnt: 1\r\nEtag: e\r\nX-Pad:  \t spaced \t \r\nX-Empty:\r\n\r\n",
        b"GET /app/x HTTP/1.1\r\nHost: h\r\nX-Latin: caf\xe9\r\nX-Ctl: a\x01b\r\n\r\n",
        b"GET /app/x HTTP/1.0\r\nHost: h\r\n\r\n",
        b"GET /app/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"GET /app/x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /app/~%7e!$&'()*+,;=:@ HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /app/x HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % n for n in range(100)) + b"\r\n",
        # Refused, by either parser.
        b"GET /app/x HTTP/1.1\r\nHost: h\r\nX-Nul: a\x00b\r\n\r\n",
        b"GET /app/x HTTP/2.0\r\nHost: h\r\n\r\n",
        b"GET /app/ x HTTP/1.1\r\nHost: h\r\n\r\n",
        b"G(T /app/x HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /app/x HTTP/1.1\r\nHost : h\r\n\r\n",
        b"GET /app/x HTTP/1.1\r\nHost: h\r\nX-Fold: a\r\n b\r\n\r\n",
        b"GET /app/x HTTP/1.1\r\nNo colon\r\n\r\n",
        b"GET /app/x HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % n for n in range(501)) + b"\r\n",
        b"GET /app/x HTTP/1.1\r\nHost: h\r\nX-Big: " + b"v" * 17000 + b"\r\n\r\n",
        # Not plain: left to Twisted's parser whole.
        b"POST /app/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /app/x HTTP/1.1\r\nHost: h\r\ncontent-length: 5\r\n\r\n",
        b"POST /app/x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
        b"\r\nGET /app/x HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /app/x HTTP/1.1\r\nHost: h\r\n\r\nGET /app/y HTTP/1.1\r\nHost: h\r\n\r\n",
    ]

    def exchange(self, pieces):
        """
        Send C{pieces} of a request head as separate reads, answer whatever
        reaches the backend with L{OK}.

        @return: C{(what the backend got, what the client got, whether the
            client connection is still open)}.
        """
        self.buildProxy()
        before = len(self.reactor.tcpClients)
        channel, client = self.connectClient()
        loseConnection = client.loseConnection

        def disconnecting():
            # As a TCP transport does: Twisted's parser stops reading then.
            client.disconnecting = True
            loseConnection()

        client.loseConnection = disconnecting
        for piece in pieces:
            channel.dataReceived(piece)
        if len(self.reactor.tcpClients) == before:
            return b"", client.value(), client.connected
        self.assertEqual(len(self.reactor.tcpClients), before + 1)
        protocol, backend = self.acceptBackend(before)
        answered = 0
        while backend.value().count(b"\r\n\r\n") > answered:
            answered += 1
            protocol.dataReceived(OK)
        return backend.value(), client.value(), client.connected

    def test_sameOutcomeWholeOrInPieces(self):
        """
        Every head: whole, or cut after its first byte, after its first line,
        and one byte before its end.
        """
        for head in self.HEADS:
            whole = self.exchange([head])
            firstLine = head.find(b"\r\n") + 2
            for cut in (1, firstLine, len(head) - 1):
                pieces = [head[:cut], head[cut:]]
                self.assertEqual(self.exchange(pieces), whole, (head[:80], cut))

    def test_fieldsAsReceived(self):
        """
        The backend gets the client's fields in their order, repeated ones
        kept apart, values without the whitespace around them.
        """
        self.buildProxy()
        channel, client = self.connectClient()
        channel.dataReceived(self.HEADS[1])
        protocol, backend = self.acceptBackend()
        self.assertTrue(backend.value().startswith(b"GET /base/x HTTP/1.1\r\n"))
        self.assertIn(b"X-One: 1\r\nX-One: 2\r\n", backend.value())
        self.assertIn(b"X-Pad: spaced\r\n", backend.value())

    def test_bytesDuringDispatch(self):
        """
        Bytes that come while a request is dispatched (a re-entrant
        C{dataReceived}, as a pipelining client causes) wait and are read
        after it is answered: both requests reach the backend, in order.
        """
        for pieces in (
            [b"GET /app/1 HTTP/1.1\r\nHost: h\r\n\r\n"],
            [b"GET /app/1 HTTP/1.1\r\nHost", b": h\r\n\r\n"],
        ):
            self.buildProxy()
            channel, client = self.connectClient()
            render = self.site.resource.render
            later = [b"GET /app/2 HTTP/1.1\r\nHost: h\r\n\r\n"]

            def reentrant(request):
                if later:
                    channel.dataReceived(later.pop())
                return render(request)

            self.site.resource.render = reentrant
            before = len(self.reactor.tcpClients)
            for piece in pieces:
                channel.dataReceived(piece)
            # The second request is read once the first is answered (then
            # on a new backend connection: the first is not back in the
            # pool yet).
            sent = []
            for n in range(2):
                self.assertEqual(len(self.reactor.tcpClients), before + n + 1, pieces)
                protocol, backend = self.acceptBackend()
                sent.append(backend.value().split(b"\r\n")[0])
                protocol.dataReceived(OK)
            self.assertEqual(sent, [b"GET /base/1 HTTP/1.1", b"GET /base/2 HTTP/1.1"], pieces)
            self.assertEqual(len(parseResponses(client.value())), 2, pieces)
