"""
Prometheus metrics of one server, for C{GET /metrics} on the admin listener.

A L{Metrics} owns a C{CollectorRegistry} of its own (not the global one of
C{prometheus_client}) with the process collector and one collector that
reads plain counters at scrape time.  Recording is integer and float adds
on objects resolved once per route (L{RouteMetrics}), without locks (the
reactor thread records and scrapes): a finished request is one dict add, a
bisection and a float add; a websocket message is two integer adds on the
websocket's own L{WebSocketCounter}, which the collector reads while the
websocket is open and folds into its route's totals when it closes.

Label values are bounded: a route is labelled by its name or its index
(C{route[3]}, the index of L{proxyws.values.Route}: host routes are
numbered after the top-level ones), all routes added through the API share
C{"api"}, requests no route took C{"none"}; codes are the status as text;
directions and backend error kinds come from the tables below.
"""

from bisect import bisect_left

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

# Upper bounds (seconds) of the request duration histogram's buckets; the
# +Inf bucket follows.  Sorted: observations are placed by bisection.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# Websockets live for seconds to days (a Jupyter kernel, a VNC desktop).
WEBSOCKET_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0,
                     14400.0, 28800.0, 86400.0)

# Websocket message directions: "in" is what the client sends (client to
# backend), "out" what it receives (backend to client), as the access log's
# bytes sent are bytes out to the client.
DIRECTIONS = ("in", "out")

# The kinds of backend error, each counted per route; a kind not listed
# here counts as "other", so that the label stays bounded.
BACKEND_ERROR_KINDS = {
    "connect": "refused or unreachable (502)",
    "connect_timeout": "no connection within connect_timeout (504)",
    "tls": "failed TLS check (502)",
    "response_timeout": "no response head within response_timeout (504)",
    "read_timeout": "silent within read_timeout while sending a body",
    "protocol": "not valid HTTP/1.1 or websocket (502)",
    "broken": "connection lost in the middle of a response or websocket",
    "other": "anything else",
}

# Outcomes of a reload, both always shown.
RELOAD_RESULTS = ("success", "failure")

# The route label of requests that no route took, and of API routes.
NO_ROUTE = "none"
API_ROUTE = "api"


def routeLabel(route):
    """
    The metrics label of a route: its name when it has one, else
    C{route[INDEX]}; routes added through the API (no index) share
    L{API_ROUTE}.

    @param route: a L{proxyws.values.Route}.
    @rtype: L{str}
    """
    name = getattr(route, "name", None)
    if name:
        return name
    if route.index is None:
        return API_ROUTE
    return "route[{}]".format(route.index)


class WebSocketCounter:
    """
    The counts of one open websocket, read at scrape time: added to directly
    (C{counter.messagesIn += 1; counter.bytesIn += n}), or read from a
    source, a callable returning C{(messagesIn, bytesIn, messagesOut,
    bytesOut)} (the frame relay's scanners count as they read frame
    headers, so that relaying pays nothing more).

    @ivar messagesIn: messages from the client to the backend.
    @ivar bytesIn: their payload bytes.
    @ivar messagesOut: messages from the backend to the client.
    @ivar bytesOut: their payload bytes.
    """

    __slots__ = ("messagesIn", "bytesIn", "messagesOut", "bytesOut", "_route", "_source")

    def __init__(self, route, source=None):
        self.messagesIn = self.bytesIn = self.messagesOut = self.bytesOut = 0
        self._route = route
        self._source = source

    def counts(self):
        """
        @return: C{(messagesIn, bytesIn, messagesOut, bytesOut)} so far.
        """
        if self._source is not None:
            return self._source()
        return (self.messagesIn, self.bytesIn, self.messagesOut, self.bytesOut)

    def closed(self, seconds):
        """
        The websocket closed after C{seconds}: fold its counts into its
        route's and observe its duration.  Calling it again does nothing.
        """
        route, self._route = self._route, None
        if route is not None:
            self.messagesIn, self.bytesIn, self.messagesOut, self.bytesOut = self.counts()
            self._source = None
            route._closeWebSocket(self, seconds)


class RouteMetrics:
    """
    The counters of one route label, resolved once per route so that
    recording needs no label lookup.
    """

    __slots__ = ("label", "codes", "durationCounts", "durationSum", "open",
                 "wsCounts", "wsSum", "closedTotals", "errors")

    def __init__(self, label):
        self.label = label
        self.codes = {}
        self.durationCounts = [0] * (len(REQUEST_BUCKETS) + 1)
        self.durationSum = 0.0
        self.open = set()
        self.wsCounts = [0] * (len(WEBSOCKET_BUCKETS) + 1)
        self.wsSum = 0.0
        # messagesIn, bytesIn, messagesOut, bytesOut of closed websockets
        # and of batches added with messages().
        self.closedTotals = [0, 0, 0, 0]
        self.errors = dict.fromkeys(BACKEND_ERROR_KINDS, 0)

    def requestDone(self, code, seconds):
        """
        An HTTP request on this route was answered (websocket upgrades that
        succeed are counted by L{webSocketOpened} instead).

        @param code: the status sent to the client (L{int}).
        @param seconds: from the request's arrival to the end of the
            response.
        """
        codes = self.codes
        codes[code] = codes.get(code, 0) + 1
        self.durationCounts[bisect_left(REQUEST_BUCKETS, seconds)] += 1
        self.durationSum += seconds

    def webSocketOpened(self, source=None):
        """
        A websocket on this route was opened (counted as a request with
        status 101).

        @param source: where its counts are read (see L{WebSocketCounter}),
            or L{None} to add to the counter.
        @return: its L{WebSocketCounter}; call its C{closed} when it ends.
        """
        codes = self.codes
        codes[101] = codes.get(101, 0) + 1
        counter = WebSocketCounter(self, source)
        self.open.add(counter)
        return counter

    def _closeWebSocket(self, counter, seconds):
        self.open.discard(counter)
        totals = self.closedTotals
        totals[0] += counter.messagesIn
        totals[1] += counter.bytesIn
        totals[2] += counter.messagesOut
        totals[3] += counter.bytesOut
        self.wsCounts[bisect_left(WEBSOCKET_BUCKETS, seconds)] += 1
        self.wsSum += seconds

    def messages(self, direction, count, nbytes):
        """
        Add a batch of websocket messages (for a relay that counts bursts
        rather than each message on a L{WebSocketCounter}).

        @param direction: C{"in"} or C{"out"} (L{DIRECTIONS}).
        @param count: messages.
        @param nbytes: their payload bytes.
        """
        offset = 0 if direction == "in" else 2
        self.closedTotals[offset] += count
        self.closedTotals[offset + 1] += nbytes

    def backendError(self, kind):
        """
        Count a backend error of a kind of L{BACKEND_ERROR_KINDS}; other
        kinds count as C{"other"}.
        """
        errors = self.errors
        if kind not in errors:
            kind = "other"
        errors[kind] += 1

    def webSocketTotals(self):
        """
        @return: C{[messagesIn, bytesIn, messagesOut, bytesOut]}, open
            websockets included.
        """
        totals = list(self.closedTotals)
        for counter in self.open:
            for n, count in enumerate(counter.counts()):
                totals[n] += count
        return totals


def _buckets(bounds, counts):
    """
    Cumulative C{(le, count)} pairs of a histogram kept as counts per bucket.
    """
    pairs = []
    total = 0
    for bound, count in zip(bounds + (float("inf"),), counts):
        total += count
        pairs.append((floatToGoString(bound), total))
    return pairs


class _Collector:
    """
    Reads a L{Metrics}'s counters at scrape time.
    """

    def __init__(self, metrics):
        self._metrics = metrics

    def describe(self):
        """
        Nothing to describe ahead of time: the registry then does not call
        L{collect} when the collector is registered.
        """
        return []

    def collect(self):
        """
        @return: the metric families, read now.
        """
        metrics = self._metrics
        metrics.sweep()
        routes = sorted(metrics._routes.values(), key=lambda r: r.label)
        yield from _trafficFamilies(routes)
        yield from _webSocketFamilies(routes)
        reloads = CounterMetricFamily(
            "proxyws_reloads", "Reloads of the config, by result.", labels=["result"])
        for result in RELOAD_RESULTS:
            reloads.add_metric([result], metrics._reloads[result])
        yield reloads
        yield from _upstreamFamilies(metrics.upstreamMembers)
        count = metrics.apiRouteCount() if metrics.apiRouteCount is not None else 0
        yield GaugeMetricFamily(
            "proxyws_api_routes", "Routes added through the configurable-http-proxy API.",
            value=count)


def _trafficFamilies(routes):
    requests = CounterMetricFamily(
        "proxyws_requests", "Requests answered, by route and status (101: websockets).",
        labels=["route", "code"])
    durations = HistogramMetricFamily(
        "proxyws_request_duration_seconds",
        "Time from a request's arrival to the end of its response (websockets excluded).",
        labels=["route"])
    errors = CounterMetricFamily(
        "proxyws_backend_errors", "Backend errors, by route and kind.",
        labels=["route", "kind"])
    for route in routes:
        for code, count in sorted(route.codes.items()):
            requests.add_metric([route.label, str(code)], count)
        durations.add_metric(
            [route.label], _buckets(REQUEST_BUCKETS, route.durationCounts), route.durationSum)
        for kind, count in route.errors.items():
            errors.add_metric([route.label, kind], count)
    return requests, durations, errors


def _webSocketFamilies(routes):
    opened = GaugeMetricFamily(
        "proxyws_websockets_open", "Open websockets, by route.", labels=["route"])
    messages = CounterMetricFamily(
        "proxyws_websocket_messages",
        "Websocket messages relayed; in: client to backend, out: backend to client.",
        labels=["route", "direction"])
    sizes = CounterMetricFamily(
        "proxyws_websocket_bytes",
        "Payload bytes of the websocket messages relayed, by direction.",
        labels=["route", "direction"])
    durations = HistogramMetricFamily(
        "proxyws_websocket_duration_seconds", "Lifetime of closed websockets.",
        labels=["route"])
    for route in routes:
        opened.add_metric([route.label], len(route.open))
        totals = route.webSocketTotals()
        messages.add_metric([route.label, "in"], totals[0])
        sizes.add_metric([route.label, "in"], totals[1])
        messages.add_metric([route.label, "out"], totals[2])
        sizes.add_metric([route.label, "out"], totals[3])
        durations.add_metric(
            [route.label], _buckets(WEBSOCKET_BUCKETS, route.wsCounts), route.wsSum)
    return opened, messages, sizes, durations


def _upstreamFamilies(source):
    up = GaugeMetricFamily(
        "proxyws_upstream_member_up", "Whether an upstream member is taken as up (1) or down (0).",
        labels=["upstream", "member"])
    connections = GaugeMetricFamily(
        "proxyws_upstream_member_connections", "Open connections to an upstream member.",
        labels=["upstream", "member"])
    for upstream, member, isUp, count in (source() if source is not None else ()):
        up.add_metric([upstream, member], 1 if isUp else 0)
        connections.add_metric([upstream, member], count)
    return up, connections


class Metrics:
    """
    The metrics of one server.

    @ivar registry: its own C{CollectorRegistry}.
    @ivar upstreamMembers: a callable returning C{(upstream, member, up,
        connections)} rows at scrape time, or L{None}.
    @ivar apiRouteCount: a callable returning the number of API routes at
        scrape time, or L{None}.
    @cvar contentType: the C{Content-Type} of L{exposition}.
    """

    contentType = CONTENT_TYPE_LATEST

    def __init__(self, upstreamMembers=None, apiRouteCount=None, process=True):
        """
        @param process: add the process collector (CPU, memory, open files).
        """
        self.registry = CollectorRegistry(auto_describe=False)
        self.upstreamMembers = upstreamMembers
        self.apiRouteCount = apiRouteCount
        self._routes = {}
        # Labels of routes a reload removed, kept while they have open
        # websockets.
        self._retired = set()
        self._reloads = dict.fromkeys(RELOAD_RESULTS, 0)
        self.registry.register(_Collector(self))
        if process:
            ProcessCollector(registry=self.registry)

    def forRoute(self, label):
        """
        The counters of a route label, made on first use and kept (across
        reloads, so that counters of a route that stays keep counting).

        @param label: from L{routeLabel}, or L{NO_ROUTE}.
        @return: a L{RouteMetrics}.
        """
        route = self._routes.get(label)
        if route is None:
            route = self._routes[label] = RouteMetrics(label)
        return route

    def retain(self, labels):
        """
        Forget the labels of routes a reload removed, once they have no
        open websockets (their series then end).

        @param labels: the labels to keep.
        """
        keep = set(labels) | {NO_ROUTE, API_ROUTE}
        self._retired = set(self._routes) - keep
        self.sweep()

    def sweep(self):
        """
        Forget the routes a reload removed whose websockets are all closed
        (done at scrape time, so that closing a websocket does no more).
        """
        for label in [label for label in self._retired if not self._routes[label].open]:
            self._retired.discard(label)
            del self._routes[label]

    def reloadDone(self, succeeded):
        """
        Count a reload (SIGHUP or C{POST /reload}).

        @param succeeded: whether the new config took effect.
        """
        self._reloads[RELOAD_RESULTS[0] if succeeded else RELOAD_RESULTS[1]] += 1

    def exposition(self):
        """
        @return: the Prometheus text exposition (bytes).
        """
        return generate_latest(self.registry)
