"""
Tests for L{proxyws.admin} (the admin listener) and the C{[admin]} table of
the config.
"""

import json
import os
import socket

from twisted.internet.defer import inlineCallbacks, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from zope.interface.verify import verifyObject

from proxyws import __version__
from proxyws.admin import (
    AdminResource, ReloadResult, adminService, authorization, combinedState, credentials)
from proxyws.apiroutes import APIRouteTable
from proxyws.config import ADMIN_KEYS, AdminSettings, parseConfig
from proxyws.errors import ConfigError
from proxyws.interfaces import IServerStatus
from proxyws.metrics import Metrics
from proxyws.routestore import MemoryRouteStore
from proxyws.values import AdminSettings as ValuesAdminSettings

from .adminhelpers import FakeServer, makeRequest, render

LISTEN = '[[listen]]\naddress = "127.0.0.1"\nport = 8080\n'
ADMIN_KNOWN = ", ".join(sorted(ADMIN_KEYS))


def admin(*lines, environ=None):
    """
    Parse a config with an C{[admin]} table of C{lines}.

    @return: its L{AdminSettings}.
    """
    text = LISTEN + "[admin]\n" + "\n".join(lines) + "\n"
    return parseConfig(text, "/etc/proxyws/p.toml").admin


class ConfigTests(SynchronousTestCase):
    """
    The C{[admin]} table: values, defaults and the exact text of its errors.
    """

    def setUp(self):
        self.patch(os, "environ", {"HUB_TOKEN": "s3cret"})

    def error(self, *lines):
        """
        The text of the config error for an C{[admin]} table of C{lines}.
        """
        return str(self.assertRaises(ConfigError, admin, *lines))

    def test_absent(self):
        """
        Without C{[admin]} there is no admin listener.
        """
        self.assertIsNone(parseConfig(LISTEN, "p.toml").admin)

    def test_defaults(self):
        """
        Only the port is required; the rest has defaults.
        """
        self.assertEqual(admin("port = 8001"), ValuesAdminSettings(
            address="127.0.0.1", port=8001, tokenEnv=None, token=None, routeStore="memory",
            routeStoreFile=None, redisURL="redis://127.0.0.1:6379/0", redisKeyPrefix="proxyws",
            hostRouting=False, activityInterval=5.0))
        self.assertIs(AdminSettings, ValuesAdminSettings)

    def test_values(self):
        """
        Every key, with the token read from the environment and the file
        resolved against the config's folder.
        """
        settings = admin('address = "::1"', "port = 8001", 'token_env = "HUB_TOKEN"',
                         'route_store = "file"', 'route_store_file = "routes.json"',
                         "host_routing = true", "activity_interval = 2")
        self.assertEqual((settings.address, settings.port, settings.tokenEnv, settings.token,
                          settings.routeStore, settings.routeStoreFile, settings.hostRouting,
                          settings.activityInterval),
                         ("::1", 8001, "HUB_TOKEN", "s3cret", "file",
                          "/etc/proxyws/routes.json", True, 2.0))
        self.assertNotIn("s3cret", repr(settings))
        redis = admin("port = 8001", 'route_store = "redis"',
                      'redis_url = "redis://:pw@10.0.0.5:6380/2"', 'redis_key_prefix = "hub1"')
        self.assertEqual((redis.redisURL, redis.redisKeyPrefix),
                         ("redis://:pw@10.0.0.5:6380/2", "hub1"))

    def test_errors(self):
        """
        Each mistake is named with its key, its value and what was expected.
        """
        for lines, text in [
            ((), "admin.port: is required and missing"),
            (("port = 70000",), "admin.port: 70000 is not a port number from 0 to 65535"),
            (("port = 8001", 'address = "localhost"'),
             "admin.address: 'localhost' is not an IPv4 or IPv6 address such as '127.0.0.1' "
             "or '::'"),
            (("port = 8001", 'token_env = "NOT_SET"'),
             "admin.token_env: the environment variable 'NOT_SET' is not set (or empty); set "
             "it to the token API clients send, or remove token_env"),
            (("port = 8001", 'token_env = "A-B"'),
             "admin.token_env: 'A-B' is not the name of an environment variable, such as "
             "'CONFIGPROXY_AUTH_TOKEN'"),
            (("port = 8001", 'route_store = "etcd"'),
             "admin.route_store: 'etcd' is not one of 'memory', 'file', 'redis'"),
            (("port = 8001", 'route_store = "file"'),
             "admin.route_store_file: is required with route_store = 'file': the JSON file "
             "routes are kept in"),
            (("port = 8001", 'route_store_file = "r.json"'),
             "admin.route_store_file: is used only with route_store = 'file' (route_store "
             "is 'memory')"),
            (("port = 8001", 'route_store = "file"', 'route_store_file = "r.json"',
              'redis_url = "redis://x/"'),
             "admin.redis_url: is used only with route_store = 'redis' (route_store is "
             "'file')"),
            (("port = 8001", 'route_store = "redis"', 'redis_url = "http://x/"'),
             "admin.redis_url: 'http://x/' is not a URL such as 'redis://127.0.0.1:6379/0' "
             "(redis://[:password@]host[:port][/db])"),
            (("port = 8001", 'route_store = "redis"', 'redis_key_prefix = "a b"'),
             "admin.redis_key_prefix: 'a b' is not 1 to 64 letters, digits or '_.:-'"),
            (("port = 8001", "host_routing = 1"), "admin.host_routing: 1 is not true or false"),
            (("port = 8001", "activity_interval = 0"),
             "admin.activity_interval: 0 is not a number of seconds from 0.1 to 1e9"),
            (("port = 8001", "tokenenv = 1"),
             "admin.tokenenv: unknown key (did you mean 'token_env'?); known keys here are "
             + ADMIN_KNOWN),
        ]:
            self.assertEqual(self.error(*lines), "/etc/proxyws/p.toml: " + text, lines)

    def test_notATable(self):
        """
        C{admin} must be a table.
        """
        error = self.assertRaises(ConfigError, parseConfig, "admin = 3\n" + LISTEN, "p.toml")
        self.assertEqual(str(error), "p.toml: admin: 3 is not a table")


class AuthorizationTests(SynchronousTestCase):
    """
    The token check, as a table.
    """

    def test_credentials(self):
        """
        The token of C{token} and C{Bearer} credentials, the scheme in any
        case; nothing for other schemes.
        """
        for header, token in [
            (None, None), (b"", None), (b"token abc", b"abc"), (b"Bearer abc", b"abc"),
            (b"BEARER   abc ", b"abc"), (b"Token", None), (b"Basic YTpi", None),
            (b"tokenabc", None),
        ]:
            self.assertEqual(credentials(header), token, header)

    def test_authorization(self):
        """
        Missing, wrong or right; anything goes without a token.
        """
        for header, token, verdict in [
            (None, None, "ok"), (b"token x", None, "ok"), (None, "abc", "missing"),
            (b"Basic YTpi", "abc", "missing"), (b"token abd", "abc", "wrong"),
            (b"token ab", "abc", "wrong"), (b"token abc", "abc", "ok"),
            (b"Bearer abc", "abc", "ok"), ("token \u00e9".encode(), "\u00e9", "ok"),
        ]:
            self.assertEqual(authorization(header, token), verdict, (header, token))


class EndpointTests(SynchronousTestCase):
    """
    The endpoints, rendered without sockets.
    """

    token = "adm1n"

    def setUp(self):
        self.server = FakeServer({"uptime_seconds": 3.5, "listeners": [
            {"address": "127.0.0.1", "port": 8080, "tls": False}]})
        self.metrics = Metrics(process=False)
        self.store = MemoryRouteStore(APIRouteTable(), Clock())
        self.resource = AdminResource(self.server, self.metrics, self.store, token=self.token)

    def get(self, method, path, authorization=b"Bearer adm1n", body=b""):
        """
        Render a request, with credentials unless told.
        """
        headers = [(b"Authorization", authorization)] if authorization else []
        return self.successResultOf(
            render(self.resource, makeRequest(method, path, body, headers)))

    def test_verifyServer(self):
        """
        The stand-in server provides L{IServerStatus}.
        """
        self.assertTrue(verifyObject(IServerStatus, self.server))

    def test_healthz(self):
        """
        200 C{ok} while serving, 200 C{degraded} while the route store is
        unreachable, 503 while stopping; no token needed.
        """
        answer = self.get(b"GET", b"/healthz", authorization=None)
        self.assertEqual((answer.code, answer.body), (200, b"ok\n"))
        self.store.healthy = False
        answer = self.get(b"GET", b"/healthz", authorization=None)
        self.assertEqual((answer.code, answer.body),
                         (200, b"degraded: serving with the routes last known\n"))
        self.server.state = "stopping"
        answer = self.get(b"GET", b"/healthz", authorization=None)
        self.assertEqual((answer.code, answer.body), (503, b"stopping\n"))

    def test_combinedState(self):
        """
        The server's state, degraded by an unhealthy store while serving.
        """
        self.assertEqual(combinedState(self.server), "serving")
        self.store.healthy = False
        self.assertEqual(combinedState(self.server, self.store), "degraded")
        self.server.state = "stopping"
        self.assertEqual(combinedState(self.server, self.store), "stopping")

    def test_status(self):
        """
        JSON of the server's status with the version, the state and the API
        routes.
        """
        self.successResultOf(self.store.add("/a", {"target": "http://127.0.0.1:1"}))
        answer = self.get(b"GET", b"/status")
        self.assertEqual(answer.header(b"Content-Type"), b"application/json")
        self.assertEqual(json.loads(answer.body), {
            "version": __version__, "state": "serving", "uptime_seconds": 3.5,
            "listeners": [{"address": "127.0.0.1", "port": 8080, "tls": False}],
            "api_routes": {"count": 1, "store": "MemoryRouteStore", "healthy": True}})

    def test_metrics(self):
        """
        Prometheus text of the server's metrics.
        """
        self.metrics.forRoute("route[0]").requestDone(200, 0.01)
        answer = self.get(b"GET", b"/metrics")
        self.assertEqual(answer.code, 200)
        self.assertTrue(answer.header(b"Content-Type").startswith(b"text/plain; version="))
        self.assertIn(b'proxyws_requests_total{code="200",route="route[0]"} 1.0', answer.body)
        self.resource.metrics = None
        self.assertEqual(self.get(b"GET", b"/metrics").code, 404)

    def test_reloadChanged(self):
        """
        C{POST /reload} answers 200 with what changed.
        """
        pending = render(self.resource, makeRequest(
            b"POST", b"/reload", headers=[(b"Authorization", b"token adm1n")]))
        self.assertNoResult(pending)
        self.server.reloads[0].callback(ReloadResult(
            succeeded=True, changes={"routes": {"added": ["route[2]"]}}))
        answer = self.successResultOf(pending)
        self.assertEqual((answer.code, json.loads(answer.body)),
                         (200, {"result": "success", "changes": {"routes": {"added": ["route[2]"]}}}))

    def test_reloadProblems(self):
        """
        A config that does not load gives 409 and the list of problems.
        """
        pending = render(self.resource, makeRequest(
            b"POST", b"/reload", headers=[(b"Authorization", b"token adm1n")]))
        problems = ("p.toml: route[0].backend: 'x' is not a URL", "p.toml: listen[1]: in use")
        self.server.reloads[0].callback(ReloadResult(succeeded=False, problems=problems))
        answer = self.successResultOf(pending)
        self.assertEqual((answer.code, json.loads(answer.body)),
                         (409, {"result": "failure", "problems": list(problems)}))

    def test_reloadOneAtATime(self):
        """
        A reload asked for while one runs is 409; one while stopping 503.
        """
        first = render(self.resource, makeRequest(
            b"POST", b"/reload", headers=[(b"Authorization", b"token adm1n")]))
        answer = self.get(b"POST", b"/reload")
        self.assertEqual((answer.code, json.loads(answer.body)["problems"]),
                         (409, ["a reload is already running"]))
        self.server.reloads[0].callback(ReloadResult(succeeded=True))
        self.assertEqual(self.successResultOf(first).code, 200)
        self.server.state = "stopping"
        self.assertEqual(self.get(b"POST", b"/reload").code, 503)
        self.assertEqual(len(self.server.reloads), 1)

    def test_reloadError(self):
        """
        A reload that raises is 500, logged.
        """
        self.server.reload = lambda: 1 / 0
        answer = self.get(b"POST", b"/reload")
        self.assertEqual(answer.code, 500)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_methods(self):
        """
        A method an endpoint does not take is 405 with C{Allow}.
        """
        answer = self.get(b"GET", b"/reload")
        self.assertEqual((answer.code, answer.header(b"Allow")), (405, b"POST"))
        answer = self.get(b"POST", b"/status")
        self.assertEqual((answer.code, answer.header(b"Allow")), (405, b"GET, HEAD"))

    def test_notFound(self):
        """
        Unknown paths are 404.
        """
        for path in (b"/", b"/healthz/", b"/statuses", b"/metrics/x"):
            self.assertEqual(self.get(b"GET", path).code, 404, path)
        self.resource.store = None
        resource = AdminResource(self.server, self.metrics, None, token=self.token)
        answer = self.successResultOf(render(resource, makeRequest(
            b"GET", b"/api/routes", headers=[(b"Authorization", b"token adm1n")])))
        self.assertEqual(answer.code, 404)

    def test_tokenChecked(self):
        """
        Without credentials: 401 with C{WWW-Authenticate}; with a wrong
        token: 403; C{/api} answers 403 to both.
        """
        for path, method in [(b"/status", b"GET"), (b"/metrics", b"GET"), (b"/reload", b"POST")]:
            answer = self.get(method, path, authorization=None)
            self.assertEqual((answer.code, answer.header(b"WWW-Authenticate")),
                             (401, b'Bearer realm="proxyws admin"'), path)
            self.assertEqual(self.get(method, path, authorization=b"Bearer nope").code, 403)
        for authorization in (None, b"token nope"):
            answer = self.get(b"GET", b"/api/routes", authorization=authorization)
            self.assertEqual((answer.code, answer.body), (403, b""))
        self.assertEqual(self.server.reloads, [])

    def test_noToken(self):
        """
        Without a token everything is open.
        """
        self.resource.token = None
        for path in (b"/status", b"/metrics", b"/api/routes"):
            self.assertEqual(self.get(b"GET", path, authorization=None).code, 200, path)


class LoopbackTests(TestCase):
    """
    The admin listener over real loopback sockets.
    """

    @inlineCallbacks
    def setUp(self):
        from twisted.internet import reactor

        self.reactor = reactor
        self.server = FakeServer()
        self.metrics = Metrics()
        self.store = MemoryRouteStore(APIRouteTable(), reactor)
        settings = AdminSettings(address="127.0.0.1", port=0, token="t0ken")
        self.service = adminService(settings, self.server, reactor, self.metrics, self.store)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.port = self.service.port.getHost().port
        yield succeed(None)

    def request(self, method, path, token=b"t0ken", body=None, port=None):
        """
        Send a request to the admin listener.

        @return: a L{Deferred} firing with C{(code, body)}.
        """
        from twisted.web.client import FileBodyProducer
        import io

        agent = Agent(self.reactor)
        headers = Headers({b"Authorization": [b"token " + token]} if token else {})
        producer = FileBodyProducer(io.BytesIO(body)) if body is not None else None
        url = b"http://127.0.0.1:%d%s" % (port or self.port, path)
        d = agent.request(method, url, headers, producer)
        return d.addCallback(lambda response: readBody(response).addCallback(
            lambda data: (response.code, data)))

    @inlineCallbacks
    def test_endpoints(self):
        """
        Health, status and metrics over HTTP.
        """
        code, body = yield self.request(b"GET", b"/healthz", token=None)
        self.assertEqual((code, body), (200, b"ok\n"))
        code, body = yield self.request(b"GET", b"/status")
        self.assertEqual((code, json.loads(body)["version"]), (200, __version__))
        code, body = yield self.request(b"GET", b"/metrics")
        self.assertIn(b"# TYPE proxyws_requests_total counter", body)
        self.assertIn(b"process_open_fds", body)
        code, _ = yield self.request(b"GET", b"/metrics", token=b"wrong")
        self.assertEqual(code, 403)

    @inlineCallbacks
    def test_api(self):
        """
        JupyterHub's calls: add a route, list, delete.
        """
        code, body = yield self.request(
            b"POST", b"/api/routes/user/alice",
            body=json.dumps({"target": "http://127.0.0.1:9001", "jupyterhub": True,
                             "user": "alice", "server_name": ""}).encode())
        self.assertEqual((code, body), (201, b""))
        code, body = yield self.request(b"GET", b"/api/routes")
        routes = json.loads(body)
        self.assertEqual(list(routes), ["/user/alice"])
        self.assertEqual(routes["/user/alice"]["user"], "alice")
        self.assertTrue(routes["/user/alice"]["last_activity"].endswith("Z"))
        self.assertEqual(self.store.table.lookup(None, b"/user/alice/api/kernels").prefix,
                         "/user/alice")
        code, body = yield self.request(b"DELETE", b"/api/routes/user/alice")
        self.assertEqual((code, body), (204, b""))
        code, body = yield self.request(b"GET", b"/api/routes", token=b"wrong")
        self.assertEqual((code, body), (403, b""))

    @inlineCallbacks
    def test_adoptedSocket(self):
        """
        The listener can adopt a socket bound before start-up.
        """
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        port = sock.getsockname()[1]
        settings = AdminSettings(address="127.0.0.1", port=port)
        service = adminService(settings, self.server, self.reactor, sock=sock)
        service.startService()
        self.addCleanup(service.stopService)
        code, body = yield self.request(b"GET", b"/healthz", port=port)
        self.assertEqual((code, body), (200, b"ok\n"))


class ImportTests(SynchronousTestCase):
    """
    The admin modules can be imported before a reactor is chosen.
    """

    def test_noReactor(self):
        """
        Importing them (the Redis store included: txredisapi is imported
        only when a store starts) leaves C{twisted.internet.reactor} out of
        C{sys.modules}, so C{twistd -r epoll proxyws} keeps working.
        """
        import subprocess
        import sys

        from .helpers import subprocessEnvironment

        code = ("import sys; import proxyws.admin, proxyws.chpapi, proxyws.metrics, "
                "proxyws.routestore, proxyws.redisstore, proxyws.apiroutes; "
                "print('twisted.internet.reactor' in sys.modules, 'txredisapi' in sys.modules)")
        output = subprocess.check_output([sys.executable, "-c", code],
                                         env=subprocessEnvironment())
        self.assertEqual(output.strip(), b"False False")
