"""
A route's plugins on the request path.

L{install} puts them in front of a route's handlers, and only for the
routes that have plugins: the others keep their handlers as they are, so a
request or a websocket message on them does no work for plugins.

  - the route's request filters and authenticators run, in config order,
    in a L{FilteredRouteHandler} wrapped around each handler (HTTP and
    websocket), after the root resource has routed the request and checked
    its C{auth};
  - its response filters run in the HTTP exchange, when the backend's head
    is in (L{ResponseFilters}, the exchange's C{responseFilter});
  - its websocket filters run in the relay (L{proxyws.wsmessages}, the
    websocket handler's C{messages}).
"""

import attr
from twisted.internet.defer import CancelledError, Deferred
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from .errors import PluginFailed, errorPage
from .headers import FRAMING
from .interfaces import (
    IAuthenticator,
    IRequestFilter,
    IResponseFilter,
    IRouteHandler,
    IWebSocketFilter,
)
from .pluginvalues import (
    Identity,
    PluginRequest,
    PluginResponse,
    Response,
    checkResponse,
    writeResponse,
)

# What a stage of the request chain is, by the interface its provider gives
# (an authenticator first: a provider of both authenticates, then filters).
_FILTER = "filterRequest"
_STAGES = ((IAuthenticator, "authenticate"), (IRequestFilter, _FILTER))


@attr.s(frozen=True, slots=True)
class RoutePlugins:
    """
    The plugins of one route, sorted by what they do.

    @ivar route: the L{proxyws.values.Route}.
    @ivar stages: C{(plugin, method)} of the request filters and
        authenticators, in config order.
    @ivar responseFilters: the response filters, in reverse config order.
    @ivar webSocketFilters: the websocket filters, in config order.
    """

    route = attr.ib()
    stages = attr.ib()
    responseFilters = attr.ib()
    webSocketFilters = attr.ib()

    @classmethod
    def fromPlugins(cls, plugins, route):
        """
        @param plugins: the route's L{proxyws.plugins.Plugin}s, in order.
        """
        stages = tuple(
            (plugin, method)
            for plugin in plugins
            for interface, method in _STAGES
            if plugin.provides(interface)
        )
        return cls(
            route=route,
            stages=stages,
            responseFilters=tuple(p for p in reversed(plugins) if p.provides(IResponseFilter)),
            webSocketFilters=tuple(p for p in plugins if p.provides(IWebSocketFilter)),
        )


def install(routePlugins, httpHandlers, webSocketHandlers, index):
    """
    Put the plugins of route C{index} in front of its handlers (in the
    dicts, in place), where it has plugins of that kind.
    """
    chain = RequestChain(routePlugins.stages)
    http = httpHandlers.get(index)
    if http is not None and routePlugins.responseFilters:
        http.responseFilter = ResponseFilters(routePlugins.responseFilters)
    if http is not None and (routePlugins.stages or routePlugins.responseFilters):
        httpHandlers[index] = FilteredRouteHandler(http, chain)
    webSocket = webSocketHandlers.get(index)
    if webSocket is not None and routePlugins.webSocketFilters:
        from .wsmessages import WebSocketFilters

        webSocket.messages = WebSocketFilters(
            routePlugins.webSocketFilters, webSocket.route, webSocket.reactor
        )
    if webSocket is not None and routePlugins.stages:
        webSocketHandlers[index] = FilteredRouteHandler(webSocket, chain)


def pluginRequest(request, route, target=None):
    """
    The L{PluginRequest} the plugins of C{request} share (made at the first
    ask).
    """
    view = getattr(request, "pluginRequest", None)
    if view is None:
        view = request.pluginRequest = PluginRequest(request, route, target)
    return view


def _validTarget(target):
    """
    Whether a request filter's C{target} can be sent: a path starting with
    C{/}, of printable ASCII.
    """
    return (
        isinstance(target, bytes)
        and target[:1] == b"/"
        and all(0x21 <= byte <= 0x7E for byte in target)
    )


class RequestChain:
    """
    Runs the request filters and authenticators of a route on a request,
    one after the other, waiting for each L{Deferred}.
    """

    def __init__(self, stages):
        """
        @param stages: C{(plugin, method)} pairs, in order.
        """
        self.stages = stages

    def run(self, request, start=0):
        """
        Run the stages from C{start} on.

        @param request: the L{PluginRequest}.
        @return: L{None} (go on), a L{Response} (answer it), or a
            L{Deferred} firing with one of those.
        @raise PluginFailed: when a stage failed (logged).
        """
        stages = self.stages
        for position in range(start, len(stages)):
            plugin, method = stages[position]
            target = request.target
            outcome = plugin.call(method, request)
            if outcome is None and method is _FILTER and request.target is target:
                continue  # passed, as it was: the usual case
            if isinstance(outcome, Deferred):
                return outcome.addCallback(self._resume, request, position, target)
            outcome = self._outcome(plugin, method, request, outcome, target)
            if outcome is not None:
                return outcome
        return None

    def _resume(self, outcome, request, position, target):
        plugin, method = self.stages[position]
        outcome = self._outcome(plugin, method, request, outcome, target)
        if outcome is not None:
            return outcome
        return self.run(request, position + 1)

    def _outcome(self, plugin, method, request, outcome, target):
        """
        What one stage's answer means.

        @return: L{None} to go on, or the L{Response} to answer with.
        @raise PluginFailed: for an answer its interface does not allow, or
            a target that cannot be sent.
        """
        if method is not _FILTER:
            if isinstance(outcome, Identity):
                request.authenticated(outcome)
                return None
            if isinstance(outcome, Response):
                return _checked(plugin, outcome)
            raise plugin.failed("authenticate returned {!r}, not an Identity or a Response".format(outcome))
        if outcome is not None and not isinstance(outcome, Response):
            raise plugin.failed("filterRequest returned {!r}, not None or a Response".format(outcome))
        if outcome is None and request.target is not target and not _validTarget(request.target):
            raise plugin.failed("the target {!r} is not a path starting with '/'".format(request.target))
        return outcome if outcome is None else _checked(plugin, outcome)


def _checked(plugin, response):
    """
    @return: C{response}, when it can be written.
    @raise PluginFailed: when it cannot.
    """
    try:
        checkResponse(response)
    except ValueError as e:
        raise plugin.failed("answered {!r}: {}".format(response, e)) from None
    return response


@implementer(IRouteHandler)
class FilteredRouteHandler:
    """
    A route handler with the route's request filters and authenticators in
    front: it runs them, then hands the request to the handler it wraps,
    unless one of them answered it.

    @ivar route: the route of the handler it wraps.
    """

    def __init__(self, handler, chain):
        """
        @param handler: the L{IRouteHandler} it wraps.
        @param chain: the route's L{RequestChain}.
        """
        self._handler = handler
        self._chain = chain
        self.route = handler.route

    def __getattr__(self, name):
        """
        What else is asked of a handler (its C{inFlight} count, its
        C{messages}) is the wrapped handler's.
        """
        return getattr(self._handler, name)

    def proxy(self, request, target, body):
        """
        Run the chain, then relay C{request} (see L{IRouteHandler.proxy}).
        """
        view = pluginRequest(request, self.route, target)
        view.target = target
        try:
            outcome = self._chain.run(view)
        except PluginFailed as e:
            return self._answered(request, body, e)
        if isinstance(outcome, Deferred):
            request.whenGone = lambda reason: outcome.cancel()
            outcome.addCallbacks(self._ran, self._failed, (request, view, body), None, (request, body))
            return NOT_DONE_YET
        return self._ran(outcome, request, view, body)

    def _ran(self, outcome, request, view, body):
        if request.channel is None:
            return NOT_DONE_YET  # the client left meanwhile
        request.whenGone = None
        if outcome is None:
            return self._handler.proxy(request, view.target, body)
        return self._answered(request, body, outcome)

    def _failed(self, failure, request, body):
        if failure.check(CancelledError) or request.channel is None:
            return None
        request.whenGone = None
        error = failure.value
        if not isinstance(error, PluginFailed):
            return failure
        self._answered(request, body, error)
        return None

    def _answered(self, request, body, answer):
        """
        Answer C{request} without the backend: a plugin's L{Response}, or
        the error page of a failed plugin; the rest of the body is read and
        dropped.
        """
        if body is not None:
            body.stopProducing()
        if isinstance(answer, Response):
            writeResponse(request, answer)
        else:
            errorPage(request, answer)
        return NOT_DONE_YET


class ResponseFilters:
    """
    The response filters of a route, called by the HTTP exchange with each
    backend's response head.
    """

    def __init__(self, plugins):
        """
        @param plugins: the route's response filters, in the order they
            run.
        """
        self._plugins = plugins

    def __call__(self, request, code, phrase, fields):
        """
        Filter one response head.

        @param request: the L{proxyws.site.ProxyRequest}.
        @param fields: the C{(name, value)} fields the client would get.
        @return: the fields the client gets.
        @raise PluginFailed: when a filter failed (logged): the client gets
            500 instead.
        """
        view = getattr(request, "pluginRequest", None) or PluginRequest(request)
        response = PluginResponse(code, phrase, fields)
        for plugin in self._plugins:
            outcome = plugin.call("filterResponse", view, response)
            if outcome is not None:
                if isinstance(outcome, Deferred):
                    outcome.cancel()
                raise plugin.failed(
                    "filterResponse returned {!r}; it changes the response in place and "
                    "returns None".format(outcome)
                )
        return [field for field in response.fields if field[0].lower() not in FRAMING]
