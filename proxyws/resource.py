"""
The root resource: route each request, then hand it to its route's HTTP or
websocket handler.
"""

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from .errors import BadRequest, NotFound, ServiceUnavailable
from .httpproxy import errorPage


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


class RootResource(Resource):
    """
    Dispatches every request: 400 for a path that cannot be normalized, 404
    when no route matches, else the route's handler.

    @ivar stopping: set during a graceful stop; new requests get 503.
    """

    isLeaf = True
    stopping = False

    def __init__(self, router, httpHandlers, webSocketHandlers=None):
        """
        @param router: a L{proxyws.routing.Router}.
        @param httpHandlers: route index -> handler with a C{proxy(request,
            target, body)} method (a L{ReverseProxyResource}).
        @param webSocketHandlers: route index -> handler with a
            C{proxy(request, target)} method for websocket upgrades, or
            L{None} when websockets are not relayed.
        """
        Resource.__init__(self)
        self._router = router
        self._http = httpHandlers
        self._webSockets = webSocketHandlers or {}

    def render(self, request):
        """
        Route C{request} and hand it on; answer errors here.
        """
        if self.stopping:
            errorPage(request, ServiceUnavailable("the proxy is shutting down"))
            return NOT_DONE_YET
        host = request.requestHeaders.getRawHeaders(b"Host")
        try:
            found = self._router.route(host[0] if host else None, request.uri)
        except BadRequest as e:
            errorPage(request, e)
            return NOT_DONE_YET
        if found is None:
            errorPage(request, NotFound("no route matches this request"))
            return NOT_DONE_YET
        index = found.route.index
        if index in self._webSockets and isWebSocketUpgrade(request):
            return self._webSockets[index].proxy(request, found.target)
        return self._http[index].proxy(request, found.target, request.takeBody())
