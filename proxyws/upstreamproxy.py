"""
Upstream routes on the request path: the member each request and each
websocket goes to, the other members a request that could not be sent may
try, the affinity cookie, and what each member is told of the outcome.

A route with C{upstream = "name"} gets an L{UpstreamHTTPHandler} and an
L{UpstreamWebSocketHandler} (see L{httpHandler}, L{webSocketHandler})
instead of the plain handlers.  They relay exactly as the plain ones do
(L{proxyws.httpproxy}, L{proxyws.wsproxy}), to the chosen member's backend:
its pooled connections, its TLS, the C{Host} header that names it, the
C{Location} fields it sends.  The target the route computed is right for
every member (the members of an upstream differ only in host and port).

For each request and each websocket upgrade:

  1. the member is chosen (L{proxyws.upstream.Upstream.choose}), with a
     view of the request (L{selectionView}) when the upstream needs one;
     no member available: 503 with C{Retry-After};
  2. the member counts it (C{opened}) until it ends (C{closed}); a
     websocket becomes one of the member's websockets once the relay
     starts, until the relay finishes;
  3. the member hears the outcome: C{failed} for a connect failure, a
     refused TLS handshake, a connection closed before any answer, an
     answer that cannot be relayed, no answer in time, or an answer with
     one of L{FAILED_STATUSES}; C{succeeded} for any other answer;
  4. a request that could not be sent goes to the next member, at most the
     upstream's C{retries} times, as L{proxyws.resend.RESEND} allows;
  5. an answer to a client without a valid affinity cookie carries the
     cookie that names its member (added to the member's own
     C{Set-Cookie} fields) and C{Cache-Control: private}; the member never
     sees the cookie.

Nothing here runs for a route with a C{backend}.
"""

from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from .affinity import NOCACHE, selectionRequest
from .errors import PluginFailed, UpstreamUnavailable, errorPage
from .httpproxy import HTTPRouteHandler, _Exchange, connectError, countBackendError
from .interfaces import IRouteHandler
from .logs import ProxyLogger
from .resend import STALE
from .wsproxy import Upgrade, WebSocketRouteHandler

# Statuses of a member's answer that count as its failures (the passive
# health rule), as nginx's max_fails counts them.
FAILED_STATUSES = frozenset([502, 503, 504])

_log = ProxyLogger()


def httpHandler(reactor, pool, route, upstreams):
    """
    The handler of a route's plain HTTP requests.

    @param upstreams: the L{proxyws.upstream.Upstreams} registry.
    @return: an L{UpstreamHTTPHandler} for a route with an C{upstream},
        else an L{HTTPRouteHandler}.
    """
    if route.upstream is None:
        return HTTPRouteHandler(reactor, pool, route)
    return UpstreamHTTPHandler(reactor, pool, route, upstreams)


def webSocketHandler(reactor, route, tlsPolicy, upstreams):
    """
    The handler of a route's websocket upgrades.

    @param upstreams: the L{proxyws.upstream.Upstreams} registry.
    @return: an L{UpstreamWebSocketHandler} for a route with an
        C{upstream}, else a L{WebSocketRouteHandler}.
    """
    if route.upstream is None:
        return WebSocketRouteHandler(reactor, route, tlsPolicy)
    return UpstreamWebSocketHandler(reactor, route, tlsPolicy, upstreams)


def selectionView(request):
    """
    What a member choice reads of a routed request: the client's address
    (behind trusted proxies), its headers, the normalized path and the
    groups of a C{match} route, from group 0.

    @param request: a L{proxyws.site.ProxyRequest} with its C{routeMatch}.
    @return: a L{proxyws.affinity.SelectionRequest}.
    """
    found = request.routeMatch
    match = found.match
    captures = (match.group(0),) + match.groups() if match is not None else ()
    return selectionRequest(
        request.clientHost, request.requestHeaders.getAllRawHeaders(), found.path, captures
    )


class Attempt:
    """
    The member a request or websocket upgrade is with, and the members it
    has tried.  The member counts it from the choice until L{end}.

    @ivar upstream: the L{proxyws.upstream.Upstream}.
    @ivar member: the L{proxyws.members.MemberState} it is with.
    @ivar backend: that member's L{proxyws.values.Backend}.
    @ivar setCookie: the C{Set-Cookie} value its answer carries, or L{None}.
    """

    def __init__(self, upstream, view, choice):
        """
        @param upstream: the L{proxyws.upstream.Upstream}.
        @param view: the request's L{proxyws.affinity.SelectionRequest}, or
            L{None} when the upstream needs none.
        @param choice: the first L{proxyws.members.Choice}.
        """
        self.upstream = upstream
        self._view = view
        self._tried = frozenset()
        self._retries = upstream.retries
        self._take(choice)

    @classmethod
    def first(cls, upstreams, route, request):
        """
        Choose the member of a request on an upstream route.

        @param upstreams: the L{proxyws.upstream.Upstreams} registry.
        @param route: the route, with its C{upstream}.
        @param request: the routed L{proxyws.site.ProxyRequest}.
        @return: an L{Attempt}.
        @raise UpstreamUnavailable: when no member can take it.
        """
        upstream = upstreams.get(route.upstream)
        view = selectionView(request) if upstream.needsRequest else None
        return cls(upstream, view, upstream.choose(view))

    def _take(self, choice):
        member = self.member = choice.member
        self.backend = member.backend
        self.setCookie = choice.setCookie
        self._open = True
        member.opened()

    def next(self):
        """
        Move to another member (the request could not be sent to this
        one), while the upstream's C{retries} allow and one is available.

        @return: whether it moved.
        """
        if self._retries < 1:
            return False
        self._tried |= {self.member}
        try:
            choice = self.upstream.choose(self._view, exclude=self._tried)
        except (UpstreamUnavailable, PluginFailed):
            return False
        self._retries -= 1
        self.end()
        self._take(choice)
        return True

    def failed(self, reason):
        """
        The member failed this request (see L{proxyws.members.MemberState.failed}).

        @param reason: a short text.
        """
        self.member.failed(reason)

    def answered(self, code):
        """
        The member answered with status C{code}.
        """
        if code in FAILED_STATUSES:
            self.member.failed("HTTP status {}".format(code))
        else:
            self.member.succeeded()

    def addedFields(self):
        """
        @return: the fields the member's answer carries besides its own:
            the affinity cookie and L{NOCACHE} when the choice set one,
            else L{None}.
        """
        if self.setCookie is None:
            return None
        return [(b"Set-Cookie", self.setCookie), NOCACHE]

    def fields(self, fields):
        """
        The fields of the member's answer as the client gets them.

        @param fields: C{(name, value)} fields (a L{list}).
        @return: a L{list}.
        """
        added = self.addedFields()
        return fields if added is None else fields + added

    def end(self):
        """
        The request is over (or the upgrade, or this member's part in it).
        """
        if self._open:
            self._open = False
            self.member.closed()

    def webSocketOpened(self, relay):
        """
        The upgrade became a websocket: one of the member's websockets until
        the relay finishes.

        @param relay: the L{proxyws.wsrelay.Relay}.
        """
        self.end()
        member = self.member
        member.webSocketOpened()
        relay.whenFinished = (member.webSocketClosed,)


def unavailable(request, body, error):
    """
    Answer a request that no member can take (503 with C{Retry-After}), or
    whose member the upstream's plugin policy failed to choose (500, the
    failure logged already).
    """
    _log.info(
        "{method} {uri}: {status}: {detail}",
        method=request.method.decode("latin-1"),
        uri=request.uri.decode("latin-1"),
        status=error.status,
        detail=error.detail,
    )
    if body is not None:
        # Read and drop the rest of the body so the answer can finish.
        body.stopProducing()
    errorPage(request, error)


@implementer(IRouteHandler)
class UpstreamHTTPHandler:
    """
    Relays the plain HTTP requests of an upstream route, each to a member.

    @ivar route: the L{proxyws.values.Route}.
    @ivar inFlight: how many of its requests are being relayed.
    @ivar responseFilter: the route's response filters (plugins), or
        L{None}.
    """

    responseFilter = None

    def __init__(self, reactor, pool, route, upstreams):
        """
        @param reactor: the reactor (clock).
        @param pool: the L{proxyws.interfaces.IBackendPool}.
        @param route: the L{proxyws.values.Route}, with its C{upstream}.
        @param upstreams: the L{proxyws.upstream.Upstreams} registry.
        """
        self._reactor = reactor
        self._pool = pool
        self._upstreams = upstreams
        self.route = route
        self.inFlight = 0

    def proxy(self, request, target, body):
        """
        Relay C{request} to a member of the route's upstream.

        @param target: the request target for the member (path and query).
        @param body: a L{proxyws.httpproxy.RequestBody}, or L{None}.
        @return: L{NOT_DONE_YET}.
        """
        try:
            attempt = Attempt.first(self._upstreams, self.route, request)
        except (UpstreamUnavailable, PluginFailed) as e:
            unavailable(request, body, e)
            return NOT_DONE_YET
        exchange = _UpstreamExchange(
            self._reactor, self._pool, self.route, request, target, body, attempt
        )
        exchange.handler = self
        self.inFlight += 1
        request.whenGone = exchange.clientGone
        exchange.start()
        return NOT_DONE_YET


class _UpstreamExchange(_Exchange):
    """
    One request relayed to a member of an upstream: an L{_Exchange} whose
    backend is the member's, that reports its outcome, and that moves to
    the next member when the request could not be sent.
    """

    def __init__(self, reactor, pool, route, request, target, body, attempt):
        _Exchange.__init__(self, reactor, pool, route, request, target, body)
        self._attempt = attempt
        self._use(attempt)
        self._strippedCookie = attempt.upstream.cookieName

    def _use(self, attempt):
        """
        Send the request to the attempt's member, and its answer with the
        cookie that names it when the choice set one.
        """
        self._backend = attempt.backend
        self._addedFields = attempt.addedFields()

    def _backendFailed(self, kind, error, reason):
        # A kept-alive connection closed while idle is no failure of the
        # member.
        if kind is not STALE:
            self._attempt.failed(error.detail)
        _Exchange._backendFailed(self, kind, error, reason)

    def _nextBackend(self):
        attempt = self._attempt
        if not attempt.next():
            return False
        self._use(attempt)
        return True

    def responded(self, head, length, complete):
        """
        The member's answer head: report it, then relay it.
        """
        self._attempt.answered(head.code)
        _Exchange.responded(self, head, length, complete)

    def _done(self):
        _Exchange._done(self)
        self._attempt.end()


class UpstreamWebSocketHandler(WebSocketRouteHandler):
    """
    Relays the websocket upgrades of an upstream route, each to a member.
    """

    def __init__(self, reactor, route, tlsPolicy, upstreams):
        """
        @param upstreams: the L{proxyws.upstream.Upstreams} registry; the
            other parameters are L{WebSocketRouteHandler}'s.
        """
        WebSocketRouteHandler.__init__(self, reactor, route, tlsPolicy)
        self._upstreams = upstreams

    def newUpgrade(self, request, target):
        """
        Choose the member of an upgrade, or answer 503.

        @return: an L{Upgrade} to that member, or L{None} when the request
            is answered.
        """
        try:
            attempt = Attempt.first(self._upstreams, self.route, request)
        except (UpstreamUnavailable, PluginFailed) as e:
            unavailable(request, None, e)
            return None
        return _UpstreamUpgrade(self, request, target, attempt)


class _UpstreamUpgrade(Upgrade):
    """
    A websocket upgrade to a member of an upstream: an L{Upgrade} whose
    backend is the member's, that reports its outcome, moves to the next
    member when it cannot connect, and hands the member its websocket.
    """

    def __init__(self, handler, request, target, attempt):
        Upgrade.__init__(self, handler, request, target)
        self._attempt = attempt
        self._backend = attempt.backend
        self._strippedCookie = attempt.upstream.cookieName

    def _connectFailed(self, reason):
        self._connecting = None
        if self._done:
            return
        error = connectError(reason, self._backend.host)
        attempt = self._attempt
        attempt.failed(error.detail)
        if attempt.next():
            # The member's error counts, though the upgrade goes on.
            countBackendError(self.request, error.kind)
            self._backend = attempt.backend
            self._connect()
            return
        self._fail(error, reason.getErrorMessage())

    def _timedOut(self):
        self._attempt.failed("handshake timeout")
        Upgrade._timedOut(self)

    def backendFailed(self, reason):
        """
        The member's answer was not a handshake the proxy can relay: it
        failed.
        """
        self._attempt.failed(str(reason) if reason else "connection closed")
        Upgrade.backendFailed(self, reason)

    def backendRefused(self, head, body):
        """
        The member answered something else than 101: report it and relay it.
        """
        self._attempt.answered(head.code)
        Upgrade.backendRefused(self, head, body)
        self._attempt.end()

    def backendOpen(self):
        """
        The member accepted the websocket.
        """
        self._attempt.answered(101)
        Upgrade.backendOpen(self)

    def _relayedFields(self, fields):
        return self._attempt.fields(Upgrade._relayedFields(self, fields))

    def _relayOpening(self, relay):
        self._attempt.webSocketOpened(relay)

    def _fail(self, error, detail):
        Upgrade._fail(self, error, detail)
        self._attempt.end()

    def _clientGone(self, reason):
        Upgrade._clientGone(self, reason)
        self._attempt.end()
