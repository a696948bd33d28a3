"""
End-to-end tests of the admin listener inside the running server: metrics
that move with real traffic, C{POST /reload}, and routes added through
configurable-http-proxy's API served beside the config's routes, over
127.0.0.1 with real backends.
"""

import json
import os

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource

from proxyws.config import loadAndCheck
from proxyws.errors import ConfigError

from .helpers import freePort, rawRequest, startBackend
from .test_reload import ReloadTestCase
from .test_twistd import temporaryDirectory
from .wsbackends import EchoBackend, connectAutobahn, waitUntil

TOKEN = "admin-s3cret"


class PathEcho(Resource):
    """
    Answers every request with the target it was sent (path and query).
    """

    isLeaf = True

    def render(self, request):
        """
        @return: the request target.
        """
        request.setHeader(b"Content-Type", b"text/plain")
        return request.uri


def call(port, method, target, body=b"", token=TOKEN, headers=()):
    """
    One request on a fresh connection.

    @return: a L{Deferred} firing with C{(status, body)}.
    """
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    if token is not None:
        lines.append(b"Authorization: token " + token.encode("ascii"))
    if body:
        lines.append(b"Content-Type: application/json")
        lines.append(b"Content-Length: %d" % len(body))
    lines.extend(headers)
    data = b"\r\n".join(lines) + b"\r\n\r\n" + body

    def parse(raw):
        head, _, rest = raw.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), rest

    return rawRequest(port, data).addCallback(parse)


def samples(text):
    """
    The samples of a Prometheus exposition.

    @return: a L{dict} of C{(name, frozenset of label items)} to value.
    """
    found = {}
    for family in text_string_to_metric_families(text.decode("utf-8")):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def sample(found, name, **labels):
    """
    One sample's value, 0 when it is not there.
    """
    return found.get((name, frozenset(labels.items())), 0)


def adminTable(port, extra=""):
    """
    An C{[admin]} table on C{port} with the test token.
    """
    return '[admin]\naddress = "127.0.0.1"\nport = {}\ntoken_env = "PROXYWS_TEST_TOKEN"\n{}\n'.format(
        port, extra)


class AdminTestCase(ReloadTestCase):
    """
    A proxy with an admin listener, started from a config file.
    """

    def startWithAdmin(self, body, extra=""):
        """
        Start proxyws on C{body} (a config without its C{[admin]} table)
        with an admin listener.

        @return: C{(proxy port, admin port)}.
        """
        os.environ["PROXYWS_TEST_TOKEN"] = TOKEN
        self.addCleanup(os.environ.pop, "PROXYWS_TEST_TOKEN", None)
        self.adminPort = freePort()
        self.body = body
        port = self.startFrom(adminTable(self.adminPort, extra) + body)
        return port, self.adminPort

    @inlineCallbacks
    def metrics(self):
        """
        @return: a L{Deferred} firing with the samples of C{GET /metrics}.
        """
        status, body = yield call(self.adminPort, b"GET", b"/metrics")
        self.assertEqual(status, 200)
        return samples(body)


LISTEN = '[[listen]]\naddress = "127.0.0.1"\nport = 0\n\n'


class MetricsTests(AdminTestCase):
    """
    The metrics move as traffic flows through the proxy.
    """

    @inlineCallbacks
    def test_requests(self):
        """
        Answered requests count by route and status, with their durations;
        requests no route took count on C{none}; the admin listener's own
        requests are not counted.
        """
        _, backend = startBackend(self, PathEcho())
        self.startWithAdmin(
            LISTEN + '[[route]]\npath = "/app/"\nbackend = "http://127.0.0.1:{}/"\n'.format(backend))
        port = self.service.ports[0].getHost().port
        for _ in range(2):
            status, body = yield call(port, b"GET", b"/app/x?y=1", token=None)
            self.assertEqual((status, body), (200, b"/x?y=1"))
        status, _ = yield call(port, b"GET", b"/elsewhere", token=None)
        self.assertEqual(status, 404)
        found = yield self.metrics()
        self.assertEqual(sample(found, "proxyws_requests_total", route="route[0]", code="200"), 2)
        self.assertEqual(sample(found, "proxyws_requests_total", route="none", code="404"), 1)
        self.assertEqual(
            sample(found, "proxyws_request_duration_seconds_count", route="route[0]"), 2)
        self.assertEqual(
            sample(found, "proxyws_request_duration_seconds_bucket", route="route[0]", le="+Inf"), 2)

    @inlineCallbacks
    def test_webSockets(self):
        """
        An open websocket shows in the gauge, its messages and bytes count
        each way while it is open, and it counts as a 101 with its lifetime
        once closed.
        """
        echo = EchoBackend(self)
        self.startWithAdmin(LISTEN + '[[route]]\npath = "/ws/"\nbackend = "ws://127.0.0.1:{}/"\n'.format(
            echo.port))
        port = self.service.ports[0].getHost().port
        client = yield connectAutobahn(self, port, "/ws/echo")
        for n in range(3):
            client.sendMessage(b"message %d" % n)
            yield client.nextMessage()
        found = yield self.metrics()
        self.assertEqual(sample(found, "proxyws_websockets_open", route="route[0]"), 1)
        for direction in ("in", "out"):
            self.assertEqual(sample(found, "proxyws_websocket_messages_total", route="route[0]",
                                    direction=direction), 3)
            self.assertEqual(sample(found, "proxyws_websocket_bytes_total", route="route[0]",
                                    direction=direction), 27)
        client.sendClose(1000)
        yield client.closed.wait()
        yield waitUntil(lambda: not self.service.site.relays())
        found = yield self.metrics()
        self.assertEqual(sample(found, "proxyws_websockets_open", route="route[0]"), 0)
        self.assertEqual(sample(found, "proxyws_websocket_messages_total", route="route[0]",
                                direction="in"), 3)
        self.assertEqual(sample(found, "proxyws_websocket_duration_seconds_count", route="route[0]"), 1)
        self.assertEqual(sample(found, "proxyws_requests_total", route="route[0]", code="101"), 1)
        # The websocket's request is not among the HTTP durations.
        self.assertEqual(
            sample(found, "proxyws_request_duration_seconds_count", route="route[0]"), 0)

    @inlineCallbacks
    def test_backendErrors(self):
        """
        A backend that refuses connections counts as a C{connect} error of
        its route, for plain requests and websockets alike.
        """
        closed = freePort()
        self.startWithAdmin(
            LISTEN + '[[route]]\nname = "gone"\npath = "/"\nbackend = "http://127.0.0.1:{}/"\n'.format(
                closed))
        port = self.service.ports[0].getHost().port
        status, _ = yield call(port, b"GET", b"/x", token=None)
        self.assertEqual(status, 502)
        failed = yield connectAutobahn(self, port, "/ws").addErrback(lambda f: None)
        self.assertIsNone(failed)
        found = yield self.metrics()
        self.assertEqual(sample(found, "proxyws_backend_errors_total", route="gone", kind="connect"), 2)
        self.assertEqual(sample(found, "proxyws_requests_total", route="gone", code="502"), 2)

    @inlineCallbacks
    def test_upstreamMembers(self):
        """
        Each member of each upstream shows whether it is up and its open
        connections.
        """
        _, backend = startBackend(self, PathEcho())
        self.startWithAdmin(
            LISTEN
            + '[[upstream]]\nname = "pair"\nmembers = ["http://127.0.0.1:{}/", "http://127.0.0.1:{}/"]\n\n'
            .format(backend, freePort())
            + '[[route]]\npath = "/"\nupstream = "pair"\n')
        found = yield self.metrics()
        self.assertEqual(sample(found, "proxyws_upstream_member_up", upstream="pair",
                                member="http://127.0.0.1:{}/".format(backend)), 1)
        self.assertEqual(sample(found, "proxyws_upstream_member_connections", upstream="pair",
                                member="http://127.0.0.1:{}/".format(backend)), 0)


class ReloadEndpointTests(AdminTestCase):
    """
    C{POST /reload} reloads the server's config.
    """

    @inlineCallbacks
    def test_reloadAndCount(self):
        """
        A good config takes effect and is counted as a success; a bad one
        gets 409 with its problems, changes nothing, and counts as a
        failure.
        """
        _, one = startBackend(self, PathEcho())
        route = '[[route]]\npath = "{}"\nbackend = "http://127.0.0.1:%d/"\n' % one
        port, admin = self.startWithAdmin(LISTEN + route.format("/a/"))
        self.write(adminTable(admin) + LISTEN + route.format("/b/"))
        status, body = yield call(admin, b"POST", b"/reload")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["result"], "success")
        status, body = yield call(port, b"GET", b"/b/x", token=None)
        self.assertEqual((status, body), (200, b"/x"))
        self.write(adminTable(admin) + LISTEN + route.format("/c/") + "bogus = 1\n")
        status, body = yield call(admin, b"POST", b"/reload")
        self.assertEqual(status, 409)
        self.assertEqual(json.loads(body)["result"], "failure")
        status, _ = yield call(port, b"GET", b"/b/x", token=None)
        self.assertEqual(status, 200)
        found = yield self.metrics()
        self.assertEqual(sample(found, "proxyws_reloads_total", result="success"), 1)
        self.assertEqual(sample(found, "proxyws_reloads_total", result="failure"), 1)

    @inlineCallbacks
    def test_adminChangeRefused(self):
        """
        A reload that moves the admin listener is refused, saying that it
        takes a restart; the token may change.
        """
        _, one = startBackend(self, PathEcho())
        body = LISTEN + '[[route]]\npath = "/"\nbackend = "http://127.0.0.1:{}/"\n'.format(one)
        _, admin = self.startWithAdmin(body)
        self.write(adminTable(freePort()) + body)
        result = yield self.service.reload()
        self.assertFalse(result.succeeded)
        self.assertEqual(
            [problem.split(": ", 1)[1] for problem in result.problems],
            ["admin: the admin listener and its route store change only on a restart (its "
             "token_env may change on a reload); restore the [admin] table or restart proxyws"])
        os.environ["PROXYWS_TEST_TOKEN"] = "another"
        self.write(adminTable(admin) + body)
        result = yield self.service.reload()
        self.assertTrue(result.succeeded, result.problems)
        status, _ = yield call(admin, b"GET", b"/status")
        self.assertEqual(status, 403)
        status, _ = yield call(admin, b"GET", b"/status", token="another")
        self.assertEqual(status, 200)


class APIRouteTests(AdminTestCase):
    """
    Routes added through the API are served beside the config's.
    """

    @inlineCallbacks
    def test_precedence(self):
        """
        An API route is tried before the config's routes, the API's root
        route after them; the whole request path goes to the target, its
        own path in front.
        """
        _, config = startBackend(self, PathEcho())
        _, api = startBackend(self, PathEcho())
        port, admin = self.startWithAdmin(
            LISTEN + '[[route]]\npath = "/hub/"\nbackend = "http://127.0.0.1:{}/config/"\n'.format(config))
        target = json.dumps({"target": "http://127.0.0.1:{}/base".format(api), "user": "alice"})
        status, _ = yield call(admin, b"POST", b"/api/routes/user/alice", target.encode())
        self.assertEqual(status, 201)
        root = json.dumps({"target": "http://127.0.0.1:{}/root".format(api)})
        status, _ = yield call(admin, b"POST", b"/api/routes/", root.encode())
        self.assertEqual(status, 201)
        for path, expected in [
            (b"/user/alice/tree?a=1", b"/base/user/alice/tree?a=1"),
            (b"/user/alice", b"/base/user/alice"),
            (b"/user/alicex", b"/root/user/alicex"),
            (b"/hub/login", b"/config/login"),
            (b"/other", b"/root/other"),
        ]:
            status, body = yield call(port, b"GET", path, token=None)
            self.assertEqual((status, body), (200, expected), path)
        status, _ = yield call(admin, b"DELETE", b"/api/routes/user/alice")
        self.assertEqual(status, 204)
        status, body = yield call(port, b"GET", b"/user/alice/tree", token=None)
        self.assertEqual((status, body), (200, b"/root/user/alice/tree"))
        found = yield self.metrics()
        self.assertEqual(sample(found, "proxyws_api_routes"), 1)
        self.assertEqual(sample(found, "proxyws_requests_total", route="api", code="200"), 5)

    @inlineCallbacks
    def test_webSocketAndActivity(self):
        """
        A websocket goes through an API route; its messages move the
        route's last activity, as finished requests do.
        """
        echo = EchoBackend(self)
        port, admin = self.startWithAdmin(LISTEN)
        target = json.dumps({"target": "http://127.0.0.1:{}".format(echo.port)})
        status, _ = yield call(admin, b"POST", b"/api/routes/ws", target.encode())
        self.assertEqual(status, 201)
        client = yield connectAutobahn(self, port, "/ws/echo")
        table = self.service.store.table
        added = table.lastActivity("/ws")
        # Times as the API shows them: after the route was added.
        self.service._reactor.callLater(0, lambda: None)
        yield waitUntil(lambda: self.service._reactor.seconds() > added + 0.01)
        client.sendMessage(b"ping")
        message = yield client.nextMessage()
        self.assertEqual(message, (b"ping", False))
        self.assertGreater(table.lastActivity("/ws"), added)
        status, body = yield call(admin, b"GET", b"/api/routes")
        self.assertEqual(status, 200)
        self.assertEqual(list(json.loads(body)), ["/ws"])

    @inlineCallbacks
    def test_reloadKeepsAPIRoutes(self):
        """
        A reload keeps the routes added through the API.
        """
        _, api = startBackend(self, PathEcho())
        port, admin = self.startWithAdmin(LISTEN)
        target = json.dumps({"target": "http://127.0.0.1:{}".format(api)})
        yield call(admin, b"POST", b"/api/routes/kept", target.encode())
        self.write(adminTable(admin) + LISTEN + '[server]\nreload_grace = 5\n')
        result = yield self.service.reload()
        self.assertTrue(result.succeeded, result.problems)
        status, body = yield call(port, b"GET", b"/kept/x", token=None)
        self.assertEqual((status, body), (200, b"/kept/x"))


class ConfigTests(TestCase):
    """
    What the whole config says about C{[admin]} beyond its keys.
    """

    def check(self, text, files=()):
        """
        @return: the problems of a config file holding C{text}.
        """
        directory = temporaryDirectory(self)
        for name, data in files:
            with open(os.path.join(directory, name), "wb") as f:
                f.write(data)
        path = os.path.join(directory, "proxy.toml")
        with open(path, "w") as f:
            f.write(text)
        with self.assertRaises(ConfigError) as caught:
            loadAndCheck(path)
        return [str(p).split(": ", 1)[1] for p in caught.exception.problems]

    def test_workers(self):
        """
        The admin listener needs one process.
        """
        problems = self.check(
            '[server]\nworkers = 2\n[admin]\nport = 8001\n' + LISTEN
            + '[[route]]\npath = "/"\nbackend = "http://127.0.0.1:9/"\n')
        self.assertEqual(problems, [
            "admin: the admin listener needs workers = 1 (its metrics and the routes added "
            "through its API live in one process); remove [admin] or set server.workers = 1, "
            "and run more instances on a shared Redis route store"])

    def test_badRouteFile(self):
        """
        A route file that is not one stops start-up (and C{proxyws check}).
        """
        problems = self.check(
            '[admin]\nport = 8001\nroute_store = "file"\nroute_store_file = "routes.json"\n'
            + LISTEN + '[[route]]\npath = "/"\nbackend = "http://127.0.0.1:9/"\n',
            files=[("routes.json", b"[1, 2]")])
        self.assertEqual(len(problems), 1)
        self.assertRegex(problems[0], r"^admin\.route_store_file: '.*routes\.json' is not a "
                                      r"route file \(no \"routes\" table\); fix or remove it$")

    def test_routeNames(self):
        """
        A route's name labels its metrics: it is a short word, not one of
        the labels proxyws uses itself, and no other route's.
        """
        route = '[[route]]\nname = {}\npath = "/{}/"\nbackend = "http://127.0.0.1:9/"\n'
        problems = self.check(
            LISTEN + route.format('"app"', "a") + route.format('"app"', "b")
            + route.format('"api"', "c") + route.format('"has space"', "d"))
        rule = ("is not a name of up to 64 letters, digits, '_', '.' and '-' that starts "
                "with a letter, other than 'none' and 'api'")
        self.assertEqual(problems, [
            "route[1].name: 'app' is already the name of route[0]",
            "route[2].name: 'api' " + rule,
            "route[3].name: 'has space' " + rule,
        ])


class APIRouterTests(TestCase):
    """
    The order in which API routes and config routes are tried, without
    sockets.
    """

    def setUp(self):
        from proxyws.apiroutes import APIRouteTable
        from proxyws.apirouting import APIRouter
        from proxyws.config import parseConfig

        config = parseConfig(
            LISTEN + '[[route]]\npath = "/hub/"\nbackend = "http://127.0.0.1:9/"\n', "t.toml")
        from proxyws.routing import Router

        self.table = APIRouteTable(server=config.server)
        self.router = APIRouter(Router(config.routes), self.table)

    def test_order(self):
        """
        API routes other than the root first, then the config's, then the
        API's root; with no API route, the config's router alone.
        """
        self.assertEqual(self.router.route(b"h", b"/hub/x").target, b"/x")
        self.assertIsNone(self.router.route(b"h", b"/x"))
        self.table.add("/", {"target": "http://127.0.0.1:1/root"}, 0)
        self.table.add("/hub/alice", {"target": "http://127.0.0.1:2"}, 0)
        for path, target, api in [
            (b"/hub/alice/lab?x", b"/hub/alice/lab?x", "/hub/alice"),
            (b"/hub/bob", b"/bob", None),
            (b"/x", b"/root/x", "/"),
        ]:
            found = self.router.route(b"h", path)
            self.assertEqual(found.target, target, path)
            self.assertEqual(found.api and found.api.prefix, api, path)
            self.assertEqual(found.route.index is None, api is not None, path)

    def test_handlersCached(self):
        """
        A route's handlers are made once; those of removed routes are
        dropped once the cache outgrows the table.
        """
        from proxyws.apirouting import APIHandlers

        made = []
        handlers = APIHandlers(self.table, lambda r: made.append(r) or ("http", r),
                               lambda r: ("ws", r))
        route = self.table.add("/a", {"target": "http://127.0.0.1:2"}, 0)
        self.assertIs(handlers(route)[0], handlers(route)[0])
        self.assertEqual(len(made), 1)
        for n in range(APIHandlers.SLACK + 10):
            handlers(self.table.add("/b", {"target": "http://127.0.0.1:%d" % (n + 3)}, 0))
        self.assertLessEqual(len(handlers._cache), APIHandlers.SLACK + 3)
        self.assertIs(handlers(route)[0], handlers(route)[0])


class StopTests(AdminTestCase):
    """
    A graceful stop with an admin listener.
    """

    @inlineCallbacks
    def test_hungStoreDoesNotHoldTheStop(self):
        """
        A route store that never says it stopped (a Redis that hangs) is
        given a short while, and the stop completes.
        """
        from twisted.internet.defer import Deferred

        from proxyws import service as serviceModule

        self.patch(serviceModule, "STORE_STOP_TIMEOUT", 0.1)
        self.startWithAdmin(LISTEN)
        hung = Deferred()
        self.patch(self.service.store, "stop", lambda: hung)
        yield self.service.stopService()
        self.assertFalse(self.service.admin.port.connected)
        self.assertTrue(hung.called)
