"""
Tests for L{proxyws.health}: the passive and active rules as tables, the
checker's timing on a clock, the member states it drives, and real checks
against servers on 127.0.0.1 (HTTP, TCP, TLS).
"""

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource

from proxyws.config import parseConfig
from proxyws.health import ActiveChecker, activeRule, checkMember, checkRequest, passiveRule
from proxyws.tls import backendCreator
from proxyws.upstream import Upstreams
from proxyws.values import CheckSettings

from . import certs
from .helpers import freePort, startBackend


def memberBackend(port, scheme="http", host="127.0.0.1"):
    """
    A member's L{Backend} as the config builds it.
    """
    config = parseConfig(
        '[[listen]]\naddress = "127.0.0.1"\nport = 0\n[[upstream]]\nname = "u"\n'
        'members = ["{}://{}:{}/"]\n'.format(scheme, host, port)
    )
    return config.upstreams[0].members[0].backend


def captureLog(testCase):
    """
    The texts of the member states' log events until the test ends.
    """
    lines = []

    def observe(event):
        if event.get("log_namespace") == "proxyws.members":
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    testCase.addCleanup(globalLogPublisher.removeObserver, observe)
    return lines


class PassiveRuleTests(SynchronousTestCase):
    """
    L{passiveRule}: nginx's max_fails within fail_timeout.
    """

    def test_table(self):
        """
        Failures older than the window are forgotten; C{maxFails} within it
        take the member down; 0 never does.
        """
        cases = [
            # earlier failures, now, maxFails, failTimeout -> kept, down
            ((), 100.0, 1, 10.0, (100.0,), True),
            ((), 100.0, 3, 10.0, (100.0,), False),
            ((95.0,), 100.0, 3, 10.0, (95.0, 100.0), False),
            ((92.0, 95.0), 100.0, 3, 10.0, (92.0, 95.0, 100.0), True),
            ((89.0, 95.0), 100.0, 3, 10.0, (95.0, 100.0), False),
            ((90.0, 95.0), 100.0, 3, 10.0, (95.0, 100.0), False),
            ((99.0, 99.5), 100.0, 0, 10.0, (99.0, 99.5, 100.0), False),
        ]
        for failures, now, maxFails, failTimeout, kept, down in cases:
            self.assertEqual(
                passiveRule(failures, now, maxFails, failTimeout), (kept, down), failures
            )


class ActiveRuleTests(SynchronousTestCase):
    """
    L{activeRule}: HAProxy's rise and fall.
    """

    def test_table(self):
        """
        A result that agrees with the state resets the streak; C{fall}
        failures in a row take an up member down, C{rise} passes bring a
        down one up.
        """
        cases = [
            # up, streak, passed, rise, fall -> up, streak
            (True, 0, True, 2, 3, True, 0),
            (True, 0, False, 2, 3, True, 1),
            (True, 1, False, 2, 3, True, 2),
            (True, 2, False, 2, 3, False, 0),
            (True, 2, True, 2, 3, True, 0),
            (False, 0, False, 2, 3, False, 0),
            (False, 0, True, 2, 3, False, 1),
            (False, 1, True, 2, 3, True, 0),
            (False, 1, False, 2, 3, False, 0),
            (True, 0, False, 1, 1, False, 0),
            (False, 0, True, 1, 1, True, 0),
        ]
        for up, streak, passed, rise, fall, newUp, newStreak in cases:
            self.assertEqual(
                activeRule(up, streak, passed, rise, fall), (newUp, newStreak),
                (up, streak, passed, rise, fall),
            )


class FakeProbe:
    """
    Stands for L{checkMember}: each check waits for the test to answer it.

    @ivar pending: C{(backend, Deferred)} of the checks under way.
    """

    def __init__(self):
        self.pending = []

    def __call__(self, reactor, backend, check, tlsPolicy):
        """
        Start a check.
        """
        result = Deferred()
        self.pending.append((backend, result))
        return result

    def answer(self, results):
        """
        Answer the checks under way.

        @param results: backend port -> C{(passed, detail)}.
        """
        pending, self.pending = self.pending, []
        for backend, result in pending:
            result.callback(results[backend.port])


UPSTREAM = """
[[listen]]
address = "127.0.0.1"
port = 0

[[upstream]]
name = "app"
members = ["http://127.0.0.1:1001/", "http://127.0.0.1:1002/", "http://127.0.0.1:1003/"]
{more}
"""

OK = (True, "HTTP status 200")
BAD = (False, "HTTP status 500")


class CheckerTests(SynchronousTestCase):
    """
    The active checker on a clock, driving member states.
    """

    def setUp(self):
        self.clock = Clock()
        self.probe = FakeProbe()
        self.log = captureLog(self)

    def registry(self, more):
        """
        A started registry of one upstream with C{more} settings.
        """
        config = parseConfig(UPSTREAM.format(more=more))
        registry = Upstreams.fromConfig(config, self.clock, None, probe=self.probe)
        registry.start()
        self.addCleanup(registry.stop)
        return registry, registry.get("app")

    def test_interval(self):
        """
        Every member is checked at start, then C{interval} seconds after its
        previous check ended; a slow check delays only its member's next.
        """
        registry, upstream = self.registry("check = { interval = 5, timeout = 2 }")
        self.clock.advance(0)
        self.assertEqual([b.port for b, _ in self.probe.pending], [1001, 1002, 1003])
        slow = self.probe.pending.pop()
        self.probe.answer({1001: OK, 1002: OK})
        self.clock.advance(4.9)
        self.assertEqual(self.probe.pending, [])
        self.clock.advance(0.1)
        self.assertEqual([b.port for b, _ in self.probe.pending], [1001, 1002])
        slow[1].callback(OK)
        self.clock.advance(5)
        self.assertEqual([b.port for b, _ in self.probe.pending], [1001, 1002, 1003])

    def test_fallAndRise(self):
        """
        C{fall} failed checks in a row take a member down, C{rise} passed
        ones bring it back; each change is logged once, naming the
        upstream, the member and why.
        """
        registry, upstream = self.registry("check = { interval = 1, rise = 2, fall = 3 }")
        member = upstream.members[1]
        results = {1001: OK, 1002: BAD, 1003: OK}
        states = []
        for _ in range(6):
            self.clock.advance(1)
            self.probe.answer(results)
            states.append(member.up)
        self.assertEqual(states, [True, True, False, False, False, False])
        results[1002] = OK
        for _ in range(3):
            self.clock.advance(1)
            self.probe.answer(results)
            states.append(member.up)
        self.assertEqual(states[6:], [False, True, True])
        self.assertEqual(
            self.log,
            [
                "upstream app member {} (http://127.0.0.1:1002/) down: 3 checks failed "
                "in a row, the last: HTTP status 500".format(member.name),
                "upstream app member {} (http://127.0.0.1:1002/) up: 2 checks passed "
                "in a row (HTTP status 200)".format(member.name),
            ],
        )
        self.assertEqual(member.snapshot()["lastCheck"], {"time": 9.0, "passed": True, "detail": "HTTP status 200"})

    def test_downMemberNotChosen(self):
        """
        A member its checks hold down is not chosen; it is again once up.
        """
        registry, upstream = self.registry("check = { interval = 1, rise = 1, fall = 1 }")
        self.clock.advance(0)
        self.probe.answer({1001: OK, 1002: BAD, 1003: OK})
        self.assertEqual({upstream.choose().member.backend.port for _ in range(6)}, {1001, 1003})
        self.clock.advance(1)
        self.probe.answer({1001: OK, 1002: OK, 1003: OK})
        self.assertEqual({upstream.choose().member.backend.port for _ in range(6)}, {1001, 1002, 1003})

    def test_stop(self):
        """
        Stopping cancels the checks under way and the next ones; a result
        that comes after is not counted.
        """
        registry, upstream = self.registry("check = { interval = 1, fall = 1 }")
        self.clock.advance(0)
        pending = list(self.probe.pending)
        registry.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        for _, result in pending:
            self.assertTrue(result.called)
        self.assertTrue(all(member.up for member in upstream.members))

    def test_checkerStopsOnItsOwn(self):
        """
        L{ActiveChecker} alone: started, it checks at once; stopped, it
        leaves nothing scheduled.
        """
        checker = ActiveChecker(self.clock, CheckSettings(), [], None, self.probe)
        checker.start()
        self.assertTrue(checker.running)
        checker.stop()
        self.assertFalse(checker.running)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class PassiveTests(SynchronousTestCase):
    """
    Passive checks on member states, on a clock.
    """

    def setUp(self):
        self.clock = Clock()
        self.log = captureLog(self)

    def upstream(self, more="", members=3):
        """
        A started upstream of C{members} members with C{more} settings.
        """
        urls = ", ".join('"http://127.0.0.1:{}/"'.format(1001 + n) for n in range(members))
        text = UPSTREAM.replace(
            'members = ["http://127.0.0.1:1001/", "http://127.0.0.1:1002/", "http://127.0.0.1:1003/"]',
            "members = [{}]".format(urls),
        )
        registry = Upstreams.fromConfig(parseConfig(text.format(more=more)), self.clock, None)
        registry.start()
        self.addCleanup(registry.stop)
        return registry.get("app")

    def test_nginxDefaults(self):
        """
        With nginx's defaults (max_fails 1, fail_timeout 10 s) one failure
        takes a member down for 10 seconds; then it is chosen again.
        """
        upstream = self.upstream()
        member = upstream.members[0]
        member.failed("connection refused")
        self.assertFalse(member.up)
        self.assertNotIn(member, [upstream.choose().member for _ in range(6)])
        self.clock.advance(9.9)
        self.assertFalse(member.up)
        self.clock.advance(0.1)
        self.assertTrue(member.up)
        self.assertIn(member, [upstream.choose().member for _ in range(6)])
        self.assertEqual(
            self.log,
            [
                "upstream app member {} (http://127.0.0.1:1001/) down: 1 failure within "
                "10 s, the last: connection refused".format(member.name),
                "upstream app member {} (http://127.0.0.1:1001/) up: fail_timeout (10 s) "
                "passed since it was taken down".format(member.name),
            ],
        )

    def test_failuresWithinWindow(self):
        """
        With max_fails 3 and fail_timeout 30, three failures within 30
        seconds take it down; failures spread wider do not; a success in
        between starts the count again.
        """
        upstream = self.upstream("max_fails = 3\nfail_timeout = 30")
        member = upstream.members[1]
        for delay in (0, 20, 20, 20):
            self.clock.advance(delay)
            member.failed("HTTP status 502")
        self.assertTrue(member.up)
        self.assertEqual(member.snapshot()["failures"], 2)
        member.succeeded()
        member.failed("HTTP status 503")
        member.failed("HTTP status 504")
        self.assertTrue(member.up)
        member.failed("HTTP status 504")
        self.assertFalse(member.up)
        self.assertEqual(member.snapshot()["state"], "down")
        self.assertEqual(member.snapshot()["downSince"], 60.0)
        self.assertEqual(member.snapshot()["lastFailure"], "HTTP status 504")

    def test_failuresWhileDownIgnored(self):
        """
        Failures reported while a member is down (requests that were under
        way) neither log again nor extend its time down.
        """
        upstream = self.upstream()
        member = upstream.members[0]
        member.failed("connection refused")
        self.clock.advance(5)
        member.failed("connection refused")
        self.clock.advance(5)
        self.assertTrue(member.up)
        self.assertEqual(len(self.log), 2)

    def test_singleMemberNeverDown(self):
        """
        An upstream of one member is never taken down by failures (as
        nginx): a 502 from the member says more than a 503 would.
        """
        upstream = self.upstream(members=1)
        upstream.members[0].failed("connection refused")
        self.assertTrue(upstream.members[0].up)

    def test_maxFailsZero(self):
        """
        C{max_fails = 0} turns passive checks off.
        """
        upstream = self.upstream("max_fails = 0")
        for _ in range(10):
            upstream.members[0].failed("connection refused")
        self.assertTrue(upstream.members[0].up)


class StatusResource(Resource):
    """
    Answers C{/ok} with 200, C{/redirect} with 302 and anything else with
    500.
    """

    isLeaf = True

    def render_GET(self, request):
        """
        Answer by path.
        """
        codes = {b"/ok": 200, b"/redirect": 302}
        request.setResponseCode(codes.get(request.path, 500))
        return b"status"


class Silent(Protocol):
    """
    Accepts and never answers.
    """


def serveTLS(testCase, pair, resource):
    """
    Serve C{resource} over TLS with C{pair}'s certificate on 127.0.0.1.

    @return: the port.
    """
    from twisted.internet import reactor
    from twisted.web.server import Site

    site = Site(resource)
    site.log = lambda request: None
    options = CertificateOptions(privateKey=pair.key, certificate=pair.certificate)
    factory = TLSMemoryBIOFactory(options, False, site)
    factory.noisy = False
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    testCase.addCleanup(port.stopListening)
    return port.getHost().port


class RealCheckTests(TestCase):
    """
    L{checkMember} against real servers on 127.0.0.1.
    """

    def setUp(self):
        from twisted.internet import reactor

        self.reactor = reactor
        _, self.httpPort = startBackend(self, StatusResource())

    def check(self, backend, tlsPolicy=None, **settings):
        """
        Check C{backend} once with C{settings}.
        """
        settings.setdefault("timeout", 2.0)
        return checkMember(self.reactor, backend, CheckSettings(**settings), tlsPolicy)

    @inlineCallbacks
    def test_http(self):
        """
        An HTTP check passes on an expected status and fails on another,
        saying which; by default 200 to 399 pass.
        """
        backend = memberBackend(self.httpPort)
        cases = [
            (dict(path=b"/ok"), (True, "HTTP status 200")),
            (dict(path=b"/redirect"), (True, "HTTP status 302")),
            (dict(path=b"/other"), (False, "HTTP status 500")),
            (dict(path=b"/ok", statuses=frozenset([204])), (False, "HTTP status 200")),
            (dict(path=b"/other", statuses=frozenset([500, 503])), (True, "HTTP status 500")),
        ]
        for settings, expected in cases:
            self.assertEqual((yield self.check(backend, **settings)), expected, settings)

    @inlineCallbacks
    def test_tcp(self):
        """
        A TCP check passes when the connection is accepted (even by a
        server that never answers) and fails when it is refused.
        """
        from twisted.internet import reactor

        port = reactor.listenTCP(0, Factory.forProtocol(Silent), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        result = yield self.check(memberBackend(port.getHost().port), type="tcp")
        self.assertEqual(result, (True, "connected"))
        result = yield self.check(memberBackend(freePort()), type="tcp")
        self.assertEqual(result, (False, "connection refused"))

    @inlineCallbacks
    def test_httpRefusedAndSilent(self):
        """
        An HTTP check fails on a refused connection, and after its timeout
        on a server that accepts and never answers.
        """
        from twisted.internet import reactor

        result = yield self.check(memberBackend(freePort()), path=b"/ok")
        self.assertEqual(result, (False, "connection refused"))
        port = reactor.listenTCP(0, Factory.forProtocol(Silent), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        result = yield self.check(memberBackend(port.getHost().port), timeout=0.2)
        self.assertEqual(result, (False, "timed out after 0.2 s"))

    @inlineCallbacks
    def test_tls(self):
        """
        An https member's HTTP check verifies its certificate as the route
        would, with the TLS policy it is given: a certificate for its
        address passes; one for another name, or from an unknown CA, fails,
        saying why; a TCP check only connects.
        """
        authority = certs.makeAuthority()
        policy = lambda backend: backendCreator(backend.host, ca=[authority.certificate])
        right = serveTLS(self, certs.makeCertificate(authority, names=("127.0.0.1",)), StatusResource())
        wrong = serveTLS(self, certs.makeCertificate(authority, names=("other.example",)), StatusResource())
        unknown = serveTLS(self, certs.makeCertificate(names=("127.0.0.1",)), StatusResource())
        result = yield self.check(memberBackend(right, "https"), policy, path=b"/ok")
        self.assertEqual(result, (True, "HTTP status 200"))
        result = yield self.check(memberBackend(wrong, "https"), policy, path=b"/ok")
        self.assertEqual(
            result, (False, "TLS handshake failed: the certificate is not for 127.0.0.1")
        )
        result = yield self.check(memberBackend(unknown, "https"), policy, path=b"/ok")
        self.assertEqual(result, (False, "TLS handshake failed: certificate verify failed"))
        result = yield self.check(memberBackend(wrong, "wss"), policy, type="tcp")
        self.assertEqual(result, (True, "connected"))

    @inlineCallbacks
    def test_noTLSPolicy(self):
        """
        A TLS policy that does not know an https member fails its check,
        saying so, instead of raising.
        """
        result = yield self.check(memberBackend(self.httpPort, "https"), {}.__getitem__)
        self.assertEqual(result, (False, "no TLS settings for this member"))
        result = yield self.check(memberBackend(self.httpPort, "https"), None)
        self.assertEqual(result, (False, "no TLS settings for this member"))

    def test_request(self):
        """
        The check's request names the member as the route's requests do
        and asks the member to close.
        """
        backend = memberBackend(8443, "https", "b.internal")
        self.assertEqual(
            checkRequest(backend, CheckSettings(path=b"/health?full=1")),
            b"GET /health?full=1 HTTP/1.1\r\nHost: b.internal:8443\r\n"
            b"User-Agent: proxyws-check\r\nConnection: close\r\n\r\n",
        )

    @inlineCallbacks
    def test_registryOverRealServers(self):
        """
        A started registry checks real members: the one nobody listens on
        goes down after C{fall} checks, the others stay up.
        """
        from .wsbackends import waitUntil

        text = UPSTREAM.replace(
            'members = ["http://127.0.0.1:1001/", "http://127.0.0.1:1002/", "http://127.0.0.1:1003/"]',
            'members = ["http://127.0.0.1:{}/", "http://127.0.0.1:{}/"]'.format(
                self.httpPort, freePort()
            ),
        )
        config = parseConfig(
            text.format(more='check = { path = "/ok", interval = 0.1, fall = 2, rise = 1 }')
        )
        registry = Upstreams.fromConfig(config, self.reactor, None)
        registry.start()
        self.addCleanup(registry.stop)
        up, down = registry.get("app").members
        yield from waitUntil(lambda: not down.up)
        self.assertTrue(up.up)
        self.assertEqual(down.snapshot()["lastCheck"]["detail"], "connection refused")
