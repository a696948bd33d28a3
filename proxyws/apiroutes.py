"""
The table of routes added at run time through configurable-http-proxy's
REST API (L{proxyws.chpapi}), as the proxy consults it: pure, in memory, no
I/O.  A route store (L{proxyws.routestore}) keeps it in step with its own
copy.

The rules are configurable-http-proxy's (its C{lib/trie.js} and
C{lib/configproxy.js}):

  - a prefix is cleaned: it starts with C{/} and has no trailing C{/},
    except the root C{/} (L{cleanPrefix});
  - a prefix covers the path itself and every path below it, segment by
    segment (C{/user/a} covers C{/user/a}, C{/user/a/} and C{/user/a/x},
    not C{/user/ab}); the longest prefix wins, and C{/} covers everything;
  - prefixes are kept and matched percent-decoded: the API decodes the
    prefix in its URL, and a request path is decoded before matching;
  - the request path goes to the target whole, the target's own path in
    front of it (C{/user/a/x} on C{/user/a} to C{http://b:1/base} goes to
    C{http://b:1/base/user/a/x});
  - with host routing, a prefix starts with a host name
    (C{/alice.example.com/path}) and is matched against the request's
    C{Host} (without port, case-insensitive) followed by its path.

C{last_activity} is a time per prefix: set when a route is added, and by
the proxy through L{APIRouteTable.touch} (a dict store) for proxied
traffic; the store writes or merges the touched times in batches.
"""

from datetime import datetime, timezone
from urllib.parse import unquote, unquote_to_bytes

import attr

from .config import backendForURL
from .errors import InvalidRoute
from .routing import hostOfHeader, reverseMapping, withQuery
from .values import Route

# Finished HTTP requests count as activity only when their status is below
# this: configurable-http-proxy does not let a flood of 404s, 403s or 503s
# make a route look active (lib/configproxy.js, "finish" handler).
ACTIVITY_STATUS_LIMIT = 300

# Keys of the data of a route that the table itself sets.
LAST_ACTIVITY = "last_activity"

# The label routes added through the API share in metrics: one label for
# all of them, since their prefixes (one per user) are not bounded.
API_ROUTE_LABEL = "api"


def cleanPrefix(prefix):
    """
    Clean a route prefix as configurable-http-proxy's C{trimPrefix} does:
    a leading C{/} added, trailing C{/} removed, C{/} for the root.

    @param prefix: a decoded prefix, such as C{"user/alice/"}.
    @type prefix: L{str}
    @return: the cleaned prefix, such as C{"/user/alice"}.
    """
    if not prefix.startswith("/"):
        prefix = "/" + prefix
    return prefix.rstrip("/") or "/"


def decodePrefix(raw):
    """
    Decode the prefix part of an API URL (C{/api/routes<prefix>}) as
    configurable-http-proxy's C{decodeURIComponent} does.

    @param raw: the raw, percent-encoded path part, as bytes.
    @return: the cleaned, decoded prefix (L{str}).
    @raise InvalidRoute: when it does not decode to UTF-8 text.
    """
    try:
        text = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRoute("the route prefix is not percent-encoded UTF-8") from None
    return cleanPrefix(text)


def formatTime(when):
    """
    Format a time as JavaScript's C{Date.toISOString} does, which is what
    configurable-http-proxy's C{last_activity} values look like.

    @param when: seconds since the epoch.
    @return: such as C{"2026-11-26T04:07:00.123Z"}.
    """
    moment = datetime.fromtimestamp(when, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "{:03d}Z".format(moment.microsecond // 1000)


def parseTime(text):
    """
    Parse an ISO-8601 date or time (the C{inactive_since} query argument).
    A time without an offset is taken as UTC.

    @return: seconds since the epoch.
    @raise ValueError: when it is not ISO-8601.
    """
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


@attr.s(frozen=True, slots=True)
class APIRoute:
    """
    One route added through the API.

    @ivar prefix: the cleaned, decoded prefix (L{str}).
    @ivar data: the data stored with it, as given (C{target} included, no
        C{last_activity}), plus C{host} with host routing.
    @ivar backend: the target as a L{proxyws.values.Backend}, whose C{path}
        goes in front of the request path.
    @ivar route: a L{proxyws.values.Route} the proxy can serve the request
        with (timeouts from the server settings), or L{None} when the table
        was made without server settings.
    """

    prefix = attr.ib()
    data = attr.ib(eq=False)
    backend = attr.ib()
    route = attr.ib(default=None, eq=False, repr=False)

    @property
    def target(self):
        """
        The target URL as given.
        """
        return self.data["target"]

    def document(self, lastActivity):
        """
        The route as the API shows it.

        @param lastActivity: seconds since the epoch.
        @return: a new L{dict}: the data, with C{last_activity}.
        """
        document = dict(self.data)
        document[LAST_ACTIVITY] = formatTime(lastActivity)
        return document


class APIMatch:
    """
    The outcome of looking a request up in the table.

    @ivar route: the L{APIRoute} whose prefix is the longest that covers
        the request.
    @ivar target: the backend request target (path and query, bytes).
    """

    __slots__ = ("route", "target")

    def __init__(self, route, target):
        self.route = route
        self.target = target

    @property
    def prefix(self):
        """
        The matched prefix.
        """
        return self.route.prefix

    @property
    def isRoot(self):
        """
        Whether the match is the root route C{/} (configurable-http-proxy's
        default target), which the proxy tries after its config routes.
        """
        return self.route.prefix == "/"


def _serverRoute(backend, server):
    """
    A L{Route} that sends the whole request path to C{backend}: an empty
    prefix is covered by every path and replaced by the backend's path.
    The client's C{Host} goes to the backend, as configurable-http-proxy
    (node-http-proxy without C{changeOrigin}) sends it: Jupyter's websocket
    origin check compares C{Origin} with it.
    """
    return Route(
        index=None,
        hosts=(),
        prefix=b"",
        match=None,
        template=None,
        backend=backend,
        reverse=reverseMapping(b"", None, backend.path),
        preserveHost=True,
        connectTimeout=server.connectTimeout,
        responseTimeout=server.responseTimeout,
        readTimeout=server.readTimeout,
    )


class APIRouteTable:
    """
    The routes added through the API, by prefix, and their last activity.

    @ivar hostRouting: whether prefixes start with a host name.
    @ivar recent: prefix to the latest time L{touch} recorded since the
        store last took them (L{takeRecent}).
    """

    def __init__(self, hostRouting=False, server=None):
        """
        @param hostRouting: C{[admin] host_routing}.
        @param server: L{proxyws.values.ServerSettings} whose timeouts the
            routes' L{APIRoute.route} take, or L{None} for no such route.
        """
        self.hostRouting = hostRouting
        self._server = server
        self._routes = {}
        self._byKey = {}
        self._activity = {}
        self.recent = {}

    def __len__(self):
        return len(self._routes)

    def configure(self, server):
        """
        Take the timeouts of new server settings (a reload): the routes in
        the table are made again with them.

        @param server: L{proxyws.values.ServerSettings}.
        """
        self._server = server
        for prefix, route in list(self._routes.items()):
            fresh = attr.evolve(route, route=_serverRoute(route.backend, server))
            self._routes[prefix] = self._byKey[self._key(prefix)] = fresh

    def makeRoute(self, prefix, data):
        """
        Check a route given through the API and make it, without adding it.

        @param prefix: the prefix (cleaned here).
        @param data: a L{dict} with C{"target"}.
        @return: an L{APIRoute}.
        @raise InvalidRoute: for a target proxyws cannot use.
        """
        if not isinstance(data, dict):
            raise InvalidRoute("Must specify 'target' as string")
        prefix = cleanPrefix(prefix)
        backend = backendForURL(data.get("target"))
        data = {key: value for key, value in data.items() if key != LAST_ACTIVITY}
        if self.hostRouting and prefix != "/":
            data["host"] = prefix.split("/")[1]
        route = None
        if self._server is not None:
            route = _serverRoute(backend, self._server)
        return APIRoute(prefix=prefix, data=data, backend=backend, route=route)

    def _key(self, prefix):
        # Host names are matched without regard to case.
        if not self.hostRouting or prefix == "/":
            return prefix
        host, slash, rest = prefix[1:].partition("/")
        return "/" + host.lower() + slash + rest

    def put(self, route, lastActivity=None):
        """
        Add or replace a route made by L{makeRoute}.

        @param lastActivity: its last activity (seconds since the epoch);
            L{None} keeps the time it had, if any.
        """
        old = self._routes.get(route.prefix)
        if old is not None:
            del self._byKey[self._key(old.prefix)]
        self._routes[route.prefix] = route
        self._byKey[self._key(route.prefix)] = route
        if lastActivity is not None:
            self._activity[route.prefix] = lastActivity
        else:
            self._activity.setdefault(route.prefix, 0.0)

    def add(self, prefix, data, when):
        """
        Check, make and add a route, active at C{when}.

        @return: the L{APIRoute}.
        @raise InvalidRoute: for a target proxyws cannot use.
        """
        route = self.makeRoute(prefix, data)
        self.put(route, when)
        return route

    def remove(self, prefix):
        """
        Remove the route of a prefix.

        @return: whether there was one.
        """
        prefix = cleanPrefix(prefix)
        route = self._routes.pop(prefix, None)
        if route is None:
            return False
        del self._byKey[self._key(prefix)]
        self._activity.pop(prefix, None)
        self.recent.pop(prefix, None)
        return True

    def get(self, prefix):
        """
        @return: the L{APIRoute} of exactly this prefix (cleaned), or L{None}.
        """
        return self._routes.get(cleanPrefix(prefix))

    def routes(self):
        """
        @return: a L{list} of every L{APIRoute}.
        """
        return list(self._routes.values())

    def replace(self, routes, activity):
        """
        Replace the whole table (a store loading or resynchronizing).  Times
        touched and not yet taken are kept.

        @param routes: L{APIRoute}s.
        @param activity: prefix to seconds since the epoch.
        """
        self._routes = {}
        self._byKey = {}
        self._activity = {}
        for route in routes:
            self.put(route, activity.get(route.prefix, 0.0))

    def lookup(self, host, path, query=None):
        """
        Find the route of a request: the longest prefix covering it.

        @param host: the request's C{Host} header (bytes) or L{None}; used
            with host routing only.
        @param path: the normalized request path (bytes, still
            percent-encoded), as the proxy sends it on.
        @param query: the request's query (bytes) or L{None}.
        @return: an L{APIMatch}, or L{None}.
        """
        if not self._routes:
            return None
        key = (unquote(path.decode("latin-1"), "utf-8", "replace")
               if b"%" in path else path.decode("utf-8", "replace"))
        if self.hostRouting:
            key = "/" + hostOfHeader(host).decode("ascii", "replace") + key
        key = key.rstrip("/")
        byKey = self._byKey
        while True:
            route = byKey.get(key or "/")
            if route is not None:
                return APIMatch(route, withQuery(route.backend.path + path, query))
            if not key:
                return None
            key = key[: key.rfind("/")]

    def touch(self, prefix, when):
        """
        Record traffic on a route (a finished HTTP request, a websocket
        message either way).  A dict store: the store takes the times in
        batches (L{takeRecent}).

        @param prefix: the matched prefix (L{APIMatch.prefix}).
        @param when: seconds since the epoch.
        """
        self.recent[prefix] = when

    def requestDone(self, prefix, code, when):
        """
        Record a finished HTTP request on a route, which counts as activity
        when its status is below L{ACTIVITY_STATUS_LIMIT}.
        """
        if code < ACTIVITY_STATUS_LIMIT:
            self.recent[prefix] = when

    def takeRecent(self):
        """
        Take the times touched since the last call, folding them into the
        table's own.

        @return: prefix to seconds since the epoch, for routes that exist.
        """
        recent, self.recent = self.recent, {}
        taken = {p: t for p, t in recent.items() if p in self._routes}
        self.mergeActivity(taken)
        return taken

    def mergeActivity(self, activity):
        """
        Take the later of each known time and the given one (times merged
        from a file or from other instances).

        @param activity: prefix to seconds since the epoch.
        """
        known = self._activity
        for prefix, when in activity.items():
            if prefix in known and when > known[prefix]:
                known[prefix] = when

    def lastActivity(self, prefix):
        """
        @return: the last activity of a route (seconds since the epoch),
            including times not yet taken by the store.
        """
        return max(self._activity.get(prefix, 0.0), self.recent.get(prefix, 0.0))

    def activity(self):
        """
        @return: prefix to last activity, for every route.
        """
        return {prefix: self.lastActivity(prefix) for prefix in self._routes}

    def documents(self, inactiveSince=None):
        """
        The table as C{GET /api/routes} shows it.

        @param inactiveSince: seconds since the epoch: keep only the routes
            whose last activity is before it; L{None} for all.
        @return: prefix to L{APIRoute.document}.
        """
        shown = {}
        for prefix, route in self._routes.items():
            when = self.lastActivity(prefix)
            if inactiveSince is None or when < inactiveSince:
                shown[prefix] = route.document(when)
        return shown
