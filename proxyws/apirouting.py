"""
Routes added through configurable-http-proxy's REST API, on the request
path: L{APIRouter} tries them beside the config's routes, and
L{APIHandlers} relays their requests.

Precedence (README, "configurable-http-proxy API"): an API route other
than the root is tried first (the longest prefix wins), then the config's
routes in file order, then the API's root route C{/}, which plays
configurable-http-proxy's default target.  A config without API routes
routes as it did before: the table is asked nothing while it is empty.
"""

from zope.interface import implementer

from .interfaces import IRouter
from .routing import RouteMatch, normalizePath, splitTarget


@implementer(IRouter)
class APIRouter:
    """
    The config's router with the API's routes around it.

    @ivar hosts: the config router's virtual hosts.
    @ivar table: the L{proxyws.apiroutes.APIRouteTable}.
    """

    def __init__(self, router, table):
        """
        @param router: the config's L{proxyws.interfaces.IRouter}.
        @param table: the L{proxyws.apiroutes.APIRouteTable} the route
            store keeps.
        """
        self._router = router
        self.table = table
        self.hosts = router.hosts

    def hostFor(self, hostName):
        """
        The virtual host a host name selects, as the config's router says.
        """
        return self._router.hostFor(hostName)

    def route(self, host, target):
        """
        Find the route for a request: an API route, a config route, or the
        API's root route, in that order.

        @return: a L{RouteMatch} (with C{api} set for an API route), or
            L{None}.
        @raise proxyws.errors.BadRequest: when the target cannot be
            normalized.
        """
        table = self.table
        if not len(table):
            return self._router.route(host, target)
        path, query = splitTarget(target)
        path = normalizePath(path)
        found = table.lookup(host, path, query)
        if found is not None and not found.isRoot:
            return RouteMatch(found.route.route, found.target, path, api=found.route)
        match = self._router.route(host, target)
        if match is None and found is not None:
            return RouteMatch(found.route.route, found.target, path, api=found.route)
        return match


class APIHandlers:
    """
    The route handlers of API routes, made when a route is first used and
    kept while it is in the table (a route replaced or removed is
    forgotten once the cache outgrows the table).
    """

    # Handlers kept beyond the table's size before the cache is pruned.
    SLACK = 64

    def __init__(self, table, makeHTTP, makeWebSocket):
        """
        @param table: the L{proxyws.apiroutes.APIRouteTable}.
        @param makeHTTP: a callable taking a L{proxyws.values.Route} and
            returning the L{proxyws.interfaces.IRouteHandler} of its plain
            HTTP requests.
        @param makeWebSocket: the same for its websocket upgrades.
        """
        self._table = table
        self._makeHTTP = makeHTTP
        self._makeWebSocket = makeWebSocket
        self._cache = {}

    def __call__(self, apiRoute):
        """
        @param apiRoute: an L{proxyws.apiroutes.APIRoute}.
        @return: C{(http, webSocket)} handlers of its requests.
        """
        cache = self._cache
        key = id(apiRoute)
        entry = cache.get(key)
        if entry is None or entry[0] is not apiRoute:
            if len(cache) > 2 * len(self._table) + self.SLACK:
                self._prune()
            route = apiRoute.route
            entry = cache[key] = (apiRoute, self._makeHTTP(route), self._makeWebSocket(route))
        return entry[1], entry[2]

    def _prune(self):
        table = self._table
        self._cache = {
            key: entry
            for key, entry in self._cache.items()
            if table.get(entry[0].prefix) is entry[0]
        }
