"""
The admin listener (C{[admin]}): health, status, Prometheus metrics, reload,
and configurable-http-proxy's REST API (L{proxyws.chpapi}), on a Site and a
listener of their own, 127.0.0.1 by default.

Endpoints (L{ENDPOINTS}):

  - C{GET /healthz}: C{ok} (200) while serving; C{degraded: ...} (still 200:
    the proxy serves every request it can, with the routes it last knew)
    when the route store is unreachable; C{stopping} (503) during a
    graceful stop, so that a load balancer moves traffic away.  It needs
    no token: load balancers probe it without credentials, and it shows
    nothing but the state.
  - C{GET /status}: JSON of L{proxyws.interfaces.IServerStatus.status},
    with C{version} and C{state}, and the API routes' count and store.
  - C{GET /metrics}: Prometheus text (L{proxyws.metrics.Metrics}).
  - C{POST /reload}: the server's reload; 200 with what changed, or 409
    with the problems that kept the old config (the request was fine; the
    config file on disk is what conflicts), 409 too while another reload
    runs, 503 while stopping.
  - C{/api/...}: configurable-http-proxy's REST API.

With a token (C{[admin] token_env}), every request but C{/healthz} must
carry C{Authorization: token VALUE} (as configurable-http-proxy's clients
send it) or C{Bearer VALUE} (as Prometheus does), compared in constant
time: without credentials 401 with C{WWW-Authenticate}, with a wrong token
403; C{/api} answers 403 to both, as configurable-http-proxy does.
"""

import hmac
import json

import attr
from twisted.application.service import Service
from twisted.internet.defer import maybeDeferred
from twisted.internet.endpoints import AdoptedStreamServerEndpoint
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from . import __version__
from .chpapi import RoutesAPI
from .logs import ProxyLogger

_log = ProxyLogger()

# Path to (allowed methods, handler name, whether the token is needed).
# HEAD is allowed wherever GET is.
ENDPOINTS = {
    b"/healthz": ((b"GET", b"HEAD"), "_healthz", False),
    b"/status": ((b"GET", b"HEAD"), "_status", True),
    b"/metrics": ((b"GET", b"HEAD"), "_metrics", True),
    b"/reload": ((b"POST",), "_reload", True),
}

# The authorization schemes a token may come with (case-insensitive).
TOKEN_SCHEMES = (b"token", b"bearer")

# /healthz body and status for each state.
HEALTH = {
    "serving": (200, b"ok\n"),
    "degraded": (200, b"degraded: serving with the routes last known\n"),
    "stopping": (503, b"stopping\n"),
}


@attr.s(frozen=True, slots=True)
class ReloadResult:
    """
    What a reload did.

    @ivar succeeded: whether the new config took effect.
    @ivar changes: JSON-able description of what changed, such as
        C{{"routes": {"added": [...], "removed": [...], "changed": [...]},
        "listeners": {...}, "certificates": [...]}}.
    @ivar problems: the problems found in the new config (texts of
        L{proxyws.errors.ConfigError}), when it did not take effect.
    """

    succeeded = attr.ib()
    changes = attr.ib(factory=dict)
    problems = attr.ib(default=())


def credentials(header):
    """
    The token of an C{Authorization} header.

    @param header: the header value (bytes) or L{None}.
    @return: the token (bytes), or L{None} when there is none in a scheme
        of L{TOKEN_SCHEMES}.
    """
    if not header:
        return None
    scheme, _, value = header.strip().partition(b" ")
    value = value.strip()
    if scheme.lower() not in TOKEN_SCHEMES or not value:
        return None
    return value


def authorization(header, token):
    """
    Decide on a request's credentials.

    @param header: its C{Authorization} header (bytes) or L{None}.
    @param token: the token required (L{str}), or L{None} for none.
    @return: C{"ok"}, C{"missing"} or C{"wrong"}.
    """
    if token is None:
        return "ok"
    given = credentials(header)
    if given is None:
        return "missing"
    if hmac.compare_digest(given, token.encode("utf-8")):
        return "ok"
    return "wrong"


def combinedState(server, store=None):
    """
    The state the admin listener reports: the server's, made C{"degraded"}
    while the route store is unhealthy.
    """
    state = server.state
    if state == "serving" and store is not None and not store.healthy:
        return "degraded"
    return state


def _plain(request, code, body, headers=()):
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    for name, value in headers:
        request.setHeader(name, value)
    request.setHeader(b"Content-Length", b"%d" % len(body))
    return body


def _json(request, code, document):
    body = json.dumps(document, indent=1, sort_keys=True).encode("utf-8") + b"\n"
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Content-Length", b"%d" % len(body))
    return body


class AdminResource(Resource):
    """
    Everything the admin listener serves.

    @ivar token: the token requests must carry (L{str}), or L{None}; the
        server may set it again on reload.
    """

    isLeaf = True

    def __init__(self, server, metrics=None, store=None, token=None):
        """
        @param server: an L{proxyws.interfaces.IServerStatus} provider.
        @param metrics: a L{proxyws.metrics.Metrics}, or L{None} (then
            C{/metrics} is 404).
        @param store: an L{proxyws.interfaces.IRouteStore} provider, or
            L{None} (then C{/api} is 404).
        @param token: the token, or L{None}.
        """
        Resource.__init__(self)
        self.server = server
        self.metrics = metrics
        self.store = store
        self.token = token
        self._api = RoutesAPI(store) if store is not None else None
        self._reloading = None

    def render(self, request):
        """
        Check the token, then dispatch by path.
        """
        path = request.path
        if path == b"/api" or path.startswith(b"/api/"):
            if authorization(request.getHeader(b"authorization"), self.token) != "ok":
                return _plain(request, 403, b"")
            if self._api is None:
                return _plain(request, 404, b"Not Found")
            return self._api.render(request)
        endpoint = ENDPOINTS.get(path)
        if endpoint is None:
            return _plain(request, 404, b"Not Found\n")
        methods, handler, guarded = endpoint
        if guarded:
            verdict = authorization(request.getHeader(b"authorization"), self.token)
            if verdict == "missing":
                return _plain(request, 401, b"Unauthorized: send Authorization: Bearer TOKEN\n",
                              [(b"WWW-Authenticate", b'Bearer realm="proxyws admin"')])
            if verdict == "wrong":
                return _plain(request, 403, b"Forbidden\n")
        if request.method not in methods:
            return _plain(request, 405, b"Method Not Allowed\n",
                          [(b"Allow", b", ".join(methods))])
        return getattr(self, handler)(request)

    def _healthz(self, request):
        code, body = HEALTH.get(combinedState(self.server, self.store), HEALTH["serving"])
        request.setHeader(b"Cache-Control", b"no-store")
        return _plain(request, code, body)

    def _status(self, request):
        document = dict(self.server.status())
        document["version"] = __version__
        document["state"] = combinedState(self.server, self.store)
        if self.store is not None:
            document["api_routes"] = {
                "count": len(self.store.table),
                "store": type(self.store).__name__,
                "healthy": bool(self.store.healthy),
            }
        return _json(request, 200, document)

    def _metrics(self, request):
        if self.metrics is None:
            return _plain(request, 404, b"Not Found\n")
        body = self.metrics.exposition()
        request.setHeader(b"Content-Type", self.metrics.contentType.encode("ascii"))
        request.setHeader(b"Content-Length", b"%d" % len(body))
        return body

    def _reload(self, request):
        if self.server.state == "stopping":
            return _json(request, 503, {"result": "failure", "problems": ["proxyws is stopping"]})
        if self._reloading is not None:
            return _json(request, 409, {"result": "failure",
                                        "problems": ["a reload is already running"]})
        gone = []
        request.notifyFinish().addErrback(gone.append)
        self._reloading = maybeDeferred(self.server.reload)

        def done(result):
            if result.succeeded:
                return 200, {"result": "success", "changes": result.changes}
            return 409, {"result": "failure", "problems": list(result.problems)}

        def failed(failure):
            _log.failure("reload failed", failure)
            return 500, {"result": "failure", "problems": [failure.getErrorMessage()]}

        def answer(outcome):
            self._reloading = None
            if not gone:
                request.write(_json(request, *outcome))
                request.finish()

        self._reloading.addCallbacks(done, failed).addCallback(answer)
        return NOT_DONE_YET


class AdminSite(Site):
    """
    The admin listener's site: its requests are not access-logged (API
    changes are logged by L{proxyws.chpapi}).
    """

    noisy = False

    def log(self, request):
        """
        Write no access-log line.
        """


class AdminService(Service):
    """
    The admin listener: listens while running.

    @ivar port: the listening port, once started.
    @ivar resource: its L{AdminResource}.
    """

    port = None

    def __init__(self, site, address, port, reactor, sock=None):
        """
        @param site: an L{AdminSite}.
        @param address: the address to listen on (C{[admin] address}).
        @param port: the port (C{[admin] port}).
        @param sock: a socket already bound and listening there (as
            C{proxyws.sockets.bindListeners} binds the proxy's, so that a
            port in use stops start-up), or L{None} to bind at start.
        """
        self._site = site
        self.resource = site.resource
        self._address = address
        self._port = port
        self._reactor = reactor
        self._socket = sock

    def startService(self):
        """
        Start listening.
        """
        Service.startService(self)
        if self._socket is not None:
            endpoint = AdoptedStreamServerEndpoint(
                self._reactor, self._socket.detach(), self._socket.family)
            self._socket = None
            endpoint.listen(self._site).addCallback(self._listening)
        else:
            self._listening(self._reactor.listenTCP(
                self._port, self._site, interface=self._address))

    def _listening(self, port):
        self.port = port
        address = port.getHost()
        _log.info("admin listener on {address} port {port}", address=address.host,
                  port=address.port)

    def stopService(self):
        """
        Stop listening.

        @return: a L{Deferred} firing when the port is closed.
        """
        Service.stopService(self)
        if self.port is None:
            return None
        return maybeDeferred(self.port.stopListening)


def adminService(settings, server, reactor, metrics=None, store=None, sock=None):
    """
    Build the admin listener of an C{[admin]} table.

    @param settings: an L{proxyws.values.AdminSettings}.
    @param server: an L{proxyws.interfaces.IServerStatus} provider.
    @return: an L{AdminService}; its site's resource is an
        L{AdminResource}.
    """
    if settings.token is None and settings.address not in ("127.0.0.1", "::1"):
        _log.warn("the admin listener on {address} takes requests without a token: set "
                  "[admin] token_env", address=settings.address)
    resource = AdminResource(server, metrics=metrics, store=store, token=settings.token)
    return AdminService(AdminSite(resource), settings.address, settings.port, reactor, sock)
