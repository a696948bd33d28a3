"""
Tests for L{proxyws.apiroutes} (the pure table of API routes) and
L{proxyws.chpapi} (configurable-http-proxy's REST API), case by case
against configurable-http-proxy's documented behaviour.
"""

import json
from datetime import datetime, timezone

from twisted.internet.defer import fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from proxyws.admin import AdminResource
from proxyws.apiroutes import (
    APIRouteTable, cleanPrefix, decodePrefix, formatTime, parseTime)
from proxyws.errors import InvalidRoute, RouteStoreError
from proxyws.routestore import MemoryRouteStore
from proxyws.routing import backendTarget
from proxyws.values import ServerSettings

from .adminhelpers import FakeServer, makeRequest, render

# 2026-11-26T04:07:00Z, seconds since the epoch.
NOW = datetime(2026, 11, 26, 4, 7, tzinfo=timezone.utc).timestamp()
HOUR = 3600.0

SERVER = ServerSettings(
    accessLog="-", workers=1, clientTimeout=75.0, shutdownTimeout=30.0, connectTimeout=7.0,
    responseTimeout=8.0, readTimeout=9.0, backendKeepalive=32, backendIdleTimeout=60.0,
    backendMaxConnections=0)


def table(routes, hostRouting=False):
    """
    A table holding C{routes} (prefix to target), all active at L{NOW}.
    """
    made = APIRouteTable(hostRouting=hostRouting)
    for prefix, target in routes.items():
        made.add(prefix, {"target": target}, NOW)
    return made


class CleanPrefixTests(SynchronousTestCase):
    """
    Prefixes are cleaned as configurable-http-proxy's C{trimPrefix} does.
    """

    def test_table(self):
        """
        A leading slash is added, trailing slashes go, the root stays C{/}.
        """
        for given, cleaned in [
            ("", "/"), ("/", "/"), ("//", "/"), ("foo", "/foo"), ("/foo/", "/foo"),
            ("/foo//", "/foo"), ("/user/alice", "/user/alice"),
            ("example.com/path/", "/example.com/path"),
        ]:
            self.assertEqual(cleanPrefix(given), cleaned, given)

    def test_decode(self):
        """
        The prefix in an API URL is percent-decoded (C{decodeURIComponent}).
        """
        self.assertEqual(decodePrefix(b"/user/foo%40bar/"), "/user/foo@bar")
        self.assertEqual(decodePrefix(b"/user/%C3%A9"), "/user/\u00e9")
        self.assertRaises(InvalidRoute, decodePrefix, b"/user/%FF")


class LookupTests(SynchronousTestCase):
    """
    The longest prefix covering a request wins, segment by segment.
    """

    routes = {
        "/": "http://127.0.0.1:8081",
        "/user/alice": "http://127.0.0.1:9001",
        "/user/alice/lab": "http://127.0.0.1:9002",
        "/user/a b": "http://127.0.0.1:9003",
    }

    def test_table(self):
        """
        Request path to the matched prefix.
        """
        routes = table(self.routes)
        for path, prefix in [
            (b"/", "/"),
            (b"/hub/login", "/"),
            (b"/user/alice", "/user/alice"),
            (b"/user/alice/", "/user/alice"),
            (b"/user/alice/tree", "/user/alice"),
            (b"/user/alicexyz", "/"),
            (b"/user/alice/lab", "/user/alice/lab"),
            (b"/user/alice/lab/", "/user/alice/lab"),
            (b"/user/alice/laboratory", "/user/alice"),
            (b"/user/a%20b/api", "/user/a b"),
            (b"/user/%61lice/x", "/user/alice"),
        ]:
            self.assertEqual(routes.lookup(None, path).prefix, prefix, path)

    def test_noRoot(self):
        """
        Without a root route, a path no prefix covers has no match.
        """
        routes = table({"/user/alice": "http://127.0.0.1:9001"})
        self.assertIsNone(routes.lookup(None, b"/"))
        self.assertIsNone(routes.lookup(None, b"/user/bob"))
        self.assertIsNone(APIRouteTable().lookup(None, b"/"))

    def test_isRoot(self):
        """
        L{APIMatch.isRoot} tells the root route (CHP's default target).
        """
        routes = table(self.routes)
        self.assertTrue(routes.lookup(None, b"/hub/").isRoot)
        self.assertFalse(routes.lookup(None, b"/user/alice").isRoot)

    def test_targets(self):
        """
        The whole request path goes to the target, the target's own path
        in front of it; the query follows.
        """
        for target, path, query, sent in [
            ("http://127.0.0.1:9001", b"/user/alice/tree", None, b"/user/alice/tree"),
            ("http://127.0.0.1:9001/", b"/user/alice/tree", None, b"/user/alice/tree"),
            ("http://127.0.0.1:9001/base", b"/user/alice/x", b"a=1", b"/base/user/alice/x?a=1"),
            ("http://127.0.0.1:9001/base/", b"/user/alice", b"", b"/base/user/alice?"),
            ("http://127.0.0.1:9001", b"/user/a%20b/x", None, b"/user/a%20b/x"),
        ]:
            routes = table({"/user": target})
            self.assertEqual(routes.lookup(None, path, query).target, sent, (target, path))

    def test_serverRoute(self):
        """
        With server settings, each API route carries a config L{Route}
        that sends the whole path (an empty prefix), keeps the client's
        C{Host} (as CHP does), and takes the server's timeouts.
        """
        routes = APIRouteTable(server=SERVER)
        routes.add("/user/alice", {"target": "http://127.0.0.1:9001/base/"}, NOW)
        match = routes.lookup(None, b"/user/alice/x", b"q=1")
        route = match.route.route
        self.assertEqual(backendTarget(route, b"/user/alice/x", b"q=1"), match.target)
        self.assertEqual(route.backend.url, "http://127.0.0.1:9001/base/")
        self.assertTrue(route.preserveHost)
        self.assertEqual((route.connectTimeout, route.responseTimeout, route.readTimeout),
                         (7.0, 8.0, 9.0))
        self.assertIsNone(route.index)

    def test_hostRouting(self):
        """
        With host routing, a prefix starts with a host name, matched
        without its port and regardless of case; the root route covers
        every host.
        """
        routes = table({
            "/": "http://127.0.0.1:8081",
            "/alice.example.com": "http://127.0.0.1:9001",
            "/Bob.Example.com/user/bob": "http://127.0.0.1:9002",
        }, hostRouting=True)
        for host, path, prefix in [
            (b"alice.example.com", b"/", "/alice.example.com"),
            (b"alice.example.com:8000", b"/tree", "/alice.example.com"),
            (b"ALICE.example.com", b"/tree", "/alice.example.com"),
            (b"bob.example.com", b"/user/bob/api", "/Bob.Example.com/user/bob"),
            (b"bob.example.com", b"/other", "/"),
            (b"carol.example.com", b"/", "/"),
            (None, b"/x", "/"),
        ]:
            self.assertEqual(routes.lookup(host, path).prefix, prefix, (host, path))
        self.assertEqual(routes.lookup(b"alice.example.com", b"/tree").target, b"/tree")

    def test_hostRoutingData(self):
        """
        With host routing the data of a route gets its C{host}, as CHP
        adds it.
        """
        routes = table({"/alice.example.com/x": "http://127.0.0.1:1", "/": "http://127.0.0.1:2"},
                       hostRouting=True)
        self.assertEqual(routes.get("/alice.example.com/x").data["host"], "alice.example.com")
        self.assertNotIn("host", routes.get("/").data)


class TableTests(SynchronousTestCase):
    """
    Adding, replacing and removing routes, and their last activity.
    """

    def test_invalidTargets(self):
        """
        A target must be a URL proxyws can send requests to.
        """
        routes = APIRouteTable()
        for target, message in [
            (None, "Must specify 'target' as string"),
            (8000, "Must specify 'target' as string"),
            ("127.0.0.1:8000", "target: '127.0.0.1:8000' is not a URL with scheme http, "
             "https, ws or wss"),
            ("ftp://x/", "target: 'ftp://x/' is not a URL with scheme http, https, ws or wss"),
            ("http://x/?a=1", "target: 'http://x/?a=1' may not hold a query"),
        ]:
            error = self.assertRaises(InvalidRoute, routes.add, "/a", {"target": target}, NOW)
            self.assertEqual(error.message, message)
        self.assertEqual(len(routes), 0)

    def test_replace(self):
        """
        Adding a prefix again replaces its route and its activity.
        """
        routes = table({"/a": "http://127.0.0.1:1"})
        routes.add("/a/", {"target": "http://127.0.0.1:2", "x": 1}, NOW + 5)
        self.assertEqual(len(routes), 1)
        self.assertEqual(routes.lookup(None, b"/a/b").route.target, "http://127.0.0.1:2")
        self.assertEqual(routes.lastActivity("/a"), NOW + 5)

    def test_remove(self):
        """
        Removing a prefix removes its route; removing it again says so.
        """
        routes = table({"/a": "http://127.0.0.1:1", "/": "http://127.0.0.1:2"})
        self.assertTrue(routes.remove("/a/"))
        self.assertFalse(routes.remove("/a"))
        self.assertEqual(routes.lookup(None, b"/a/b").prefix, "/")
        self.assertTrue(routes.remove("/"))
        self.assertIsNone(routes.lookup(None, b"/a/b"))

    def test_touch(self):
        """
        L{APIRouteTable.touch} records a later activity, seen at once and
        handed to the store by L{APIRouteTable.takeRecent}.
        """
        routes = table({"/a": "http://127.0.0.1:1"})
        routes.touch("/a", NOW + 10)
        self.assertEqual(routes.lastActivity("/a"), NOW + 10)
        self.assertEqual(routes.takeRecent(), {"/a": NOW + 10})
        self.assertEqual(routes.takeRecent(), {})
        self.assertEqual(routes.lastActivity("/a"), NOW + 10)

    def test_touchRemoved(self):
        """
        Activity recorded on a route removed since is not handed on.
        """
        routes = table({"/a": "http://127.0.0.1:1"})
        routes.touch("/a", NOW + 10)
        routes.remove("/a")
        self.assertEqual(routes.takeRecent(), {})

    def test_requestDone(self):
        """
        A finished request is activity when its status is below 300 (CHP
        does not count redirects and errors).
        """
        for code, active in [(200, True), (204, True), (101, True), (299, True), (301, False),
                             (404, False), (503, False)]:
            routes = table({"/a": "http://127.0.0.1:1"})
            routes.requestDone("/a", code, NOW + 10)
            self.assertEqual(routes.lastActivity("/a"), NOW + 10 if active else NOW, code)

    def test_mergeActivity(self):
        """
        Merged times keep the later one, for known routes only.
        """
        routes = table({"/a": "http://127.0.0.1:1", "/b": "http://127.0.0.1:1"})
        routes.mergeActivity({"/a": NOW + 1, "/b": NOW - 1, "/c": NOW + 1})
        self.assertEqual(routes.activity(), {"/a": NOW + 1, "/b": NOW})

    def test_times(self):
        """
        Times are shown as JavaScript's C{toISOString} shows them, and
        ISO-8601 times are read with or without offset (UTC without).
        """
        self.assertEqual(formatTime(NOW + 0.1234), "2026-11-26T04:07:00.123Z")
        self.assertEqual(formatTime(0), "1970-01-01T00:00:00.000Z")
        for text in ["2026-11-26T04:07:00.000Z", "2026-11-26T04:07:00Z",
                     "2026-11-26T04:07:00", "2026-11-26T05:07:00+01:00",
                     "2026-11-26T04:07:00.000000+00:00"]:
            self.assertEqual(parseTime(text), NOW, text)
        self.assertEqual(parseTime("2026-11-26"), NOW - (4 * 60 + 7) * 60)
        for bad in ["endoftheuniverse", "", "26/11/2026"]:
            self.assertRaises(ValueError, parseTime, bad)


class APITestsMixin:
    """
    Helpers for requests to the API of an admin resource over a memory
    store, on a clock at L{NOW}.
    """

    token = None
    hostRouting = False

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = MemoryRouteStore(APIRouteTable(hostRouting=self.hostRouting), self.clock)
        self.resource = AdminResource(FakeServer(), store=self.store, token=self.token)

    def call(self, method, target, body=None, headers=None):
        """
        Send a request and return the L{Answer}.
        """
        if isinstance(body, (dict, list)) or body is None and method == b"POST":
            body = json.dumps(body if body is not None else {}).encode()
        if headers is None:
            headers = [(b"Authorization", b"token " + self.token.encode())] if self.token else []
        return self.successResultOf(
            render(self.resource, makeRequest(method, target, body or b"", headers)))

    def routes(self, target=b"/api/routes"):
        """
        GET the table; check it is JSON and return it.
        """
        answer = self.call(b"GET", target)
        self.assertEqual(answer.code, 200)
        self.assertEqual(answer.header(b"Content-Type"), b"application/json")
        return json.loads(answer.body)


class APITests(APITestsMixin, SynchronousTestCase):
    """
    configurable-http-proxy's REST API, case by case.
    """

    def test_emptyTable(self):
        """
        C{GET /api/routes} on an empty table is C{{}}.
        """
        self.assertEqual(self.routes(), {})
        self.assertEqual(self.routes(b"/api/routes/"), {})

    def test_post(self):
        """
        C{POST /api/routes/PREFIX} adds a route: 201 with an empty body;
        it is shown with its target and C{last_activity}.
        """
        answer = self.call(b"POST", b"/api/routes/user/foo", {"target": "http://127.0.0.1:8998"})
        self.assertEqual((answer.code, answer.body), (201, b""))
        self.assertEqual(self.routes(), {"/user/foo": {
            "target": "http://127.0.0.1:8998", "last_activity": "2026-11-26T04:07:00.000Z"}})
        match = self.store.table.lookup(None, b"/user/foo/api/kernels")
        self.assertEqual((match.prefix, match.target), ("/user/foo", b"/user/foo/api/kernels"))

    def test_postRoot(self):
        """
        C{POST /api/routes} adds the root route.
        """
        self.assertEqual(self.call(b"POST", b"/api/routes", {"target": "http://127.0.0.1:1"}).code,
                         201)
        self.assertEqual(list(self.routes()), ["/"])

    def test_postEscapes(self):
        """
        The prefix in the URL is percent-decoded, and matched against
        decoded request paths.
        """
        self.call(b"POST", b"/api/routes/user/foo%40bar", {"target": "http://127.0.0.1:1"})
        self.assertEqual(list(self.routes()), ["/user/foo@bar"])
        self.assertEqual(self.store.table.lookup(None, b"/user/foo%40bar/x").prefix,
                         "/user/foo@bar")

    def test_trailingSlashes(self):
        """
        Trailing slashes do not matter when adding, getting or deleting.
        """
        self.call(b"POST", b"/api/routes/user/foo/", {"target": "http://127.0.0.1:1"})
        self.assertEqual(list(self.routes()), ["/user/foo"])
        self.assertEqual(self.call(b"GET", b"/api/routes/user/foo/").code, 200)
        self.assertEqual(self.call(b"GET", b"/api/routes/user/foo").code, 200)
        self.assertEqual(self.call(b"DELETE", b"/api/routes/user/foo/").code, 204)
        self.assertEqual(self.routes(), {})

    def test_dataRoundTrip(self):
        """
        Everything posted with the target comes back as it was, as
        JupyterHub stores its data; a posted C{last_activity} is replaced.
        """
        data = {"target": "http://127.0.0.1:1", "jupyterhub": True, "user": "alice",
                "server_name": "", "extra": {"list": [1, "two", None], "n": 1.5}}
        self.call(b"POST", b"/api/routes/user/alice",
                  dict(data, last_activity="2000-01-01T00:00:00.000Z"))
        self.assertEqual(self.routes()["/user/alice"],
                         dict(data, last_activity="2026-11-26T04:07:00.000Z"))

    def test_getOne(self):
        """
        C{GET /api/routes/PREFIX} is that route's data; an unknown prefix is
        404 with an empty body, even one a longer route would cover.
        """
        self.call(b"POST", b"/api/routes/user/foo", {"target": "http://127.0.0.1:1", "a": 1})
        answer = self.call(b"GET", b"/api/routes/user/foo")
        self.assertEqual(json.loads(answer.body), {
            "target": "http://127.0.0.1:1", "a": 1, "last_activity": "2026-11-26T04:07:00.000Z"})
        for target in [b"/api/routes/user", b"/api/routes/user/foo/bar", b"/api/routes/nope"]:
            answer = self.call(b"GET", target)
            self.assertEqual((answer.code, answer.body), (404, b""), target)

    def test_delete(self):
        """
        C{DELETE} is 204 with an empty body for a route that exists, and 404
        for one that does not.
        """
        self.call(b"POST", b"/api/routes/user/foo", {"target": "http://127.0.0.1:1"})
        answer = self.call(b"DELETE", b"/api/routes/user/foo")
        self.assertEqual((answer.code, answer.body), (204, b""))
        self.assertIsNone(self.store.table.lookup(None, b"/user/foo"))
        answer = self.call(b"DELETE", b"/api/routes/user/foo")
        self.assertEqual((answer.code, answer.body), (404, b""))

    def test_badBodies(self):
        """
        A body that is not JSON, or JSON without a string C{target}, is 400
        with CHP's texts; a target proxyws cannot use is 400 and says why.
        """
        for body, text in [
            (b"", "Body not valid JSON: Expecting value: line 1 column 1 (char 0)"),
            (b"{target:", "Body not valid JSON: Expecting property name enclosed in double "
             "quotes: line 1 column 2 (char 1)"),
            (b"null", "Must specify 'target' as string"),
            (b"[]", "Must specify 'target' as string"),
            (b"{}", "Must specify 'target' as string"),
            (b'{"target": 8000}', "Must specify 'target' as string"),
            (b'{"target": "localhost:8000"}',
             "target: 'localhost:8000' is not a URL with scheme http, https, ws or wss"),
        ]:
            answer = self.call(b"POST", b"/api/routes/a", body)
            self.assertEqual((answer.code, answer.body.decode()), (400, text), body)
        self.assertEqual(self.routes(), {})

    def test_inactiveSince(self):
        """
        C{?inactive_since=} keeps the routes last active before that time
        (CHP's own test: yesterday's route, today's route).
        """
        self.call(b"POST", b"/api/routes/today", {"target": "http://127.0.0.1:1"})
        self.call(b"POST", b"/api/routes/yesterday", {"target": "http://127.0.0.1:1"})
        self.store.table.put(self.store.table.get("/yesterday"), NOW - 24 * HOUR)
        for since, expected in [
            (1.0, []),
            (NOW - HOUR, ["/yesterday"]),
            (NOW + HOUR, ["/today", "/yesterday"]),
            (NOW, ["/yesterday"]),
        ]:
            for name in (b"inactive_since", b"inactiveSince"):
                target = b"/api/routes?" + name + b"=" + formatTime(since).encode()
                self.assertEqual(sorted(self.routes(target)), expected, (since, name))

    def test_inactiveSinceTouched(self):
        """
        Activity the proxy recorded counts at once.
        """
        self.call(b"POST", b"/api/routes/user/a", {"target": "http://127.0.0.1:1"})
        self.store.table.touch("/user/a", NOW + 60)
        target = b"/api/routes?inactive_since=" + formatTime(NOW + 30).encode()
        self.assertEqual(self.routes(target), {})

    def test_inactiveSinceBad(self):
        """
        A time that is not ISO-8601 is 400, with CHP's text.
        """
        answer = self.call(b"GET", b"/api/routes?inactive_since=endoftheuniverse")
        self.assertEqual((answer.code, answer.body),
                         (400, b"Invalid datestamp 'endoftheuniverse' must be ISO8601."))

    def test_otherMethods(self):
        """
        Another method on C{/api/routes} is 405; another path under C{/api}
        is 404.
        """
        for method in (b"PUT", b"PATCH", b"OPTIONS"):
            answer = self.call(method, b"/api/routes/a", b"")
            self.assertEqual((answer.code, answer.body), (405, b"Method not supported"))
        for target in (b"/api", b"/api/", b"/api/routesx", b"/api/labels"):
            self.assertEqual(self.call(b"GET", target).code, 404, target)

    def test_storeUnavailable(self):
        """
        A change the store cannot keep is 503 (which JupyterHub retries),
        and says why.
        """
        self.store.add = lambda prefix, data: fail(RouteStoreError("Redis is away"))
        answer = self.call(b"POST", b"/api/routes/a", {"target": "http://127.0.0.1:1"})
        self.assertEqual((answer.code, answer.body), (503, b"Redis is away"))
        self.store.remove = lambda prefix: fail(RouteStoreError("Redis is away"))
        self.assertEqual(self.call(b"DELETE", b"/api/routes/a").code, 503)

    def test_bodyTooLarge(self):
        """
        A body over a MiB is refused with 413.
        """
        answer = self.call(b"POST", b"/api/routes/a", b" " * (1024 * 1024 + 1))
        self.assertEqual(answer.code, 413)


class HostRoutingAPITests(APITestsMixin, SynchronousTestCase):
    """
    The API with C{host_routing = true}: prefixes start with a host name.
    """

    hostRouting = True

    def test_hostRoute(self):
        """
        A host route is added, shown with its C{host}, and serves requests
        for that host.
        """
        self.call(b"POST", b"/api/routes/alice.example.com/user/alice",
                  {"target": "http://127.0.0.1:1"})
        self.assertEqual(self.routes(), {"/alice.example.com/user/alice": {
            "target": "http://127.0.0.1:1", "host": "alice.example.com",
            "last_activity": "2026-11-26T04:07:00.000Z"}})
        self.assertEqual(
            self.store.table.lookup(b"alice.example.com", b"/user/alice/x").target,
            b"/user/alice/x")
        self.assertIsNone(self.store.table.lookup(b"bob.example.com", b"/user/alice/x"))


class APIAuthorizationTests(APITestsMixin, SynchronousTestCase):
    """
    With a token, every API request without it, or with another, is 403
    with an empty body, as configurable-http-proxy answers.
    """

    token = "s3cret-token"

    def test_refused(self):
        """
        No C{Authorization}, a wrong token, or a scheme that carries no
        token: 403 with an empty body, before the body is looked at.
        """
        for headers in [[], [(b"Authorization", b"token wrong")],
                        [(b"Authorization", b"Basic czNjcmV0LXRva2Vu")],
                        [(b"Authorization", b"token")],
                        [(b"Authorization", b"token s3cret-token-and-more")]]:
            for method, target in [(b"GET", b"/api/routes"), (b"POST", b"/api/routes/a"),
                                   (b"DELETE", b"/api/routes/a"), (b"GET", b"/api/nothing")]:
                answer = self.call(method, target, b"{bad json", headers=headers)
                self.assertEqual((answer.code, answer.body), (403, b""), (headers, target))
        self.assertEqual(len(self.store.table), 0)

    def test_accepted(self):
        """
        C{token VALUE} (as JupyterHub sends it) and C{Bearer VALUE} are
        both accepted, the scheme in any case.
        """
        for header in [b"token s3cret-token", b"Bearer s3cret-token", b"TOKEN  s3cret-token"]:
            answer = self.call(b"GET", b"/api/routes", headers=[(b"Authorization", header)])
            self.assertEqual(answer.code, 200, header)
