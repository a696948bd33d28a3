"""
What the metrics and the API routes' last activity count, case by case,
over 127.0.0.1 with real backends: each request once and on the route that
took it (refused by the route's own rules included), each failed attempt
at a backend once and of its kind, websockets with compression and with
websocket filters, removed routes' series, API websockets across a reload,
and the admin listener and route store at a graceful stop.
"""

import json
import os
import socket

from autobahn.websocket.compress import PerMessageDeflateOfferAccept
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from proxyws.apiroutes import parseTime
from proxyws.metrics import Metrics

from . import certs
from .helpers import freePort, rawRequest, startBackend, startProxy
from .plugintools import Passing, Tagger, factoryOf, withPlugins
from .test_adminwiring import LISTEN, AdminTestCase, PathEcho, adminTable, call, sample
from .test_loopback_plugins import talk
from .test_loopback_tls import STRANGER_CA, TLSTestCase
from .wsbackends import (
    EchoBackend,
    SilentProtocol,
    connectAutobahn,
    startSocketBackend,
    upgradeRequest,
    waitUntil,
)


def sleep(seconds):
    """
    @return: a L{Deferred} firing after C{seconds} on the reactor.
    """
    from twisted.internet import reactor

    return deferLater(reactor, seconds, lambda: None)


def connect(port):
    """
    @return: a L{Deferred} firing when a connection to C{port} is made, or
        failing.
    """
    from twisted.internet import reactor

    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    return connectProtocol(endpoint, Protocol()).addCallback(
        lambda protocol: protocol.transport.loseConnection())


def closedPorts(count):
    """
    @return: C{count} different ports that nothing listens on right now.
    """
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def route(name, path, backend, extra=""):
    """
    A C{[[route]]} table named C{name}.
    """
    return '[[route]]\nname = "{}"\npath = "{}"\nbackend = "{}"\n{}\n'.format(
        name, path, backend, extra)


class Held(Resource):
    """
    Holds every request until C{release} is called.

    @ivar waiting: the requests held.
    """

    isLeaf = True

    def __init__(self):
        Resource.__init__(self)
        self.waiting = []

    def render(self, request):
        """
        Hold the request.
        """
        self.waiting.append(request)
        return NOT_DONE_YET

    def release(self):
        """
        Answer every held request.
        """
        for request in self.waiting:
            request.setHeader(b"Content-Length", b"4")
            request.write(b"done")
            request.finish()
        self.waiting = []


class Stalling(Resource):
    """
    Starts every response (100 bytes announced, 10 sent) and sends no more.
    """

    isLeaf = True

    def render(self, request):
        """
        Send the first 10 bytes.
        """
        request.setHeader(b"Content-Length", b"100")
        request.write(b"x" * 10)
        return NOT_DONE_YET


class RouteLabelTests(AdminTestCase):
    """
    A request the route's own rules answer counts on that route, as the
    requests it relays do; only a request no route took counts on
    C{none}.
    """

    @inlineCallbacks
    def test_refusedByTheRoute(self):
        """
        Refused by the route's access rules (403), redirected to https by
        it (301), refused for a body over its limit (413), answered by its
        plugin (429): each counts once, on the route's label.
        """
        withPlugins(self, tagger=factoryOf(Tagger("t", answer=429)))
        _, backend = startBackend(self, PathEcho())
        url = "http://127.0.0.1:{}/".format(backend)
        port, _ = self.startWithAdmin(
            LISTEN
            + route("locked", "/locked/", url, 'deny = ["all"]')
            + route("secure", "/secure/", url, "redirect_https = true")
            + route("small", "/small/", url, "max_body_size = 10")
            + route("plugged", "/plugged/", url, 'plugins = [{ name = "tagger" }]'))
        cases = [
            (b"GET", b"/locked/x", (), "locked", 403),
            (b"GET", b"/secure/x", (), "secure", 301),
            (b"POST", b"/small/x", (b"Content-Length: 100",), "small", 413),
            (b"GET", b"/plugged/x", (), "plugged", 429),
            (b"GET", b"/nowhere", (), "none", 404),
        ]
        for method, target, headers, _, code in cases:
            status, _ = yield call(port, method, target, token=None, headers=headers)
            self.assertEqual(status, code, target)
        found = yield self.metrics()
        for _, target, _, label, code in cases:
            self.assertEqual(
                sample(found, "proxyws_requests_total", route=label, code=str(code)), 1, target)
        self.assertEqual(
            sum(value for (name, labels), value in found.items()
                if name == "proxyws_requests_total" and ("route", "none") in labels), 1)


class LogLineTests(AdminTestCase):
    """
    One count per access-log line: requests the client left (499),
    responses the backend stopped sending and refused heads count once, as
    their lines.
    """

    @inlineCallbacks
    def test_oneCountPerLine(self):
        """
        A client that leaves before the answer counts one 499; a response
        cut by C{read_timeout} counts once with the status sent and one
        C{read_timeout} error; a head refused before any route is known
        counts one 400 on C{none}; the lines and the counts agree.
        """
        _, held = startBackend(self, Held())
        _, stalling = startBackend(self, Stalling())
        port, _ = self.startWithAdmin(
            LISTEN
            + route("held", "/held/", "http://127.0.0.1:{}/".format(held))
            + route("stalling", "/stalling/", "http://127.0.0.1:{}/".format(stalling),
                    "read_timeout = 0.2"))
        request = b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        yield rawRequest(port, request % b"/held/x", closeAfter=0.2)
        raw = yield rawRequest(port, request % b"/stalling/x")
        self.assertTrue(raw.startswith(b"HTTP/1.1 200 "), raw)
        raw = yield rawRequest(port, b"NOT HTTP\r\n\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 400 "), raw)
        yield waitUntil(lambda: len(self.log.lines) == 3)
        found = yield self.metrics()
        self.assertEqual(sample(found, "proxyws_requests_total", route="none", code="400"), 1)
        self.assertEqual(sample(found, "proxyws_requests_total", route="held", code="499"), 1)
        self.assertEqual(sample(found, "proxyws_requests_total", route="stalling", code="200"), 1)
        self.assertEqual(
            sample(found, "proxyws_backend_errors_total", route="stalling", kind="read_timeout"), 1)
        self.assertEqual(
            sum(value for (name, _), value in found.items() if name == "proxyws_requests_total"),
            len(self.log.lines))


class BackendErrorTests(AdminTestCase):
    """
    Each failed attempt at a backend counts once, of its kind, on its
    route: an upstream's member that failed counts although the request
    went on to another member and succeeded.
    """

    @inlineCallbacks
    def test_retriedOnAnotherMember(self):
        """
        The first member refuses connections: the request and the
        websocket go on to the second, succeed, and the refusals count as
        C{connect} errors of the route (once each); the answers count once.
        """
        echo = EchoBackend(self)
        dead = freePort()
        self.startWithAdmin(
            LISTEN
            + '[[upstream]]\nname = "pair"\nmembers = ["http://127.0.0.1:{}/", '
              '"http://127.0.0.1:{}/"]\nmax_fails = 100\n\n'.format(dead, echo.port)
            + '[[route]]\nname = "app"\npath = "/"\nupstream = "pair"\n')
        port = self.service.ports[0].getHost().port
        client = yield connectAutobahn(self, port, "/echo")
        client.sendMessage(b"hello")
        message = yield client.nextMessage()
        self.assertEqual(message, (b"hello", False))
        found = yield self.metrics()
        self.assertEqual(sample(found, "proxyws_backend_errors_total", route="app", kind="connect"), 1)
        self.assertEqual(sample(found, "proxyws_requests_total", route="app", code="101"), 1)
        client.sendClose(1000)
        yield client.closed.wait()

    @inlineCallbacks
    def test_retriedHTTP(self):
        """
        A plain request whose first member refuses its connection counts one
        C{connect} error and one 200.
        """
        _, live = startBackend(self, PathEcho())
        dead = freePort()
        port, _ = self.startWithAdmin(
            LISTEN
            + '[[upstream]]\nname = "pair"\nmembers = ["http://127.0.0.1:{}/", '
              '"http://127.0.0.1:{}/"]\nmax_fails = 100\n\n'.format(dead, live)
            + '[[route]]\nname = "app"\npath = "/"\nupstream = "pair"\n')
        status, body = yield call(port, b"GET", b"/x", token=None)
        self.assertEqual((status, body), (200, b"/x"))
        found = yield self.metrics()
        self.assertEqual(sample(found, "proxyws_backend_errors_total", route="app", kind="connect"), 1)
        self.assertEqual(sample(found, "proxyws_requests_total", route="app", code="200"), 1)

    @inlineCallbacks
    def test_noMemberUp(self):
        """
        Both members refuse the first request (502 after two C{connect}
        errors, one per member tried) and are then down: the next request
        gets 503 from the proxy, which is no backend error of its own.
        """
        port, _ = self.startWithAdmin(
            LISTEN
            + '[[upstream]]\nname = "two"\nmembers = ["http://127.0.0.1:{}/", '
              '"http://127.0.0.1:{}/"]\n\n'.format(*closedPorts(2))
            + '[[route]]\nname = "app"\npath = "/"\nupstream = "two"\n')
        for code in (502, 503):
            status, _ = yield call(port, b"GET", b"/x", token=None)
            self.assertEqual(status, code)
        found = yield self.metrics()
        self.assertEqual(
            [(dict(labels)["kind"], value) for (name, labels), value in found.items()
             if name == "proxyws_backend_errors_total" and value],
            [("connect", 2)])
        for code in ("502", "503"):
            self.assertEqual(sample(found, "proxyws_requests_total", route="app", code=code), 1)

    @inlineCallbacks
    def test_webSockets(self):
        """
        A websocket closed by its client counts no error; one whose backend
        drops the connection without a close frame counts one C{broken};
        an upgrade the backend refuses counts once with its status and no
        error; one the backend never answers counts one
        C{response_timeout} and one 504.
        """
        _, silent = startSocketBackend(self, SilentProtocol)
        echo = EchoBackend(self)
        port, _ = self.startWithAdmin(
            LISTEN
            + route("silent", "/silent/", "ws://127.0.0.1:{}/".format(silent),
                    "response_timeout = 0.2")
            + route("echo", "/", "ws://127.0.0.1:{}/".format(echo.port)))
        client = yield connectAutobahn(self, port, "/echo")
        client.sendClose(1000)
        yield client.closed.wait()
        client = yield connectAutobahn(self, port, "/echo")
        client.sendMessage(b"abort")
        yield client.closed.wait()
        refused = yield connectAutobahn(self, port, "/refuse/403").addErrback(lambda f: None)
        self.assertIsNone(refused)
        failed = yield connectAutobahn(self, port, "/silent/x").addErrback(lambda f: None)
        self.assertIsNone(failed)
        yield waitUntil(lambda: not self.service.site.relays())
        found = yield self.metrics()
        for label, kind, count in [
            ("echo", "broken", 1),
            ("silent", "response_timeout", 1),
        ]:
            self.assertEqual(
                sample(found, "proxyws_backend_errors_total", route=label, kind=kind), count, label)
        self.assertEqual(
            sum(value for (name, _), value in found.items()
                if name == "proxyws_backend_errors_total"), 2)
        for label, code, count in [("echo", "101", 2), ("echo", "403", 1), ("silent", "504", 1)]:
            self.assertEqual(
                sample(found, "proxyws_requests_total", route=label, code=code), count, code)


class WebSocketCountTests(AdminTestCase):
    """
    Websocket messages and bytes count what each peer sent, the same with
    compression whether the route has websocket filters or not.
    """

    @inlineCallbacks
    def test_compressedWithAndWithoutFilters(self):
        """
        Whole, fragmented, compressed and binary messages, through a route
        that relays frames and one whose filter sees whole messages: both
        count each message once (a fragmented one too) and the same payload
        bytes, as they travel (compressed: fewer than the messages' own).
        """
        withPlugins(self, passing=factoryOf(Passing()))
        echo = EchoBackend(self)
        echo.factory.setProtocolOptions(
            perMessageCompressionAccept=lambda offers: PerMessageDeflateOfferAccept(offers[0]))
        url = "ws://127.0.0.1:{}/".format(echo.port)
        port, _ = self.startWithAdmin(
            LISTEN + route("filtered", "/filtered/", url, 'plugins = [{ name = "passing" }]')
            + route("plain", "/plain/", url))
        long = "words that compress " * 500
        messages = ["hello", ["frag", "mented ", long], long, b"\x00binary" * 100]
        size = len("hello") + len("fragmented " + long) + len(long) + 700
        for path in ("/plain/echo", "/filtered/echo"):
            answers, _, _ = yield deferToThread(talk, port, messages, path=path)
            self.assertEqual(len(answers), 4)
        yield waitUntil(lambda: not self.service.site.relays())
        found = yield self.metrics()
        counts = {}
        for label in ("plain", "filtered"):
            for direction in ("in", "out"):
                self.assertEqual(sample(found, "proxyws_websocket_messages_total", route=label,
                                        direction=direction), 4, (label, direction))
                counts[label, direction] = sample(
                    found, "proxyws_websocket_bytes_total", route=label, direction=direction)
                self.assertLess(counts[label, direction], size / 10, (label, direction))
        self.assertEqual(counts["plain", "in"], counts["filtered", "in"])
        self.assertEqual(counts["plain", "out"], counts["filtered", "out"])


class ReloadTests(AdminTestCase):
    """
    A reload while routes added through the API exist, and the series of
    the routes it removes.
    """

    @inlineCallbacks
    def test_apiWebSocketKept(self):
        """
        A websocket through an API route stays up across a reload of the
        config, as its route stays: it is not closed after the grace
        period, and messages keep flowing.
        """
        echo = EchoBackend(self)
        port, admin = self.startWithAdmin(LISTEN)
        target = json.dumps({"target": "http://127.0.0.1:{}".format(echo.port)})
        status, _ = yield call(admin, b"POST", b"/api/routes/user/alice", target.encode())
        self.assertEqual(status, 201)
        client = yield connectAutobahn(self, port, "/user/alice/echo")
        self.write(adminTable(self.adminPort) + LISTEN + "[server]\nreload_grace = 0.1\n")
        result = yield self.service.reload()
        self.assertTrue(result.succeeded, result.problems)
        self.assertEqual(result.changes["closing"], 0)
        yield sleep(0.3)
        client.sendMessage(b"still here")
        message = yield client.nextMessage()
        self.assertEqual(message, (b"still here", False))
        self.assertEqual([relay.retiring for relay in self.service.site.relays()], [False])
        client.sendClose(1000)
        yield client.closed.wait()

    @inlineCallbacks
    def test_removedRouteSeriesEnd(self):
        """
        A route a reload removes keeps its series while its websockets are
        open, and loses them once they are closed, without another reload.
        """
        echo = EchoBackend(self)
        url = "ws://127.0.0.1:{}/".format(echo.port)
        port, _ = self.startWithAdmin(LISTEN + route("old", "/old/", url) + route("kept", "/", url))
        client = yield connectAutobahn(self, port, "/old/echo")
        self.write(adminTable(self.adminPort) + LISTEN + route("kept", "/", url)
                   + "[server]\nreload_grace = 60\n")
        result = yield self.service.reload()
        self.assertTrue(result.succeeded, result.problems)
        found = yield self.metrics()
        self.assertEqual(sample(found, "proxyws_websockets_open", route="old"), 1)
        client.sendClose(1000)
        yield client.closed.wait()
        yield waitUntil(lambda: not self.service.site.relays())
        found = yield self.metrics()
        self.assertEqual([labels for labels in found if ("route", "old") in labels[1]], [])
        self.assertIn(("proxyws_websockets_open", frozenset({("route", "kept")})), found)


class SeriesTests(TestCase):
    """
    The series of L{Metrics}, without sockets.
    """

    def test_retiredLabelEndsWhenClosed(self):
        """
        A label L{Metrics.retain} does not keep stays while it has open
        websockets, and its series end once the last one closes.
        """
        metrics = Metrics(process=False)
        metrics.forRoute("kept").requestDone(200, 0.1)
        counter = metrics.forRoute("gone").webSocketOpened()
        metrics.retain(["kept"])
        self.assertIn(b'proxyws_websockets_open{route="gone"} 1.0', metrics.exposition())
        counter.closed(2.0)
        exposition = metrics.exposition()
        self.assertNotIn(b'route="gone"', exposition)
        self.assertIn(b'proxyws_requests_total{code="200",route="kept"} 1.0', exposition)


class StopTests(AdminTestCase):
    """
    A graceful stop with the admin listener: it says C{stopping} while
    requests drain, and it and the route store stop after them.
    """

    @inlineCallbacks
    def test_stoppingWhileDraining(self):
        """
        While a request through an API route is in flight, C{/healthz}
        answers 503 C{stopping}; once it is answered, the route store
        writes its activity and the admin listener closes.
        """
        held = Held()
        _, backend = startBackend(self, held)
        self.startWithAdmin(LISTEN, 'route_store = "file"\nroute_store_file = "routes.json"\n')
        admin = self.adminPort
        port = self.service.ports[0].getHost().port
        target = json.dumps({"target": "http://127.0.0.1:{}".format(backend)})
        status, _ = yield call(admin, b"POST", b"/api/routes/user/alice", target.encode())
        self.assertEqual(status, 201)
        added = self.service.store.table.lastActivity("/user/alice")
        answered = call(port, b"GET", b"/user/alice/x", token=None)
        yield waitUntil(lambda: held.waiting)
        yield sleep(0.01)
        stopped = self.service.stopService()
        status, body = yield call(admin, b"GET", b"/healthz", token=None)
        self.assertEqual((status, body), (503, b"stopping\n"))
        self.assertTrue(self.service.admin.running)
        held.release()
        status, body = yield answered
        self.assertEqual((status, body), (200, b"done"))
        yield stopped
        self.assertFalse(self.service.admin.running)
        with open(os.path.join(self.directory, "routes.json")) as f:
            written = json.load(f)["routes"]["/user/alice"]["last_activity"]
        self.assertGreater(parseTime(written), added)
        yield self.assertFailure(connect(admin), ConnectionRefusedError)

    @inlineCallbacks
    def test_redisDownAtStart(self):
        """
        A Redis route store that cannot be reached at start: the proxy
        serves its config routes, C{/healthz} says degraded, API changes
        get 503, and the stop completes.
        """
        _, backend = startBackend(self, PathEcho())
        port, admin = self.startWithAdmin(
            LISTEN + route("app", "/", "http://127.0.0.1:{}/".format(backend)),
            'route_store = "redis"\nredis_url = "redis://127.0.0.1:{}/0"\n'.format(freePort()))
        yield waitUntil(lambda: self.service.store._reported is False)
        status, body = yield call(admin, b"GET", b"/healthz", token=None)
        self.assertEqual((status, body), (200, b"degraded: serving with the routes last known\n"))
        target = json.dumps({"target": "http://127.0.0.1:{}".format(backend)})
        status, _ = yield call(admin, b"POST", b"/api/routes/user/alice", target.encode())
        self.assertEqual(status, 503)
        status, body = yield call(port, b"GET", b"/x", token=None)
        self.assertEqual((status, body), (200, b"/x"))
        yield self.service.stopService()
        self.assertFalse(self.service.admin.running)


class TLSKindTests(TLSTestCase):
    """
    A backend whose TLS certificate fails the check is a C{tls} error, for
    websockets as for plain requests.
    """

    @inlineCallbacks
    def test_webSocketTLSFailure(self):
        """
        An https and a wss backend whose certificate comes from a CA nobody
        trusts: each request gets 502 saying the TLS handshake failed, and
        counts one C{tls} error.
        """
        _, backend = self.httpsBackend(b"backend", certs.makeCertificate(STRANGER_CA, ["127.0.0.1"]))
        service, port, _ = startProxy(
            self, '[admin]\nport = {}\n'.format(freePort()) + LISTEN
            + route("http", "/http/", "https://127.0.0.1:{}/".format(backend))
            + route("ws", "/ws/", "wss://127.0.0.1:{}/".format(backend)))
        upgrade = upgradeRequest(b"/ws/x", b"127.0.0.1", [(b"Connection", b"close")])
        for label, data in [
            ("http", b"GET /http/x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
            ("ws", upgrade),
        ]:
            raw = yield rawRequest(port, data)
            self.assertTrue(raw.startswith(b"HTTP/1.1 502 "), raw)
            self.assertIn(b"TLS", raw.partition(b"\r\n\r\n")[2], label)
            errors = service.metrics.forRoute(label).errors
            self.assertEqual({kind: n for kind, n in errors.items() if n}, {"tls": 1}, label)


class WithoutAdminTests(TestCase):
    """
    Without C{[admin]} the site records nothing for a request or a
    websocket, and an API route's websocket records its activity.
    """

    def site(self, table=None):
        """
        A L{ProxySite} on a clock, with C{table} as its API routes.
        """
        from twisted.internet.task import Clock
        from twisted.web.resource import Resource

        from proxyws.accesslog import MemoryAccessLog
        from proxyws.site import ProxySite

        clock = Clock()
        clock.advance(1000)
        site = ProxySite(Resource(), MemoryAccessLog(), clock, 60)
        site.apiRoutes = table
        return site

    def request(self, site, match=None):
        """
        A request as the resource leaves it, logged by C{site}.
        """
        from twisted.web.test.requesthelper import DummyRequest

        request = DummyRequest([b"x"])
        request.clientHost = "127.0.0.1"
        request.received = site.reactor.seconds()
        request.uri = b"/x"
        request.clientproto = b"HTTP/1.1"
        request.remoteUser = None
        request.sentLength = 0
        request.routeMatch = match
        request.code = 200
        return request

    def test_nothingRecorded(self):
        """
        A site without metrics or API routes writes the line and records
        nothing: the metrics code is not reached, and a websocket gets no
        activity callable (its passages are the relay's own).
        """
        site = self.site()
        site._requestDone = lambda request, code: self.fail("recorded")
        request = self.request(site)
        site.log(request)
        site.log(request, status=499)
        self.assertEqual(len(site.accessLog.lines), 2)
        self.assertIsNone(site.webSocketActivity(request))

    def test_apiWebSocketActivity(self):
        """
        A websocket on an API route gets a callable that records the route's
        activity at the clock's time; one on a config route gets none.
        """
        from proxyws.apiroutes import APIRouteTable
        from proxyws.routing import RouteMatch

        table = APIRouteTable()
        route = table.add("/user/a", {"target": "http://127.0.0.1:1"}, 5.0)
        site = self.site(table)
        touch = site.webSocketActivity(self.request(site, RouteMatch(None, b"/", api=route)))
        site.reactor.advance(2)
        touch()
        self.assertEqual(table.lastActivity("/user/a"), 1002.0)
        self.assertIsNone(site.webSocketActivity(self.request(site, RouteMatch(None, b"/"))))
