"""
Tests for L{proxyws.metrics}: the exposition's names and labels, and the
counts as traffic is recorded.
"""

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from proxyws.config import parseConfig
from proxyws.metrics import (
    API_ROUTE, BACKEND_ERROR_KINDS, NO_ROUTE, REQUEST_BUCKETS, Metrics, routeLabel)

# The metric names of the outside contract (shared/contract.md), and the
# ones proxyws adds.
CONTRACT_NAMES = [
    "proxyws_requests_total", "proxyws_request_duration_seconds",
    "proxyws_websockets_open", "proxyws_websocket_messages_total",
    "proxyws_websocket_bytes_total", "proxyws_websocket_duration_seconds",
    "proxyws_backend_errors_total", "proxyws_reloads_total",
    "proxyws_upstream_member_up",
]
ADDED_NAMES = ["proxyws_upstream_member_connections", "proxyws_api_routes"]


def samples(metrics):
    """
    Parse a L{Metrics}'s exposition.

    @return: C{{(sample name, sorted label items): value}}.
    """
    found = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(metrics, name, **labels):
    """
    One sample's value, or L{None} when there is no such sample.
    """
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


class NameTests(SynchronousTestCase):
    """
    The exposition has exactly the contract's names.
    """

    def test_names(self):
        """
        Every contract name is there with its HELP and TYPE lines, even
        before any traffic, with the process collector's metrics.
        """
        text = Metrics().exposition().decode()
        for name in CONTRACT_NAMES + ADDED_NAMES:
            family = name[: -len("_total")] if name.endswith("_total") else name
            self.assertIn("# TYPE {} ".format(family), text.replace("_total counter", " counter"),
                          name)
        self.assertIn("process_cpu_seconds_total", text)
        self.assertIn("process_resident_memory_bytes", text)
        self.assertNotIn("_created", text)
        self.assertEqual(Metrics().contentType.split(";")[0], "text/plain")

    def test_ownRegistry(self):
        """
        Each L{Metrics} has its own registry: the global one is not used,
        and two servers' counts stay apart.
        """
        from prometheus_client import REGISTRY

        first, second = Metrics(), Metrics()
        self.assertIsNot(first.registry, REGISTRY)
        first.forRoute("route[0]").requestDone(200, 0.01)
        self.assertEqual(value(first, "proxyws_requests_total", route="route[0]", code="200"), 1)
        self.assertIsNone(value(second, "proxyws_requests_total", route="route[0]", code="200"))

    def test_routeLabels(self):
        """
        Routes are labelled C{route[INDEX]} (host routes numbered after the
        others), or by name; API routes share C{api}.
        """
        config = parseConfig(
            '[[listen]]\naddress = "127.0.0.1"\nport = 1\n'
            '[[route]]\npath = "/a/"\nbackend = "http://b/"\n'
            '[[host]]\nnames = ["x.example"]\n[[host.route]]\npath = "/"\nbackend = "http://c/"\n',
            "p.toml")
        self.assertEqual([routeLabel(r) for r in config.routes], ["route[0]", "route[1]"])

        class Named:
            name = "shiny"
            index = 4

        class FromAPI:
            index = None

        self.assertEqual(routeLabel(Named()), "shiny")
        self.assertEqual(routeLabel(FromAPI()), API_ROUTE)


class RecordingTests(SynchronousTestCase):
    """
    Metrics move as traffic is recorded.
    """

    def setUp(self):
        self.metrics = Metrics(process=False)
        self.route = self.metrics.forRoute("route[0]")

    def test_requests(self):
        """
        Each finished request counts by status, and its duration lands in
        the right bucket.
        """
        for code, seconds in [(200, 0.003), (200, 0.2), (404, 0.005), (502, 61.0)]:
            self.route.requestDone(code, seconds)
        self.assertEqual(value(self.metrics, "proxyws_requests_total", route="route[0]",
                               code="200"), 2)
        self.assertEqual(value(self.metrics, "proxyws_requests_total", route="route[0]",
                               code="502"), 1)
        bucket = "proxyws_request_duration_seconds_bucket"
        for le, count in [("0.005", 2), ("0.1", 2), ("0.25", 3), ("60.0", 3), ("+Inf", 4)]:
            self.assertEqual(value(self.metrics, bucket, route="route[0]", le=le), count, le)
        self.assertEqual(value(self.metrics, "proxyws_request_duration_seconds_count",
                               route="route[0]"), 4)
        self.assertAlmostEqual(value(self.metrics, "proxyws_request_duration_seconds_sum",
                                     route="route[0]"), 61.208)
        self.assertEqual(len(REQUEST_BUCKETS) + 1,
                         len([k for k in samples(self.metrics) if k[0] == bucket]))

    def test_webSockets(self):
        """
        An open websocket counts in the gauge and as a 101; its messages
        are read while it is open and kept once it closed.
        """
        counter = self.route.webSocketOpened()
        counter.messagesIn += 3
        counter.bytesIn += 30
        counter.messagesOut += 1
        counter.bytesOut += 1000
        get = lambda name, **labels: value(self.metrics, name, route="route[0]", **labels)
        self.assertEqual(get("proxyws_websockets_open"), 1)
        self.assertEqual(get("proxyws_requests_total", code="101"), 1)
        self.assertEqual(get("proxyws_websocket_messages_total", direction="in"), 3)
        self.assertEqual(get("proxyws_websocket_bytes_total", direction="out"), 1000)
        counter.messagesIn += 1
        counter.bytesIn += 5
        counter.closed(90.0)
        counter.closed(90.0)
        self.assertEqual(get("proxyws_websockets_open"), 0)
        self.assertEqual(get("proxyws_websocket_messages_total", direction="in"), 4)
        self.assertEqual(get("proxyws_websocket_bytes_total", direction="in"), 35)
        self.assertEqual(get("proxyws_websocket_duration_seconds_count"), 1)
        self.assertEqual(get("proxyws_websocket_duration_seconds_bucket", le="60.0"), 0)
        self.assertEqual(get("proxyws_websocket_duration_seconds_bucket", le="300.0"), 1)
        self.assertEqual(get("proxyws_request_duration_seconds_count"), 0)

    def test_messageBatches(self):
        """
        Batches of messages add to the route's totals.
        """
        self.route.messages("in", 10, 100)
        self.route.messages("out", 2, 7)
        get = lambda name, d: value(self.metrics, name, route="route[0]", direction=d)
        self.assertEqual((get("proxyws_websocket_messages_total", "in"),
                          get("proxyws_websocket_bytes_total", "in"),
                          get("proxyws_websocket_messages_total", "out"),
                          get("proxyws_websocket_bytes_total", "out")), (10, 100, 2, 7))

    def test_backendErrors(self):
        """
        Every kind of the table is shown (0 until it happens); an unknown
        kind counts as C{other}.
        """
        self.route.backendError("connect")
        self.route.backendError("made up")
        for kind in BACKEND_ERROR_KINDS:
            expected = 1 if kind in ("connect", "other") else 0
            self.assertEqual(value(self.metrics, "proxyws_backend_errors_total",
                                   route="route[0]", kind=kind), expected, kind)
        self.assertIsNone(value(self.metrics, "proxyws_backend_errors_total",
                                route="route[0]", kind="made up"))

    def test_reloads(self):
        """
        Reloads count by result; both results are shown from the start.
        """
        self.assertEqual(value(self.metrics, "proxyws_reloads_total", result="failure"), 0)
        self.metrics.reloadDone(True)
        self.metrics.reloadDone(False)
        self.metrics.reloadDone(True)
        self.assertEqual(value(self.metrics, "proxyws_reloads_total", result="success"), 2)
        self.assertEqual(value(self.metrics, "proxyws_reloads_total", result="failure"), 1)

    def test_upstreamsAndAPIRoutes(self):
        """
        Upstream members and the API route count are read at scrape time.
        """
        rows = [("shiny", "http://127.0.0.1:3838/", True, 4),
                ("shiny", "http://127.0.0.1:3839/", False, 0)]
        self.metrics.upstreamMembers = lambda: rows
        count = [3]
        self.metrics.apiRouteCount = lambda: count[0]
        get = lambda name, member: value(self.metrics, name, upstream="shiny", member=member)
        self.assertEqual(get("proxyws_upstream_member_up", "http://127.0.0.1:3838/"), 1)
        self.assertEqual(get("proxyws_upstream_member_up", "http://127.0.0.1:3839/"), 0)
        self.assertEqual(get("proxyws_upstream_member_connections", "http://127.0.0.1:3838/"), 4)
        self.assertEqual(value(self.metrics, "proxyws_api_routes"), 3)
        count[0] = 5
        self.assertEqual(value(self.metrics, "proxyws_api_routes"), 5)

    def test_sameLabelSameCounters(self):
        """
        L{Metrics.forRoute} gives the same counters for a label (a route
        that stays across a reload keeps counting); L{Metrics.retain}
        forgets the labels of removed routes once their websockets closed.
        """
        self.assertIs(self.metrics.forRoute("route[0]"), self.route)
        other = self.metrics.forRoute("route[1]")
        counter = other.webSocketOpened()
        self.metrics.forRoute(NO_ROUTE).requestDone(404, 0.001)
        self.metrics.retain(["route[0]"])
        self.assertIs(self.metrics.forRoute("route[1]"), other)
        counter.closed(1.0)
        self.metrics.retain(["route[0]"])
        self.assertIsNot(self.metrics.forRoute("route[1]"), other)
        self.assertEqual(value(self.metrics, "proxyws_requests_total", route="none", code="404"), 1)
