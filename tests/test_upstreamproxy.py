"""
Tests for L{proxyws.upstreamproxy} and the resend rule
(L{proxyws.resend}), without sockets: the rules as tables, then a real
site on a L{MemoryReactorClock} (as in L{tests.test_httpproxy}) whose
upstream route sends each request to a member, reports its outcome, moves
to the next member when the request could not be sent, and carries the
affinity cookie.
"""

from twisted.internet.error import ConnectionDone, ConnectionRefusedError, DNSLookupError
from twisted.internet.error import TimeoutError as ConnectTimeout
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers
from zope.interface.verify import verifyObject

from proxyws.accesslog import MemoryAccessLog
from proxyws.affinity import withoutCookie
from proxyws.config import parseConfig
from proxyws.errors import BadResponse, ConnectionLost
from proxyws.resend import (
    CLOSED,
    CONNECT,
    INVALID,
    NEXT,
    SAME,
    STALE,
    TIMEOUT,
    TLS,
    failureKind,
    resendTo,
)
from proxyws.interfaces import IRouteHandler
from proxyws.routing import Router
from proxyws.service import buildRoot, buildSite
from proxyws.tls import BackendTLSPolicy
from proxyws.upstreamproxy import (
    UpstreamHTTPHandler,
    UpstreamWebSocketHandler,
    selectionView,
)

from .test_httpproxy import CONFIG, OK, ProxyTestCase, parseResponses

# Three members on ports 9001 to 9003, named a, b and c.
UPSTREAM = """
[[upstream]]
name = "app"
members = [
    {{ url = "http://127.0.0.1:9001/base/", name = "a" }},
    {{ url = "http://127.0.0.1:9002/base/", name = "b" }},
    {{ url = "http://127.0.0.1:9003/base/", name = "c" }},
]
{lines}
"""

ROUTE = 'path = "/app/"\nupstream = "app"\n'


class ResendRuleTests(SynchronousTestCase):
    """
    L{resendTo} and L{failureKind} as tables.
    """

    def test_resendTo(self):
        """
        Connect failures go to the next member whatever the request; a
        refused TLS handshake only without a body (the body went out on
        the connection); a stale kept-alive connection sends an idempotent
        request without a body to the same backend again; nothing else is
        sent again.
        """
        cases = [
            (CONNECT, b"GET", False, NEXT),
            (CONNECT, b"POST", True, NEXT),
            (CONNECT, b"PATCH", False, NEXT),
            (TLS, b"GET", False, NEXT),
            (TLS, b"POST", False, NEXT),
            (TLS, b"POST", True, None),
            (TLS, b"PUT", True, None),
            (STALE, b"GET", False, SAME),
            (STALE, b"DELETE", False, SAME),
            (STALE, b"PUT", True, None),
            (STALE, b"POST", False, None),
            (STALE, b"PATCH", False, None),
            (CLOSED, b"GET", False, None),
            (INVALID, b"GET", False, None),
            (TIMEOUT, b"GET", False, None),
        ]
        for kind, method, hasBody, expected in cases:
            self.assertEqual(resendTo(kind, method, hasBody), expected, (kind, method, hasBody))

    def test_failureKind(self):
        """
        A timeout first, then garbage, a refused handshake, a reused
        connection that closed before any answer, and any other close.
        """
        tls = ConnectionLost(False, tlsFailed=True)
        plain = ConnectionLost(False)
        cases = [
            ((plain, False, True, True), TIMEOUT),
            ((BadResponse("x"), True, True, False), INVALID),
            ((tls, False, False, False), TLS),
            ((plain, False, True, False), STALE),
            ((plain, True, True, False), CLOSED),
            ((plain, False, False, False), CLOSED),
        ]
        for arguments, expected in cases:
            self.assertEqual(failureKind(*arguments), expected, arguments)


class WithoutCookieTests(SynchronousTestCase):
    """
    L{withoutCookie} as a table.
    """

    def test_table(self):
        """
        The affinity cookie leaves every C{Cookie} header (any case of the
        name); a header left empty goes; other headers stay as they are.
        """
        cases = [
            ([(b"Cookie", [b"a=1; proxyws_member=m; b=2"])], [(b"Cookie", [b"a=1; b=2"])]),
            ([(b"cookie", [b"proxyws_member=m"]), (b"X", [b"1"])], [(b"X", [b"1"])]),
            (
                [(b"Cookie", [b"proxyws_member=m", b"c=3"])],
                [(b"Cookie", [b"c=3"])],
            ),
            ([(b"Cookie", [b"proxyws_memberx=1"])], [(b"Cookie", [b"proxyws_memberx=1"])]),
            ([(b"X-Cookie", [b"proxyws_member=m"])], [(b"X-Cookie", [b"proxyws_member=m"])]),
        ]
        for headers, expected in cases:
            self.assertEqual(withoutCookie(headers, b"proxyws_member"), expected, headers)


class UpstreamProxyTestCase(ProxyTestCase):
    """
    A proxy with an upstream route on a memory reactor.
    """

    def buildUpstream(self, *lines, route=ROUTE):
        """
        Build the site for a config whose route goes to upstream C{app}
        (members a, b and c on ports 9001 to 9003).

        @param lines: more lines of the C{[[upstream]]} table.
        """
        text = CONFIG.format(server="", route=route) + UPSTREAM.format(lines="\n".join(lines))
        self.log = MemoryAccessLog()
        self.site, self.pool = buildSite(parseConfig(text, "/tmp/x.toml"), self.reactor, self.log)
        self.upstream = self.site.resource.upstreams.get("app")
        self.a, self.b, self.c = self.upstream.members

    def serving(self):
        """
        The member connection that has the last request: the last
        connection attempt, accepted now, or else the kept-alive connection
        it was written to.

        @return: C{(port, protocol, what it was sent)}.
        """
        accepted = self.__dict__.setdefault("_accepted", [])
        if len(accepted) < len(self.reactor.tcpClients):
            protocol, transport = self.acceptBackend(len(accepted))
            accepted.append([self.reactor.tcpClients[len(accepted)][1], protocol, transport, 0])
        [entry] = [entry for entry in accepted if len(entry[2].value()) > entry[3]]
        port, protocol, transport, seen = entry
        entry[3] = len(transport.value())
        return port, protocol, transport.value()[seen:]

    def attemptedPorts(self):
        """
        @return: the ports of every connection attempt so far, in order.
        """
        return [entry[1] for entry in self.reactor.tcpClients]

    def send(self, channel, target=b"/app/x", method=b"GET", headers=b"", body=None):
        """
        Send a request on a client channel.
        """
        length = b"Content-Length: %d\r\n" % len(body) if body is not None else b""
        channel.dataReceived(
            method + b" " + target + b" HTTP/1.1\r\nHost: h\r\n" + headers + length + b"\r\n"
            + (body or b"")
        )


class HandlerTests(UpstreamProxyTestCase):
    """
    The handlers, and what goes to the chosen member.
    """

    def test_interfaces(self):
        """
        Both handlers of an upstream route are L{IRouteHandler}s.
        """
        self.buildUpstream()
        route = self.site.resource._http[0].route
        upstreams = self.site.resource.upstreams
        self.assertIsInstance(self.site.resource._http[0], UpstreamHTTPHandler)
        self.assertTrue(verifyObject(IRouteHandler, self.site.resource._http[0]))
        handler = UpstreamWebSocketHandler(self.reactor, route, None, upstreams)
        self.assertTrue(verifyObject(IRouteHandler, handler))

    def test_memberBackend(self):
        """
        Each request goes to the member round robin chooses, with its
        C{Host}; the member's C{Location} maps back to the proxy; the
        member counts the request while it runs.
        """
        self.buildUpstream()
        channel, client = self.connectClient()
        for port in (9001, 9002, 9003):
            client.clear()
            self.send(channel)
            self.assertEqual(self.attemptedPorts()[-1], port)
            protocol, backend = self.acceptBackend()
            self.assertIn(b"\r\nHost: 127.0.0.1:%d\r\n" % port, backend.value())
            self.assertTrue(backend.value().startswith(b"GET /base/x HTTP/1.1\r\n"))
            member = self.upstream.members[port - 9001]
            self.assertEqual((member.requests, member.connections), (1, 1))
            protocol.dataReceived(
                b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:%d/base/y\r\n"
                b"Content-Length: 0\r\n\r\n" % port
            )
            [(status, headers, _)] = parseResponses(client.value())
            self.assertEqual(dict(headers)[b"location"], b"http://h/app/y")
            self.assertEqual((member.requests, member.connections), (0, 0))

    def test_selectionView(self):
        """
        The view of a request on a C{match} route has the client's address,
        its headers, the normalized path and the match's groups from group
        0.
        """
        route = "match = '^/u/([a-z]+)/(.*)'\nupstream = \"app\"\n"
        text = CONFIG.format(server="", route=route) + UPSTREAM.format(lines="").replace(
            "/base/", "/$2"
        )
        config = parseConfig(text, "/tmp/x.toml")

        class Request:
            clientHost = "192.0.2.7"
            requestHeaders = Headers({b"X-User": [b"alice"]})
            routeMatch = Router(config.routes).route(None, b"/u/alice/./x/%7e?q=1")

        view = selectionView(Request)
        self.assertEqual(view.clientAddress, "192.0.2.7")
        self.assertEqual(view.header(b"x-user"), b"alice")
        self.assertEqual(view.path, b"/u/alice/x/~")
        self.assertEqual(view.captures, (b"/u/alice/x/~", b"alice", b"x/~"))
        self.assertEqual(Request.routeMatch.target, b"/x/~?q=1")

    def test_hashOnMatchGroup(self):
        """
        C{hash = "match:1"} sends every request of one user to one member.
        """
        route = "match = '^/u/([a-z]+)/(.*)'\nupstream = \"app\"\n"
        self.buildUpstream('policy = "hash"', 'hash = "match:1"', route=route)
        channel, client = self.connectClient()
        ports = {}
        for user in (b"alice", b"bob", b"carol", b"dave", b"erin", b"frank"):
            for page in (b"1", b"2", b"3"):
                self.send(channel, b"/u/" + user + b"/" + page)
                port, protocol, sent = self.serving()
                ports.setdefault(user, set()).add(port)
                protocol.dataReceived(OK)
        self.assertEqual({len(p) for p in ports.values()}, {1})
        self.assertGreater(len(set.union(*ports.values())), 1)


class ResendTests(UpstreamProxyTestCase):
    """
    Requests that could not be sent go to the next member; the others do
    not.
    """

    def test_connectFailuresGoToNextMember(self):
        """
        A refused connection, a connect timeout and a host name that does
        not resolve send the request to the next member; the member that
        failed is told, and counts the request no more.
        """
        for reason, text in [
            (ConnectionRefusedError(), "connection refused by the backend"),
            (ConnectTimeout(), "connect timeout: the backend did not accept the connection in time"),
            (DNSLookupError(), "the backend host name '127.0.0.1' could not be resolved"),
        ]:
            self.reactor.tcpClients.clear()
            self.reactor.connectors.clear()
            self.buildUpstream("max_fails = 0")
            channel, client = self.connectClient()
            self.send(channel, method=b"POST", body=b"abc")
            self.failConnect(reason)
            self.assertEqual(self.attemptedPorts(), [9001, 9002])
            self.assertEqual(self.a.lastFailure, text)
            self.assertEqual((self.a.connections, self.b.connections), (0, 1))
            protocol, backend = self.acceptBackend()
            self.assertTrue(backend.value().endswith(b"\r\n\r\nabc"))
            protocol.dataReceived(OK)
            [(status, _, body)] = parseResponses(client.value())
            self.assertEqual((status, body), (b"HTTP/1.1 200 OK", b"ok"))
            self.assertEqual(self.b.connections, 0)

    def test_nextMemberKeptAlive(self):
        """
        The next member's kept-alive connection takes the request, when it
        has one.
        """
        self.buildUpstream('affinity = "cookie"')
        self.c.failed("refused")
        channel, client = self.connectClient()
        self.send(channel, headers=b"Cookie: proxyws_member=b\r\n")
        protocol, backend = self.acceptBackend()
        protocol.dataReceived(OK)
        backend.clear()
        self.send(channel, b"/app/2", headers=b"Cookie: proxyws_member=a\r\n")
        self.failConnect(ConnectionRefusedError())
        self.assertEqual(self.attemptedPorts(), [9002, 9001])
        self.assertTrue(backend.value().startswith(b"GET /base/2 "))

    def test_retriesBudget(self):
        """
        With C{retries = 1}, a request tries two members at most; the client
        gets the last one's error.
        """
        self.buildUpstream("retries = 1", "max_fails = 0")
        channel, client = self.connectClient()
        self.send(channel)
        self.failConnect(ConnectionRefusedError())
        self.failConnect(ConnectionRefusedError())
        self.assertEqual(len(self.attemptedPorts()), 2)
        self.assertErrorResponse(
            client.value(),
            b"HTTP/1.1 502 Bad Gateway",
            b"502 Bad Gateway\n\nconnection refused by the backend\n",
        )
        self.assertEqual([m.connections for m in self.upstream.members], [0, 0, 0])

    def keptAlive(self, channel, cookie=b"Cookie: proxyws_member=a\r\n"):
        """
        Serve one GET from member a (sticky by cookie), leaving its
        connection idle in the pool.

        @return: C{(protocol, backend)} of that connection.
        """
        self.send(channel, headers=cookie)
        protocol, backend = self.acceptBackend()
        protocol.dataReceived(OK)
        backend.clear()
        return protocol, backend

    def test_staleConnectionSameMember(self):
        """
        A GET on a kept-alive connection that the member had closed goes
        to the same member (its session is there) on a new connection; the
        member is not told of any failure.
        """
        self.buildUpstream('affinity = "cookie"')
        channel, client = self.connectClient()
        protocol, backend = self.keptAlive(channel)
        client.clear()
        self.send(channel, b"/app/2", headers=b"Cookie: proxyws_member=a\r\n")
        self.assertTrue(backend.value().startswith(b"GET /base/2 "))
        backend.loseConnection()
        self.assertEqual(self.attemptedPorts(), [9001, 9001])
        protocol2, backend2 = self.acceptBackend()
        protocol2.dataReceived(OK)
        [(status, _, body)] = parseResponses(client.value())
        self.assertEqual((status, body), (b"HTTP/1.1 200 OK", b"ok"))
        self.assertEqual((self.a.failures, self.a.lastFailure), ((), None))

    def test_staleThenRefusedNextMember(self):
        """
        When the new connection to that member is refused, the request goes
        to the next member.
        """
        self.buildUpstream('affinity = "cookie"')
        channel, client = self.connectClient()
        protocol, backend = self.keptAlive(channel)
        self.send(channel, b"/app/2", headers=b"Cookie: proxyws_member=a\r\n")
        backend.loseConnection()
        self.failConnect(ConnectionRefusedError())
        self.assertEqual(self.attemptedPorts()[1:], [9001, 9002])
        self.assertFalse(self.a.up)

    def test_notResent(self):
        """
        A POST without a body on a stale connection, a request whose body
        went out on a new connection, and a request whose answer had
        started are 502s sent nowhere else.
        """
        cases = [
            (b"POST", None, True, b""),
            (b"POST", b"data", False, b""),
            (b"GET", None, False, b"HTTP/1.1 200 OK\r\nContent-"),
        ]
        for method, body, stale, answered in cases:
            self.reactor.tcpClients.clear()
            self.reactor.connectors.clear()
            self.buildUpstream('affinity = "cookie"', "max_fails = 0")
            channel, client = self.connectClient()
            if stale:
                protocol, backend = self.keptAlive(channel)
            client.clear()
            self.send(channel, b"/app/2", method, b"Cookie: proxyws_member=a\r\n", body)
            if not stale:
                protocol, backend = self.acceptBackend()
            attempts = len(self.attemptedPorts())
            protocol.dataReceived(answered)
            backend.loseConnection()
            self.assertEqual(len(self.attemptedPorts()), attempts, method)
            [(status, _, _)] = parseResponses(client.value())
            self.assertEqual(status, b"HTTP/1.1 502 Bad Gateway", method)
            self.assertEqual(self.a.connections, 0)


class OutcomeTests(UpstreamProxyTestCase):
    """
    What members are told, and what the client gets when none can take the
    request.
    """

    def test_failedStatuses(self):
        """
        A 502, 503 or 504 answer is relayed as it is and counts as the
        member's failure; another answer clears its failures.
        """
        self.buildUpstream("max_fails = 2")
        channel, client = self.connectClient()
        for answer, failures in [(503, 1), (200, 0), (502, 1), (404, 0), (504, 1)]:
            client.clear()
            self.send(channel, headers=b"")
            port, protocol, sent = self.serving()
            member = self.upstream.members[port - 9001]
            member.failures = ()
            protocol.dataReceived(b"HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n" % answer)
            [(status, _, _)] = parseResponses(client.value())
            self.assertEqual(status, b"HTTP/1.1 %d X" % answer)
            self.assertEqual(len(member.failures), failures, answer)

    def test_affinityCookie(self):
        """
        An answer to a client without the cookie carries the cookie naming
        its member after the member's own C{Set-Cookie}, with
        C{Cache-Control: private}; a request with it goes to that member
        without it (the C{Cookie} header goes when nothing else is left);
        its answer sets no cookie.
        """
        self.buildUpstream('affinity = "cookie"')
        channel, client = self.connectClient()
        self.send(channel)
        port, protocol, sent = self.serving()
        protocol.dataReceived(
            b"HTTP/1.1 200 OK\r\nSet-Cookie: own=1\r\nContent-Length: 2\r\n\r\nok"
        )
        [(_, headers, _)] = parseResponses(client.value())
        self.assertEqual(
            [(n, v) for n, v in headers if n in (b"set-cookie", b"cache-control")],
            [
                (b"set-cookie", b"own=1"),
                (b"set-cookie", b"proxyws_member=a; Path=/; HttpOnly; SameSite=Lax"),
                (b"cache-control", b"private"),
            ],
        )
        for cookie, forwarded in [
            (b"x=1; proxyws_member=b; y=2", b"\r\nCookie: x=1; y=2\r\n"),
            (b"proxyws_member=b", None),
        ]:
            client.clear()
            self.send(channel, headers=b"Cookie: " + cookie + b"\r\n")
            port, protocol, sent = self.serving()
            self.assertEqual(port, 9002)
            if forwarded is None:
                self.assertNotIn(b"\r\ncookie:", sent.lower())
            else:
                self.assertIn(forwarded, sent)
            protocol.dataReceived(OK)
            [(_, headers, _)] = parseResponses(client.value())
            self.assertNotIn(b"set-cookie", dict(headers))

    def test_unavailable(self):
        """
        With every member down, a request gets 503 with the seconds until
        the first may be back; a POST's body is read and dropped, and the
        connection serves the next request.
        """
        self.buildUpstream("fail_timeout = 20")
        for member in self.upstream.members:
            member.failed("refused")
        self.reactor.advance(5)
        channel, client = self.connectClient()
        self.send(channel, method=b"POST", body=b"x" * 100)
        [(status, headers, body)] = parseResponses(client.value())
        self.assertEqual(status, b"HTTP/1.1 503 Service Unavailable")
        self.assertEqual(dict(headers)[b"retry-after"], b"15")
        self.assertEqual(body, b"503 Service Unavailable\n\nno member of upstream app is available\n")
        self.assertEqual(self.reactor.tcpClients, [])
        self.reactor.advance(15)
        client.clear()
        self.send(channel)
        self.assertEqual(self.attemptedPorts(), [9001])

    def test_clientGone(self):
        """
        A client that leaves while its member answers: the member counts
        the request no more, and hears neither success nor failure.
        """
        self.buildUpstream()
        channel, client = self.connectClient()
        self.send(channel)
        protocol, backend = self.acceptBackend()
        self.assertEqual(self.a.connections, 1)
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual((self.a.connections, self.a.lastFailure), (0, None))


class BuildTests(SynchronousTestCase):
    """
    The registry built with the server's root, and its TLS policy.
    """

    def config(self, *urls, route=ROUTE):
        """
        A config whose upstream C{app} has members at C{urls}.
        """
        members = ", ".join('"{}"'.format(url) for url in urls)
        text = CONFIG.format(server="", route=route) + (
            '[[upstream]]\nname = "app"\nmembers = [{}]\n'.format(members)
        )
        return parseConfig(text, "/tmp/x.toml")

    def test_rootUsesTheRegistry(self):
        """
        L{buildRoot} builds a registry of the config's upstreams, or uses
        the one it is given (the service's, across reloads); either is the
        root's C{upstreams}, and its handlers choose from it.
        """
        reactor = MemoryReactorClock()
        config = self.config("http://127.0.0.1:9001/", "http://127.0.0.1:9002/")
        first, _ = buildRoot(config, reactor)
        self.assertEqual([u.name for u in first.upstreams], ["app"])
        second, _ = buildRoot(config, reactor, upstreams=first.upstreams)
        self.assertIs(second.upstreams, first.upstreams)
        self.assertIs(second._http[0]._upstreams, first.upstreams)
        self.assertIs(second._webSockets[0]._upstreams, first.upstreams)

    def test_tlsPolicyKnowsEveryMember(self):
        """
        The backends' TLS policy has a connection creator for every https
        member, not only the route's (first) one.
        """
        config = self.config(
            "https://127.0.0.1:9001/", "https://localhost:9002/", "https://127.0.0.2:9003/"
        )
        policy = BackendTLSPolicy(config)
        for settings in config.upstreams[0].members:
            self.assertIsNotNone(policy(settings.backend))
