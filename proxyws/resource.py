"""
The root of the proxy's resource tree: L{ReverseProxyResource} routes each
request, checks its access, and hands it to its route's handler for plain
HTTP or for websocket upgrades (each an L{proxyws.interfaces.IRouteHandler}).
"""

from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from .errors import (
    BadRequest,
    ContentTooLarge,
    MisdirectedRequest,
    NotFound,
    ServiceUnavailable,
    errorPage,
)
from .routing import hostOfHeader, urlHost


def isWebSocketUpgrade(request):
    """
    Whether C{request} asks to upgrade its connection to a websocket
    (RFC 6455 section 4.1: C{Upgrade: websocket} and C{Connection: Upgrade}).
    """
    headers = request.requestHeaders
    upgrade = headers.getRawHeaders(b"Upgrade")
    if not upgrade or upgrade[0].lower() != b"websocket":
        return False
    connection = headers.getRawHeaders(b"Connection") or ()
    return any(
        token.strip().lower() == b"upgrade"
        for value in connection
        for token in value.split(b",")
    )


class ReverseProxyResource(Resource):
    """
    Dispatches every request: 400 for a path that cannot be normalized, 404
    when no route matches, 403/401 when its access rules say so, else the
    route's handler.

    @ivar stopping: set during a graceful stop; new requests get 503.
    @ivar upstreams: the L{proxyws.upstream.Upstreams} registry the
        handlers of upstream routes choose members from, or L{None}.
    """

    isLeaf = True
    stopping = False
    upstreams = None

    def __init__(
        self,
        router,
        httpHandlers,
        webSocketHandlers=None,
        gate=None,
        unknownHost=404,
        apiHandlers=None,
        routeMetrics=None,
    ):
        """
        @param router: an L{proxyws.interfaces.IRouter}.
        @param httpHandlers: route index -> the
            L{proxyws.interfaces.IRouteHandler} of its plain HTTP requests.
        @param webSocketHandlers: route index -> the
            L{proxyws.interfaces.IRouteHandler} of its websocket upgrades,
            or L{None} when websockets are not relayed.
        @param gate: an L{proxyws.interfaces.IGate}, or L{None}.
        @param unknownHost: the status for a request for no host's name
            when there are virtual hosts and none is the default (404/421).
        @param apiHandlers: a callable giving the C{(http, webSocket)}
            handlers of a route added through the API (an
            L{proxyws.apirouting.APIHandlers}), when the router has such
            routes.
        @param routeMetrics: route index (L{None} for the API's routes) ->
            the L{proxyws.metrics.RouteMetrics} each request of the route
            counts on (C{request.routeMetrics}); empty without metrics.
        """
        Resource.__init__(self)
        self._router = router
        self._http = httpHandlers
        self._webSockets = webSocketHandlers or {}
        self._gate = gate
        self._api = apiHandlers
        self._metrics = routeMetrics or {}
        self._unknownHost = MisdirectedRequest if unknownHost == 421 else NotFound

    def render(self, request):
        """
        Route C{request} and hand it on; answer errors here.
        """
        if self.stopping:
            errorPage(request, ServiceUnavailable("the proxy is shutting down"))
            return NOT_DONE_YET
        listener = request.site.listener
        if listener is not None:
            if listener.redirect is not None and request.scheme == b"http":
                redirectToHTTPS(request, listener.redirect)
                return NOT_DONE_YET
            if listener.hsts and request.scheme == b"https":
                request.responseHeaders.setRawHeaders(
                    b"Strict-Transport-Security", [listener.hsts.encode("ascii")]
                )
        host = request.hostHeader
        try:
            found = self._router.route(host, request.uri)
        except BadRequest as e:
            errorPage(request, e)
            return NOT_DONE_YET
        if found is None:
            if self._router.hosts and self._router.hostFor(hostOfHeader(host)) is None:
                errorPage(request, self._unknownHost("no site is served under this host name"))
            else:
                errorPage(request, NotFound("no route matches this request"))
            return NOT_DONE_YET
        route = found.route
        # From here on the request is the route's: what its own rules
        # answer (redirect, 413, 401/403) counts on its metrics too.
        request.routeMatch = found
        if self._metrics:
            request.routeMetrics = self._metrics.get(route.index)
        if route.redirect is not None and request.scheme == b"http":
            redirectToHTTPS(request, route.redirect)
            return NOT_DONE_YET
        if route.maxBodySize:
            request.bodyLimit = route.maxBodySize
            declared = request.declaredLength
            if declared is not None and declared > route.maxBodySize:
                # Answered at once, without reading the body: the
                # connection closes after the answer.
                request.refuse(ContentTooLarge(
                    "the request body is larger than {} bytes".format(route.maxBodySize)))
                return NOT_DONE_YET
        # Taken before the gate: a body that arrives while a password is
        # checked waits in it.
        body = request.takeBody()
        if route.access is not None:
            admitted = self._gate.admit(request, route.access)
            if isinstance(admitted, Deferred):
                admitted.addCallback(self._admitted, request, found, body)
                return NOT_DONE_YET
            if not admitted:
                return self._refused(body)
        return self._dispatch(request, found, body)

    def _admitted(self, admitted, request, found, body):
        if not admitted:
            self._refused(body)
        elif request.channel is not None:
            self._dispatch(request, found, body)

    def _refused(self, body):
        """
        The gate answered: read and drop the rest of the request body, so
        the answer can finish and the connection serve the next request.
        """
        if body is not None:
            body.stopProducing()
        return NOT_DONE_YET

    def _dispatch(self, request, found, body):
        # The handler of an upstream route reads the match (the normalized
        # path, a match route's groups), set by render, to choose a member.
        index = found.route.index
        if index is None:
            http, webSocket = self._api(found.api)
            if isWebSocketUpgrade(request):
                return webSocket.proxy(request, found.target, body)
            return http.proxy(request, found.target, body)
        if index in self._webSockets and isWebSocketUpgrade(request):
            return self._webSockets[index].proxy(request, found.target, body)
        return self._http[index].proxy(request, found.target, body)


def redirectToHTTPS(request, redirect):
    """
    Answer C{request} with a redirect to the same host, path and query over
    https.

    @param redirect: a L{proxyws.config.Redirect} (port and status).
    """
    host = request.requestHeaders.getRawHeaders(b"Host")
    name = hostOfHeader(host[0]) if host else urlHost(request.getHost().host.encode("ascii"))
    port = b"" if redirect.port == 443 else b":%d" % redirect.port
    location = b"https://" + name + port + request.uri
    body = b"Moved to " + location + b"\n"
    request.setResponseCode(redirect.status)
    request.responseHeaders.setRawHeaders(b"Location", [location])
    request.responseHeaders.setRawHeaders(b"Content-Type", [b"text/plain; charset=utf-8"])
    request.responseHeaders.setRawHeaders(b"Content-Length", [b"%d" % len(body)])
    request.write(body)
    request.finish()
